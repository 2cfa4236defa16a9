"""BACKUP_SCHEDULE parsing and next-run computation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from photos_sync.core.config import ConfigError, parse_settings
from photos_sync.core.schedule import (
    Daily,
    Interval,
    ScheduleError,
    format_interval,
    group_last_runs,
    next_run,
    parse_schedule,
)

TZ = timezone(timedelta(hours=2))


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=TZ)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("daily@03:00", Daily(3, 0)),
        ("  DAILY@23:59 ", Daily(23, 59)),
        ("daily@7:05", Daily(7, 5)),
        ("daily", Daily(3, 0)),
        ("24h", Interval(86400)),
        ("30m", Interval(1800)),
        ("90s", Interval(90)),
        ("1h30m", Interval(5400)),
        ("2d", Interval(172800)),
        ("", None),
        ("off", None),
        ("none", None),
        (None, None),
    ],
)
def test_parse(text: str | None, expected: object) -> None:
    assert parse_schedule(text) == expected


@pytest.mark.parametrize(
    "text", ["daily@24:00", "daily@03:60", "daily@3", "weekly", "0s", "-5m", "5", "h", "1.5h"]
)
def test_parse_refuses(text: str) -> None:
    with pytest.raises(ScheduleError, match="BACKUP_SCHEDULE"):
        parse_schedule(text)


def test_settings_carry_the_schedule_and_report_a_bad_one(tmp_path: Path) -> None:
    settings = parse_settings(
        {"BACKUP_SCHEDULE": "6h"},
        default_data_dir=tmp_path,
        runtime_dir=None,
    )
    assert settings.schedule == Interval(21600)
    bad = parse_settings(
        {"BACKUP_SCHEDULE": "sometimes"},
        default_data_dir=tmp_path,
        runtime_dir=None,
    )
    with pytest.raises(ConfigError, match="BACKUP_SCHEDULE"):
        bad.schedule  # noqa: B018 - reading it is what raises


def test_describe() -> None:
    assert Daily(3, 0).describe() == "daily at 03:00"
    assert Interval(5400).describe() == "every 1h30m"
    assert format_interval(0) == "0s"


def test_daily_waits_for_the_next_slot() -> None:
    schedule = Daily(3, 0)
    # ran today at 03:00; now 10:00 -> tomorrow 03:00
    assert next_run(schedule, at(25, 3, 0), at(25, 10)) == at(26, 3)
    # now 02:00, ran yesterday at 03:00 -> today 03:00
    assert next_run(schedule, at(24, 3, 1), at(25, 2)) == at(25, 3)


def test_daily_catches_up_a_run_missed_while_off() -> None:
    schedule = Daily(3, 0)
    # last ran two days ago, machine was off at 03:00 today; booted at 08:00 -> run now
    now = at(25, 8)
    assert next_run(schedule, at(23, 3), now) == now
    # missed many slots: still one run, now
    assert next_run(schedule, at(1, 3), now) == now


def test_daily_with_no_history_waits_for_its_slot() -> None:
    assert next_run(Daily(3, 0), None, at(25, 8)) == at(26, 3)
    assert next_run(Daily(3, 0), None, at(25, 2)) == at(25, 3)


def test_interval() -> None:
    schedule = Interval(3600)
    now = at(25, 12)
    assert next_run(schedule, None, now) == now
    assert next_run(schedule, at(25, 11, 30), now) == at(25, 12, 30)
    # overdue (machine off): run now, not in the past
    assert next_run(schedule, at(20, 1), now) == now


def test_a_last_run_in_the_future_counts_as_now() -> None:
    now = at(25, 12)
    assert next_run(Interval(3600), at(27, 12), now) == now + timedelta(hours=1)
    assert next_run(Daily(3, 0), at(27, 12), now) == at(26, 3)


def test_works_across_time_zones() -> None:
    last = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)  # 03:00 in TZ
    assert next_run(Daily(3, 0), last, at(25, 9)) == at(26, 3)


def test_an_interval_times_every_destination_from_the_one_that_ran_longest_ago() -> None:
    """Destinations backed up one after another in one run fall due together again (one
    Immich dump for all), instead of drifting apart by the length of the runs before them."""
    every = Interval(6 * 3600)
    lasts = {"nas": at(20, 3, 0), "usb": at(20, 3, 40), "new": None}
    grouped = group_last_runs(every, lasts)
    assert grouped == {"nas": at(20, 3, 0), "usb": at(20, 3, 0), "new": None}
    now = at(20, 9, 5)
    assert next_run(every, grouped["nas"], now) == next_run(every, grouped["usb"], now) == now
    assert next_run(every, grouped["new"], now) == now  # never ran: at once
    # a daily schedule's slots line them up already: each keeps its own
    assert group_last_runs(Daily(3, 30), lasts) == lasts
    assert group_last_runs(every, {}) == {}
