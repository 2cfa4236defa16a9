"""The daemon process: lock, socket, start-up recovery, queue, schedule, signals, shutdown.

This module composes the daemon: it alone knows every part (the store, the run queue, the
engine calls, the two schedules, the operations hooks, the metrics endpoint, the RPC handlers
and server) and hands each one the few things it uses; the settings are passed as a getter,
since SIGHUP replaces them. Nothing imports it but the entry point (`photos-sync daemon`).

Life of a daemon:
1. take the data dir's lock (a second daemon exits 1 naming the first one's pid);
2. open the DB, bind the socket (a stale socket file is replaced only if nothing answers);
3. settle RUNNING jobs: those whose owner is gone become INTERRUPTED, those whose owner lives
   are reported and left alone; every destination with unfinished work gets a run queued;
4. tell systemd READY=1 (and ping its watchdog), run the schedule, serve requests;
5. on SIGTERM/SIGINT (or the injectable ShutdownTrigger): stop accepting, cancel the run
   (rclone's process group gets SIGTERM, then SIGKILL after the grace period; the job is saved
   INTERRUPTED), close connections, remove the socket, exit 0 — step by step in
   `Daemon.serve`. SIGHUP reloads the config (`Daemon.reload`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from photos_sync.core.config import DAEMON_SETTINGS, ConfigError, Settings
from photos_sync.core.events import ProgressSink, RunRequest, RunResult
from photos_sync.storage.datadir import DataDirError
from photos_sync.storage.settings_io import load_settings
from photos_sync.storage.store import Store, StoreError
from photos_sync.system.control_socket import socket_location
from photos_sync.system.logs import configure_logging, get_logger

from . import notify, startup
from .engine_calls import EngineCalls
from .handlers import DaemonViews, Handlers
from .lock import AlreadyRunning, DataDirLock
from .metrics_server import MetricsServer, start_metrics_server
from .operations import Operations
from .queue import RunQueue
from .scheduler import Scheduler
from .server import RpcServer, SocketError
from .verify_schedule import VerifyScheduler

log = get_logger("photos_sync.daemon")

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


class _Parts:
    """The daemon's parts while it serves, wired together: each gets what it uses."""

    def __init__(
        self,
        settings: Callable[[], Settings],
        store: Store,
        socket_path: Path,
        started_monotonic: float,
    ) -> None:
        self._settings = settings
        self.store = store
        self.engine = EngineCalls(settings, store)
        #: notifications, metrics textfile and live bandwidth around each run
        self.ops = Operations(settings, store, socket_path.parent)
        self.queue = RunQueue(self._run_one, self.engine.resolve)
        self.scheduler = Scheduler(settings, store, self.queue)
        self.verifier = VerifyScheduler(settings, store, self.queue, self.engine.verify)
        #: RUNNING jobs of another live process, found by start-up recovery.
        self.foreign_jobs: list[dict[str, Any]] = []
        views = DaemonViews(
            socket_path=socket_path,
            started_monotonic=started_monotonic,
            backups=self.scheduler,
            verifies=self.verifier,
            bandwidth=self.ops.describe,
            foreign_jobs=lambda: self.foreign_jobs,
        )
        self.handlers = Handlers(store, self.queue, settings, views)
        self.server = RpcServer(socket_path, self.handlers)
        self.metrics: MetricsServer | None = None
        #: The schedules' loops and the watchdog pings, from `start` until `release`.
        self.background: list[asyncio.Task[None]] = []

    async def _run_one(self, request: RunRequest, sink: ProgressSink) -> RunResult | Any:
        """The queue's worker: a restore, or a backup (a scheduled verify gives way first)."""
        if request.restore is not None:
            notify.status(f"restoring from {request.destination}")
            try:
                return await self.engine.restore(request.restore, sink)
            finally:
                notify.status("idle")
        notify.status(f"backing up to {request.destination}")
        await self.verifier.yield_to_backup()
        try:
            return await self.ops.run(request, sink, self.engine.runner)
        finally:
            notify.status("idle")
            self.scheduler.wake()
            self.verifier.wake()

    async def recover(self) -> list[str]:
        """Settle RUNNING jobs left by a previous process; queue runs for unfinished work."""
        settings = self._settings()
        elsewhere = await startup.settle_running_jobs(self.store, settings, self.ops.stale_job)
        self.foreign_jobs = elsewhere.jobs
        return await startup.resume_unfinished(
            self.store, self.queue, settings, elsewhere.destination_ids
        )

    async def start(self) -> None:
        """After the socket is bound: everything up to READY=1."""
        self.queue.start()
        self.metrics = await start_metrics_server(self._settings, self.store, self.handlers.status)
        self.ops.start()
        await self.recover()
        await self.scheduler.prime()
        self.background = [
            asyncio.create_task(self.scheduler.run(), name="scheduler"),
            asyncio.create_task(self.verifier.run(), name="verify-scheduler"),
            asyncio.create_task(_status_loop(), name="sd-status"),
        ]

    def reloaded(self) -> None:
        """New settings are in force: re-apply the bandwidth, look at the schedules again."""
        self.ops.reloaded()
        self.scheduler.wake()
        self.verifier.wake()

    async def stop_work(self) -> None:
        """Stage one of the shutdown: no new connections; the run stops within the budget."""
        self.server.stop_accepting()
        try:
            await asyncio.wait_for(self.queue.close(), SHUTDOWN_BUDGET)
        except TimeoutError:
            log.error("shutdown_slow", budget=SHUTDOWN_BUDGET)

    async def release(self) -> None:
        """Stage two (also after a failed start): stop the background tasks, the hooks, the
        metrics endpoint and the connections."""
        for task in self.background:
            task.cancel()
        for task in self.background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.ops.stop()
        if self.metrics is not None:
            await self.metrics.close()
        await self.server.close()


async def _status_loop() -> None:
    """Ping systemd's watchdog (when it watches) at least every STATUS_PERIOD."""
    interval = notify.watchdog_interval()
    period = min(STATUS_PERIOD, interval) if interval else STATUS_PERIOD
    while True:
        if interval:
            notify.watchdog()
        await asyncio.sleep(period)


class Daemon:
    """One daemon process: `serve` runs it until `trigger` fires; `reload` (SIGHUP) reads the
    settings again through `reload`."""

    def __init__(
        self,
        settings: Settings,
        *,
        trigger: ShutdownTrigger | None = None,
        reload: Callable[[], Settings] = load_settings,
    ) -> None:
        self.settings = settings
        #: Where the socket is bound: PHOTOS_SYNC_SOCKET, or a private folder inside it when
        #: that is a shared sticky folder such as /tmp (control_socket.socket_location).
        self.socket_path = socket_location(settings.socket_path)
        self.trigger = trigger or ShutdownTrigger()
        self._reload = reload
        self.started_monotonic = time.monotonic()
        self._parts: _Parts | None = None
        #: Set once the socket answers and start-up recovery is done.
        self.ready = asyncio.Event()

    def current_settings(self) -> Settings:
        """The settings in force (what every part is given: SIGHUP replaces them)."""
        return self.settings

    @property
    def scheduler(self) -> Scheduler:
        """The backup schedule (while serving)."""
        if self._parts is None:
            raise RuntimeError("the daemon is not serving")
        return self._parts.scheduler

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
        if self._parts is not None:
            self._parts.reloaded()
        schedule = fresh.schedule
        log.info("config_reloaded", schedule=schedule.describe() if schedule else None)

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.trigger.set, "SIGTERM")
        loop.add_signal_handler(signal.SIGINT, self.trigger.set, "SIGINT")
        loop.add_signal_handler(signal.SIGHUP, self.reload)

    def _remove_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)

    # -- the whole life --------------------------------------------------------------------

    async def serve(self, *, handle_signals: bool = True) -> int:
        """Run until the trigger fires; the data dir lock must already be held. Returns 0.

        Start: open the DB, bind the socket, handle signals, start the run queue, the metrics
        endpoint and the bandwidth ticker, settle what a previous process left (start-up
        recovery, which may queue runs), take the first look at the schedule, start the
        schedules and the watchdog pings, tell systemd READY=1, set `ready`.

        What happens on SIGTERM (likewise SIGINT or `trigger.set()`), in this order:
        1. `daemon_stopping` is logged and systemd hears STOPPING=1;
        2. the socket stops accepting and its file is removed;
        3. the run queue closes: queued runs are dropped, the run in progress is cancelled
           (its rclone's process group gets SIGTERM, then SIGKILL after the grace period; its
           job is saved INTERRUPTED). Steps 2-3 may take SHUTDOWN_BUDGET seconds; then the
           wait is cancelled and `shutdown_slow` logged;
        4. the schedules and the watchdog pings are cancelled (a scheduled verify in progress
           stops with its rclone);
        5. the bandwidth ticker stops, notifications being sent get up to 5 s, the metrics
           endpoint closes;
        6. the open connections are dropped (2 s at most), the signal handlers removed, the
           DB closed, `daemon_stopped` logged; this returns 0 and `main` releases the lock.
        Steps 4-6 also run when the start fails (e.g. the socket is in use: SocketError).
        """
        store = await Store.open(self.settings.db_path)
        parts = _Parts(self.current_settings, store, self.socket_path, self.started_monotonic)
        self._parts = parts
        try:
            await parts.server.start()
            if handle_signals:
                self._install_signals()
            await parts.start()
            notify.ready(f"idle; socket {self.socket_path}")
            log.info("daemon_ready", socket=str(self.socket_path))
            self.ready.set()
            reason = await self.trigger.wait()
            log.info("daemon_stopping", reason=reason)
            notify.stopping(f"stopping ({reason})")
            await parts.stop_work()
        finally:
            await parts.release()
            if handle_signals:
                with contextlib.suppress(Exception):
                    self._remove_signals()
            await store.close()
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
