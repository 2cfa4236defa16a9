"""Pure parts of append-only destinations (#17): the rclone environment that locks every
upload and reads object versions at a time (s3 and b2), what setup reads off a probe, the
refusals expiry tolerates, and the wording of the --check protection line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from photos_sync.core.append_only import (
    APPEND_ONLY,
    OBJECT_LOCK,
    ObjectLock,
    at_versions,
    bucket_default_lock,
    default_lock_days,
    from_versions_problem,
    lock_missing,
    object_lock_of,
    probe_write_argv,
    refused_delete,
    s3_protection,
    seen_lock,
    versioning_argv,
    versioning_problem,
)
from photos_sync.core.destinations import build_remotes
from photos_sync.core.rclone_args import remote_env
from photos_sync.core.records import Destination

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
S3_SECRETS = {"access_key_id": "AKIA", "secret_access_key": "s3cret"}
B2_SECRETS = {"application_key_id": "kid", "application_key": "k3y"}


def destination(kind: str = "s3", options: dict[str, Any] | None = None) -> Destination:
    return Destination(
        id=1,
        name="cloud",
        type=kind,
        bucket_name="immich-backup" if kind != "local" else None,
        remote_path=None if kind != "local" else "/mnt/nas",
        endpoint="http://127.0.0.1:9000" if kind == "s3" else None,
        region=None,
        secrets_ref="file:/x.json",
        options=options or {},
        created_at="2026-11-01T00:00:00+00:00",
        last_backup_at=None,
    )


def env_of(dest: Destination, secrets: dict[str, str]) -> dict[str, str]:
    return remote_env(build_remotes(dest, secrets, "obscured", None))


LOCKED: dict[str, Any] = {
    APPEND_ONLY: True,
    OBJECT_LOCK: {"mode": "GOVERNANCE", "days": 37, "source": "per-object"},
}


def test_an_append_only_s3_destination_locks_every_upload_and_copy() -> None:
    env = env_of(destination(options=LOCKED), S3_SECRETS)
    assert env["RCLONE_CONFIG_PSBASE_OBJECT_LOCK_MODE"] == "GOVERNANCE"
    assert env["RCLONE_CONFIG_PSBASE_OBJECT_LOCK_RETAIN_UNTIL_DATE"] == "37d"
    # a bucket's default retention is sent per object too (S3 wants a Content-MD5 then)
    default = {"mode": "COMPLIANCE", "days": 5, "source": "bucket-default"}
    bucket: dict[str, Any] = {APPEND_ONLY: True, OBJECT_LOCK: default}
    env = env_of(destination(options=bucket), S3_SECRETS)
    assert env["RCLONE_CONFIG_PSBASE_OBJECT_LOCK_MODE"] == "COMPLIANCE"
    assert env["RCLONE_CONFIG_PSBASE_OBJECT_LOCK_RETAIN_UNTIL_DATE"] == "5d"
    plain = env_of(destination(), S3_SECRETS)
    assert not [k for k in plain if "OBJECT_LOCK" in k]
    # nothing secret in a lock option, and never in argv: only the environment
    assert "s3cret" not in env["RCLONE_CONFIG_PSBASE_OBJECT_LOCK_MODE"]


def test_a_malformed_lock_option_locks_nothing() -> None:
    for bad in ({"mode": "WORM", "days": 3, "source": "per-object"},
                {"mode": "GOVERNANCE", "days": 0, "source": "per-object"},
                {"mode": "GOVERNANCE", "days": True, "source": "per-object"},
                {"mode": "GOVERNANCE", "days": 3, "source": "elsewhere"}, "37d"):  # fmt: skip
        assert object_lock_of(destination(options={OBJECT_LOCK: bad})) is None


@pytest.mark.parametrize("kind,secrets", [("s3", S3_SECRETS), ("b2", B2_SECRETS)])
def test_restore_from_versions_reads_the_base_remote_at_the_moment(
    kind: str, secrets: dict[str, str]
) -> None:
    moment = datetime(2026, 11, 30, 13, 14, 15, 123456, tzinfo=timedelta_zone(1))
    remotes = at_versions(build_remotes(destination(kind), secrets, "obscured", None), moment)
    env = remote_env(remotes)
    # rclone's --s3-version-at / --b2-version-at, as RCLONE_CONFIG_PSBASE_VERSION_AT, in UTC
    assert env["RCLONE_CONFIG_PSBASE_VERSION_AT"] == "2026-11-30T12:14:15.123456Z"
    assert "RCLONE_CONFIG_PSCRYPT_VERSION_AT" not in env  # crypt reads through the base
    assert env["RCLONE_CONFIG_PSBASE_TYPE"] == kind


def timedelta_zone(hours: int) -> Any:
    from datetime import timezone

    return timezone(timedelta(hours=hours))


def test_a_local_destination_has_no_versions() -> None:
    local = destination("local")
    assert from_versions_problem(local) == (
        "--from-versions reads a cloud provider's object versions (s3, b2): destination "
        "'cloud' is a local folder, restore it with --as-of alone"
    )
    assert from_versions_problem(destination("s3")) is None
    assert from_versions_problem(destination("b2")) is None
    with pytest.raises(ValueError):
        at_versions(build_remotes(local, {}, "obscured", None), NOW)


def test_setup_reads_the_buckets_default_retention_off_the_probe() -> None:
    written = NOW
    metadata = {
        "object-lock-mode": "COMPLIANCE",
        "object-lock-retain-until-date": "2026-12-05T12:00:01Z",
    }
    assert seen_lock(metadata) == ("COMPLIANCE", datetime(2026, 12, 5, 12, 0, 1, tzinfo=UTC))
    assert bucket_default_lock(metadata, written) == ObjectLock("COMPLIANCE", 5, "bucket-default")
    assert bucket_default_lock({"btime": "2026-11-30T12:00:00Z"}, written) is None
    assert seen_lock({"object-lock-mode": "GOVERNANCE"}) is None  # no date: no lock


def test_default_lock_days_outlast_the_archive() -> None:
    assert default_lock_days(30, None) == 37
    assert default_lock_days(90, None) == 97
    assert default_lock_days(0, None) == 37  # an archive kept forever: the default's margin
    assert default_lock_days(30, 400) == 400


def test_refusals_say_what_to_do() -> None:
    assert versioning_problem("b", "Enabled") is None
    message = versioning_problem("b", "Unversioned")
    assert message is not None and "\n" not in message
    assert message.startswith("bucket 'b' has versioning Unversioned: an append-only backup")
    assert "--s3-bucket-object-lock-enabled" in message and "docs/CLOUD.md" in message
    assert lock_missing("b", "InvalidRequest: Bucket is missing ObjectLockConfiguration") == (
        "bucket 'b' has versioning but Object Lock does not work on it (InvalidRequest: Bucket "
        "is missing ObjectLockConfiguration): enable Object Lock on the bucket (AWS console: "
        "bucket > Properties > Object Lock; most providers only when the bucket is created), "
        'see docs/CLOUD.md, "S3 with Object Lock (append-only)"'
    )


def test_which_delete_failures_are_refusals() -> None:
    assert refused_delete(
        "removing pscrypt:.deleted/x failed: failed to delete 1 files (first error: a: Couldn't "
        "delete: operation error S3: DeleteObject, StatusCode: 403, api error AccessDenied)"
    )
    assert refused_delete("b2: unauthorized: not entitled to delete files (401)")
    assert refused_delete("Object is WORM protected and cannot be overwritten")
    assert not refused_delete("dial tcp 127.0.0.1:9000: connect: connection refused")
    assert not refused_delete("context deadline exceeded")


def test_argv_reads_versioning_and_writes_the_probe() -> None:
    assert versioning_argv("rclone", "b")[:4] == ("rclone", "backend", "versioning", "psbase:b")
    locked = probe_write_argv("rclone", "psbase:b/p", lock=True)
    assert locked[:3] == ("rclone", "rcat", "psbase:b/p")
    assert locked[3:7] == (
        "--s3-object-lock-mode",
        "GOVERNANCE",
        "--s3-object-lock-retain-until-date",
        "1d",
    )
    assert "--s3-object-lock-mode" not in probe_write_argv("rclone", "psbase:b/p", lock=False)


# -- the --check line --------------------------------------------------------------------------


def test_protection_without_versioning() -> None:
    verdict = s3_protection("b", "Suspended", None, None, append_only=False, now=NOW)
    assert not verdict.protected and not verdict.required
    assert verdict.detail == (
        "not protected: bucket b has versioning Suspended: this key can delete every file for good"
    )
    assert "docs/CLOUD.md" in verdict.hint
    # a destination set up append-only whose bucket lost versioning: a required failure
    assert s3_protection("b", "Suspended", None, None, append_only=True, now=NOW).required


def test_protection_with_versioning_but_no_lock() -> None:
    verdict = s3_protection("b", "Enabled", None, None, append_only=False, now=NOW)
    assert not verdict.protected
    assert verdict.detail.startswith(
        "not protected: this key can delete every version (versioning on, no Object Lock seen; "
        "checked: bucket versioning and the lock on the backup's marker)"
    )


def test_protection_with_a_lock_says_until_when_and_what_was_not_checked() -> None:
    lock = ObjectLock("GOVERNANCE", 37, "per-object")
    verdict = s3_protection("b", "Enabled", lock, None, append_only=True, now=NOW)
    assert verdict.protected
    assert verdict.detail == (
        "versioning on, Object Lock GOVERNANCE 37 days (set on every upload): a file deleted "
        "or replaced now stays recoverable until at least 2027-01-06 (`restore --as-of TIME "
        "--from-versions`); checked: bucket versioning and the lock on the backup's marker; "
        "S3 cannot say whether this key may delete versions: its policy should deny "
        "s3:DeleteObjectVersion and s3:BypassGovernanceRetention"
    )
    # a bucket whose default retention locked the marker, never set up append-only
    seen = ("COMPLIANCE", NOW + timedelta(days=3))
    verdict = s3_protection("b", "Enabled", None, seen, append_only=False, now=NOW)
    assert verdict.protected
    assert verdict.detail.startswith(
        "versioning on, Object Lock COMPLIANCE (the bucket's default, days unknown)"
    )
