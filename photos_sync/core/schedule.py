"""BACKUP_SCHEDULE: when the daemon starts a backup by itself. Pure: no I/O, no clock.

Accepted forms (case-insensitive, surrounding blanks ignored):

- ``daily@HH:MM`` — every day at that local time (``daily`` alone means ``daily@03:00``);
- an interval: a whole number with a unit, or several run together: ``24h``, ``30m``,
  ``90s``, ``1h30m``, ``2d`` (at least 1 second);
- ``off``, ``none`` or ``never`` — no schedule (runs start only on request, and on start-up
  when a run was left unfinished). `parse_schedule` also reads empty text as no schedule;
  the daemon's settings (photos_sync.core.config) give unset or blank BACKUP_SCHEDULE the default,
  ``daily@03:30``.

Catch-up: a run that was due while the machine was off (or the daemon stopped) starts as
soon as the daemon is up again; runs missed several times over still make one run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_INTERVAL_RE = re.compile(r"^(?:\d+[dhms])+$")
_PART_RE = re.compile(r"(\d+)([dhms])")
_DAILY_RE = re.compile(r"^daily(?:@([01]?\d|2[0-3]):([0-5]\d))?$")


class ScheduleError(ValueError):
    """The text is not a schedule; the message shows the accepted forms."""


@dataclass(frozen=True, slots=True)
class Daily:
    hour: int
    minute: int

    def describe(self) -> str:
        return f"daily at {self.hour:02d}:{self.minute:02d}"


@dataclass(frozen=True, slots=True)
class Interval:
    seconds: int

    def describe(self) -> str:
        return f"every {format_interval(self.seconds)}"


Schedule = Daily | Interval


def format_interval(seconds: int) -> str:
    parts = []
    for unit, size in _UNITS.items():
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def parse_schedule(text: str | None) -> Schedule | None:
    """The schedule `text` describes, None when it is off, or ScheduleError."""
    raw = (text or "").strip().lower()
    if raw in ("", "off", "none", "never"):
        return None
    daily = _DAILY_RE.match(raw)
    if daily:
        if daily.group(1) is None:
            return Daily(3, 0)
        return Daily(int(daily.group(1)), int(daily.group(2)))
    if _INTERVAL_RE.match(raw):
        seconds = sum(int(n) * _UNITS[u] for n, u in _PART_RE.findall(raw))
        if seconds >= 1:
            return Interval(seconds)
    raise ScheduleError(
        f"BACKUP_SCHEDULE={text!r} is invalid: expected 'daily@HH:MM' (local time), an "
        "interval such as '24h', '6h', '1h30m', or 'off'"
    )


def _latest_slot(schedule: Daily, now: datetime) -> datetime:
    """The most recent daily slot at or before `now` (in now's time zone)."""
    slot = now.replace(hour=schedule.hour, minute=schedule.minute, second=0, microsecond=0)
    if slot > now:
        slot -= timedelta(days=1)
    return slot


def next_run(schedule: Schedule, last_run: datetime | None, now: datetime) -> datetime:
    """When the next scheduled run is due. A result at or before `now` means "run now".

    `last_run` is when the previous run (scheduled or not) started; `now` and `last_run`
    must be time-zone aware. A daily schedule runs at its slot in `now`'s time zone; if the
    latest slot passed without a run since (machine off), the run is due now. With no run
    ever, a daily schedule waits for its next slot and an interval schedule runs now.
    A `last_run` in the future (the clock went back) counts as "just now".
    """
    if last_run is not None and last_run > now:
        last_run = now
    if isinstance(schedule, Interval):
        if last_run is None:
            return now
        due = last_run + timedelta(seconds=schedule.seconds)
        return max(due, now)
    latest = _latest_slot(schedule, now)
    if last_run is not None and last_run < latest:
        return now  # a slot was missed
    if last_run is None and latest == now:
        return now
    upcoming = latest + timedelta(days=1)
    return upcoming if upcoming > now else now


def group_last_runs(
    schedule: Schedule, last_runs: Mapping[str, datetime | None]
) -> dict[str, datetime | None]:
    """The "last run" of each destination that `next_run` should time it from.

    An interval is between two backups of *every* destination: they are all timed from the
    one that ran longest ago, so they fall due together (one run each, in turn, with one
    Immich dump for all). Timed each from its own last run they would drift apart by the
    length of the runs before them. A destination that never ran stays None (due at once);
    a daily schedule's slots already line them up, so it keeps each one's own."""
    if not isinstance(schedule, Interval):
        return dict(last_runs)
    ran = [moment for moment in last_runs.values() if moment is not None]
    oldest = min(ran) if ran else None
    return {name: oldest if last is not None else None for name, last in last_runs.items()}


def seconds_until(due: datetime, now: datetime) -> float:
    return max(0.0, (due - now).total_seconds())
