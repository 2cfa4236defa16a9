"""Backups to a real S3 server (`rclone serve s3` on loopback), keys from the 1Password test
double or from the key file, checked with plain rclone cryptcheck; errors and secret hygiene."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest

from photos_sync.core.config import Settings
from photos_sync.core.events import RunRefused, RunRequest, RunResult
from photos_sync.core.states import JobStatus
from photos_sync.engine.runner import Runner
from photos_sync.engine.setup import SetupError, SetupRequest, setup_destination
from photos_sync.storage.settings_io import load_settings
from photos_sync.storage.store import Store
from tests.conftest import rclone_binary
from tests.immich_tree import TreeStats
from tests.support import plain_rclone
from tests.support.op_double import OpDouble, op_double  # noqa: F401
from tests.support.s3server import S3Server, s3_server  # noqa: F401

PASSWORD = "Correct-Horse-Battery-Staple-42"


@pytest.fixture
def rclone_spy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """RCLONE_BINARY: a wrapper that records each argv (from /proc) and execs the real rclone."""
    log = tmp_path / "rclone-argv.log"
    wrapper = tmp_path / "rclone-spy" / "rclone"
    wrapper.parent.mkdir()
    wrapper.write_text(
        "#!/bin/sh\n"
        f"tr '\\0' ' ' < /proc/$$/cmdline >> '{log}'\n"
        f"echo >> '{log}'\n"
        f"exec '{rclone_binary()}' \"$@\"\n"
    )
    wrapper.chmod(0o755)
    monkeypatch.setenv("RCLONE_BINARY", str(wrapper))
    return log


def s3_request(server: S3Server, **kw: Any) -> SetupRequest:
    values: dict[str, Any] = {
        "kind": "s3",
        "name": "cloud",
        "bucket": "immich-backup",
        "endpoint": server.endpoint,
        "env": {
            **os.environ,
            "PHOTOS_SYNC_ACCESS_KEY_ID": server.access_key_id,
            "PHOTOS_SYNC_SECRET_ACCESS_KEY": server.secret_access_key,
        },
    }
    values.update(kw)
    return SetupRequest(**values)


async def _backup(settings: Settings, request: SetupRequest) -> tuple[Store, RunResult]:
    store = await Store.open(settings.db_path)
    destination = await setup_destination(settings, store, request)
    result = await Runner(settings, store).run(RunRequest(destination.name))
    return store, result


def crypt_env(server: S3Server, bucket: str, password: str, salt: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(server.rclone_env("s3"))
    env.update(
        {
            "RCLONE_CONFIG": "",
            "RCLONE_CONFIG_SECRET_TYPE": "crypt",
            "RCLONE_CONFIG_SECRET_REMOTE": f"s3:{bucket}",
            "RCLONE_CONFIG_SECRET_PASSWORD": plain_rclone.obscure(password),
            "RCLONE_CONFIG_SECRET_FILENAME_ENCRYPTION": "standard",
            "RCLONE_CONFIG_SECRET_DIRECTORY_NAME_ENCRYPTION": "true",
        }
    )
    if salt:
        env["RCLONE_CONFIG_SECRET_PASSWORD2"] = plain_rclone.obscure(salt)
    return env


def assert_cryptchecked(immich_root: Path, env: dict[str, str]) -> None:
    for folder in ("backups", "library", "upload", "profile"):
        result = plain_rclone.cryptcheck(immich_root / folder, f"secret:{folder}", env)
        assert result.returncode == 0, result.stderr
    listed = plain_rclone.run(["lsf", "secret:"], env)
    assert "thumbs/" not in listed.stdout and "library/" in listed.stdout


def assert_no_secret_leaks(tmp_path: Path, settings: Settings, secrets: list[str]) -> None:
    """Secrets appear in no child argv, not in the log and not in the DB."""
    texts = {
        "argv": (tmp_path / "rclone-argv.log").read_text(),
        "log": settings.log_path.read_text() if settings.log_path.exists() else "",
        "db": "\n".join(
            repr(row)
            for table in ("backup_destinations", "backup_jobs")
            for row in sqlite3.connect(settings.db_path).execute(f"SELECT * FROM {table}")
        ),
    }
    state = tmp_path / "op-state.json"
    if state.exists():
        calls = json.loads(state.read_text())["calls"]
        texts["op argv"] = "\n".join(c["cmdline"] for c in calls)
    assert "rclone" in texts["argv"]
    for secret in secrets:
        for where, text in texts.items():
            assert secret not in text, f"a secret leaked into the {where}"


async def test_backup_to_s3_with_keys_from_1password(
    immich: tuple[Path, TreeStats],
    s3_server: S3Server,  # noqa: F811
    op_double: OpDouble,  # noqa: F811
    rclone_spy: Path,
    tmp_path: Path,
) -> None:
    settings = load_settings()
    from photos_sync.system.logs import configure_logging

    configure_logging(settings.log_path)
    request = s3_request(s3_server, secrets="op")
    store, result = await _backup(settings, request)
    try:
        assert result.ok
        jobs = result.jobs
        assert [j.folder for j in jobs] == ["backups", "library", "upload", "profile"]
        assert all(j.status is JobStatus.COMPLETED for j in jobs)
        destination = await store.get_destination("cloud")
        assert destination is not None
        assert destination.secrets_ref == "op:Private/Immich Backup S3"
        assert destination.bucket_name == "immich-backup"
        assert destination.endpoint == s3_server.endpoint
    finally:
        await store.close()
    fields = op_double.item_fields("Immich Backup S3")
    password = fields["encryption_password"]
    assert len(password) == 32 and password.isalnum()
    assert fields["secret_access_key"] == s3_server.secret_access_key
    assert fields["bucket_name"] == "immich-backup"
    create = [c for c in op_double.calls() if c["argv"][:2] == ["item", "create"]]
    assert len(create) == 1 and create[0]["stdin_bytes"] > 0
    env = crypt_env(s3_server, "immich-backup", password, fields["encryption_salt"])
    assert_cryptchecked(immich[0], env)
    # the raw bucket holds only encrypted names
    raw = plain_rclone.run(["lsf", "-R", "s3:immich-backup"], env)
    assert raw.returncode == 0 and "library" not in raw.stdout and "IMG_" not in raw.stdout
    assert_no_secret_leaks(
        tmp_path,
        settings,
        [password, fields["encryption_salt"], s3_server.secret_access_key],
    )


async def test_backup_to_s3_with_keys_from_the_key_file(
    immich: tuple[Path, TreeStats],
    s3_server: S3Server,  # noqa: F811
    rclone_spy: Path,
    tmp_path: Path,
) -> None:
    settings = load_settings()
    from photos_sync.system.logs import configure_logging

    configure_logging(settings.log_path)
    request = s3_request(s3_server, secrets="file", path=Path("photos/immich"))
    request.env = {**request.env, "PHOTOS_SYNC_ENCRYPTION_PASSWORD": PASSWORD}
    store, result = await _backup(settings, request)
    await store.close()
    assert result.ok
    keyfile = settings.secrets_dir / "cloud.json"
    assert stat.S_IMODE(keyfile.stat().st_mode) == 0o600
    saved = json.loads(keyfile.read_text())
    assert saved["encryption_password"] == PASSWORD
    assert saved["secret_access_key"] == s3_server.secret_access_key
    env = crypt_env(s3_server, "immich-backup/photos/immich", PASSWORD, saved["encryption_salt"])
    assert_cryptchecked(immich[0], env)
    assert_no_secret_leaks(tmp_path, settings, [PASSWORD, s3_server.secret_access_key])


async def test_setup_creates_a_missing_bucket_and_rerun_keeps_the_password(
    s3_server: S3Server,  # noqa: F811
    op_double: OpDouble,  # noqa: F811
) -> None:
    settings = load_settings()
    store = await Store.open(settings.db_path)
    try:
        await setup_destination(settings, store, s3_request(s3_server, secrets="op"))
        assert (s3_server.root / "immich-backup").is_dir()
        first = op_double.item_fields("Immich Backup S3")["encryption_password"]
        again = s3_request(s3_server, secrets="op")
        again.env = {**again.env, "PHOTOS_SYNC_ENCRYPTION_PASSWORD": PASSWORD}
        await setup_destination(settings, store, again)
        assert op_double.item_fields("Immich Backup S3")["encryption_password"] == first
        assert len(await store.list_destinations()) == 1
    finally:
        await store.close()


# -- errors: each one line that says what to do ------------------------------------------------


async def _setup_error(settings: Settings, request: SetupRequest) -> str:
    store = await Store.open(settings.db_path)
    try:
        with pytest.raises(SetupError) as info:
            await setup_destination(settings, store, request)
        assert await store.list_destinations() == []
    finally:
        await store.close()
    message = str(info.value)
    assert "\n" not in message
    return message


async def test_credentials_rejected(s3_server: S3Server) -> None:  # noqa: F811
    request = s3_request(s3_server, secrets="file")
    request.env = {**request.env, "PHOTOS_SYNC_SECRET_ACCESS_KEY": "not-the-right-secret-key"}
    message = await _setup_error(load_settings(), request)
    assert "credentials were rejected" in message
    assert "access_key_id and secret_access_key" in message
    assert "not-the-right-secret-key" not in message
    assert not (load_settings().secrets_dir / "cloud.json").exists()


async def test_bucket_unreachable() -> None:
    from tests.support.s3server import free_port

    fake = S3Server(Path("/nonexistent"), f"http://127.0.0.1:{free_port()}", "id", "secretkey", 0)
    message = await _setup_error(load_settings(), s3_request(fake, secrets="file"))
    assert "cannot reach bucket 'immich-backup'" in message
    assert "unreachable: check the endpoint and the network" in message


async def test_op_not_installed(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv("PHOTOS_SYNC_OP_BINARY", "op")
    message = await _setup_error(load_settings(), s3_request(s3_server, secrets="op"))
    assert message.startswith("the 1Password CLI (op) is not installed or not on PATH")
    assert "--secrets file" in message


async def test_op_not_signed_in(s3_server: S3Server, op_double: OpDouble) -> None:  # noqa: F811
    op_double.sign_out()
    message = await _setup_error(load_settings(), s3_request(s3_server, secrets="op"))
    assert message.startswith("the 1Password CLI is not signed in: run `eval $(op signin)`")
    assert "OP_SERVICE_ACCOUNT_TOKEN" in message


async def test_op_bad_service_account_token(
    s3_server: S3Server,  # noqa: F811
    op_double: OpDouble,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    op_double.set_service_token("ops_right-token")
    monkeypatch.setenv("OP_SERVICE_ACCOUNT_TOKEN", "ops_wrong-token-value")
    message = await _setup_error(load_settings(), s3_request(s3_server, secrets="op"))
    assert message.startswith("1Password rejected the service account token")
    assert "ops_wrong-token-value" not in message


async def test_op_item_missing_fields_are_named(
    s3_server: S3Server,  # noqa: F811
    op_double: OpDouble,  # noqa: F811
) -> None:
    op_double.add_item(
        "Immich Backup S3", {"access_key_id": "AKIA", "encryption_password": PASSWORD}
    )
    request = s3_request(s3_server, secrets="op", bucket=None)
    message = await _setup_error(load_settings(), request)
    assert message == (
        '1Password item "Immich Backup S3" in vault "Private" lacks the fields '
        "secret_access_key, bucket_name: add them to the item (labels exactly as written) "
        "and try again"
    )


async def test_op_vault_not_found(s3_server: S3Server, op_double: OpDouble) -> None:  # noqa: F811
    message = await _setup_error(load_settings(), s3_request(s3_server, secrets="op", vault="Nope"))
    assert message.startswith('1Password vault "Nope" was not found')


async def test_backup_with_a_service_account_and_item_gone(
    immich: tuple[Path, TreeStats],
    s3_server: S3Server,  # noqa: F811
    op_double: OpDouble,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Headless: the runner reads the item with OP_SERVICE_ACCOUNT_TOKEN; a deleted item
    stops the run before rclone with a message naming item and vault."""
    settings = load_settings()
    store = await Store.open(settings.db_path)
    try:
        await setup_destination(
            settings, store, s3_request(s3_server, secrets="op", vault="Servers")
        )
        op_double.set_service_token("ops_token-for-the-daemon")
        monkeypatch.setenv("OP_SERVICE_ACCOUNT_TOKEN", "ops_token-for-the-daemon")
        runner = Runner(settings, store)
        result = await runner.run(RunRequest("cloud", dry_run=True))
        assert result.ok
        state = op_double.state()
        state["vaults"]["Servers"]["items"] = []
        op_double.save(state)
        with pytest.raises(Exception) as info:
            await runner.run(RunRequest("cloud"))
        assert str(info.value) == (
            '1Password item "Immich Backup S3" was not found in vault "Servers": create it '
            "(`photos-sync backup --setup` offers to) or name it with --item/--vault"
        )
    finally:
        await store.close()


async def test_check_reads_the_1password_item_once_per_destination(
    s3_server: S3Server,  # noqa: F811
    op_double: OpDouble,  # noqa: F811
) -> None:
    """`--check` judges the secrets and then reaches the bucket with the same secrets: one
    `op item get`, not one for each (every read is a 1Password API call)."""
    from photos_sync.engine.check import FAIL, OK, check_destination

    settings = load_settings()
    store = await Store.open(settings.db_path)
    try:
        await setup_destination(settings, store, s3_request(s3_server, secrets="op"))
        destination = await store.get_destination("cloud")
        assert destination is not None
        before = len(op_double.calls())
        checks = await check_destination(settings, store, destination)
    finally:
        await store.close()
    assert [(c.name, c.status, c.required) for c in checks] == [
        ("destination cloud secrets", OK, True),
        ("destination cloud remote", OK, True),
        # `rclone serve s3` keeps no versions: a key that can delete can delete for good
        ("destination cloud protection", FAIL, False),
    ]
    assert checks[2].detail.startswith("not protected: bucket immich-backup has versioning")
    reads = [c for c in op_double.calls()[before:] if c["argv"][:2] == ["item", "get"]]
    assert len(reads) == 1, reads


async def test_run_refused_when_credentials_change(
    immich: tuple[Path, TreeStats],
    s3_server: S3Server,  # noqa: F811
    op_double: OpDouble,  # noqa: F811
) -> None:
    settings = load_settings()
    store = await Store.open(settings.db_path)
    try:
        await setup_destination(settings, store, s3_request(s3_server, secrets="op"))
        op_double.set_field("Immich Backup S3", "secret_access_key", "rotated-but-wrong-key")
        with pytest.raises(RunRefused) as info:
            await Runner(settings, store).run(RunRequest("cloud"))
        assert "the credentials were rejected: check access_key_id and secret_access_key" in str(
            info.value
        )
        assert "rotated-but-wrong-key" not in str(info.value)
    finally:
        await store.close()
