"""The b2 destination: rclone's environment and argv built correctly, secrets out of argv;
a live backup to Backblaze only when B2 credentials are in the environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from photos_sync.core.destinations import (
    MEMORY_BUDGET,
    UPLOAD_BUFFER_SHARE,
    destination_type,
    plan_tuning,
)
from photos_sync.core.events import RunRequest
from photos_sync.core.rclone_args import SyncOptions, archive_path, crypt_path, sync_argv
from photos_sync.core.records import Destination
from photos_sync.credentials.keyfile import write_key_file
from photos_sync.engine.destination import DestinationContext
from photos_sync.engine.runner import Runner
from photos_sync.engine.setup import SetupError, SetupRequest, setup_destination
from photos_sync.storage.settings_io import load_settings
from photos_sync.storage.store import Store
from tests.conftest import rclone_binary
from tests.immich_tree import TreeStats

KEY_ID = "0012a3b4c5d6e7f0000000001"
APP_KEY = "K001abcdefghijklmnopqrstuvwxyz0123"
PASSWORD = "an-encryption-password-for-tests"
ENCRYPTION = "encryption_password"


async def _b2_destination(store: Store, keyfile: Path, **kw: str) -> Destination:
    write_key_file(
        keyfile,
        {
            "application_key_id": KEY_ID,
            "application_key": APP_KEY,
            "encryption_password": PASSWORD,
            "encryption_salt": "a-salt-for-tests-only",
        },
    )
    return await store.create_destination(
        name="b2",
        type="b2",
        bucket_name="my-immich",
        remote_path=kw.get("path", "server1"),
        secrets_ref=f"file:{keyfile}",
    )


async def test_b2_remote_env_and_sync_argv() -> None:
    settings = load_settings()
    store = await Store.open(settings.db_path)
    try:
        destination = await _b2_destination(store, settings.secrets_dir / "b2.json")
        remote = await DestinationContext(settings, store).open_remote(destination)
    finally:
        await store.close()
    env = dict(remote.env)
    assert env["RCLONE_CONFIG"] == ""
    assert env["RCLONE_CONFIG_PSBASE_TYPE"] == "b2"
    assert env["RCLONE_CONFIG_PSBASE_ACCOUNT"] == KEY_ID
    assert env["RCLONE_CONFIG_PSBASE_KEY"] == APP_KEY
    # a file moved into the archive leaves no hidden version behind (billed twice otherwise)
    assert env["RCLONE_CONFIG_PSBASE_HARD_DELETE"] == "true"
    assert env["RCLONE_CONFIG_PSCRYPT_TYPE"] == "crypt"
    assert env["RCLONE_CONFIG_PSCRYPT_REMOTE"] == "psbase:my-immich/server1"
    assert env["RCLONE_CONFIG_PSCRYPT_PASSWORD"] not in (PASSWORD, "")
    assert env["RCLONE_CONFIG_PSCRYPT_FILENAME_ENCRYPTION"] == "standard"

    options = destination_type("b2").tune(SyncOptions(stats_interval=5))
    argv = sync_argv(
        remote.binary,
        "/srv/immich/library",
        crypt_path("library"),
        archive_path("20240101T000000Z", "library"),
        options,
    )
    text = " ".join(argv)
    assert "--transfers 16" in text and "--checkers 32" in text and "--fast-list" in text
    assert "--b2-chunk-size 24Mi" in text and "--b2-upload-concurrency 2" in text
    assert "--b2-hard-delete" not in text  # the remote's own setting, one place
    for secret in (KEY_ID, APP_KEY, PASSWORD, env["RCLONE_CONFIG_PSCRYPT_PASSWORD"]):
        assert secret not in text
    assert APP_KEY in remote.secrets and PASSWORD in remote.secrets


async def test_append_only_b2_hides_instead_of_deleting() -> None:
    """An append-only destination's key cannot delete: rclone must hide (hard_delete false),
    while a normal destination keeps real deletes."""
    settings = load_settings()
    store = await Store.open(settings.db_path)
    try:
        normal = await _b2_destination(store, settings.secrets_dir / "b2.json")
        protected = await store.create_destination(
            name="b2-locked",
            type="b2",
            bucket_name="my-immich",
            remote_path="server1",
            secrets_ref=normal.secrets_ref,
            options={"append_only": True},
        )
        context = DestinationContext(settings, store)
        plain = await context.open_remote(normal)
        locked = await context.open_remote(protected)
    finally:
        await store.close()
    assert plain.env["RCLONE_CONFIG_PSBASE_HARD_DELETE"] == "true"
    assert not plain.removal_hides
    assert locked.env["RCLONE_CONFIG_PSBASE_HARD_DELETE"] == "false"
    assert locked.removal_hides


@pytest.mark.parametrize(("append_only", "verb"), [(False, "purge"), (True, "delete")])
async def test_archive_expiry_on_b2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, append_only: bool, verb: str
) -> None:
    """The expiry of an old archive run: `rclone purge` normally; on an append-only b2
    destination `rclone delete`, which hides each file (rclone's b2 Purge deletes every
    version, which needs deleteFiles whatever hard_delete says). No B2 here: a stand-in
    rclone records argv and answers the archive listing; it runs the real rclone for
    `obscure` only."""
    calls = tmp_path / "calls.log"
    stand_in = tmp_path / "rclone"
    stand_in.write_text(
        "#!/bin/sh\n"
        f'printf "%s hard_delete=%s\\n" "$*" "$RCLONE_CONFIG_PSBASE_HARD_DELETE" >> {calls}\n'
        'case "$1" in\n'
        f'  obscure) exec {rclone_binary()} "$@" ;;\n'
        '  lsjson) echo \'[{"Path":"20200101T000000Z","IsDir":true}]\' ;;\n'
        "esac\n"
    )
    stand_in.chmod(0o755)
    monkeypatch.setenv("RCLONE_BINARY", str(stand_in))
    settings = load_settings()
    store = await Store.open(settings.db_path)
    try:
        write_key_file(
            settings.secrets_dir / "b2.json",
            {"application_key_id": KEY_ID, "application_key": APP_KEY, ENCRYPTION: PASSWORD},
        )
        destination = await store.create_destination(
            name="b2",
            type="b2",
            bucket_name="my-immich",
            remote_path="server1",
            secrets_ref=f"file:{settings.secrets_dir / 'b2.json'}",
            options={"append_only": True} if append_only else {},
        )
        runner = Runner(settings, store)
        remote = await runner.destinations.open_remote(destination)
        removed = await runner.prune_archive(destination, remote, dry_run=False)
    finally:
        await store.close()
    assert removed == ["20200101T000000Z"]
    lines = calls.read_text().splitlines()
    [removal] = [line for line in lines if line.split()[0] in ("purge", "delete")]
    hard_delete = "false" if append_only else "true"
    assert removal.startswith(f"{verb} pscrypt:.deleted/20200101T000000Z ")
    assert removal.endswith(f" hard_delete={hard_delete}")
    assert APP_KEY not in "\n".join(lines)


def test_b2_tuning_stays_within_the_memory_budget() -> None:
    default = destination_type("b2").tune(SyncOptions())
    assert default.transfers == 16
    for transfers in (1, 4, 16, 32, 64, 96):
        plan = plan_tuning(transfers, 8, 2)
        assert plan.chunk_size >= 5 * 1024 * 1024
        assert plan.buffer_bytes <= MEMORY_BUDGET * UPLOAD_BUFFER_SHARE
    # the user's BACKUP_TRANSFERS wins, and the chunk shrinks to stay in budget
    tuned = destination_type("b2").tune(SyncOptions(transfers=48, checkers=8))
    assert tuned.transfers == 48 and tuned.checkers == 8
    assert "--b2-chunk-size" in tuned.extra_flags
    chunk = tuned.extra_flags[tuned.extra_flags.index("--b2-chunk-size") + 1]
    assert chunk == "8Mi"


async def test_b2_setup_errors_without_network() -> None:
    """No B2 reachable from here: setup must fail with one line, saving nothing."""
    settings = load_settings()
    store = await Store.open(settings.db_path)
    env = {
        **os.environ,
        "PHOTOS_SYNC_APPLICATION_KEY_ID": KEY_ID,
        "PHOTOS_SYNC_APPLICATION_KEY": APP_KEY,
    }
    try:
        with pytest.raises(SetupError) as info:
            await setup_destination(
                settings,
                store,
                SetupRequest(kind="b2", name="b2", secrets="file", env=env),
            )
        assert str(info.value) == "no bucket: pass --bucket, or fill bucket_name in the key file"
        # point the b2 backend at a dead loopback endpoint: credentials/bucket unreachable
        from tests.support.s3server import free_port

        request = SetupRequest(
            kind="b2",
            name="b2",
            bucket="my-immich",
            endpoint=f"http://127.0.0.1:{free_port()}",
            secrets="file",
            env=env,
        )
        with pytest.raises(SetupError) as info:
            await setup_destination(settings, store, request)
        message = str(info.value)
        assert message.startswith("destination 'b2': cannot reach bucket 'my-immich'")
        assert APP_KEY not in message and "\n" not in message
        assert await store.list_destinations() == []
        assert not (settings.secrets_dir / "b2.json").exists()
    finally:
        await store.close()


async def test_rclone_missing_and_rclone_config_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings_env = {**os.environ, "PHOTOS_SYNC_ENCRYPTION_PASSWORD": PASSWORD}
    monkeypatch.setenv("RCLONE_BINARY", str(tmp_path / "no-rclone"))
    settings = load_settings()
    store = await Store.open(settings.db_path)
    try:
        request = SetupRequest(
            kind="local", name="nas", path=tmp_path / "nas", secrets="file", env=settings_env
        )
        with pytest.raises(SetupError) as info:
            await setup_destination(settings, store, request)
        assert str(info.value).startswith(f"RCLONE_BINARY={str(tmp_path / 'no-rclone')!r} is not")
        broken = tmp_path / "broken-rclone"
        broken.write_text("#!/bin/sh\necho 'Failed to load config file' >&2\nexit 1\n")
        broken.chmod(0o755)
        monkeypatch.setenv("RCLONE_BINARY", str(broken))
        with pytest.raises(SetupError) as info:
            await setup_destination(load_settings(), store, request)
        # The first rclone start is the test write (obscuring needs no rclone): its
        # error line reaches the user, and nothing of the destination is kept.
        assert str(info.value) == "destination 'nas': test-write failed: Failed to load config file"
        assert PASSWORD not in str(info.value)
        assert await store.list_destinations() == []
    finally:
        await store.close()


LIVE = all(os.environ.get(k) for k in ("B2_APPLICATION_KEY_ID", "B2_APPLICATION_KEY", "B2_BUCKET"))


@pytest.mark.skipif(
    not LIVE,
    reason="live B2 test: set B2_APPLICATION_KEY_ID, B2_APPLICATION_KEY and B2_BUCKET to run it",
)
async def test_live_b2_backup(immich: tuple[Path, TreeStats]) -> None:  # pragma: no cover
    settings = load_settings()
    store = await Store.open(settings.db_path)
    env = {
        **os.environ,
        "PHOTOS_SYNC_APPLICATION_KEY_ID": os.environ["B2_APPLICATION_KEY_ID"],
        "PHOTOS_SYNC_APPLICATION_KEY": os.environ["B2_APPLICATION_KEY"],
    }
    try:
        request = SetupRequest(
            kind="b2",
            name="live",
            bucket=os.environ["B2_BUCKET"],
            path=Path(f"photos-sync-test-{os.getpid()}"),
            secrets="file",
            env=env,
        )
        await setup_destination(settings, store, request)
        runner = Runner(settings, store)
        result = await runner.run(RunRequest("live"))
        assert result.ok
        # `backup --check` reads the bucket's lifecycle rules with this key
        from photos_sync.engine.check import SKIP, check_b2_versions

        destination = await store.get_destination("live")
        assert destination is not None
        remote = await runner.destinations.open_remote(destination)
        versions = await check_b2_versions(remote, destination)
        assert versions.status != SKIP, versions.detail
    finally:
        await store.close()
