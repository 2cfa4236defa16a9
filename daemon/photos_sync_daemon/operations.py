"""The daemon's operations hooks: notifications, metrics (HTTP and textfile), live bandwidth.

- Every run goes through `Operations.run`: its events also feed the notifiers
  (photos_sync.reporting.notify), the runner gets an rclone remote-control address, and the metrics
  textfile is rewritten when it ends.
- Bandwidth: rclone's `core/bwlimit` takes one rate, and a timetable given to rclone would
  override it again at its next slot, so the daemon gives rclone the current slot's rate and
  moves it along the BACKUP_BWLIMIT timetable itself (a check each minute), and at once
  after SIGHUP (`reloaded`). A failed rc call is logged; the run goes on.
- BACKUP_METRICS_ADDR: a small HTTP server answering GET /metrics (metrics_server.py; the
  daemon's app starts it beside these hooks).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from photos_sync.core import bandwidth
from photos_sync.core.config import Settings
from photos_sync.core.events import ProgressSink, RunRequest, RunResult
from photos_sync.engine.reported_run import reported_run
from photos_sync.engine.runner import Runner
from photos_sync.rclone import rc as rclone_rc
from photos_sync.reporting.notify import notify_stale
from photos_sync.storage.store import Store
from photos_sync.system.logs import get_logger

log = get_logger("photos_sync.daemon.operations")


#: Tries of an rc call (rclone may be between jobs, or not yet listening).
RC_ATTEMPTS = 6


def _now() -> datetime:
    return datetime.now().astimezone()


class Operations:
    """`settings` gives the settings in force (they change on SIGHUP); rclone's remote-control
    socket is made in `rc_dir` (the daemon's socket folder)."""

    def __init__(self, settings: Callable[[], Settings], store: Store, rc_dir: Path) -> None:
        self._settings = settings
        self._store = store
        self.runner: Runner | None = None
        self.rc = rclone_rc.new_server(rc_dir / "rclone-rc.sock")
        #: The rate last given to rclone, and rclone's own answer to core/bwlimit.
        self.applied_rate: str | None = None
        self.rclone_bwlimit: dict[str, Any] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- life cycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Start the bandwidth timetable ticker."""
        self._ticker = asyncio.create_task(self._tick(), name="bwlimit-timetable")

    async def stop(self) -> None:
        """Stop the ticker; give notifications still being sent up to 5 s."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5)

    # -- runs ----------------------------------------------------------------------------------

    async def run(
        self,
        request: RunRequest,
        sink: ProgressSink,
        make_runner: Callable[[ProgressSink], Runner],
    ) -> RunResult:
        settings = self._settings()
        socket_file = rclone_rc.socket_file(self.rc)
        if socket_file is not None:
            with contextlib.suppress(OSError):
                socket_file.unlink()  # left by an rclone that was killed
        try:
            async with reported_run(settings, self._store, request, sink) as watched:
                runner = make_runner(watched)
                runner.rc = self.rc
                rate = bandwidth.rate_at(settings.bwlimit, _now())
                runner.settings = dataclasses.replace(
                    runner.settings, bwlimit=None if rate == bandwidth.UNLIMITED else rate
                )
                self.applied_rate = rate
                self.rclone_bwlimit = None
                self.runner = runner
                return await runner.run(request)
        finally:
            self.runner = None

    def stale_job(self, destination: str, folder: str, pid: int | None, silent: float) -> None:
        """Tell the notifiers about a RUNNING job whose owner has gone silent."""
        task = asyncio.get_running_loop().create_task(
            notify_stale(self._settings(), destination, folder, pid, silent)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- bandwidth -------------------------------------------------------------------------------

    def reloaded(self) -> None:
        """After SIGHUP: apply the (new) BACKUP_BWLIMIT to the run in progress."""
        task = asyncio.get_running_loop().create_task(self.apply_bwlimit(force=True))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def apply_bwlimit(self, *, force: bool = False) -> None:
        """Give the running rclone the rate in force now (if it changed, or `force`)."""
        runner = self.runner
        if runner is None:
            return
        rate = bandwidth.rate_at(self._settings().bwlimit, _now())
        # The next job of this run starts its rclone with the new rate.
        runner.settings = dataclasses.replace(
            runner.settings, bwlimit=None if rate == bandwidth.UNLIMITED else rate
        )
        if rate == self.applied_rate and not force:
            return
        self.applied_rate = rate
        if runner.rclone_pid is None:
            return
        for attempt in range(RC_ATTEMPTS):
            try:
                await rclone_rc.set_bwlimit(self.rc, rate)
                answer = await rclone_rc.get_bwlimit(self.rc)
                break
            except rclone_rc.RcError as exc:  # e.g. an rclone that has not started serving yet
                if attempt + 1 == RC_ATTEMPTS or self.runner is None:
                    log.warning("bwlimit_change_failed", rate=rate, error=str(exc))
                    return
                await asyncio.sleep(0.5)
        self.rclone_bwlimit = answer
        log.info("bwlimit_changed", rate=rate, rclone=answer.get("rate"))

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(bandwidth.seconds_to_next_minute(_now()))
            if bandwidth.is_timetable(self._settings().bwlimit):
                await self.apply_bwlimit()

    def describe(self) -> dict[str, Any]:
        """The bandwidth part of the daemon's status."""
        return {
            "configured": self._settings().bwlimit,
            "applied": self.applied_rate if self.runner is not None else None,
            "rclone": self.rclone_bwlimit,
        }
