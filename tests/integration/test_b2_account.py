"""The B2 key's capabilities over HTTP (`b2_authorize_account` on a loopback server answering
as B2 documents it), `--setup b2 --append-only` refusing a key that can delete, and the
`--check` protection line built from both."""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path

import pytest

from photos_sync.cloud.b2_account import (
    AUTHORIZE_PATH,
    B2AccountError,
    authorize_url,
    key_capabilities,
    require_append_only_key,
)
from photos_sync.core.records import Destination
from photos_sync.credentials.keyfile import write_key_file
from photos_sync.engine.check import FAIL, OK, SKIP, check_b2_protection
from photos_sync.engine.setup import SetupError, SetupRequest, StepUI, setup_destination
from photos_sync.storage.settings_io import load_settings
from photos_sync.storage.store import Store
from tests.support.b2_answers import (
    APPEND_ONLY_CAPABILITIES,
    AUTHORIZE_V3_MASTER,
    AUTHORIZE_V4,
    UNAUTHORIZED,
    fake_b2,
    v4_answer,
)
from tests.support.s3server import free_port

KEY_ID = "0012a3b4c5d6e7f0000000001"
APP_KEY = "K001abcdefghijklmnopqrstuvwxyz0123"
PASSWORD = "an-encryption-password-for-tests"


async def test_the_call_is_a_get_with_basic_auth_and_reads_the_capabilities() -> None:
    with fake_b2() as b2:
        key = await key_capabilities(KEY_ID, APP_KEY, b2.endpoint)
    assert key.shape == "v4" and key.can_delete is False
    assert key.capabilities == frozenset(APPEND_ONLY_CAPABILITIES)
    [seen] = b2.seen
    assert seen.method == "GET"
    assert seen.path == "/b2api/v4/b2_authorize_account"
    scheme, _, token = seen.authorization.partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(token).decode() == f"{KEY_ID}:{APP_KEY}"


def test_the_default_endpoint_is_backblazes() -> None:
    assert authorize_url(None) == "https://api.backblazeb2.com" + AUTHORIZE_PATH
    assert authorize_url("https://api.example.test/") == "https://api.example.test" + AUTHORIZE_PATH
    with pytest.raises(B2AccountError, match="is not an http"):
        authorize_url("file:///etc/passwd")


async def test_a_rejected_key_is_one_line_without_the_key() -> None:
    with fake_b2() as b2:
        b2.status, b2.answer = 401, dict(UNAUTHORIZED)
        with pytest.raises(B2AccountError) as info:
            await key_capabilities(KEY_ID, APP_KEY, b2.endpoint)
    message = str(info.value)
    assert message == (
        "B2 refused the key (401 unauthorized: The applicationKeyId and/or the applicationKey "
        "are wrong.): check application_key_id and application_key"
    )
    token = base64.b64encode(f"{KEY_ID}:{APP_KEY}".encode()).decode()
    for secret in (KEY_ID, APP_KEY, token):
        assert secret not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


async def test_an_error_that_echoes_the_key_is_scrubbed() -> None:
    with fake_b2() as b2:
        b2.status = 401
        b2.answer = {"status": 401, "code": "unauthorized", "message": f"bad key {APP_KEY}"}
        with pytest.raises(B2AccountError) as info:
            await key_capabilities(KEY_ID, APP_KEY, b2.endpoint)
    assert APP_KEY not in str(info.value)


async def test_unreachable_and_not_json_are_one_line() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(B2AccountError) as info:
        await key_capabilities(KEY_ID, APP_KEY, dead, timeout=5)
    assert str(info.value).startswith(f"B2 is unreachable at {dead} (")
    assert str(info.value).endswith("): check the network and the endpoint")
    with fake_b2() as b2:
        b2.raw = b"<html>captive portal</html>"
        with pytest.raises(B2AccountError, match=r"^B2's authorisation answer is not JSON"):
            await key_capabilities(KEY_ID, APP_KEY, b2.endpoint)
        b2.raw, b2.status = None, 503
        b2.answer = {"status": 503, "code": "service_unavailable", "message": "busy"}
        with pytest.raises(B2AccountError) as info:
            await key_capabilities(KEY_ID, APP_KEY, b2.endpoint)
        assert str(info.value) == (
            "B2 answered 503 to b2_authorize_account (service_unavailable: busy): try again later"
        )
    with pytest.raises(B2AccountError, match=r"^no B2 key"):
        await key_capabilities("", APP_KEY, dead)


async def test_require_append_only_key_accepts_and_refuses() -> None:
    secrets = {"application_key_id": KEY_ID, "application_key": APP_KEY}
    with fake_b2() as b2:
        key = await require_append_only_key(secrets, b2.endpoint)
        assert key.can_delete is False
        b2.answer = v4_answer([*APPEND_ONLY_CAPABILITIES, "deleteFiles"])
        with pytest.raises(B2AccountError) as info:
            await require_append_only_key(secrets, b2.endpoint)
    assert str(info.value).startswith("this B2 key has deleteFiles: a compromised host")


def _env(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PHOTOS_SYNC_APPLICATION_KEY_ID": KEY_ID,
        "PHOTOS_SYNC_APPLICATION_KEY": APP_KEY,
        "PHOTOS_SYNC_ENCRYPTION_PASSWORD": PASSWORD,
        **extra,
    }


async def test_setup_append_only_refuses_a_key_that_can_delete() -> None:
    """The master key (v3 example: deleteFiles, writeKeys): one line, nothing saved, and
    rclone never started (the key is refused before any remote is configured)."""
    settings = load_settings()
    store = await Store.open(settings.db_path)
    said: list[str] = []
    try:
        with fake_b2() as b2:
            b2.answer = AUTHORIZE_V3_MASTER
            request = SetupRequest(
                kind="b2",
                name="b2",
                bucket="immich-backup-yourname",
                endpoint=b2.endpoint,
                secrets="file",
                env=_env(),
                append_only=True,
            )
            with pytest.raises(SetupError) as info:
                await setup_destination(settings, store, request, StepUI(said.append))
        message = str(info.value)
        assert message.startswith("this B2 key has deleteFiles and writeKeys: a compromised host")
        assert "\n" not in message and APP_KEY not in message and KEY_ID not in message
        assert [s.path for s in b2.seen] == ["/b2api/v4/b2_authorize_account"]
        assert await store.list_destinations() == []
        assert not (settings.secrets_dir / "b2.json").exists()
        assert not any("configuring the b2 remote" in line for line in said)
    finally:
        await store.close()


async def test_setup_append_only_accepts_a_key_without_delete() -> None:
    """The key is accepted and the wizard goes on to rclone (which, against this loopback
    server, cannot list the bucket: there is no B2 emulator); without --append-only the
    key's capabilities are not asked."""
    settings = load_settings()
    store = await Store.open(settings.db_path)
    said: list[str] = []
    try:
        with fake_b2() as b2:
            request = SetupRequest(
                kind="b2",
                name="b2",
                bucket="immich-backup-yourname",
                endpoint=b2.endpoint,
                secrets="file",
                env=_env(),
                append_only=True,
            )
            with pytest.raises(SetupError) as info:
                await setup_destination(settings, store, request, StepUI(said.append))
            accepted = "B2 key cannot delete files (listBuckets,listFiles,readFiles,writeFiles)"
            assert f"{accepted}: append-only" in said
            assert str(info.value).startswith("destination 'b2': cannot reach bucket")
            # ours first, then rclone's own authorisation and its listing, answered 404 here
            paths = [s.path for s in b2.seen]
            assert paths[:2] == ["/b2api/v4/b2_authorize_account"] * 2
            assert b2.seen[0].authorization.startswith("Basic ")
            assert "/b2api/v1/b2_list_file_names" in paths
            b2.seen.clear()
            request.append_only = False
            with pytest.raises(SetupError):
                await setup_destination(settings, store, request, StepUI(said.append))
            assert said.count(f"{accepted}: append-only") == 1
        assert await store.list_destinations() == []
    finally:
        await store.close()


async def _b2_destination(
    store: Store, keyfile: Path, endpoint: str, append_only: bool
) -> Destination:
    write_key_file(
        keyfile,
        {
            "application_key_id": KEY_ID,
            "application_key": APP_KEY,
            "encryption_password": PASSWORD,
        },
    )
    return await store.create_destination(
        name="b2",
        type="b2",
        bucket_name="immich-backup-yourname",
        remote_path="server1",
        endpoint=endpoint,
        secrets_ref=f"file:{keyfile}",
        options={"append_only": True} if append_only else {},
    )


async def test_check_protection_line() -> None:
    settings = load_settings()
    store = await Store.open(settings.db_path)
    secrets = {"application_key_id": KEY_ID, "application_key": APP_KEY}
    rules = [{"fileNamePrefix": "", "daysFromHidingToDeleting": 30}]
    try:
        with fake_b2() as b2:
            destination = await _b2_destination(
                store, settings.secrets_dir / "b2.json", b2.endpoint, append_only=True
            )
            in_90_days = int((time.time() + 90.5 * 86400) * 1000)
            b2.answer = {**AUTHORIZE_V4, "applicationKeyExpirationTimestamp": in_90_days}
            check = await check_b2_protection(destination, secrets, rules)
            assert check.name == "destination b2 protection"
            assert check.status == OK
            assert check.detail.startswith("append-only: this key cannot delete files (")
            assert "a hidden file stays recoverable 30 days (lifecycle); key expires " in (
                check.detail
            )
            assert check.detail.endswith(" (in 90 days)")
            b2.answer = AUTHORIZE_V4  # expired 2026-01-01
            check = await check_b2_protection(destination, secrets, rules)
            assert (check.status, check.required) == (FAIL, True)
            assert check.detail.endswith("; key expired 2026-01-01")
            assert check.hint == "create a new key and update the secrets"
            b2.answer = AUTHORIZE_V3_MASTER
            check = await check_b2_protection(destination, secrets, rules)
            assert check.status == FAIL and check.required
            assert check.detail == (
                "not protected: this key has deleteFiles and writeKeys — a compromised host "
                "can delete the backup"
            )
            b2.status, b2.answer = 401, dict(UNAUTHORIZED)
            check = await check_b2_protection(destination, secrets, "rclone failed")
            assert check.status == SKIP and not check.required
            assert check.detail.startswith("not checked: B2 refused the key (401 unauthorized")
            assert APP_KEY not in check.detail
    finally:
        await store.close()
