"""Append-only S3 destinations (#17) against a real S3 server with versioning, Object Lock and
IAM (moto's server mode, tests/support/moto_server.py) and the real rclone: a backup that
survives a delete attempt made with its own key, setup's refusals, the --check line, and the
expiry of an archive run the storage refuses to delete."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from photos_sync.core.append_only import LOCK_PROBE, kept_run_message
from photos_sync.core.config import Settings
from photos_sync.core.events import RunEvent, RunRequest
from photos_sync.engine.runner import Runner
from photos_sync.engine.setup import SetupRequest, key_file_path, setup_destination
from photos_sync.storage.settings_io import load_settings
from photos_sync.storage.store import Store
from tests.conftest import rclone_binary
from tests.immich_tree import TreeStats
from tests.support import plain_rclone
from tests.support.cli import photos_sync
from tests.support.moto_server import Key, MotoS3, unique

FOLDERS = ("backups", "library", "upload", "profile")
PASSWORD = "Correct-Horse-Battery-Staple-42"
#: The key policy docs/CLOUD.md recommends for an append-only destination.
APPEND_ONLY_POLICY_DENIES = (
    "s3:DeleteObjectVersion",
    "s3:BypassGovernanceRetention",
    "s3:PutBucketVersioning",
    "s3:PutBucketObjectLockConfiguration",
    "s3:PutLifecycleConfiguration",
)


def setup_env(server: MotoS3, key: Key) -> dict[str, str]:
    return {
        "PHOTOS_SYNC_ACCESS_KEY_ID": key.access_key_id,
        "PHOTOS_SYNC_SECRET_ACCESS_KEY": key.secret_access_key,
        "PHOTOS_SYNC_ENCRYPTION_PASSWORD": PASSWORD,
    }


def request(server: MotoS3, key: Key, bucket: str, **kw: Any) -> SetupRequest:
    values: dict[str, Any] = {
        "kind": "s3",
        "name": "cloud",
        "bucket": bucket,
        "endpoint": server.endpoint,
        "secrets": "file",
        "append_only": True,
        "env": {**os.environ, **setup_env(server, key)},
    }
    values.update(kw)
    return SetupRequest(**values)


def rclone(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [rclone_binary(), *args, "--retries", "1"],
        env={**os.environ, "RCLONE_CONFIG": "", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def crypt_env(server: MotoS3, key: Key, bucket: str, settings: Settings) -> dict[str, str]:
    """Plain rclone's `s3:` (raw) and `secret:` (crypt over the bucket) with the key file's
    encryption password: what an attacker on the host has."""
    secrets = json.loads(key_file_path(settings, "cloud").read_text())
    return {
        **server.rclone_env(key, "s3"),
        "RCLONE_CONFIG_SECRET_TYPE": "crypt",
        "RCLONE_CONFIG_SECRET_REMOTE": f"s3:{bucket}",
        "RCLONE_CONFIG_SECRET_PASSWORD": plain_rclone.obscure(secrets["encryption_password"]),
        "RCLONE_CONFIG_SECRET_PASSWORD2": plain_rclone.obscure(secrets["encryption_salt"]),
        "RCLONE_CONFIG_SECRET_FILENAME_ENCRYPTION": "standard",
        "RCLONE_CONFIG_SECRET_DIRECTORY_NAME_ENCRYPTION": "true",
    }


def files_of(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def wait_for_the_next_second() -> datetime:
    """The first whole second after now, once the clock has passed it. S3 dates versions to
    the second: what is written before this moment and what is written after it fall on
    either side of it."""
    now = time.time()
    boundary = int(now) + 1
    time.sleep(boundary - now + 0.01)  # one wait for the clock, not a poll
    return datetime.fromtimestamp(boundary, UTC)


async def test_an_append_only_backup_survives_a_delete_attempt_with_its_own_key(
    moto_s3: MotoS3, immich: tuple[Path, TreeStats], tmp_path: Path
) -> None:
    """A bucket with Object Lock (no default retention): setup makes photos-sync lock every
    upload. Two runs (the second archives a deleted file), then whoever holds the host uses
    the destination's own key, which may delete versions: `rclone purge` is refused, deleting
    each version is refused by the lock, only delete markers get through. `restore --as-of
    --from-versions` brings every file back, byte for byte."""
    root = immich[0]
    bucket = moto_s3.bucket(unique("locked"))
    key = moto_s3.key(unique("backup"))  # allowed every S3 action: only the lock protects
    settings = load_settings()
    store = await Store.open(settings.db_path)
    try:
        destination = await setup_destination(settings, store, request(moto_s3, key, bucket))
        assert destination.options["append_only"] is True
        assert destination.options["object_lock"] == {
            "mode": "GOVERNANCE",
            "days": settings.keep_deleted_days + 7,
            "source": "per-object",
        }
        runner = Runner(settings, store)
        assert (await runner.run(RunRequest("cloud"))).ok
        gone = next(p for p in sorted((root / "upload").rglob("*.jpg")))
        gone_bytes = gone.read_bytes()
        gone.unlink()
        assert (await runner.run(RunRequest("cloud"))).ok
    finally:
        await store.close()
    expected = tmp_path / "expected"
    for folder in FOLDERS:
        shutil.copytree(root / folder, expected / folder)
    before_attack = wait_for_the_next_second()
    wait_for_the_next_second()

    versions = moto_s3.versions(bucket)
    # every version of the backup (the lock probe's first, unlocked write aside: setup made
    # it to see whether the bucket locks by default)
    live = [v for v in versions if not v["IsDeleteMarker"] and v["Key"] != LOCK_PROBE]
    # the archive's move is a copy (a new, locked version) and a delete marker
    assert any(v["IsDeleteMarker"] for v in versions)
    head = moto_s3.s3().head_object(
        Bucket=bucket, Key=live[0]["Key"], VersionId=live[0]["VersionId"]
    )
    assert head["ObjectLockMode"] == "GOVERNANCE"

    # the attack, with the destination's own key and password
    env = crypt_env(moto_s3, key, bucket, settings)
    purge = rclone(env, "purge", "secret:")
    assert purge.returncode != 0 and "AccessDenied" in purge.stderr
    assert rclone(env, "delete", "secret:").returncode == 0  # delete markers only
    attacker = moto_s3.s3(key)
    for version in live:
        with pytest.raises(ClientError) as refused:
            attacker.delete_object(
                Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"]
            )
        assert refused.value.response["Error"]["Code"] == "AccessDenied"
    listed = rclone(env, "lsf", "-R", "--files-only", "secret:")
    assert listed.returncode == 0 and listed.stdout == ""  # the backup looks gone
    kept = [v for v in moto_s3.versions(bucket) if not v["IsDeleteMarker"]]
    assert len([v for v in kept if v["Key"] != LOCK_PROBE]) == len(live)

    target = tmp_path / "restored"
    result = photos_sync(
        "restore",
        "--from",
        "cloud",
        "--to",
        str(target),
        "--as-of",
        before_attack.isoformat(),
        "--from-versions",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    restored = files_of(target)
    # Delete markers are not locked: the attacker's purge removed the one that hid the file
    # deleted before the moment, so that file may come back too (with its own bytes).
    resurrected = restored.pop(str(gone.relative_to(root)), gone_bytes)
    assert resurrected == gone_bytes
    assert restored == files_of(expected)


async def test_setup_refuses_a_bucket_without_versioning_or_object_lock(
    moto_s3: MotoS3, tmp_path: Path
) -> None:
    """Through the real CLI: one line saying what to do, a non-zero exit, nothing saved."""
    key = moto_s3.key(unique("setup"))
    env = setup_env(moto_s3, key)

    def setup(bucket: str, kind: str = "s3") -> subprocess.CompletedProcess[str]:
        return photos_sync(
            "backup",
            "--setup",
            kind,
            "--name",
            "cloud",
            "--bucket",
            bucket,
            "--endpoint",
            moto_s3.endpoint,
            "--secrets",
            "file",
            "--append-only",
            "--yes",
            env=env,
        )

    plain = setup(moto_s3.bucket(unique("plain"), object_lock=False, versioning=False))
    assert plain.returncode == 1
    last = plain.stderr.strip().splitlines()[-1]
    assert "has versioning Unversioned" in last and "Object Lock" in last
    assert "docs/CLOUD.md" in last
    versioned = setup(moto_s3.bucket(unique("versioned"), object_lock=False))
    assert versioned.returncode == 1
    last = versioned.stderr.strip().splitlines()[-1]
    assert "has versioning but Object Lock does not work on it" in last
    assert "Bucket is missing ObjectLockConfiguration" in last
    settings = load_settings()
    assert not key_file_path(settings, "cloud").exists()
    listed = photos_sync("backup", "--check", "--json")
    assert not [c for c in json.loads(listed.stdout)["checks"] if "cloud" in c["name"]]

    local = photos_sync(
        "backup", "--setup", "local", "--name", "nas", "--path", str(tmp_path / "nas"),
        "--append-only", "--yes",
    )  # fmt: skip
    assert local.returncode == 2
    assert local.stderr.strip() == (
        "error: --append-only needs cloud storage (s3 or b2): whoever controls this host can "
        "delete a local disk"
    )

    # a bucket that does not exist yet is created with Object Lock (and so versioning)
    missing = unique("created")
    made = setup(missing)
    assert made.returncode == 0, made.stdout + made.stderr
    assert f"created bucket {missing!r}" in made.stdout
    assert "Object Lock GOVERNANCE 37 days (set on every upload)" in made.stdout
    lock = moto_s3.s3().get_object_lock_configuration(Bucket=missing)["ObjectLockConfiguration"]
    assert lock["ObjectLockEnabled"] == "Enabled"


async def test_setup_finds_the_buckets_default_retention_and_check_reports_it(
    moto_s3: MotoS3,
) -> None:
    """A bucket whose default retention locks every new version: setup records it (no
    per-object lock needed) and `--check` says the destination is protected and until when."""
    key = moto_s3.key(unique("setup"))
    bucket = moto_s3.bucket(unique("default"), default_days=5, mode="COMPLIANCE")
    made = photos_sync(
        "backup", "--setup", "s3", "--name", "cloud", "--bucket", bucket,
        "--endpoint", moto_s3.endpoint, "--secrets", "file", "--append-only", "--yes",
        env=setup_env(moto_s3, key),
    )  # fmt: skip
    assert made.returncode == 0, made.stdout + made.stderr
    assert "Object Lock COMPLIANCE 5 days (the bucket's default)" in made.stdout
    checked = photos_sync("backup", "--check", "--json")
    checks = {c["name"]: c for c in json.loads(checked.stdout)["checks"]}
    protection = checks["destination cloud protection"]
    assert protection["status"] == "ok", protection
    assert (
        "versioning on, Object Lock COMPLIANCE 5 days (the bucket's default)"
        in (protection["detail"])
    )
    assert "stays recoverable until at least" in protection["detail"]
    assert "S3 cannot say whether this key may delete versions" in protection["detail"]
    store = await Store.open(load_settings().db_path)
    try:
        saved = await store.get_destination("cloud")
    finally:
        await store.close()
    assert saved is not None
    assert saved.options["object_lock"] == {
        "mode": "COMPLIANCE",
        "days": 5,
        "source": "bucket-default",
    }
    people = photos_sync("backup", "--check")
    assert "✓ destination cloud protection: versioning on, Object Lock COMPLIANCE" in people.stdout


async def test_expiry_of_an_archive_run_the_storage_refuses_to_delete_is_a_warning(
    moto_s3: MotoS3,
    immich: tuple[Path, TreeStats],
) -> None:
    """With the documented key policy (no s3:DeleteObjectVersion, no governance bypass),
    expiring an old archive run is refused (rclone purges every version of a versioned
    bucket): the run says the run folder is kept for the lifecycle rule, and succeeds."""
    bucket = moto_s3.bucket(unique("expiry"))
    key = moto_s3.key(unique("policy"), deny=APPEND_ONLY_POLICY_DENIES)
    settings = load_settings()
    store = await Store.open(settings.db_path)
    events: list[RunEvent] = []
    try:
        await setup_destination(settings, store, request(moto_s3, key, bucket))
        assert (await Runner(settings, store).run(RunRequest("cloud"))).ok
        env = crypt_env(moto_s3, key, bucket, settings)
        old = "20200101T000000Z"
        planted = rclone(env, "copyto", str(immich[0] / "upload" / ".immich"),
                         f"secret:.deleted/{old}/upload/old.jpg")  # fmt: skip
        assert planted.returncode == 0, planted.stderr
        result = await Runner(settings, store, sink=events.append).run(
            RunRequest("cloud", full=True)
        )
    finally:
        await store.close()
    assert result.ok
    assert result.pruned == []
    texts = [str(e.data.get("text")) for e in events]
    assert kept_run_message(old) in texts
    listed = rclone(env, "lsf", "-R", "--files-only", "secret:.deleted")
    assert f"{old}/upload/old.jpg" in listed.stdout.splitlines()
    # the same key cannot lift the lock either
    version = next(v for v in moto_s3.versions(bucket) if not v["IsDeleteMarker"])
    with pytest.raises(ClientError) as refused:
        moto_s3.s3(key).delete_object(
            Bucket=bucket,
            Key=version["Key"],
            VersionId=version["VersionId"],
            BypassGovernanceRetention=True,
        )
    assert refused.value.response["Error"]["Code"] == "AccessDenied"


def test_from_versions_and_append_only_usage_errors(tmp_path: Path) -> None:
    """Each a one-line usage error, exit 2: --from-versions without a moment, or on a local
    destination (no provider versions there); --append-only without --setup."""
    from tests.support.daemon import setup_local

    target = str(tmp_path / "restored")
    alone = photos_sync("restore", "--to", target, "--from-versions")
    assert alone.returncode == 2
    assert alone.stderr.strip() == (
        "error: --from-versions goes with --as-of TIME: the moment whose object versions to read"
    )
    setup_local(tmp_path, "nas")
    local = photos_sync(
        "restore", "--from", "nas", "--to", target, "--as-of", "2026-11-01", "--from-versions"
    )
    assert local.returncode == 2, local.stdout + local.stderr
    assert local.stderr.strip().splitlines()[-1] == (
        "error: --from-versions reads a cloud provider's object versions (s3, b2): destination "
        "'nas' is a local folder, restore it with --as-of alone"
    )
    assert not Path(target).exists()
    backup = photos_sync("backup", "--append-only")
    assert backup.returncode == 2
    assert backup.stderr.strip() == "error: --append-only goes with --setup s3|b2"


def test_from_versions_goes_through_the_daemon(tmp_path: Path) -> None:
    """With a daemon up the restore runs there, --from-versions included: the daemon's
    restore refuses a local destination with the same line (the flag reached it)."""
    from tests.support.daemon import daemon_pool, setup_local

    setup_local(tmp_path, "nas")
    with daemon_pool() as daemons:
        daemons.start()
        target = str(tmp_path / "restored")
        result = photos_sync(
            "restore", "--from", "nas", "--to", target, "--as-of", "2026-11-01", "--from-versions"
        )
    assert result.returncode == 2
    assert (
        "--from-versions reads a cloud provider's object versions (s3, b2): destination 'nas' "
        "is a local folder, restore it with --as-of alone"
    ) in result.stdout + result.stderr
