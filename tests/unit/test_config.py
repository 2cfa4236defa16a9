"""photos_sync.core.config: parse_settings, BACKUP_BWLIMIT validation, require_immich_path."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from photos_sync.core.config import (
    DAEMON_SETTINGS,
    DEFAULT_MAX_DELETE,
    DEFAULT_MAX_RETRIES,
    DEFAULT_RETRY_DELAY,
    DEFAULT_STATS_INTERVAL,
    KNOWN_VARIABLES,
    RUN_SETTINGS,
    SETTING_FIELDS,
    ConfigError,
    Settings,
    parse_settings,
    unknown_variables,
    validate_bwlimit,
)
from photos_sync.core.schedule import Daily, Interval

DATA = Path("/srv/default-data")
RUNTIME = Path("/run/user/1000")


def parse(env: dict[str, str], runtime_dir: Path | None = RUNTIME) -> Settings:
    return parse_settings(env, default_data_dir=DATA, runtime_dir=runtime_dir)


# --- defaults ---------------------------------------------------------------------------------


def test_defaults_from_an_empty_environment() -> None:
    s = parse({})
    assert s.data_dir == DATA
    assert s.socket_path == RUNTIME / "photos-sync" / "daemon.sock"
    assert s.immich_path is None
    assert s.stats_interval == 60 == DEFAULT_STATS_INTERVAL
    assert s.max_retries == 3 == DEFAULT_MAX_RETRIES
    assert s.retry_delay == 30.0 == DEFAULT_RETRY_DELAY
    assert s.bwlimit is None
    assert s.transfers is None
    assert s.checkers is None
    assert s.include_generated is False
    assert s.max_delete == 1000 == DEFAULT_MAX_DELETE
    assert s.rclone_binary is None
    assert dict(s.extra) == {}


def test_derived_paths_live_in_the_data_dir() -> None:
    s = parse({"PHOTOS_SYNC_DATA_DIR": "/var/lib/ps"})
    assert s.db_path == Path("/var/lib/ps/backup.db")
    assert s.log_path == Path("/var/lib/ps/backup.log")
    assert s.secrets_dir == Path("/var/lib/ps/secrets")


def test_blank_values_mean_default() -> None:
    blank = {
        name: "   "
        for name in (
            "PHOTOS_SYNC_DATA_DIR",
            "PHOTOS_SYNC_SOCKET",
            "BACKUP_IMMICH_PATH",
            "BACKUP_BWLIMIT",
            "BACKUP_STATS_INTERVAL",
            "BACKUP_MAX_RETRIES",
            "BACKUP_RETRY_DELAY",
            "BACKUP_TRANSFERS",
            "BACKUP_CHECKERS",
            "BACKUP_INCLUDE_GENERATED",
            "BACKUP_MAX_DELETE",
            "RCLONE_BINARY",
        )
    }
    s = parse(blank)
    assert s.data_dir == DATA
    assert s.socket_path == RUNTIME / "photos-sync" / "daemon.sock"
    assert s.immich_path is None
    assert s.bwlimit is None
    assert (s.stats_interval, s.max_retries, s.retry_delay) == (60, 3, 30.0)
    assert (s.transfers, s.checkers, s.max_delete) == (None, None, 1000)
    assert s.include_generated is False
    assert s.rclone_binary is None


# --- paths ------------------------------------------------------------------------------------


def test_data_dir_from_environment_with_tilde(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/immich")
    s = parse({"PHOTOS_SYNC_DATA_DIR": "~/ps-data"})
    assert s.data_dir == Path("/home/immich/ps-data")
    assert s.db_path == Path("/home/immich/ps-data/backup.db")


def test_socket_defaults_under_xdg_runtime_dir() -> None:
    s = parse({"PHOTOS_SYNC_DATA_DIR": "/data"}, runtime_dir=Path("/run/user/42"))
    assert s.socket_path == Path("/run/user/42/photos-sync/daemon.sock")


def test_socket_falls_back_to_the_data_dir_without_runtime_dir() -> None:
    assert parse({}, runtime_dir=None).socket_path == DATA / "daemon.sock"
    s = parse({"PHOTOS_SYNC_DATA_DIR": "/data"}, runtime_dir=None)
    assert s.socket_path == Path("/data/daemon.sock")


def test_explicit_socket_wins_over_runtime_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/u")
    s = parse({"PHOTOS_SYNC_SOCKET": " ~/sock/ps.sock "})
    assert s.socket_path == Path("/home/u/sock/ps.sock")


def test_immich_path_expanded_and_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/u")
    s = parse({"BACKUP_IMMICH_PATH": "~/immich/upload"})
    assert s.immich_path == Path("/home/u/immich/upload")
    assert s.require_immich_path() == Path("/home/u/immich/upload")


def test_require_immich_path_explains_how_to_set_it() -> None:
    with pytest.raises(ConfigError) as info:
        parse({}).require_immich_path()
    message = str(info.value)
    assert message.startswith("BACKUP_IMMICH_PATH is not set")
    assert "UPLOAD_LOCATION" in message
    assert ".env" in message
    assert "library/" in message


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


# --- numbers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "raw", "attribute", "expected"),
    [
        ("BACKUP_STATS_INTERVAL", "5", "stats_interval", 5),
        ("BACKUP_STATS_INTERVAL", " 300 ", "stats_interval", 300),
        ("BACKUP_MAX_RETRIES", "0", "max_retries", 0),
        ("BACKUP_MAX_RETRIES", "7", "max_retries", 7),
        ("BACKUP_RETRY_DELAY", "0", "retry_delay", 0.0),
        ("BACKUP_RETRY_DELAY", "2.5", "retry_delay", 2.5),
        ("BACKUP_RETRY_DELAY", "90", "retry_delay", 90.0),
        ("BACKUP_TRANSFERS", "8", "transfers", 8),
        ("BACKUP_CHECKERS", "16", "checkers", 16),
        ("BACKUP_MAX_DELETE", "0", "max_delete", 0),
        ("BACKUP_MAX_DELETE", "25000", "max_delete", 25000),
    ],
)
def test_numeric_variables(name: str, raw: str, attribute: str, expected: object) -> None:
    value = getattr(parse({name: raw}), attribute)
    assert value == expected
    assert type(value) is type(expected)


POSITIVE = "expected a whole number above 0"
NON_NEGATIVE = "expected a whole number, 0 or more"
SECONDS = "expected a number of seconds, 0 or more"


@pytest.mark.parametrize(
    ("name", "raw", "expected_form"),
    [
        ("BACKUP_STATS_INTERVAL", "0", POSITIVE),
        ("BACKUP_STATS_INTERVAL", "-5", POSITIVE),
        ("BACKUP_STATS_INTERVAL", "1.5", POSITIVE),
        ("BACKUP_STATS_INTERVAL", "sixty", POSITIVE),
        ("BACKUP_STATS_INTERVAL", "60s", POSITIVE),
        ("BACKUP_TRANSFERS", "0", POSITIVE),
        ("BACKUP_TRANSFERS", "four", POSITIVE),
        ("BACKUP_CHECKERS", "-1", POSITIVE),
        ("BACKUP_CHECKERS", "8.0", POSITIVE),
        ("BACKUP_MAX_RETRIES", "-1", NON_NEGATIVE),
        ("BACKUP_MAX_RETRIES", "three", NON_NEGATIVE),
        ("BACKUP_MAX_RETRIES", "2.5", NON_NEGATIVE),
        ("BACKUP_MAX_DELETE", "-10", NON_NEGATIVE),
        ("BACKUP_MAX_DELETE", "1e3", NON_NEGATIVE),
        ("BACKUP_RETRY_DELAY", "-0.5", SECONDS),
        ("BACKUP_RETRY_DELAY", "soon", SECONDS),
        ("BACKUP_RETRY_DELAY", "nan", SECONDS),
        ("BACKUP_RETRY_DELAY", "30s", SECONDS),
        ("BACKUP_RETRY_DELAY", "inf", SECONDS),
    ],
)
def test_invalid_numbers_name_the_variable_and_the_form(
    name: str, raw: str, expected_form: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse({name: raw}).require([name])
    message = str(info.value)
    assert message.startswith(f"{name}={raw!r} is invalid")
    assert expected_form in message


def test_a_bad_variable_is_reported_with_others_fine() -> None:
    env = {"BACKUP_STATS_INTERVAL": "10", "BACKUP_TRANSFERS": "zero", "BACKUP_MAX_RETRIES": "2"}
    settings = parse(env)
    assert (settings.stats_interval, settings.max_retries) == (10, 2)
    with pytest.raises(ConfigError, match=r"^BACKUP_TRANSFERS='zero' is invalid"):
        settings.require(RUN_SETTINGS)


# --- booleans ---------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", "True", "yes", "Yes", "on", " true "])
def test_include_generated_true(raw: str) -> None:
    assert parse({"BACKUP_INCLUDE_GENERATED": raw}).include_generated is True


@pytest.mark.parametrize("raw", ["0", "false", "FALSE", "no", "off", "Off", ""])
def test_include_generated_false(raw: str) -> None:
    assert parse({"BACKUP_INCLUDE_GENERATED": raw}).include_generated is False


@pytest.mark.parametrize("raw", ["maybe", "2", "y", "enabled", "tru"])
def test_include_generated_invalid(raw: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse({"BACKUP_INCLUDE_GENERATED": raw}).require(["BACKUP_INCLUDE_GENERATED"])
    assert str(info.value) == f"BACKUP_INCLUDE_GENERATED={raw!r} is invalid: expected true or false"


# --- other variables --------------------------------------------------------------------------


def test_rclone_binary_is_kept_stripped() -> None:
    assert parse({"RCLONE_BINARY": " /opt/rclone/rclone "}).rclone_binary == "/opt/rclone/rclone"


def test_extra_keeps_only_photos_sync_and_backup_variables() -> None:
    env = {
        "BACKUP_IMMICH_PATH": "/immich",
        "BACKUP_FUTURE_OPTION": "x",
        "PHOTOS_SYNC_DATA_DIR": "/data",
        "PHOTOS_SYNC_ENCRYPTION_PASSWORD": "pw",
        "RCLONE_BINARY": "/bin/rclone",
        "HOME": "/home/u",
        "PATH": "/usr/bin",
    }
    assert dict(parse(env).extra) == {
        "BACKUP_IMMICH_PATH": "/immich",
        "BACKUP_FUTURE_OPTION": "x",
        "PHOTOS_SYNC_DATA_DIR": "/data",
        "PHOTOS_SYNC_ENCRYPTION_PASSWORD": "pw",
    }


def test_every_variable_at_once() -> None:
    env = {
        "PHOTOS_SYNC_DATA_DIR": "/d",
        "PHOTOS_SYNC_SOCKET": "/s/ps.sock",
        "BACKUP_IMMICH_PATH": "/immich",
        "BACKUP_BWLIMIT": "08:00,512k 23:00,off",
        "BACKUP_STATS_INTERVAL": "15",
        "BACKUP_MAX_RETRIES": "5",
        "BACKUP_RETRY_DELAY": "1.25",
        "BACKUP_TRANSFERS": "4",
        "BACKUP_CHECKERS": "12",
        "BACKUP_INCLUDE_GENERATED": "yes",
        "BACKUP_MAX_DELETE": "50",
        "RCLONE_BINARY": "/usr/local/bin/rclone",
    }
    s = parse(env)
    assert s == Settings(
        data_dir=Path("/d"),
        socket_path=Path("/s/ps.sock"),
        immich_path=Path("/immich"),
        stats_interval=15,
        max_retries=5,
        retry_delay=1.25,
        bwlimit="08:00,512k 23:00,off",
        transfers=4,
        checkers=12,
        include_generated=True,
        max_delete=50,
        rclone_binary="/usr/local/bin/rclone",
        extra={k: v for k, v in env.items() if k != "RCLONE_BINARY"},
    )


@pytest.mark.parametrize("raw", [None, "", "   "])
def test_the_schedule_defaults_to_daily_at_03_30(raw: str | None) -> None:
    """After Immich's 02:00 database dump; an installed service backs up with no setting."""
    env = {} if raw is None else {"BACKUP_SCHEDULE": raw}
    schedule = parse(env).schedule
    assert schedule == Daily(3, 30)
    assert schedule is not None and schedule.describe() == "daily at 03:30"


@pytest.mark.parametrize("raw", ["off", "OFF", " none ", "never"])
def test_the_schedule_can_still_be_turned_off(raw: str) -> None:
    assert parse({"BACKUP_SCHEDULE": raw}).schedule is None


def test_an_explicit_schedule_replaces_the_default() -> None:
    assert parse({"BACKUP_SCHEDULE": "daily@05:15"}).schedule == Daily(5, 15)
    assert parse({"BACKUP_SCHEDULE": "6h"}).schedule == Interval(6 * 3600)
    with pytest.raises(ConfigError, match="BACKUP_SCHEDULE='sometimes' is invalid"):
        parse({"BACKUP_SCHEDULE": "sometimes"}).require(DAEMON_SETTINGS)


def test_settings_are_immutable() -> None:
    s = parse({})
    with pytest.raises(AttributeError):
        s.max_retries = 9  # type: ignore[misc]  # frozen: assigning is what must fail


# --- BACKUP_BWLIMIT ---------------------------------------------------------------------------

VALID_BWLIMITS = [
    "off",
    "OFF",
    "10M",
    "10m",
    "512",
    "512k",
    "1.5M",
    "1G",
    "2T",
    "10b",
    "10B",
    "10Mi",
    "10KiB",
    "10M:1M",
    "10M:off",
    "off:off",
    "08:00,512k 12:00,10M 13:00,off",
    "Mon-00:00,512 Fri-23:59,10M",
    "mon-00:00,512",
    "SUN-12:00,1M",
    "Monday-08:00,1M",
    "wednesday-08:00,1M saturday-20:00,off",
    "12:00,off",
    "00:00,1M 23:59,off",
    "08:00,1M:2M 20:00,off:10M",
]

INVALID_BWLIMITS = [
    "fast",
    "10X",
    "10MB",
    "10KB",
    "10i",
    "-1",
    "10 M",
    "10M:1M:2M",
    "10k:",
    "8:00,1M",
    "24:00,1M",
    "12:60,1M",
    "08:00,1M,12:00,off",
    "Xyz-12:00,1M",
    "Tues-12:00,1M",
    "08:00,",
    "08:00,1M 9:00,off",
]


@pytest.mark.parametrize("raw", VALID_BWLIMITS)
def test_bwlimit_accepted(raw: str) -> None:
    assert parse({"BACKUP_BWLIMIT": raw}).bwlimit == raw
    assert validate_bwlimit(raw) == raw


def test_bwlimit_whitespace_is_normalised() -> None:
    assert parse({"BACKUP_BWLIMIT": "  08:00,512k \t 12:00,10M\n13:00,off "}).bwlimit == (
        "08:00,512k 12:00,10M 13:00,off"
    )


@pytest.mark.parametrize("raw", INVALID_BWLIMITS)
def test_bwlimit_refused_with_the_expected_form(raw: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse({"BACKUP_BWLIMIT": raw}).require(["BACKUP_BWLIMIT"])
    message = str(info.value)
    assert message.startswith(f"BACKUP_BWLIMIT={raw!r} is invalid")
    assert "rclone --bwlimit" in message
    assert "'08:00,2M 23:00,off'" in message


def _rclone_accepts_bwlimit(rclone: str, values: list[str]) -> dict[str, bool]:
    """Ask the real rclone whether each value parses as --bwlimit (all in parallel)."""
    env = {**os.environ, "RCLONE_CONFIG": ""}
    procs = {
        value: subprocess.Popen(
            [rclone, "--bwlimit", value, "version"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        for value in values
    }
    return {value: proc.wait(timeout=30) == 0 for value, proc in procs.items()}


def test_bwlimit_validation_agrees_with_real_rclone(rclone: str) -> None:
    """Whatever we accept rclone must accept (else every run would fail), and vice versa."""
    verdicts = _rclone_accepts_bwlimit(rclone, VALID_BWLIMITS + INVALID_BWLIMITS)
    assert {v for v in VALID_BWLIMITS if not verdicts[v]} == set()
    assert {v for v in INVALID_BWLIMITS if verdicts[v]} == set()


# --- checked where used (#13) -------------------------------------------------------------------


def test_a_malformed_value_is_kept_as_a_problem_and_read_as_an_error() -> None:
    s = parse({"BACKUP_SCHEDULE": "daily@25:00", "BACKUP_TRANSFERS": "4"})
    assert s.transfers == 4  # the others are fine
    assert list(s.problems) == ["BACKUP_SCHEDULE"]
    with pytest.raises(ConfigError, match=r"^BACKUP_SCHEDULE='daily@25:00' is invalid"):
        s.schedule  # noqa: B018 - reading it is what raises
    s.require(RUN_SETTINGS)  # a backup run does not read the schedule
    with pytest.raises(ConfigError, match="BACKUP_SCHEDULE"):
        s.require(DAEMON_SETTINGS)
    assert s.unused_problems(RUN_SETTINGS) == [s.problems["BACKUP_SCHEDULE"]]
    assert s.unused_problems(DAEMON_SETTINGS) == []


def test_require_names_every_malformed_variable_on_one_line() -> None:
    s = parse({"BACKUP_BWLIMIT": "fast", "BACKUP_MAX_RETRIES": "-1", "BACKUP_STATS_INTERVAL": "9"})
    with pytest.raises(ConfigError) as info:
        s.require(RUN_SETTINGS)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("BACKUP_BWLIMIT='fast' is invalid")
    assert "; BACKUP_MAX_RETRIES='-1' is invalid" in message


def test_every_validated_variable_reads_back_its_default_when_well_formed() -> None:
    s = parse({})
    assert s.problems == {}
    for field_name in SETTING_FIELDS.values():
        getattr(s, field_name)  # none raises


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("BACKUP_TRANSFRES", "BACKUP_TRANSFERS"),
        ("BACKUP_MAX_DELET", "BACKUP_MAX_DELETE"),
        ("BACKUP_SCHEDUEL", "BACKUP_SCHEDULE"),
        ("PHOTOS_SYNC_DATADIR", "PHOTOS_SYNC_DATA_DIR"),
        ("PHOTOS_SYNC_BWLIMIT", "BACKUP_BWLIMIT"),  # the other prefix
        ("BACKUP_RETRIES", "BACKUP_MAX_RETRIES"),
        ("BACKUP_COLOUR", None),
        ("BACKUP_DIR", None),
    ],
)
def test_unknown_names_get_the_closest_known_one(name: str, suggestion: str | None) -> None:
    assert unknown_variables([name]) == [(name, suggestion)]


def test_known_and_foreign_names_are_not_reported() -> None:
    names = [*KNOWN_VARIABLES, "HOME", "RCLONE_BINARY", "RCLONE_CONFIG_X_TYPE", "OP_X"]
    assert unknown_variables(names) == []


#: Where photos-sync (and the harness that runs it) reads variables; tests/unit holds
#: made-up names on purpose.
_CODE = ("photos_sync", "daemon", "tests/support", "tests/conftest.py", "tests/reliability")
_NAME = re.compile(r"\b(?:BACKUP|PHOTOS_SYNC)_[A-Z0-9_]*[A-Z0-9]\b")


def test_every_name_in_the_code_and_docs_is_known() -> None:
    """KNOWN_VARIABLES is the list the code reads: a new name anywhere fails here."""
    root = Path(__file__).resolve().parents[2]
    files = [root / ".env.example", root / "README.md", *root.glob("docs/*.md")]
    for place in _CODE:
        path = root / place
        files += [path] if path.is_file() else list(path.rglob("*.py"))
    found = {name for f in files for name in _NAME.findall(f.read_text())}
    assert len(found) > 30
    assert found - KNOWN_VARIABLES == {"BACKUP_TRANSFRES"}  # README's example of a typo


def test_the_setup_variables_of_every_destination_type_are_known() -> None:
    """PHOTOS_SYNC_<FIELD> is built from the destination types' fields (and never appears
    whole in the code): each must be known, or `--setup` input would get a warning."""
    from photos_sync_daemon import service_files

    assert service_files.SETUP_VARIABLES <= KNOWN_VARIABLES


# --- extra folders (#16.3) ------------------------------------------------------------------------


def test_extra_paths_and_the_library_map_are_read() -> None:
    from photos_sync.core.extra_paths import ExtraPath, LibraryMount

    s = parse(
        {
            "BACKUP_IMMICH_PATH": "/srv/immich",
            "BACKUP_EXTRA_PATHS": "/mnt/photos/family:scans=/srv/scans",
            "BACKUP_EXTERNAL_LIBRARY_MAP": "/mnt/media=/mnt/photos",
        }
    )
    assert s.problems == {}
    assert s.extra_paths == (
        ExtraPath("family", "/mnt/photos/family"),
        ExtraPath("scans", "/srv/scans"),
    )
    assert s.external_library_map == (LibraryMount("/mnt/media", "/mnt/photos"),)
    assert parse({}).extra_paths == () and parse({}).external_library_map == ()
    assert {"BACKUP_EXTRA_PATHS", "BACKUP_EXTERNAL_LIBRARY_MAP"} <= set(RUN_SETTINGS)


@pytest.mark.parametrize(
    ("variable", "raw", "expected"),
    [
        (
            "BACKUP_EXTRA_PATHS",
            "photos/family",
            "BACKUP_EXTRA_PATHS='photos/family' is invalid: 'photos/family' is not an absolute "
            "path: expected folders such as /mnt/photos/family, or NAME=/mnt/photos/family, "
            "separated by ':'",
        ),
        (
            "BACKUP_EXTRA_PATHS",
            "/a/photos:/b/photos",
            "BACKUP_EXTRA_PATHS='/a/photos:/b/photos' is invalid: /a/photos and /b/photos would "
            "both be kept as extra/photos/: give them different names, e.g. "
            "a=/a/photos:b=/b/photos",
        ),
        (
            "BACKUP_EXTERNAL_LIBRARY_MAP",
            "/mnt/media:/srv/photos",
            "BACKUP_EXTERNAL_LIBRARY_MAP='/mnt/media:/srv/photos' is invalid: '/mnt/media' is "
            "not CONTAINER=HOST: expected entries such as /mnt/media=/srv/photos (Immich's path "
            "= the host's), separated by ':'",
        ),
    ],
)
def test_a_malformed_extra_setting_is_one_line_naming_it(
    variable: str, raw: str, expected: str
) -> None:
    s = parse({variable: raw, "BACKUP_TRANSFERS": "4"})
    assert s.problems == {variable: expected}
    assert s.transfers == 4  # the others are fine
    with pytest.raises(ConfigError) as info:
        s.require(RUN_SETTINGS)
    assert str(info.value) == expected


def test_an_extra_path_inside_the_immich_path_is_refused_after_expanding_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOME", "/home/me")
    s = parse({"BACKUP_IMMICH_PATH": "~/immich", "BACKUP_EXTRA_PATHS": "/home/me/immich/library"})
    assert "overlaps BACKUP_IMMICH_PATH (/home/me/immich)" in s.problems["BACKUP_EXTRA_PATHS"]
