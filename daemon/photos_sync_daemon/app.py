"""The daemon process: lock, socket, start-up recovery, queue, schedule, signals, shutdown.

Life of a daemon:
1. take the data dir's lock (a second daemon exits 1 naming the first one's pid);
2. open the DB, bind the socket (a stale socket file is replaced only if nothing answers);
3. settle RUNNING jobs: those whose owner is gone become INTERRUPTED, those whose owner lives
   are reported and left alone; every destination with unfinished work gets a run queued;
4. tell systemd READY=1 (and ping its watchdog), run the schedule, serve requests;
5. on SIGTERM/SIGINT (or the injectable ShutdownTrigger): stop accepting, cancel the run
   (rclone's process group gets SIGTERM, then SIGKILL after the grace period; the job is saved
   INTERRUPTED), close connections, remove the socket, exit 0. SIGHUP reloads the config.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
import sys
import time
from typing import Any

from photos_sync.core.config import DAEMON_SETTINGS, ConfigError, Settings
from photos_sync.core.states import JobStatus, Staleness, is_resumable, stale_threshold
from photos_sync.engine.destination import DestinationContext
from photos_sync.engine.runner import ProgressSink, Runner, RunRequest, RunResult
from photos_sync.storage.datadir import DataDirError
from photos_sync.storage.settings_io import load_settings
from photos_sync.storage.store import Store, StoreError
from photos_sync.system import procinfo
from photos_sync.system.control_socket import socket_location
from photos_sync.system.logs import configure_logging, get_logger

from . import notify
from .handlers import Handlers
from .lock import AlreadyRunning, DataDirLock
from .operations import Operations
from .queue import RunQueue
from .scheduler import Scheduler
from .server import RpcServer, SocketError
from .verify_schedule import VerifyScheduler

log = get_logger("photos_sync.daemon")

#: rclone's stats period while the daemon runs it (what subscribers and `status` see).
LIVE_INTERVAL = 1.0
#: Longest time the shutdown may spend stopping the run (systemd's default stop timeout is 90 s;
#: the promise is 10 s in all).
SHUTDOWN_BUDGET = 8.0
#: How often STATUS= is refreshed for systemd.
STATUS_PERIOD = 10.0


class ShutdownTrigger:
    """Ask the daemon to stop: signals call `set`, and so may tests or an embedding program."""

    def __init__(self) -> None:
        self._event: asyncio.Event | None = None
        self._reason = "requested"
        self._pending = False

    def set(self, reason: str = "requested") -> None:
        self._reason = reason
        if self._event is None:
            self._pending = True
        else:
            self._event.set()

    async def wait(self) -> str:
        if self._event is None:
            self._event = asyncio.Event()
            if self._pending:
                self._event.set()
        await self._event.wait()
        return self._reason


class Daemon:
    def __init__(
        self,
        settings: Settings,
        *,
        trigger: ShutdownTrigger | None = None,
        reload: Any = load_settings,
    ) -> None:
        self.settings = settings
        #: Where the socket is bound: PHOTOS_SYNC_SOCKET, or a private folder inside it when
        #: that is a shared sticky folder such as /tmp (control_socket.socket_location).
        self.socket_path = socket_location(settings.socket_path)
        self.trigger = trigger or ShutdownTrigger()
        self._reload = reload
        self.started_monotonic = time.monotonic()
        self.store: Store = None  # type: ignore[assignment]  # set in serve()
        self.queue = RunQueue(self._run_one, self._resolve)
        self.scheduler = Scheduler(self)
        self.verifier = VerifyScheduler(self)
        #: notifications, metrics and live bandwidth (daemon/operations.py)
        self.ops = Operations(self)
        self.foreign_jobs: list[dict[str, Any]] = []
        self._tasks: list[asyncio.Task[None]] = []
        #: Set once the socket answers and start-up recovery is done.
        self.ready = asyncio.Event()

    # -- hooks for the queue ---------------------------------------------------------------

    def _runner(self, sink: ProgressSink | None = None) -> Runner:
        if sink is None:
            return Runner(self.settings, self.store)
        return Runner(self.settings, self.store, sink=sink, live_interval=LIVE_INTERVAL)

    async def _resolve(self, name: str | None) -> str:
        return (await DestinationContext(self.settings, self.store).resolve(name)).name

    async def _run_one(self, request: RunRequest, sink: ProgressSink) -> RunResult | Any:
        if request.restore is not None:
            from photos_sync.engine.restore import Restorer

            notify.status(f"restoring from {request.destination}")
            try:
                destinations = DestinationContext(self.settings, self.store)
                restorer = Restorer(destinations, sink, live_interval=LIVE_INTERVAL)
                return await restorer.run(request.restore)
            finally:
                notify.status("idle")
        notify.status(f"backing up to {request.destination}")
        await self.verifier.yield_to_backup()
        try:
            return await self.ops.run(request, sink, self._runner)
        finally:
            notify.status("idle")
            self.scheduler.wake()
            self.verifier.wake()

    # -- start-up --------------------------------------------------------------------------

    async def recover(self) -> list[str]:
        """Settle RUNNING jobs left by a previous process; queue runs for unfinished work."""
        threshold = stale_threshold(self.settings.stats_interval)
        busy_elsewhere: set[int] = set()
        self.foreign_jobs = []
        for job in await self.store.jobs_with_status(JobStatus.RUNNING):
            verdict, silence = procinfo.job_staleness(job, threshold)
            if verdict is Staleness.ORPHANED:
                await self.store.mark_interrupted(job.id, "the process running it stopped")
                log.info("job_orphaned", job_id=job.id, folder=job.folder, pid=job.owner_pid)
                continue
            busy_elsewhere.add(job.destination_id)
            if verdict is Staleness.STALE:
                self.ops.stale_job(
                    await self._destination_name(job.destination_id),
                    job.folder,
                    job.owner_pid,
                    silence,
                )
            self.foreign_jobs.append(
                {
                    "job_id": job.id,
                    "folder": job.folder,
                    "owner_pid": job.owner_pid,
                    "owner_host": job.owner_host,
                    "stale": verdict is Staleness.STALE,
                    "silent_seconds": round(silence, 1),
                }
            )
            log.warning(
                "job_running_elsewhere",
                job_id=job.id,
                pid=job.owner_pid,
                host=job.owner_host,
                stale=verdict is Staleness.STALE,
            )
        resumed = []
        for destination in await self.store.list_destinations():
            if destination.id in busy_elsewhere:
                continue
            jobs = await self.store.latest_run_jobs(destination.id)
            if any(
                is_resumable(j.status, j.retry_count, self.settings.max_retries, j.refused)
                for j in jobs
            ):
                resumed.append(destination.name)
        # queued together: one Immich dump for those whose resumed run still has backups/ to do
        for entry in await self.queue.submit_each(resumed, reason="resume"):
            if "error" in entry:
                log.warning(
                    "run_resume_refused", destination=entry["destination"], error=entry["error"]
                )
            else:
                log.info("run_resumed", destination=entry["run"]["destination"])
        return resumed

    async def _destination_name(self, destination_id: int) -> str:
        for destination in await self.store.list_destinations():
            if destination.id == destination_id:
                return destination.name
        return str(destination_id)

    # -- signals ---------------------------------------------------------------------------

    def reload(self) -> None:
        """SIGHUP: read the config again; paths that need a restart keep their old values."""
        try:
            fresh = self._reload()
            fresh.require(DAEMON_SETTINGS)
        except ConfigError as exc:
            log.error("reload_failed", error=str(exc))
            return
        for notice in fresh.notices:
            log.warning("config_notice", notice=notice)
        if (fresh.data_dir, fresh.socket_path) != (
            self.settings.data_dir,
            self.settings.socket_path,
        ):
            log.warning("reload_paths_ignored", reason="the data dir and socket need a restart")
            fresh = dataclasses.replace(
                fresh, data_dir=self.settings.data_dir, socket_path=self.settings.socket_path
            )
        self.settings = fresh
        self.ops.reloaded()
        self.scheduler.wake()
        self.verifier.wake()
        log.info("config_reloaded", schedule=self.scheduler.describe())

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.trigger.set, "SIGTERM")
        loop.add_signal_handler(signal.SIGINT, self.trigger.set, "SIGINT")
        loop.add_signal_handler(signal.SIGHUP, self.reload)

    def _remove_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)

    async def _status_loop(self) -> None:
        interval = notify.watchdog_interval()
        period = min(STATUS_PERIOD, interval) if interval else STATUS_PERIOD
        while True:
            if interval:
                notify.watchdog()
            await asyncio.sleep(period)

    # -- the whole life --------------------------------------------------------------------

    async def serve(self, *, handle_signals: bool = True) -> int:
        """Run until the trigger fires; the data dir lock must already be held. Returns 0."""
        self.store = await Store.open(self.settings.db_path)
        server = RpcServer(self.socket_path, Handlers(self))
        try:
            await server.start()
            if handle_signals:
                self._install_signals()
            self.queue.start()
            await self.ops.start()
            await self.recover()
            await self.scheduler.prime()
            self._tasks = [
                asyncio.create_task(self.scheduler.run(), name="scheduler"),
                asyncio.create_task(self.verifier.run(), name="verify-scheduler"),
                asyncio.create_task(self._status_loop(), name="sd-status"),
            ]
            notify.ready(f"idle; socket {self.socket_path}")
            log.info("daemon_ready", socket=str(self.socket_path))
            self.ready.set()
            reason = await self.trigger.wait()
            log.info("daemon_stopping", reason=reason)
            notify.stopping(f"stopping ({reason})")
            server.stop_accepting()
            try:
                await asyncio.wait_for(self.queue.close(), SHUTDOWN_BUDGET)
            except TimeoutError:
                log.error("shutdown_slow", budget=SHUTDOWN_BUDGET)
        finally:
            for task in self._tasks:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self.ops.stop()
            await server.close()
            if handle_signals:
                with contextlib.suppress(Exception):
                    self._remove_signals()
            await self.store.close()
        log.info("daemon_stopped")
        return 0


def main(settings: Settings, *, trigger: ShutdownTrigger | None = None) -> int:
    """`photos-sync daemon`: run in the foreground until SIGTERM/SIGINT. Returns the exit code."""
    lock = DataDirLock(settings.data_dir)
    try:
        lock.acquire()
    except AlreadyRunning as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    except DataDirError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    except OSError as exc:
        sys.stderr.write(f"error: cannot lock the data dir {settings.data_dir}: {exc.strerror}\n")
        return 1
    try:
        configure_logging(settings.log_path, to_stderr=True)
        daemon = Daemon(settings, trigger=trigger)
        try:
            return asyncio.run(daemon.serve())
        except (SocketError, StoreError) as exc:
            sys.stderr.write(f"error: {exc}\n")
            return 1
    finally:
        lock.release()
