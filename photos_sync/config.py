"""Settings: parsed and validated from a plain mapping of variables. Pure: no I/O.

`photos_sync.settings_io.load_settings` gathers the mapping (environment, then `.env` in the
current directory, then `.env` in the data dir) and hands it here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from photos_sync.schedule import Daily, Schedule, ScheduleError, parse_schedule


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
    from photos_sync.immich_logic import UrlError, normalize_base_url

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


def parse_settings(
    env: Mapping[str, str], *, default_data_dir: Path, runtime_dir: Path | None
) -> Settings:
    """Build Settings from `env`, or raise ConfigError naming the first bad variable.

    `default_data_dir` is used when PHOTOS_SYNC_DATA_DIR is unset; the socket defaults to
    `<runtime_dir>/photos-sync/daemon.sock` when a runtime dir is known, else to the data dir.
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

    bwlimit_raw = env.get("BACKUP_BWLIMIT", "").strip()
    bwlimit = validate_bwlimit(bwlimit_raw) if bwlimit_raw else None

    stats_interval = _positive_int(env, "BACKUP_STATS_INTERVAL", DEFAULT_STATS_INTERVAL)
    assert stats_interval is not None

    rclone_binary = env.get("RCLONE_BINARY", "").strip() or None

    schedule_raw = env.get("BACKUP_SCHEDULE", "").strip()
    try:
        schedule = parse_schedule(schedule_raw) if schedule_raw else DEFAULT_SCHEDULE
    except ScheduleError as exc:
        raise ConfigError(str(exc)) from None
    try:
        verify_schedule = parse_schedule(env.get("BACKUP_VERIFY_SCHEDULE"))
    except ScheduleError as exc:
        raise ConfigError(
            str(exc).replace("BACKUP_SCHEDULE=", "BACKUP_VERIFY_SCHEDULE=", 1)
        ) from None

    return Settings(
        data_dir=data_dir,
        socket_path=socket_path,
        immich_path=immich_path,
        stats_interval=stats_interval,
        max_retries=_non_negative_int(env, "BACKUP_MAX_RETRIES", DEFAULT_MAX_RETRIES),
        retry_delay=_non_negative_float(env, "BACKUP_RETRY_DELAY", DEFAULT_RETRY_DELAY),
        stall_timeout=_positive_float(env, "BACKUP_STALL_TIMEOUT", DEFAULT_STALL_TIMEOUT),
        bwlimit=bwlimit,
        transfers=_positive_int(env, "BACKUP_TRANSFERS", None),
        checkers=_positive_int(env, "BACKUP_CHECKERS", None),
        include_generated=_bool(env, "BACKUP_INCLUDE_GENERATED"),
        follow_symlinks=_bool(env, "BACKUP_FOLLOW_SYMLINKS"),
        max_delete=_non_negative_int(env, "BACKUP_MAX_DELETE", DEFAULT_MAX_DELETE),
        keep_deleted_days=_non_negative_int(
            env, "BACKUP_KEEP_DELETED_DAYS", DEFAULT_KEEP_DELETED_DAYS
        ),
        rclone_binary=rclone_binary,
        schedule=schedule,
        verify_schedule=verify_schedule,
        immich_url=_immich_url(env),
        immich_dump_timeout=_positive_float(
            env, "BACKUP_IMMICH_DUMP_TIMEOUT", DEFAULT_IMMICH_DUMP_TIMEOUT
        ),
        immich_api_timeout=_positive_float(
            env, "BACKUP_IMMICH_API_TIMEOUT", DEFAULT_IMMICH_API_TIMEOUT
        ),
        immich_poll_interval=_positive_float(
            env, "BACKUP_IMMICH_POLL_INTERVAL", DEFAULT_IMMICH_POLL_INTERVAL
        ),
        extra={k: v for k, v in env.items() if k.startswith(("BACKUP_", "PHOTOS_SYNC_"))},
    )
