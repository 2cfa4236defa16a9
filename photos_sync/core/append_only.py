"""Append-only destinations (#17): a backup that the host holding its keys cannot destroy. Pure.

A destination is append-only when its `options` say so (`"append_only": true`, no migration:
the options column is JSON). On S3-compatible storage that means a bucket with versioning and
Object Lock: a delete only adds a delete marker, an overwrite only adds a version, and a locked
version cannot be removed before its retention ends. `options["object_lock"]` records the lock
setup found at `--setup`: `{"mode": "GOVERNANCE"|"COMPLIANCE", "days": N, "source":
"bucket-default"|"per-object"}`: the bucket's own default retention, or (without one)
GOVERNANCE for BACKUP_OBJECT_LOCK_DAYS. Either way photos-sync asks rclone to lock every object
it uploads or copies with that mode and days (`object_lock_mode` /
`object_lock_retain_until_date`, see `per_object_lock_options`).

Lock retention runs from each version's creation, so it protects what was written (or
archived) in the last N days; older versions are protected by the key's policy (no
s3:DeleteObjectVersion), which S3 cannot report: --check says what it could and could not see.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from photos_sync.core.rclone_args import BASE_REMOTE, RemoteSpec, simple_argv
from photos_sync.core.records import Destination

#: `Destination.options` keys.
APPEND_ONLY = "append_only"
OBJECT_LOCK = "object_lock"

LOCK_MODES = ("GOVERNANCE", "COMPLIANCE")
#: The mode photos-sync sets per object: an account admin can still lift it (with
#: s3:BypassGovernanceRetention, which the documented key policy denies); COMPLIANCE cannot be
#: lifted by anyone, so it is left for the person to choose as the bucket's default.
PER_OBJECT_MODE = "GOVERNANCE"
BUCKET_DEFAULT = "bucket-default"
PER_OBJECT = "per-object"
#: The raw object `--setup --append-only` writes to see Object Lock at work. It is deleted
#: afterwards, but its locked version stays until its retention ends (a day, or the bucket's
#: default) and the lifecycle rule removes it.
LOCK_PROBE = ".photos-sync-object-lock-probe"
#: How long the probe's own per-object lock lasts (rclone duration).
LOCK_PROBE_RETENTION = "1d"
#: Days a lock outlasts BACKUP_KEEP_DELETED_DAYS by default: an archive run is locked a little
#: longer than photos-sync would keep it, so its expiry is the lifecycle rule's job.
LOCK_MARGIN_DAYS = 7
#: Where the recipe (bucket, key policy, lifecycle rule) is written down.
RECIPE = 'docs/CLOUD.md, "S3 with Object Lock (append-only)"'


@dataclass(frozen=True, slots=True)
class ObjectLock:
    """How the versions of an append-only S3 destination are locked."""

    mode: str  # GOVERNANCE or COMPLIANCE
    days: int
    source: str  # BUCKET_DEFAULT or PER_OBJECT

    def as_option(self) -> dict[str, Any]:
        return {"mode": self.mode, "days": self.days, "source": self.source}

    @classmethod
    def from_option(cls, value: object) -> ObjectLock | None:
        """The lock recorded in a destination's options; None when absent or malformed."""
        if not isinstance(value, Mapping):
            return None
        mode, days, source = value.get("mode"), value.get("days"), value.get("source")
        if (
            mode not in LOCK_MODES
            or source not in (BUCKET_DEFAULT, PER_OBJECT)
            or not isinstance(days, int)
            or isinstance(days, bool)
            or days <= 0
        ):
            return None
        return cls(str(mode), days, str(source))

    def describe(self) -> str:
        where = "the bucket's default" if self.source == BUCKET_DEFAULT else "set on every upload"
        return f"Object Lock {self.mode} {self.days} day{'s' if self.days != 1 else ''} ({where})"


def is_append_only(destination: Destination) -> bool:
    return destination.options.get(APPEND_ONLY) is True


def object_lock_of(destination: Destination) -> ObjectLock | None:
    return ObjectLock.from_option(destination.options.get(OBJECT_LOCK))


def default_lock_days(keep_deleted_days: int, configured: int | None) -> int:
    """BACKUP_OBJECT_LOCK_DAYS, else BACKUP_KEEP_DELETED_DAYS + LOCK_MARGIN_DAYS (an archive
    kept forever, 0, counts as the default 30 days)."""
    if configured is not None:
        return configured
    return (keep_deleted_days or 30) + LOCK_MARGIN_DAYS


def per_object_lock_options(lock: ObjectLock | None) -> dict[str, str]:
    """rclone s3 options that lock each uploaded or copied object (both are needed: rclone
    ignores one without the other).

    Set with a bucket default retention too, to the same mode and days: S3 wants a
    Content-MD5 (or checksum) on every upload into a bucket with a default retention, and
    rclone sends one for an encrypted upload (whose MD5 it cannot know beforehand) only when
    it sets a lock itself."""
    if lock is None:
        return {}
    return {"object_lock_mode": lock.mode, "object_lock_retain_until_date": f"{lock.days}d"}


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def seen_lock(metadata: Mapping[str, object]) -> tuple[str, datetime] | None:
    """(mode, retain-until) from an object's `rclone lsjson -M` metadata, None if unlocked."""
    mode = metadata.get("object-lock-mode")
    until = _parse_time(metadata.get("object-lock-retain-until-date"))
    if mode not in LOCK_MODES or until is None:
        return None
    return str(mode), until


def bucket_default_lock(metadata: Mapping[str, object], written: datetime) -> ObjectLock | None:
    """The bucket's default retention, read off an object written at `written` without any
    lock of its own; None when the object came out unlocked (no default retention)."""
    seen = seen_lock(metadata)
    if seen is None:
        return None
    mode, until = seen
    days = max(1, round((until - written) / timedelta(days=1)))
    return ObjectLock(mode, days, BUCKET_DEFAULT)


# -- messages ----------------------------------------------------------------------------------


def versioning_problem(bucket: str, status: str) -> str | None:
    """Why a bucket whose versioning is `status` (rclone backend versioning) cannot hold an
    append-only backup, or None when versioning is on."""
    if status == "Enabled":
        return None
    return (
        f"bucket {bucket!r} has versioning {status or 'off'}: an append-only backup needs a "
        "bucket with versioning and Object Lock; create one with Object Lock enabled (that "
        f"turns versioning on; `rclone mkdir --s3-bucket-object-lock-enabled`), see {RECIPE}"
    )


def lock_missing(bucket: str, detail: str = "") -> str:
    """The refusal for a versioned bucket where Object Lock does not work."""
    why = f" ({detail})" if detail else ""
    return (
        f"bucket {bucket!r} has versioning but Object Lock does not work on it{why}: enable "
        "Object Lock on the bucket (AWS console: bucket > Properties > Object Lock; most "
        f"providers only when the bucket is created), see {RECIPE}"
    )


#: What storage says when it refuses a delete: no right to delete, a locked version, a WORM
#: bucket (S3 AccessDenied, B2 unauthorized / not entitled, Wasabi compliance, MinIO retention).
_REFUSALS = (
    "accessdenied",
    "access denied",
    "forbidden",
    "unauthorized",
    "not entitled",
    "object lock",
    "objectlock",
    "object is worm protected",
    "worm",
    "retention",
    "locked",
)


def refused_delete(message: str) -> bool:
    """Whether rclone's error `message` says the storage refused to delete (rather than being
    unreachable or failing otherwise)."""
    lowered = message.lower()
    return any(s in lowered for s in _REFUSALS)


def kept_run_message(stamp: str) -> str:
    return (
        f"archive run {stamp} kept: the storage refused to delete it (append-only/object "
        "lock); a lifecycle rule expires it"
    )


# -- --check -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Protection:
    """Whether a destination survives a host that holds its keys, for `--check`."""

    protected: bool
    detail: str
    hint: str = ""
    #: a failure counts against --check (an append-only destination that is not protected)
    required: bool = False


LOCAL_PROTECTION = Protection(
    False,
    "not protected: whoever controls this host can delete a local disk",
    "for a copy this host cannot destroy, add an append-only cloud destination "
    "(`photos-sync backup --setup s3 --append-only`)",
)

_KEY_UNSEEN = (
    "S3 cannot say whether this key may delete versions: its policy should deny "
    "s3:DeleteObjectVersion and s3:BypassGovernanceRetention"
)


def s3_protection(
    bucket: str,
    versioning: str,
    recorded: ObjectLock | None,
    marker_lock: tuple[str, datetime] | None,
    *,
    append_only: bool,
    now: datetime,
) -> Protection:
    """Judge an S3 destination from what can be read: the bucket's versioning status, the
    lock setup recorded at `--setup` and the lock seen on the backup's marker object."""
    checked = "checked: bucket versioning and the lock on the backup's marker"
    if versioning != "Enabled":
        return Protection(
            False,
            f"not protected: bucket {bucket} has versioning {versioning or 'off'}: this key can "
            "delete every file for good",
            f"enable versioning and Object Lock on the bucket, see {RECIPE}",
            required=append_only,
        )
    lock = recorded
    if lock is None and marker_lock is not None:
        lock = ObjectLock(marker_lock[0], 0, BUCKET_DEFAULT)
    if lock is None:
        return Protection(
            False,
            "not protected: this key can delete every version (versioning on, no Object Lock "
            f"seen; {checked})",
            f"use a bucket with Object Lock and `--setup s3 --append-only`, see {RECIPE}",
            required=append_only,
        )
    if lock.days:
        until = (now + timedelta(days=lock.days)).date().isoformat()
        kept = (
            f"{lock.describe()}: a file deleted or replaced now stays recoverable until at "
            f"least {until} (`restore --as-of TIME --from-versions`)"
        )
    else:
        kept = (
            f"Object Lock {lock.mode} (the bucket's default, days unknown): versions are locked "
            "for the bucket's retention after they are written"
        )
    return Protection(True, f"versioning on, {kept}; {checked}; {_KEY_UNSEEN}")


# -- restore from the provider's versions --------------------------------------------------------

#: Base remote types whose rclone backend reads object versions at a time (`version_at`:
#: --s3-version-at, --b2-version-at).
VERSIONED_TYPES = ("s3", "b2")


def version_at_value(moment: datetime) -> str:
    """`moment` as rclone's version_at takes it: RFC 3339 in UTC, to the microsecond."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def from_versions_problem(destination: Destination) -> str | None:
    """Why `restore --from-versions` cannot read `destination`, or None."""
    if destination.type in VERSIONED_TYPES:
        return None
    return (
        f"--from-versions reads a cloud provider's object versions (s3, b2): destination "
        f"{destination.name!r} is a {destination.type} folder, restore it with --as-of alone"
    )


def at_versions(remotes: Sequence[RemoteSpec], moment: datetime) -> list[RemoteSpec]:
    """`remotes` with the raw storage remote reading every object as it was at `moment`
    (read-only: rclone refuses writes through it). ValueError for a type without versions."""
    bases = [r for r in remotes if r.name == BASE_REMOTE]
    if not bases or bases[0].type not in VERSIONED_TYPES:
        kind = bases[0].type if bases else "local folder"
        raise ValueError(f"a {kind} has no object versions")
    at = version_at_value(moment)
    return [
        replace(r, options={**r.options, "version_at": at}) if r.name == BASE_REMOTE else r
        for r in remotes
    ]


# -- rclone command lines ------------------------------------------------------------------------

_QUICK = ("--low-level-retries", "1", "--contimeout", "15s", "--timeout", "60s")


def versioning_argv(binary: str, bucket: str) -> tuple[str, ...]:
    """`rclone backend versioning psbase:BUCKET`: prints "Enabled", "Suspended" or
    "Unversioned" (read-only without an argument)."""
    return simple_argv(binary, "backend", "versioning", f"{BASE_REMOTE}:{bucket}", *_QUICK)


def metadata_argv(binary: str, path: str, *, stat: bool) -> tuple[str, ...]:
    """`rclone lsjson -M` of one raw object (`stat`) or of the files at the top of a raw
    folder: their metadata carries object-lock-mode / object-lock-retain-until-date."""
    shape = ("--stat",) if stat else ("--files-only", "--max-depth", "1")
    return simple_argv(binary, "lsjson", path, "-M", *shape, *_QUICK)


def probe_write_argv(binary: str, path: str, *, lock: bool) -> tuple[str, ...]:
    """`rclone rcat` of the lock probe (content on stdin), with a short per-object lock when
    `lock`, without any when not (to see the bucket's default retention)."""
    flags: tuple[str, ...] = ()
    if lock:
        flags = (
            "--s3-object-lock-mode",
            PER_OBJECT_MODE,
            "--s3-object-lock-retain-until-date",
            LOCK_PROBE_RETENTION,
        )
    return simple_argv(binary, "rcat", path, *flags, *_QUICK)
