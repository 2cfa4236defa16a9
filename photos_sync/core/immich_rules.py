"""Immich integration, the pure part: URLs, API versions, dump files and their health. No I/O.

Immich (v1.120+) writes Postgres dumps named `immich-db-backup-*.sql.gz` into `backups/`
(every version writes `<name>.sql.gz.tmp` and renames it when done). photos-sync asks the
server for a fresh dump before a run, through one of two endpoints:

- `POST /api/jobs` with `{"name": "backup-database"}` (the "create a manual job" endpoint;
  204 No Content) — current servers;
- `PUT /api/jobs/backupDatabase` with `{"command": "start", "force": false}` (the queue
  command endpoint, deprecated in v2.3) — older servers.

Both need an API key (header `x-api-key`) of an admin user with the `job.create` permission;
`GET /api/users/me` (who the key belongs to, asked by `--setup-immich` and `--check`) needs
`user.read`. Immich answers a key without a permission the route needs with 403 and
`{"message": "Missing required permission: <name>"}`; a non-admin's key on an admin route with
403 `{"message": "Forbidden"}`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

#: Field name of the API key, in a 1Password item or a key file; PHOTOS_SYNC_<FIELD> at setup.
API_KEY_FIELD = "immich_api_key"
API_KEY_HEADER = "x-api-key"
DUMP_PREFIX = "immich-db-backup-"
DUMP_SUFFIX = ".sql.gz"
#: The newest dump is stale past this age.
MAX_DUMP_AGE_HOURS = 36.0
#: A dump smaller than this fraction of the previous one probably failed half-way.
MIN_SIZE_RATIO = 0.5
#: First version that creates database dumps at all.
FIRST_BACKUP_VERSION = (1, 120, 0)
#: From this version on, `POST /api/jobs` is tried first.
CREATE_JOB_VERSION = (1, 137, 0)
MANUAL_JOB_NAME = "backup-database"
QUEUE_NAME = "backupDatabase"


class UrlError(ValueError):
    """BACKUP_IMMICH_URL is malformed; the message says what is expected."""


def normalize_base_url(raw: str) -> str:
    """`http(s)://host[:port][/prefix]` without a trailing slash or `/api`; else UrlError."""
    text = raw.strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UrlError("expected a URL such as http://localhost:2283 (http or https, with a host)")
    if parts.username or parts.password:
        raise UrlError("the URL must not hold a user or password (the API key is kept apart)")
    if parts.query or parts.fragment:
        raise UrlError("the URL must not have a query (?...) or fragment (#...)")
    try:
        _ = parts.port
    except ValueError:
        raise UrlError("the port is not a number between 0 and 65535") from None
    path = parts.path.rstrip("/")
    if path.endswith("/api"):
        path = path[: -len("/api")]
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def api_url(base: str, path: str) -> str:
    """`base` + `/api/...` (`path` starts with "/")."""
    return f"{base}/api{path}"


Version = tuple[int, int, int]


def parse_version(data: Any) -> Version | None:
    """`{"major": 1, "minor": 137, "patch": 3}` → (1, 137, 3); None if it is not that shape."""
    if not isinstance(data, Mapping):
        return None
    try:
        return (int(data["major"]), int(data["minor"]), int(data["patch"]))
    except (KeyError, TypeError, ValueError):
        return None


def version_text(version: Version | None) -> str:
    return "v" + ".".join(str(v) for v in version) if version else "an unknown version"


@dataclass(frozen=True, slots=True)
class ApiCall:
    method: str
    path: str
    body: Mapping[str, Any] | None = None

    def encoded_body(self) -> bytes | None:
        return None if self.body is None else json.dumps(dict(self.body)).encode()


CREATE_JOB = ApiCall("POST", "/jobs", {"name": MANUAL_JOB_NAME})
QUEUE_COMMAND = ApiCall("PUT", f"/jobs/{QUEUE_NAME}", {"command": "start", "force": False})
SERVER_VERSION = ApiCall("GET", "/server/version")
WHO_AM_I = ApiCall("GET", "/users/me")


def trigger_calls(version: Version | None) -> tuple[ApiCall, ...]:
    """The calls that ask for a database dump, best first for `version` (unknown: newest API).

    The caller moves on to the next one when a call answers 404/400/405 (endpoint or job name
    unknown to this server)."""
    if version is not None and version < CREATE_JOB_VERSION:
        return (QUEUE_COMMAND, CREATE_JOB)
    return (CREATE_JOB, QUEUE_COMMAND)


def supports_backups(version: Version | None) -> bool:
    return version is None or version >= FIRST_BACKUP_VERSION


#: The permissions photos-sync's API key needs (Immich's names): asking for a dump, and reading
#: who the key belongs to.
REQUIRED_PERMISSIONS = ("job.create", "user.read")
_MISSING_PERMISSION = "missing required permission:"

#: HTTP statuses meaning "this server does not know that endpoint or job name".
FALLBACK_STATUSES = frozenset({400, 404, 405})


def error_message(body: bytes) -> str:
    """Immich's error text from a JSON error body ({"message": ..., "error": ...}), else ""."""
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        return body.decode("utf-8", "replace").strip()[:200]
    if not isinstance(data, Mapping):
        return ""
    message = data.get("message") or data.get("error") or ""
    if isinstance(message, list):
        message = "; ".join(str(m) for m in message)
    return str(message)[:200]


def missing_permission(message: str) -> str | None:
    """The permission named by Immich's 403 "Missing required permission: job.create"; else
    None (a 403 for another reason, such as a non-admin's key on an admin route)."""
    head, _, rest = message.partition(":")
    if f"{head.strip().lower()}:" != _MISSING_PERMISSION:
        return None
    permission = rest.strip()
    return permission or None


def key_problem(status: int, message: str, key_where: str) -> str | None:
    """A clear error for a refused key (401/403), naming where the key is kept and, when
    Immich says which, the permission the key lacks; else None."""
    said = f" ({message})" if message else ""
    needed = " and ".join(REQUIRED_PERMISSIONS)
    if status == 401:
        return (
            f"Immich rejected the API key {key_where}{said}: create a new API key in Immich "
            "(Account Settings → API Keys) and store it there"
        )
    if status == 403:
        lacking = missing_permission(message)
        if lacking is not None:
            return (
                f"Immich refused the API key {key_where}: it lacks the {lacking} permission; "
                f"photos-sync needs {needed} (or all permissions): create a key with them in "
                "Immich (Account Settings → API Keys) and store it there"
            )
        return (
            f"Immich refused the API key {key_where}{said}: it must belong to an admin user "
            f"(database backups are an admin job) and carry {needed} (or all permissions)"
        )
    return None


# -- dump files --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DumpFile:
    name: str
    size: int
    mtime: float  # seconds since the epoch

    def as_dict(self, now: float) -> dict[str, Any]:
        return {
            "name": self.name,
            "size": self.size,
            "mtime": self.mtime,
            "age_hours": round(max(0.0, now - self.mtime) / 3600, 2),
        }


def is_dump_name(name: str) -> bool:
    """A finished Immich dump (`immich-db-backup-*.sql.gz`, not the `.tmp` of one in progress)."""
    return name.startswith(DUMP_PREFIX) and name.endswith(DUMP_SUFFIX)


def sort_dumps(files: Iterable[DumpFile]) -> list[DumpFile]:
    """Dumps oldest first (by modification time, then name)."""
    return sorted((f for f in files if is_dump_name(f.name)), key=lambda f: (f.mtime, f.name))


def new_dump(before: Iterable[str], now: Sequence[DumpFile]) -> DumpFile | None:
    """The newest dump in `now` whose name was not in `before`."""
    seen = set(before)
    fresh = [f for f in sort_dumps(now) if f.name not in seen]
    return fresh[-1] if fresh else None


def is_stable(previous: DumpFile | None, current: DumpFile) -> bool:
    """True when `current` is not empty and unchanged since the previous look at it."""
    return (
        previous is not None
        and previous.name == current.name
        and previous.size == current.size
        and previous.mtime == current.mtime
        and current.size > 0
    )


def human_size(size: float) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


@dataclass(frozen=True, slots=True)
class DumpHealth:
    newest: DumpFile | None
    previous: DumpFile | None
    count: int
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.warnings

    def as_dict(self, now: float) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "count": self.count,
            "newest": self.newest.as_dict(now) if self.newest else None,
            "previous": self.previous.as_dict(now) if self.previous else None,
            "warnings": list(self.warnings),
        }


def dump_health(
    files: Iterable[DumpFile],
    now: float,
    *,
    max_age_hours: float = MAX_DUMP_AGE_HOURS,
    min_ratio: float = MIN_SIZE_RATIO,
) -> DumpHealth:
    """Judge the dumps in backups/: missing, older than `max_age_hours`, or much smaller than
    the previous one (less than `min_ratio` of its size: a dump that failed half-way)."""
    dumps = sort_dumps(files)
    if not dumps:
        return DumpHealth(
            None,
            None,
            0,
            (
                "no Immich database dump in backups/: turn on Immich's database backup "
                "(Administration → Settings → Backup), or set BACKUP_IMMICH_URL so photos-sync "
                "asks for one before each run",
            ),
        )
    newest = dumps[-1]
    previous = dumps[-2] if len(dumps) > 1 else None
    warnings = []
    age_hours = max(0.0, now - newest.mtime) / 3600
    if age_hours > max_age_hours:
        warnings.append(
            f"the newest Immich database dump ({newest.name}) is {age_hours:.0f} h old (more "
            f"than {max_age_hours:.0f} h): check Immich's database backup job"
        )
    if previous is not None and previous.size > 0 and newest.size < min_ratio * previous.size:
        warnings.append(
            f"the newest Immich database dump ({newest.name}, {human_size(newest.size)}) is less "
            f"than {min_ratio:.0%} of the previous one ({human_size(previous.size)}): it may have "
            "failed; check Immich's logs"
        )
    return DumpHealth(newest, previous, len(dumps), tuple(warnings))


def describe_dump(dump: DumpFile | None, now: float) -> str:
    if dump is None:
        return "none"
    age = max(0.0, now - dump.mtime) / 3600
    return f"{dump.name} ({human_size(dump.size)}, {age:.1f} h old)"
