"""Settings: parsed and validated from a plain mapping of variables. Pure: no I/O.

`photos_sync.storage.settings_io.load_settings` gathers the mapping (environment, then `.env` in the
current directory, then `.env` in the data dir) and hands it here.

Validation is per setting and lazy: a malformed value does not stop parsing. It is kept as a
problem, the field keeps its default, and reading that field raises ConfigError. Each command
`require`s the settings it uses before doing anything, so a bad BACKUP_SCHEDULE stops the
daemon but not `restore` (which shows it as a warning instead).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from photos_sync.core.extra_paths import (
    ExtraPath,
    ExtraPathError,
    LibraryMount,
    parse_extra_paths,
    parse_library_map,
)
from photos_sync.core.guards import DEFAULT_MAX_CHANGE, MaxChange, parse_max_change
from photos_sync.core.manifest import DEFAULT_RECONCILE_EVERY
from photos_sync.core.schedule import Daily, Schedule, ScheduleError, parse_schedule


class ConfigError(ValueError):
    """A variable is missing or malformed. The message names it and the expected form."""


DEFAULT_STATS_INTERVAL = 60
DEFAULT_MAX_RETRIES = 3
DEFAULT_RETRY_DELAY = 30.0
#: Seconds an rclone sync may go without any progress before it counts as a failed attempt.
DEFAULT_STALL_TIMEOUT = 1800.0
DEFAULT_MAX_DELETE = 1000
DEFAULT_KEEP_DELETED_DAYS = 30
DEFAULT_IMMICH_DUMP_TIMEOUT = 600.0
DEFAULT_IMMICH_API_TIMEOUT = 30.0
DEFAULT_IMMICH_POLL_INTERVAL = 2.0
#: When BACKUP_SCHEDULE is unset or blank: daily at 03:30 local time, after Immich's own
#: database dump (02:00 by default), so each night's backup carries that night's dump.
DEFAULT_SCHEDULE: Schedule = Daily(3, 30)

# rclone --bwlimit: a single rate ("10M", "off", "512k:1M" for upload:download), or a
# timetable of "[Day-]HH:MM,RATE" entries separated by spaces.
# Matched case-insensitively, as rclone does ("OFF", "mon-08:00,1M", "10KiB").
_RATE = r"(?:off|\d+(?:\.\d+)?(?:b|[kmgtpe](?:ib?)?)?)"
_RATE_PAIR = rf"{_RATE}(?::{_RATE})?"
_DAY = (
    r"(?:mon(?:day)?|tue(?:sday)?|wed(?:nesday)?|thu(?:rsday)?|fri(?:day)?|sat(?:urday)?"
    r"|sun(?:day)?)"
)
_SLOT = rf"(?:{_DAY}-)?(?:[01]\d|2[0-3]):[0-5]\d,{_RATE_PAIR}"
_BWLIMIT_RE = re.compile(rf"^(?:{_RATE_PAIR}|{_SLOT}(?:\s+{_SLOT})*)$", re.IGNORECASE)

#: Each variable parse_settings validates, and the Settings field it sets.
SETTING_FIELDS: Mapping[str, str] = {
    "BACKUP_BWLIMIT": "bwlimit",
    "BACKUP_STATS_INTERVAL": "stats_interval",
    "BACKUP_MAX_RETRIES": "max_retries",
    "BACKUP_RETRY_DELAY": "retry_delay",
    "BACKUP_STALL_TIMEOUT": "stall_timeout",
    "BACKUP_TRANSFERS": "transfers",
    "BACKUP_CHECKERS": "checkers",
    "BACKUP_INCLUDE_GENERATED": "include_generated",
    "BACKUP_FOLLOW_SYMLINKS": "follow_symlinks",
    "BACKUP_MAX_DELETE": "max_delete",
    "BACKUP_KEEP_DELETED_DAYS": "keep_deleted_days",
    "BACKUP_OBJECT_LOCK_DAYS": "object_lock_days",
    "BACKUP_RECONCILE_EVERY": "reconcile_every",
    "BACKUP_MAX_CHANGE": "max_change",
    "BACKUP_EXTRA_PATHS": "extra_paths",
    "BACKUP_EXTERNAL_LIBRARY_MAP": "external_library_map",
    "BACKUP_SCHEDULE": "schedule",
    "BACKUP_VERIFY_SCHEDULE": "verify_schedule",
    "BACKUP_IMMICH_URL": "immich_url",
    "BACKUP_IMMICH_DUMP_TIMEOUT": "immich_dump_timeout",
    "BACKUP_IMMICH_API_TIMEOUT": "immich_api_timeout",
    "BACKUP_IMMICH_POLL_INTERVAL": "immich_poll_interval",
}
_FIELD_VARIABLE = {name: variable for variable, name in SETTING_FIELDS.items()}

#: What a backup run reads (in the foreground or in the daemon): all but the schedules.
RUN_SETTINGS = tuple(v for v in SETTING_FIELDS if not v.endswith("_SCHEDULE"))
#: What the daemon reads: everything.
DAEMON_SETTINGS = tuple(SETTING_FIELDS)
#: What `--status` reads: the stale threshold and the Immich section.
STATUS_SETTINGS = ("BACKUP_STATS_INTERVAL", "BACKUP_IMMICH_URL")

#: Every other variable photos-sync (or its test harness) reads: paths, the service's
#: install options, notifications, metrics, and the PHOTOS_SYNC_<FIELD> secrets and locations
#: `--setup` takes from the environment. tests/unit/test_config.py checks this list against
#: every BACKUP_*/PHOTOS_SYNC_* name in the code, so it cannot fall behind.
OTHER_VARIABLES = frozenset(
    {
        "PHOTOS_SYNC_DATA_DIR",
        "PHOTOS_SYNC_SOCKET",
        "BACKUP_IMMICH_PATH",
        "BACKUP_HEALTHCHECK_URL",
        "BACKUP_NOTIFY_URLS",
        "BACKUP_NOTIFY_EVENTS",
        "BACKUP_METRICS_ADDR",
        "BACKUP_METRICS_FILE",
        "PHOTOS_SYNC_OP_BINARY",
        "PHOTOS_SYNC_SERVICE_SCOPE",
        "PHOTOS_SYNC_SYSTEM_UNIT_DIR",
        "PHOTOS_SYNC_IMMICH_API_KEY",
        "PHOTOS_SYNC_ENCRYPTION_PASSWORD",
        "PHOTOS_SYNC_ENCRYPTION_SALT",
        "PHOTOS_SYNC_APPLICATION_KEY_ID",
        "PHOTOS_SYNC_APPLICATION_KEY",
        "PHOTOS_SYNC_ACCESS_KEY_ID",
        "PHOTOS_SYNC_SECRET_ACCESS_KEY",
        "PHOTOS_SYNC_BUCKET_NAME",
        "PHOTOS_SYNC_ENDPOINT",
        "PHOTOS_SYNC_SOAK",  # the test suite's long soak (tests/reliability)
        "PHOTOS_SYNC_TEST_TAG",  # marks the test suite's processes, to kill what a test started
    }
)
KNOWN_VARIABLES = frozenset(SETTING_FIELDS) | OTHER_VARIABLES
#: Known names that only the test suite sets: never a setting of an installed service.
TEST_VARIABLES = frozenset({"PHOTOS_SYNC_SOAK", "PHOTOS_SYNC_TEST_TAG"})
#: Names that look like photos-sync settings; unknown ones get a warning.
SETTING_PREFIXES = ("BACKUP_", "PHOTOS_SYNC_")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything photos-sync reads from its environment."""

    data_dir: Path
    socket_path: Path
    immich_path: Path | None = None
    stats_interval: int = DEFAULT_STATS_INTERVAL
    max_retries: int = DEFAULT_MAX_RETRIES
    retry_delay: float = DEFAULT_RETRY_DELAY
    #: BACKUP_STALL_TIMEOUT: an rclone sync silent this long (no byte, check or listing) is
    #: stopped and counted as a failed attempt, so an outage never leaves a job RUNNING forever.
    stall_timeout: float = DEFAULT_STALL_TIMEOUT
    bwlimit: str | None = None
    transfers: int | None = None
    checkers: int | None = None
    include_generated: bool = False
    #: BACKUP_FOLLOW_SYMLINKS: back up what symbolic links at the source point to (rclone -L)
    follow_symlinks: bool = False
    max_delete: int = DEFAULT_MAX_DELETE
    keep_deleted_days: int = DEFAULT_KEEP_DELETED_DAYS
    #: BACKUP_OBJECT_LOCK_DAYS: per-object lock of an append-only S3 destination (#17); None:
    #: BACKUP_KEEP_DELETED_DAYS + 7 (core/append_only.default_lock_days)
    object_lock_days: int | None = None
    #: BACKUP_RECONCILE_EVERY: how often a run is a full sync that lists the destination and
    #: rebuilds the manifest (#15); None ('off'): only when the manifest cannot be trusted.
    reconcile_every: timedelta | None = DEFAULT_RECONCILE_EVERY
    #: BACKUP_MAX_CHANGE: the mass-change guard (#17); None ('0', 'off') turns it off
    max_change: MaxChange | None = DEFAULT_MAX_CHANGE
    #: BACKUP_EXTRA_PATHS: host folders outside UPLOAD_LOCATION (Immich's external libraries),
    #: each backed up after Immich's folders into `extra/<name>/` (core/extra_paths.py)
    extra_paths: tuple[ExtraPath, ...] = ()
    #: BACKUP_EXTERNAL_LIBRARY_MAP: where the folders Immich sees in its container are on the
    #: host, for finding an external library's stored paths in the backup
    external_library_map: tuple[LibraryMount, ...] = ()
    rclone_binary: str | None = None
    #: BACKUP_SCHEDULE (default DEFAULT_SCHEDULE; None when set to off).
    schedule: Schedule | None = DEFAULT_SCHEDULE
    #: BACKUP_VERIFY_SCHEDULE: when the daemon runs `verify` by itself (same syntax).
    verify_schedule: Schedule | None = None
    #: Immich's base URL (BACKUP_IMMICH_URL, normalised: no trailing slash or /api), if set.
    immich_url: str | None = None
    immich_dump_timeout: float = DEFAULT_IMMICH_DUMP_TIMEOUT
    immich_api_timeout: float = DEFAULT_IMMICH_API_TIMEOUT
    immich_poll_interval: float = DEFAULT_IMMICH_POLL_INTERVAL
    extra: Mapping[str, str] = field(default_factory=dict)
    #: Variable -> one-line message, for each malformed value (its field keeps the default,
    #: and reading the field raises ConfigError with that message).
    problems: Mapping[str, str] = field(default_factory=dict)
    #: Warnings for the user that stop nothing: unknown names, unreadable `.env` lines.
    notices: tuple[str, ...] = ()

    if not TYPE_CHECKING:  # mypy would accept any attribute on a class with __getattribute__

        def __getattribute__(self, name: str) -> Any:
            variable = _FIELD_VARIABLE.get(name)
            if variable is not None:
                problem = object.__getattribute__(self, "problems").get(variable)
                if problem is not None:
                    raise ConfigError(problem)
            return object.__getattribute__(self, name)

    def require(self, variables: Iterable[str]) -> None:
        """Raise ConfigError, one line naming every malformed variable among `variables`."""
        bad = [self.problems[v] for v in variables if v in self.problems]
        if bad:
            raise ConfigError("; ".join(bad))

    def unused_problems(self, used: Iterable[str]) -> list[str]:
        """The problems of malformed variables not among `used` (to show as warnings)."""
        skip = set(used)
        return [message for variable, message in self.problems.items() if variable not in skip]

    def require_immich_path(self) -> Path:
        """The Immich data folder, or ConfigError telling the user how to set it."""
        if self.immich_path is None:
            raise ConfigError(
                "BACKUP_IMMICH_PATH is not set: set it to Immich's UPLOAD_LOCATION folder "
                "(the one holding library/, upload/, backups/) in the environment or a .env file"
            )
        return self.immich_path

    @property
    def db_path(self) -> Path:
        return self.data_dir / "backup.db"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "backup.log"

    @property
    def secrets_dir(self) -> Path:
        return self.data_dir / "secrets"


def _positive_int(env: Mapping[str, str], name: str, default: int | None) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value <= 0:
        raise ConfigError(f"{name}={raw!r} is invalid: expected a whole number above 0")
    return value


def _non_negative_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ConfigError(f"{name}={raw!r} is invalid: expected a whole number, 0 or more")
    return value


def _non_negative_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value < 0 or value != value or value == float("inf"):  # NaN and inf
        raise ConfigError(f"{name}={raw!r} is invalid: expected a number of seconds, 0 or more")
    return value


def _bool(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError(f"{name}={env[name]!r} is invalid: expected true or false")


def _positive_float(env: Mapping[str, str], name: str, default: float) -> float:
    value = _non_negative_float(env, name, default)
    if value <= 0:
        raise ConfigError(f"{name}={env[name]!r} is invalid: expected a number of seconds above 0")
    return value


def _immich_url(env: Mapping[str, str]) -> str | None:
    from photos_sync.core.immich_rules import UrlError, normalize_base_url

    raw = env.get("BACKUP_IMMICH_URL", "").strip()
    if not raw:
        return None
    try:
        return normalize_base_url(raw)
    except UrlError as exc:
        raise ConfigError(f"BACKUP_IMMICH_URL={raw!r} is invalid: {exc}") from None


def validate_bwlimit(raw: str) -> str:
    """Return the rclone --bwlimit value if it has rclone's syntax, else raise ConfigError."""
    value = " ".join(raw.split())
    if not _BWLIMIT_RE.match(value):
        raise ConfigError(
            f"BACKUP_BWLIMIT={raw!r} is invalid: expected an rclone --bwlimit value such as "
            "'10M', 'off', '10M:1M' or a timetable like '08:00,2M 23:00,off'"
        )
    return value


def _schedule(env: Mapping[str, str], name: str, default: Schedule | None) -> Schedule | None:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return parse_schedule(raw)
    except ScheduleError as exc:
        raise ConfigError(str(exc).replace("BACKUP_SCHEDULE=", f"{name}=", 1)) from None


def _reconcile_every(env: Mapping[str, str]) -> timedelta | None:
    raw = env.get("BACKUP_RECONCILE_EVERY", "").strip()
    if not raw:
        return DEFAULT_RECONCILE_EVERY
    try:
        every = parse_schedule(raw)
    except ScheduleError:
        every = Daily(0, 0)
    if every is None:
        return None
    if isinstance(every, Daily):
        raise ConfigError(
            f"BACKUP_RECONCILE_EVERY={raw!r} is invalid: expected an interval such as '7d', "
            "'1d', '12h', or 'off'"
        )
    return timedelta(seconds=every.seconds)


def _extra_paths(env: Mapping[str, str]) -> tuple[ExtraPath, ...]:
    raw = env.get("BACKUP_EXTRA_PATHS", "")
    immich_raw = env.get("BACKUP_IMMICH_PATH", "").strip()
    immich = str(Path(immich_raw).expanduser()) if immich_raw else None
    try:
        return parse_extra_paths(raw, immich)
    except ExtraPathError as exc:
        raise ConfigError(f"BACKUP_EXTRA_PATHS={raw.strip()!r} is invalid: {exc}") from None


def _library_map(env: Mapping[str, str]) -> tuple[LibraryMount, ...]:
    raw = env.get("BACKUP_EXTERNAL_LIBRARY_MAP", "")
    try:
        return parse_library_map(raw)
    except ExtraPathError as exc:
        message = f"BACKUP_EXTERNAL_LIBRARY_MAP={raw.strip()!r} is invalid: {exc}"
        raise ConfigError(message) from None


def _max_change(env: Mapping[str, str]) -> MaxChange | None:
    raw = env.get("BACKUP_MAX_CHANGE", "").strip()
    if not raw:
        return DEFAULT_MAX_CHANGE
    try:
        return parse_max_change(raw)
    except ValueError:
        raise ConfigError(
            f"BACKUP_MAX_CHANGE={raw!r} is invalid: expected a share such as '2%', a number of "
            "files such as '500', both as '2%/500' (whichever is larger), or 'off'"
        ) from None


def _bwlimit(env: Mapping[str, str]) -> str | None:
    raw = env.get("BACKUP_BWLIMIT", "").strip()
    return validate_bwlimit(raw) if raw else None


#: Variable -> how its value is read (ConfigError when malformed) and its default.
_PARSERS: Mapping[str, tuple[Callable[[Mapping[str, str]], Any], Any]] = {
    "BACKUP_BWLIMIT": (_bwlimit, None),
    "BACKUP_RECONCILE_EVERY": (_reconcile_every, DEFAULT_RECONCILE_EVERY),
    "BACKUP_MAX_CHANGE": (_max_change, DEFAULT_MAX_CHANGE),
    "BACKUP_EXTRA_PATHS": (_extra_paths, ()),
    "BACKUP_EXTERNAL_LIBRARY_MAP": (_library_map, ()),
    "BACKUP_STATS_INTERVAL": (
        lambda env: _positive_int(env, "BACKUP_STATS_INTERVAL", DEFAULT_STATS_INTERVAL),
        DEFAULT_STATS_INTERVAL,
    ),
    "BACKUP_MAX_RETRIES": (
        lambda env: _non_negative_int(env, "BACKUP_MAX_RETRIES", DEFAULT_MAX_RETRIES),
        DEFAULT_MAX_RETRIES,
    ),
    "BACKUP_RETRY_DELAY": (
        lambda env: _non_negative_float(env, "BACKUP_RETRY_DELAY", DEFAULT_RETRY_DELAY),
        DEFAULT_RETRY_DELAY,
    ),
    "BACKUP_STALL_TIMEOUT": (
        lambda env: _positive_float(env, "BACKUP_STALL_TIMEOUT", DEFAULT_STALL_TIMEOUT),
        DEFAULT_STALL_TIMEOUT,
    ),
    "BACKUP_TRANSFERS": (lambda env: _positive_int(env, "BACKUP_TRANSFERS", None), None),
    "BACKUP_CHECKERS": (lambda env: _positive_int(env, "BACKUP_CHECKERS", None), None),
    "BACKUP_INCLUDE_GENERATED": (lambda env: _bool(env, "BACKUP_INCLUDE_GENERATED"), False),
    "BACKUP_FOLLOW_SYMLINKS": (lambda env: _bool(env, "BACKUP_FOLLOW_SYMLINKS"), False),
    "BACKUP_MAX_DELETE": (
        lambda env: _non_negative_int(env, "BACKUP_MAX_DELETE", DEFAULT_MAX_DELETE),
        DEFAULT_MAX_DELETE,
    ),
    "BACKUP_KEEP_DELETED_DAYS": (
        lambda env: _non_negative_int(env, "BACKUP_KEEP_DELETED_DAYS", DEFAULT_KEEP_DELETED_DAYS),
        DEFAULT_KEEP_DELETED_DAYS,
    ),
    "BACKUP_OBJECT_LOCK_DAYS": (
        lambda env: _positive_int(env, "BACKUP_OBJECT_LOCK_DAYS", None),
        None,
    ),
    "BACKUP_SCHEDULE": (
        lambda env: _schedule(env, "BACKUP_SCHEDULE", DEFAULT_SCHEDULE),
        DEFAULT_SCHEDULE,
    ),
    "BACKUP_VERIFY_SCHEDULE": (lambda env: _schedule(env, "BACKUP_VERIFY_SCHEDULE", None), None),
    "BACKUP_IMMICH_URL": (_immich_url, None),
    "BACKUP_IMMICH_DUMP_TIMEOUT": (
        lambda env: _positive_float(env, "BACKUP_IMMICH_DUMP_TIMEOUT", DEFAULT_IMMICH_DUMP_TIMEOUT),
        DEFAULT_IMMICH_DUMP_TIMEOUT,
    ),
    "BACKUP_IMMICH_API_TIMEOUT": (
        lambda env: _positive_float(env, "BACKUP_IMMICH_API_TIMEOUT", DEFAULT_IMMICH_API_TIMEOUT),
        DEFAULT_IMMICH_API_TIMEOUT,
    ),
    "BACKUP_IMMICH_POLL_INTERVAL": (
        lambda env: _positive_float(
            env, "BACKUP_IMMICH_POLL_INTERVAL", DEFAULT_IMMICH_POLL_INTERVAL
        ),
        DEFAULT_IMMICH_POLL_INTERVAL,
    ),
}


def _suffix(name: str) -> str:
    for prefix in SETTING_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def unknown_variables(names: Iterable[str]) -> list[tuple[str, str | None]]:
    """(name, closest known name or None) for each BACKUP_*/PHOTOS_SYNC_* name photos-sync
    does not read, in the order given. Names are compared without their prefix, which every
    name shares and which would make any two look alike."""
    unknown = [n for n in names if n.startswith(SETTING_PREFIXES) and n not in KNOWN_VARIABLES]
    if not unknown:
        return []
    import difflib  # only when there is something to suggest

    by_suffix: dict[str, str] = {}
    for known in sorted(KNOWN_VARIABLES):
        by_suffix.setdefault(_suffix(known), known)
    found = []
    for name in unknown:
        close = difflib.get_close_matches(_suffix(name), by_suffix, n=1, cutoff=0.7)
        found.append((name, by_suffix[close[0]] if close else None))
    return found


def parse_settings(
    env: Mapping[str, str],
    *,
    default_data_dir: Path,
    runtime_dir: Path | None,
    notices: Iterable[str] = (),
) -> Settings:
    """Build Settings from `env`. Never raises: a malformed value becomes an entry of
    `Settings.problems` (and its field raises ConfigError when read).

    `default_data_dir` is used when PHOTOS_SYNC_DATA_DIR is unset; the socket defaults to
    `<runtime_dir>/photos-sync/daemon.sock` when a runtime dir is known, else to the data dir.
    `notices` (warnings gathered while reading `.env` files) are kept in `Settings.notices`.
    """
    data_dir_raw = env.get("PHOTOS_SYNC_DATA_DIR", "").strip()
    data_dir = Path(data_dir_raw).expanduser() if data_dir_raw else default_data_dir
    socket_raw = env.get("PHOTOS_SYNC_SOCKET", "").strip()
    if socket_raw:
        socket_path = Path(socket_raw).expanduser()
    elif runtime_dir is not None:
        socket_path = runtime_dir / "photos-sync" / "daemon.sock"
    else:
        socket_path = data_dir / "daemon.sock"

    immich_raw = env.get("BACKUP_IMMICH_PATH", "").strip()
    immich_path = Path(immich_raw).expanduser() if immich_raw else None

    values: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for variable, (parse, default) in _PARSERS.items():
        try:
            values[SETTING_FIELDS[variable]] = parse(env)
        except ConfigError as exc:
            problems[variable] = str(exc)
            values[SETTING_FIELDS[variable]] = default

    return Settings(
        data_dir=data_dir,
        socket_path=socket_path,
        immich_path=immich_path,
        rclone_binary=env.get("RCLONE_BINARY", "").strip() or None,
        extra={k: v for k, v in env.items() if k.startswith(SETTING_PREFIXES)},
        problems=problems,
        notices=tuple(notices),
        **values,
    )
