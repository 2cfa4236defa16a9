"""BACKUP_BWLIMIT timetables: which rate applies at a given moment. Pure: no clock, no I/O.

rclone's `core/bwlimit` remote-control call takes a single rate, not a timetable, and a
timetable given on rclone's command line keeps overriding whatever `core/bwlimit` set at the
next slot. So the daemon gives each sync the rate of the current slot and moves rclone to
the next slot's rate itself (and to a new timetable after SIGHUP), through `core/bwlimit`.
"""

from __future__ import annotations

from datetime import datetime

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

#: What rclone calls "no limit".
UNLIMITED = "off"


def is_timetable(value: str | None) -> bool:
    """True for "08:00,2M 23:00,off"-style values; False for a single rate or None."""
    return bool(value) and "," in (value or "")


def _slots(value: str) -> list[tuple[int, str]]:
    """(minute of the week, rate) of every slot; day-less slots repeat on every day."""
    slots: list[tuple[int, str]] = []
    for entry in value.split():
        when, rate = entry.split(",", 1)
        day: int | None = None
        if "-" in when:
            day_name, when = when.split("-", 1)
            day = _DAYS.index(day_name[:3].lower())
        hours, minutes = (int(part) for part in when.split(":"))
        minute = hours * 60 + minutes
        for weekday in range(7) if day is None else (day,):
            slots.append((weekday * 24 * 60 + minute, rate))
    slots.sort(key=lambda slot: slot[0])
    return slots


def rate_at(value: str | None, moment: datetime) -> str:
    """The rate in force at `moment` (local wall-clock time of `moment`): "off" when unset.

    Like rclone: the latest slot at or before `moment` in the week applies; before the
    week's first slot, the week's last slot still does.
    """
    if not value:
        return UNLIMITED
    if not is_timetable(value):
        return value
    slots = _slots(value)
    now = moment.weekday() * 24 * 60 + moment.hour * 60 + moment.minute
    current = slots[-1][1]
    for minute, rate in slots:
        if minute <= now:
            current = rate
        else:
            break
    return current


def seconds_to_next_minute(moment: datetime) -> float:
    """Slots start on whole minutes: how long until the next one."""
    return max(0.05, 60.0 - moment.second - moment.microsecond / 1e6)
