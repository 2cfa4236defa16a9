"""What a Backblaze B2 application key may do, read from its authorisation answer. Pure.

`b2_authorize_account` answers with the key's capabilities, the buckets and file-name prefix
it is restricted to, and when it expires. Three shapes are documented and all are read here:

* v4 (April 2025, the one photos-sync asks for, as rclone does): `apiInfo.storageApi.allowed`
  = {`buckets`: [{`id`, `name`}], `capabilities`, `namePrefix`} — Backblaze, "b2_authorize_account"
  (https://www.backblaze.com/apidocs/b2-authorize-account, API version v4: "the response drops
  bucketId/bucketName/infoType in favor of an `allowed` object"); rclone's
  backend/b2/api/types.go `StorageAPI.Allowed` reads the same fields;
* v3 (September 2021): `apiInfo.storageApi` itself carries `bucketId`, `bucketName`,
  `capabilities` and `namePrefix` (the page's v3 example);
* v2: a top-level `allowed` = {`bucketId`, `bucketName`, `capabilities`, `namePrefix`}
  (https://www.backblaze.com/b2/docs/b2_authorize_account.html).

v3 and v4 add a top-level `applicationKeyExpirationTimestamp` (milliseconds since the epoch,
null when the key never expires).

An append-only destination (#17) needs a key that cannot delete: without `deleteFiles` no
file version can be deleted (b2_delete_file_version); uploads, server-side copies and hiding
(b2_hide_file) need only `writeFiles`. A few other capabilities undo that protection without
deleting anything themselves; they are named so `--check` and `--setup` can say so.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

#: The capability that deletes file versions: what an append-only key must not have.
DELETE_FILES = "deleteFiles"
#: "Enabling the writeKeys capability grants full access to the Backblaze B2 account"
#: (Backblaze, Application Key Capabilities): such a key can make itself one with deleteFiles.
WRITE_KEYS = "writeKeys"
#: What an append-only key refuses at setup: either lets a compromised host delete the backup.
REFUSED_FOR_APPEND_ONLY = (DELETE_FILES, WRITE_KEYS)
#: Capabilities that change bucket or retention settings: `writeBuckets` rewrites the lifecycle
#: rules (a 1-day daysFromHidingToDeleting deletes every hidden file a day after an attacker
#: hides it); the retention ones change or bypass Object Lock.
UNDOING_CAPABILITIES = (
    "writeBuckets",
    "writeBucketRetentions",
    "writeFileRetentions",
    "bypassGovernance",
)
#: What photos-sync itself needs: list the bucket (and read its lifecycle rules), list, read
#: and write files (a hide is a write).
NEEDED_CAPABILITIES = ("listBuckets", "listFiles", "readFiles", "writeFiles")
#: A lifecycle rule keeping hidden files fewer days than this leaves little time to notice an
#: attack: `--check` warns.
MIN_RECOVERY_DAYS = 7


@dataclass(frozen=True, slots=True)
class KeyCapabilities:
    """What one application key may do. `capabilities` is None when the answer did not say
    (then `problem` tells why); every other field is None when absent."""

    capabilities: frozenset[str] | None
    #: Names (or ids, when a bucket no longer exists) of the buckets the key is limited to;
    #: () means every bucket of the account.
    buckets: tuple[str, ...] = ()
    name_prefix: str | None = None
    expires_ms: int | None = None  # applicationKeyExpirationTimestamp
    shape: str = ""  # "v4" | "v3" | "v2" | "" (not understood)
    problem: str | None = None

    @property
    def can_delete(self) -> bool | None:
        """Whether the key can delete file versions (None: the answer did not say)."""
        return None if self.capabilities is None else DELETE_FILES in self.capabilities

    @property
    def refused_for_append_only(self) -> tuple[str, ...]:
        """The capabilities that make this key unfit for an append-only destination."""
        return tuple(c for c in REFUSED_FOR_APPEND_ONLY if c in (self.capabilities or ()))

    @property
    def undoing(self) -> tuple[str, ...]:
        """Capabilities that could change bucket settings protecting hidden files."""
        return tuple(c for c in UNDOING_CAPABILITIES if c in (self.capabilities or ()))

    def describe(self) -> str:
        """The capabilities, sorted, comma-separated ("unknown" when the answer did not say)."""
        if self.capabilities is None:
            return "unknown"
        return ",".join(sorted(self.capabilities)) or "none"

    def scope(self) -> str:
        """Where the key may act, for people: 'bucket X', 'buckets X, Y', 'every bucket'."""
        where = (
            "every bucket"
            if not self.buckets
            else f"bucket{'s' if len(self.buckets) > 1 else ''} {', '.join(self.buckets)}"
        )
        return f"{where}, names starting {self.name_prefix!r}" if self.name_prefix else where

    def expiry(self, now: float | None = None) -> str | None:
        """'expires 2026-05-01 (in 12 days)' / 'expired 2026-05-01', or None if it never does."""
        if self.expires_ms is None:
            return None
        moment = self.expires_ms / 1000
        day = time.strftime("%Y-%m-%d", time.gmtime(moment))
        left = moment - (time.time() if now is None else now)
        if left <= 0:
            return f"expired {day}"
        days = int(left // 86400)
        return f"expires {day} (in {days} day{'s' if days != 1 else ''})"


def _strings(value: object) -> list[str] | None:
    if not isinstance(value, list):
        return None
    return [v for v in value if isinstance(v, str)]


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _timestamp(answer: Mapping[str, object]) -> int | None:
    value = answer.get("applicationKeyExpirationTimestamp")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _single_bucket(block: Mapping[str, object]) -> tuple[str, ...]:
    name = _text(block.get("bucketName")) or _text(block.get("bucketId"))
    return (name,) if name else ()


def _v4_buckets(value: object) -> tuple[str, ...]:
    found = []
    for bucket in value if isinstance(value, list) else []:
        if isinstance(bucket, Mapping):
            # a bucket that no longer exists keeps its id and loses its name
            label = _text(bucket.get("name")) or _text(bucket.get("id"))
            if label:
                found.append(label)
    return tuple(found)


def parse_authorization(answer: object) -> KeyCapabilities:
    """The key's capabilities from a `b2_authorize_account` answer (v4, v3 or v2 shape, see the
    module's docstring). Never raises: an answer it cannot read gives capabilities None and a
    one-line `problem`."""
    if not isinstance(answer, Mapping):
        return KeyCapabilities(None, problem="the authorisation answer is not a JSON object")
    expires = _timestamp(answer)
    api_info = answer.get("apiInfo")
    storage = api_info.get("storageApi") if isinstance(api_info, Mapping) else None
    if isinstance(storage, Mapping):
        allowed = storage.get("allowed")
        if isinstance(allowed, Mapping):
            return _read(
                allowed.get("capabilities"),
                _v4_buckets(allowed.get("buckets")),
                allowed.get("namePrefix"),
                expires,
                "v4",
            )
        return _read(
            storage.get("capabilities"),
            _single_bucket(storage),
            storage.get("namePrefix"),
            expires,
            "v3",
        )
    allowed = answer.get("allowed")
    if isinstance(allowed, Mapping):
        return _read(
            allowed.get("capabilities"),
            _single_bucket(allowed),
            allowed.get("namePrefix"),
            expires,
            "v2",
        )
    return KeyCapabilities(
        None,
        expires_ms=expires,
        problem="the authorisation answer has no storageApi or allowed section",
    )


def _read(
    capabilities: object,
    buckets: tuple[str, ...],
    prefix: object,
    expires: int | None,
    shape: str,
) -> KeyCapabilities:
    names = _strings(capabilities)
    return KeyCapabilities(
        None if names is None else frozenset(names),
        buckets,
        _text(prefix),
        expires,
        shape,
        None if names is not None else "the authorisation answer lists no capabilities",
    )


def append_only_refusal(key: KeyCapabilities) -> str | None:
    """Why this key cannot back an append-only destination (one line), or None if it can."""
    if key.capabilities is None:
        return (
            f"cannot tell whether this B2 key can delete files ({key.problem}): nothing was saved"
        )
    refused = key.refused_for_append_only
    if not refused:
        return None
    return (
        f"this B2 key has {' and '.join(refused)}: a compromised host could delete the backup "
        f"with it; create a key without {' or '.join(refused)} (capabilities "
        f"{','.join(NEEDED_CAPABILITIES)}, restricted to the bucket) and run setup again"
    )


@dataclass(frozen=True, slots=True)
class Protection:
    """The `--check` verdict on a B2 destination's protection: `protected` None = not known."""

    protected: bool | None
    detail: str
    hint: str = ""
    #: False when the verdict is a warning: the backup works, it is only less protected.
    required: bool = False


def _days(days: int) -> str:
    return f"{days} day{'s' if days != 1 else ''}"


def recovery_window(hiding_days: int | None, rules_read: bool) -> str:
    """How long a hidden file stays recoverable, from the lifecycle rule (for people)."""
    if not rules_read:
        return "how long a hidden file stays recoverable is unknown (lifecycle rules not read)"
    if hiding_days is None:
        return "a hidden file stays recoverable until deleted by hand (no lifecycle rule)"
    return f"a hidden file stays recoverable {_days(hiding_days)} (lifecycle)"


def protection_verdict(
    key: KeyCapabilities,
    *,
    append_only: bool,
    hiding_days: int | None,
    rules_read: bool,
    now: float | None = None,
) -> Protection:
    """Judge a B2 destination's protection against a compromised host: can its key delete
    (or gain the right to), and how long does a file an attacker hides stay recoverable?"""
    expiry = key.expiry(now)
    suffix = f"; key {expiry}" if expiry else ""
    if key.capabilities is None:
        return Protection(None, f"not known: {key.problem}{suffix}")
    refused = key.refused_for_append_only
    if refused:
        return Protection(
            False,
            f"not protected: this key has {' and '.join(refused)} — a compromised host can "
            f"delete the backup{suffix}",
            "create a key without deleteFiles and run `photos-sync backup --setup b2 "
            "--append-only` (docs/CLOUD.md, B2 append-only key)",
            required=append_only,
        )
    if not append_only:
        return Protection(
            False,
            "this key cannot delete files but the destination is not append-only: archiving a "
            f"replaced or deleted file needs a delete and fails{suffix}",
            "run `photos-sync backup --setup b2 --append-only` for this destination",
            required=True,
        )
    detail = (
        f"append-only: this key cannot delete files (capabilities: {key.describe()}; "
        f"{key.scope()}); {recovery_window(hiding_days, rules_read)}{suffix}"
    )
    if key.undoing:
        return Protection(
            False,
            f"{detail}; but it has {', '.join(key.undoing)}: a compromised host could change "
            "the bucket's lifecycle or retention settings so hidden files go within a day",
            "use a key with only " + ",".join(NEEDED_CAPABILITIES),
        )
    if expiry and expiry.startswith("expired"):
        return Protection(False, detail, "create a new key and update the secrets", True)
    return Protection(True, detail)


def hiding_verdict(days: int) -> tuple[bool, str]:
    """Whether a lifecycle rule deleting hidden files `days` after hiding leaves enough time
    to notice an attack on an append-only destination, and the sentence saying so."""
    if days < MIN_RECOVERY_DAYS:
        return False, (
            f"a file an attacker hides is recoverable only {_days(days)} (lifecycle "
            "daysFromHidingToDeleting)"
        )
    return True, f"a file an attacker hides stays recoverable {_days(days)}"
