"""BACKUP_VERIFY_SCHEDULE in the daemon: run `verify` for each destination when it is due.

Same syntax and catch-up rules as BACKUP_SCHEDULE (photos_sync.core.schedule). "Last verify" of a
destination is the latest of its last stored verify (DB, `verify_runs`) and when this
scheduler last started one. Backups come first: a verify starts only while the run queue is
idle, and a backup that is about to start cancels the verify in progress (its rclone is
stopped; the verify is due again once the queue is idle).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import TYPE_CHECKING

from photos_sync.core.schedule import Schedule, next_run, seconds_until
from photos_sync.engine.destination import DestinationContext
from photos_sync.engine.verify import VerifyReport, verify
from photos_sync.reporting.notify import notify_verify
from photos_sync.storage.store import Destination, RestoreAndVerifyStore, from_iso
from photos_sync.system.logs import get_logger

from .scheduler import MAX_SLEEP, PeriodicScheduler, _now

if TYPE_CHECKING:
    from .app import Daemon

log = get_logger("photos_sync.daemon.verify")

#: How soon to look again when a verify is due but backups are running.
BUSY_RETRY = 5.0


class VerifyScheduler(PeriodicScheduler):
    def __init__(self, daemon: Daemon) -> None:
        super().__init__(daemon)
        self._started_at: dict[str, datetime] = {}
        self._current: asyncio.Task[VerifyReport] | None = None

    @property
    def schedule(self) -> Schedule | None:
        return self.daemon.settings.verify_schedule

    async def yield_to_backup(self) -> None:
        """Cancel the verify in progress (if any) so a backup can take the destination."""
        task = self._current
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])

    def _queue_busy(self) -> bool:
        queue = self.daemon.queue
        return queue.current is not None or bool(queue.pending())

    async def _last_verify(self, destination: Destination) -> datetime | None:
        moments = []
        last = await RestoreAndVerifyStore(self.daemon.store).last_verify(destination.id)
        if last is not None:
            started = from_iso(last["started_at"])
            if started is not None:
                moments.append(started)
        if destination.name in self._started_at:
            moments.append(self._started_at[destination.name])
        return max(moments) if moments else None

    async def _tick(self) -> float | None:
        """Run what is due (one destination after another); return how long to sleep."""
        schedule = self.daemon.settings.verify_schedule
        if schedule is None:
            self._next.clear()
            return None
        now = _now()
        soonest: float = MAX_SLEEP
        self._next = {}
        for destination in await self.daemon.store.list_destinations():
            due = next_run(schedule, await self._last_verify(destination), now)
            if due <= now:
                if self._queue_busy():
                    self._next[destination.name] = now
                    soonest = min(soonest, BUSY_RETRY)
                    continue
                await self._verify(destination.name, now)
                now = _now()
                due = next_run(schedule, await self._last_verify(destination), now)
            self._next[destination.name] = due
            soonest = min(soonest, seconds_until(due, now))
        return max(0.05, soonest)

    async def _verify(self, name: str, now: datetime) -> None:
        self._started_at[name] = now
        destinations = DestinationContext(self.daemon.settings, self.daemon.store)
        task: asyncio.Task[VerifyReport] = asyncio.create_task(
            verify(destinations, name), name="verify"
        )
        self._current = task
        log.info("scheduled_verify_started", destination=name)
        try:
            await asyncio.wait([task])
        except asyncio.CancelledError:  # the daemon is stopping
            task.cancel()
            await asyncio.wait([task])
            raise
        finally:
            self._current = None
        if task.cancelled():
            self._started_at.pop(name, None)  # due again once the backup is over
            log.info("scheduled_verify_postponed", destination=name, reason="a backup started")
            return
        error = task.exception()
        if error is not None:
            log.warning("scheduled_verify_failed", destination=name, error=str(error))
            return
        report = task.result()
        log.info("scheduled_verify_finished", destination=name, **report.figures())
        await notify_verify(self.daemon.settings, report.as_dict())
