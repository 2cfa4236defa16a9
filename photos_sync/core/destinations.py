"""Destination types: how each kind of storage becomes an rclone crypt remote. Pure: no I/O.

A destination type knows which secrets it needs, which raw remote (if any) carries the data,
and which sync tunables suit it. Adding a type means adding one class here and registering it
in DESTINATION_TYPES; everything else (runner, setup, recovery kit) goes through this table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from photos_sync.core.append_only import object_lock_of, per_object_lock_options
from photos_sync.core.rclone_args import BASE_REMOTE, RemoteSpec, SyncOptions, crypt_remote
from photos_sync.core.records import Destination

ENCRYPTION_PASSWORD = "encryption_password"  # noqa: S105 - a field name, not a secret
ENCRYPTION_SALT = "encryption_salt"


class DestinationError(RuntimeError):
    """A destination is unknown, misconfigured or unreachable; the message says what to do."""


def unknown_destination_message(name: str, known: Sequence[str]) -> str:
    """The one line for a name that is not a destination: what exists, what to do."""
    if not known:
        return (
            f"unknown destination {name!r}: none is set up yet; create one with "
            "`photos-sync backup --setup local|s3|b2`"
        )
    return f"unknown destination {name!r}: known destinations are {', '.join(known)}"


class DestinationType(Protocol):
    """What the rest of photos-sync needs to know about one kind of storage."""

    type_name: str
    #: Secret fields the type needs besides the encryption password and salt.
    secret_fields: tuple[str, ...]
    #: Settings (not secret) a 1Password item may also carry: bucket_name, endpoint, ...
    location_fields: tuple[str, ...]
    #: Title of the 1Password item that setup looks for (or creates) by default.
    default_item_title: str

    def base_remote(
        self, destination: Destination, secrets: Mapping[str, str]
    ) -> RemoteSpec | None:
        """The raw storage remote, or None when crypt can sit on a plain path."""
        ...

    def underlying_path(self, destination: Destination) -> str:
        """What the crypt remote wraps: a path, or `psbase:bucket/path`."""
        ...

    def tune(self, options: SyncOptions) -> SyncOptions:
        """Sync tunables suited to this storage, applied before the user's own settings."""
        ...

    def describe(self, destination: Destination) -> str:
        """Where the data goes, for people (no secrets)."""
        ...

    def explain_error(self, message: str) -> str | None:
        """A one-line diagnosis of an rclone error from this storage, or None if unknown."""
        ...


class LocalType:
    """A folder on a local or network-mounted disk."""

    type_name = "local"
    secret_fields: tuple[str, ...] = ()
    location_fields: tuple[str, ...] = ()
    default_item_title = "Immich Backup Local"

    def base_remote(
        self, destination: Destination, secrets: Mapping[str, str]
    ) -> RemoteSpec | None:
        return None

    def underlying_path(self, destination: Destination) -> str:
        if not destination.remote_path:
            raise DestinationError(f"destination {destination.name!r} has no path")
        return destination.remote_path

    def tune(self, options: SyncOptions) -> SyncOptions:
        return options

    def describe(self, destination: Destination) -> str:
        return f"local folder {destination.remote_path}"

    def explain_error(self, message: str) -> str | None:
        lowered = message.lower()
        if "permission denied" in lowered:
            return "permission denied on the backup folder: check its owner and mode"
        if "no such file or directory" in lowered:
            return "the backup folder does not exist: is the disk mounted?"
        return None


# -- cloud storage -----------------------------------------------------------------------------

MIB = 1024 * 1024
#: Default ceiling for rclone's memory during a cloud backup. Upload buffers get
#: UPLOAD_BUFFER_SHARE of it; the rest covers --fast-list listings (about 1 KiB per object
#: of the folder being synced) and rclone itself.
MEMORY_BUDGET = 1024 * MIB
UPLOAD_BUFFER_SHARE = 0.75
#: Smallest multipart chunk S3 and B2 accept (B2: 5,000,000 bytes; S3: 5 MiB).
MIN_CHUNK = 5 * MIB


@dataclass(frozen=True, slots=True)
class CloudTuning:
    """Parallelism for a cloud backend, sized so upload buffers fit the memory budget.

    rclone buffers up to transfers x upload_concurrency chunks of chunk_size at once
    (rclone docs, --b2-upload-concurrency / --s3-upload-concurrency).
    """

    transfers: int
    checkers: int
    upload_concurrency: int
    chunk_size: int  # bytes

    @property
    def buffer_bytes(self) -> int:
        return self.transfers * self.upload_concurrency * self.chunk_size


def plan_tuning(
    transfers: int,
    checkers: int,
    upload_concurrency: int,
    budget: int = MEMORY_BUDGET,
) -> CloudTuning:
    """The largest chunk size (a whole MiB, at least MIN_CHUNK) whose upload buffers
    (transfers x upload_concurrency x chunk) fit in UPLOAD_BUFFER_SHARE of `budget`.

    With many transfers the concurrency per file drops to 1 before the chunk shrinks
    below the minimum; past that point the minimum chunk is used and memory grows with
    --transfers (documented in docs/CLOUD.md).
    """
    buffers = int(budget * UPLOAD_BUFFER_SHARE)
    concurrency = max(1, upload_concurrency)
    while concurrency > 1 and buffers // (transfers * concurrency) < MIN_CHUNK:
        concurrency -= 1
    chunk = buffers // (transfers * concurrency) // MIB * MIB
    return CloudTuning(transfers, checkers, concurrency, max(MIN_CHUNK, chunk))


def _size_flag(size: int) -> str:
    return f"{size // MIB}Mi" if size % MIB == 0 else str(size)


def _tune_cloud(
    options: SyncOptions,
    backend: str,
    default_transfers: int,
    default_checkers: int,
    upload_concurrency: int,
) -> SyncOptions:
    """Fill in what the user left unset (BACKUP_TRANSFERS / BACKUP_CHECKERS win)."""
    plan = plan_tuning(
        options.transfers or default_transfers,
        options.checkers or default_checkers,
        upload_concurrency,
    )
    flags = (
        f"--{backend}-chunk-size",
        _size_flag(plan.chunk_size),
        f"--{backend}-upload-concurrency",
        str(plan.upload_concurrency),
    )
    return replace(
        options,
        transfers=plan.transfers,
        checkers=plan.checkers,
        fast_list=True,
        extra_flags=(*options.extra_flags, *flags),
    )


def _bucket_and_path(destination: Destination) -> str:
    if not destination.bucket_name:
        raise DestinationError(
            f"destination {destination.name!r} has no bucket: run --setup again with --bucket"
        )
    inner = "/".join(
        p.strip("/")
        for p in (destination.bucket_name, destination.remote_path or "")
        if p.strip("/")
    )
    return f"{BASE_REMOTE}:{inner}"


_CREDENTIALS_REJECTED = (
    "invalidaccesskeyid",
    "signaturedoesnotmatch",
    "unauthorized",
    "bad_auth_token",
    "invalid application key",
    "forbidden",
    "accessdenied",
    "access denied",
)
_BUCKET_TAKEN = ("duplicate_bucket_name", "bucketalreadyexists")
_BUCKET_MISSING = ("nosuchbucket", "bucket not found", "bad_bucket_id", "bucket does not exist")
_UNREACHABLE = (
    "connection refused",
    "no such host",
    "i/o timeout",
    "network is unreachable",
    "dial tcp",
    "tls: ",
    "certificate",
    "context deadline exceeded",
)


def _explain_cloud(message: str, key_names: str, where: str) -> str | None:
    lowered = message.lower()
    if any(s in lowered for s in _BUCKET_TAKEN):
        return (
            "another account already owns a bucket with this name (bucket names are global): "
            "choose another name"
        )
    if any(s in lowered for s in _BUCKET_MISSING):
        return (
            f"the bucket does not exist or this key cannot see it: check bucket_name, or create "
            f"the bucket in {where}"
        )
    if any(s in lowered for s in _CREDENTIALS_REJECTED):
        return (
            f"the credentials were rejected: check {key_names} (and that the key may access "
            "this bucket)"
        )
    if any(s in lowered for s in _UNREACHABLE):
        return "the storage service is unreachable: check the endpoint and the network"
    return None


#: rclone's own advice is that 4 transfers are far too few for B2; 16 keeps a home uplink
#: busy with per-file latency of ~1 s. Checkers only compare listings, so twice that.
B2_TRANSFERS = 16
B2_CHECKERS = 32
B2_UPLOAD_CONCURRENCY = 2


class B2Type:
    """Backblaze B2 through rclone's native b2 backend."""

    type_name = "b2"
    secret_fields: tuple[str, ...] = ("application_key_id", "application_key")
    location_fields: tuple[str, ...] = ("bucket_name",)
    default_item_title = "Immich Backup B2"

    def base_remote(
        self, destination: Destination, secrets: Mapping[str, str]
    ) -> RemoteSpec | None:
        options = {
            "account": secrets.get("application_key_id", ""),
            "key": secrets.get("application_key", ""),
            # The archive (.deleted/, BACKUP_KEEP_DELETED_DAYS) is the history. B2 has no
            # server-side move: rclone moves a file into the archive by copying it there and
            # deleting the original, which a plain delete would only hide, leaving a second
            # billed copy nobody prunes. So deletes are real (docs/CLOUD.md, B2 versions).
            # An append-only destination's key cannot delete (#17): there a delete hides
            # (b2_hide_file needs only writeFiles) and the bucket's lifecycle rule deletes.
            "hard_delete": "false" if destination.options.get("append_only") else "true",
        }
        if destination.endpoint:
            options["endpoint"] = destination.endpoint
        return RemoteSpec(BASE_REMOTE, "b2", options)

    def underlying_path(self, destination: Destination) -> str:
        return _bucket_and_path(destination)

    def tune(self, options: SyncOptions) -> SyncOptions:
        return _tune_cloud(options, "b2", B2_TRANSFERS, B2_CHECKERS, B2_UPLOAD_CONCURRENCY)

    def describe(self, destination: Destination) -> str:
        path = f"/{destination.remote_path.strip('/')}" if destination.remote_path else ""
        return f"B2 bucket {destination.bucket_name}{path}"

    def explain_error(self, message: str) -> str | None:
        return _explain_cloud(
            message,
            "application_key_id and application_key",
            "the Backblaze web console (Buckets > Create a Bucket)",
        )


S3_TRANSFERS = 16
S3_CHECKERS = 32
S3_UPLOAD_CONCURRENCY = 2

#: rclone's s3 `provider` for well-known endpoints; anything else is "Other".
_S3_PROVIDERS = (
    ("amazonaws.com", "AWS"),
    ("wasabisys.com", "Wasabi"),
    ("digitaloceanspaces.com", "DigitalOcean"),
    ("r2.cloudflarestorage.com", "Cloudflare"),
    ("scw.cloud", "Scaleway"),
    ("idrivee2", "IDrive"),
    ("storjshare.io", "Storj"),
)


def s3_provider(endpoint: str | None) -> str:
    """rclone's provider name for `endpoint` (AWS when there is none)."""
    if not endpoint:
        return "AWS"
    lowered = endpoint.lower()
    for needle, provider in _S3_PROVIDERS:
        if needle in lowered:
            return provider
    return "Other"


class S3Type:
    """Any S3-compatible store: AWS, B2's S3 endpoint, MinIO, Wasabi, Garage, ..."""

    type_name = "s3"
    secret_fields: tuple[str, ...] = ("access_key_id", "secret_access_key")
    location_fields: tuple[str, ...] = ("bucket_name", "endpoint")
    default_item_title = "Immich Backup S3"

    def base_remote(
        self, destination: Destination, secrets: Mapping[str, str]
    ) -> RemoteSpec | None:
        endpoint = destination.endpoint or secrets.get("endpoint") or None
        provider = str(destination.options.get("provider") or s3_provider(endpoint))
        options = {
            "provider": provider,
            "env_auth": "false",
            "access_key_id": secrets.get("access_key_id", ""),
            "secret_access_key": secrets.get("secret_access_key", ""),
        }
        if endpoint:
            options["endpoint"] = endpoint
        if destination.region:
            options["region"] = destination.region
        # An append-only destination (#17): every upload and every archive copy is locked.
        options.update(per_object_lock_options(object_lock_of(destination)))
        return RemoteSpec(BASE_REMOTE, "s3", options)

    def underlying_path(self, destination: Destination) -> str:
        return _bucket_and_path(destination)

    def tune(self, options: SyncOptions) -> SyncOptions:
        return _tune_cloud(options, "s3", S3_TRANSFERS, S3_CHECKERS, S3_UPLOAD_CONCURRENCY)

    def describe(self, destination: Destination) -> str:
        path = f"/{destination.remote_path.strip('/')}" if destination.remote_path else ""
        where = f" at {destination.endpoint}" if destination.endpoint else ""
        return f"S3 bucket {destination.bucket_name}{path}{where}"

    def explain_error(self, message: str) -> str | None:
        return _explain_cloud(
            message, "access_key_id and secret_access_key", "your provider's console"
        )


DESTINATION_TYPES: dict[str, DestinationType] = {
    "local": LocalType(),
    "b2": B2Type(),
    "s3": S3Type(),
}


def destination_type(name: str) -> DestinationType:
    try:
        return DESTINATION_TYPES[name]
    except KeyError:
        known = ", ".join(sorted(DESTINATION_TYPES))
        raise DestinationError(f"unknown destination type {name!r}: use one of {known}") from None


def required_secret_fields(type_name: str) -> tuple[str, ...]:
    return (*destination_type(type_name).secret_fields, ENCRYPTION_PASSWORD)


def missing_secret_fields(type_name: str, secrets: Mapping[str, str]) -> list[str]:
    return [f for f in required_secret_fields(type_name) if not secrets.get(f)]


def item_fields(type_name: str) -> tuple[str, ...]:
    """The fields of a 1Password item for this type, in the order they are shown."""
    kind = destination_type(type_name)
    return (*kind.secret_fields, *kind.location_fields, ENCRYPTION_PASSWORD)


_S3_BUCKET_CHARS = re.compile(r"^[a-z0-9.-]+$")
_B2_BUCKET_CHARS = re.compile(r"^[A-Za-z0-9-]+$")
_IPV4 = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
#: Reserved by AWS (and copied by most S3-compatible services).
_S3_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_S3_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


def _s3_bucket_rule(bucket: str) -> str | None:
    """AWS's general-purpose bucket naming rules (docs: "General purpose bucket naming rules")."""
    if not 3 <= len(bucket) <= 63:
        return "S3 bucket names are 3-63 characters long"
    if not _S3_BUCKET_CHARS.match(bucket):
        return "use only lowercase letters, digits, '.' and '-'"
    if not (bucket[0].isalnum() and bucket[-1].isalnum()):
        return "start and end it with a lowercase letter or a digit"
    if ".." in bucket:
        return "two dots in a row are not allowed"
    if _IPV4.match(bucket):
        return "a bucket name cannot look like an IP address"
    for prefix in _S3_RESERVED_PREFIXES:
        if bucket.startswith(prefix):
            return f"names starting with {prefix!r} are reserved"
    for suffix in _S3_RESERVED_SUFFIXES:
        if bucket.endswith(suffix):
            return f"names ending with {suffix!r} are reserved"
    return None


def _b2_bucket_rule(bucket: str) -> str | None:
    """Backblaze's bucket naming rules (B2 docs, "Buckets"): 6-63 letters, digits and '-';
    names starting with "b2-" are reserved. Names are global: another account may own it."""
    if not 6 <= len(bucket) <= 63:
        return "B2 bucket names are 6-63 characters long"
    if not _B2_BUCKET_CHARS.match(bucket):
        return "use only letters, digits and '-'"
    if bucket.lower().startswith("b2-"):
        return "names starting with 'b2-' are reserved by Backblaze"
    return None


_BUCKET_RULES = {"s3": _s3_bucket_rule, "b2": _b2_bucket_rule}


def bucket_problem(type_name: str, bucket: str) -> str | None:
    """Why `bucket` is not a valid bucket name for this type (one line), or None if it is."""
    if not bucket.strip():
        return "a bucket name is needed"
    rule = _BUCKET_RULES.get(type_name)
    reason = rule(bucket) if rule is not None else None
    return f"invalid bucket name {bucket!r}: {reason}" if reason else None


def explain_error(type_name: str, message: str) -> str:
    """rclone's error `message`, prefixed with a diagnosis when one is known."""
    try:
        diagnosis = destination_type(type_name).explain_error(message)
    except DestinationError:
        diagnosis = None
    return f"{diagnosis} ({message})" if diagnosis else message


def build_remotes(
    destination: Destination,
    secrets: Mapping[str, str],
    obscured_password: str,
    obscured_salt: str | None,
) -> list[RemoteSpec]:
    """The rclone remotes (raw storage, then crypt over it) for a destination."""
    kind = destination_type(destination.type)
    remotes = []
    base = kind.base_remote(destination, secrets)
    if base is not None:
        assert base.name == BASE_REMOTE
        remotes.append(base)
    remotes.append(
        crypt_remote(kind.underlying_path(destination), obscured_password, obscured_salt)
    )
    return remotes


def parse_secrets_ref(ref: str) -> tuple[str, str]:
    """Split "file:/path" or "op:vault/item" into (store, locator)."""
    store, sep, locator = ref.partition(":")
    if not sep or store not in ("file", "op") or not locator:
        raise DestinationError(f"invalid secrets reference {ref!r}")
    return store, locator


def op_ref(vault: str, title: str) -> str:
    """The secrets reference of a 1Password item: "op:VAULT/TITLE"."""
    if "/" in vault:
        raise DestinationError(f"1Password vault name {vault!r} must not contain '/'")
    return f"op:{vault}/{title}"


def parse_op_locator(locator: str) -> tuple[str, str]:
    """(vault, title) from the locator of an "op:VAULT/TITLE" reference."""
    vault, sep, title = locator.partition("/")
    if not sep or not vault or not title:
        raise DestinationError(f"invalid 1Password reference {locator!r}: expected VAULT/TITLE")
    return vault, title
