"""BACKUP_SCHEDULE in the daemon: queue a run for each destination when it is due.

"Last run" of a destination is the latest of: when its latest run was created (DB), its last
complete backup, and when this scheduler last queued it (so a refused or resumed run does not
fire again at once). Destinations due at the same look are queued together, one run each in
turn, sharing one fresh Immich dump (RunQueue.submit_each). Pure timing lives in
photos_sync.core.schedule.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from photos_sync.core.config import Settings
from photos_sync.core.records import Destination, to_iso
from photos_sync.core.schedule import Schedule, group_last_runs, next_run, seconds_until
from photos_sync.storage.store import Store
from photos_sync.system.logs import get_logger
from photos_sync.system.service import last_recorded_run

log = get_logger("photos_sync.daemon.scheduler")

#: Longest sleep between two looks at the clock (so clock jumps and suspends are noticed).
MAX_SLEEP = 60.0


def local_now() -> datetime:
    """Now, in the local time zone (schedules are local wall-clock times)."""
    return datetime.now().astimezone()


class RunSubmitter(Protocol):
    """What the scheduler needs of the run queue (RunQueue.submit_each)."""

    async def submit_each(
        self, destinations: Sequence[str], *, reason: str = ...
    ) -> list[dict[str, Any]]: ...


class PeriodicScheduler:
    """The loop shared by the backup and verify schedules: each `_tick` does what is due and
    says how long to sleep; `wake` makes it look again at once (config reloaded, a run
    ended). `settings` gives the settings in force (they change on SIGHUP)."""

    def __init__(self, settings: Callable[[], Settings], store: Store) -> None:
        self._settings = settings
        self._store = store
        self._wake = asyncio.Event()
        self._next: dict[str, datetime] = {}
        #: Set by `prime`: the first tick is done, `run` sleeps this long before the next.
        self._primed = False
        self._first_delay: float | None = None

    @property
    def schedule(self) -> Schedule | None:
        raise NotImplementedError

    def describe(self) -> str | None:
        schedule = self.schedule
        return schedule.describe() if schedule is not None else None

    def next_runs(self) -> dict[str, str]:
        """Destination name -> when it is next due (ISO, UTC)."""
        if self.schedule is None:
            return {}
        return {name: to_iso(moment) for name, moment in sorted(self._next.items())}

    def wake(self) -> None:
        self._wake.set()

    async def prime(self) -> None:
        """The first look at the schedule, before the daemon says it is ready: a `status`
        right after start-up then already shows the next runs. `run` starts from it."""
        self._first_delay = await self._tick()
        self._primed = True

    async def run(self) -> None:
        delay = self._first_delay if self._primed else await self._tick()
        self._primed = False
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            self._wake.clear()
            delay = await self._tick()

    async def _tick(self) -> float | None:
        """Do what is due; return how long to sleep (None: until woken)."""
        raise NotImplementedError


class Scheduler(PeriodicScheduler):
    def __init__(self, settings: Callable[[], Settings], store: Store, queue: RunSubmitter) -> None:
        super().__init__(settings, store)
        self._queue = queue
        self._queued_at: dict[str, datetime] = {}

    @property
    def schedule(self) -> Schedule | None:
        return self._settings().schedule

    async def _last_run(self, destination: Destination) -> datetime | None:
        # The DB's part is shared with `--install` and `--check`, which announce the next run.
        recorded = await last_recorded_run(self._store, destination)
        moments = [recorded] if recorded is not None else []
        if destination.name in self._queued_at:
            moments.append(self._queued_at[destination.name])
        return max(moments) if moments else None

    async def _tick(self) -> float | None:
        """Queue what is due; return how long to sleep (None: until woken)."""
        schedule = self.schedule
        if schedule is None:
            self._next.clear()
            return None
        now = local_now()
        destinations = await self._store.list_destinations()
        self._next = {}
        soonest: float = MAX_SLEEP
        lasts = group_last_runs(schedule, {d.name: await self._last_run(d) for d in destinations})
        due_now = []
        for destination in destinations:
            due = next_run(schedule, lasts[destination.name], now)
            if due <= now:
                self._queued_at[destination.name] = now
                due_now.append(destination.name)
                due = next_run(schedule, now, now)
            self._next[destination.name] = due
            soonest = min(soonest, seconds_until(due, now))
        if due_now:
            await self._queue_due(due_now)
        return max(0.05, soonest)

    async def _queue_due(self, names: list[str]) -> None:
        """Destinations due together are queued together: one run each, in turn, and one
        fresh Immich dump for all of them."""
        for entry in await self._queue.submit_each(names, reason="schedule"):
            if "error" in entry:
                log.warning(
                    "scheduled_run_refused", destination=entry["destination"], error=entry["error"]
                )
            else:
                run = entry["run"]
                log.info(
                    "scheduled_run",
                    destination=run["destination"],
                    run=run["id"],
                    already=entry["already_running"],
                )
