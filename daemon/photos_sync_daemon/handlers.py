"""The JSON-RPC methods (see photos_sync.core.rpc for their params and results).

The handlers get the parts they answer from: the store, the run queue, the settings in force,
and narrow views of the rest (the two schedules, the bandwidth figures, the jobs another
process runs); the daemon's app wires them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from photos_sync import __version__
from photos_sync.core import rpc
from photos_sync.core.config import Settings
from photos_sync.core.states import JobStatus
from photos_sync.reporting.status import gather_status
from photos_sync.storage.store import Store, StoreError

from .queue import RunEnd, RunQueue, Subscription
from .server import NO_REPLY, Connection, NoReply

#: Fields of a RUNNING job that the live figures replace in `status`.
_LIVE_FIELDS = {
    "bytes_done": "bytes_transferred",
    "bytes_total": "bytes_total",
    "files_done": "files_transferred",
    "files_total": "files_total",
    "speed": "transfer_speed",
    "eta": "eta_seconds",
}


class ScheduleView(Protocol):
    """What `status` shows of a schedule, and how `remove` makes it look again."""

    def describe(self) -> str | None: ...

    def next_runs(self) -> dict[str, str]: ...

    def wake(self) -> None: ...


@dataclass(frozen=True)
class DaemonViews:
    """The parts of the daemon's state that `status` reports beside the store and the queue."""

    socket_path: Path
    #: time.monotonic() when the daemon started (`uptime`).
    started_monotonic: float
    backups: ScheduleView
    verifies: ScheduleView
    #: The bandwidth part of `status` (Operations.describe).
    bandwidth: Callable[[], dict[str, Any]]
    #: RUNNING jobs owned by another live process, as start-up recovery found them.
    foreign_jobs: Callable[[], list[dict[str, Any]]]


class Handlers:
    def __init__(
        self,
        store: Store,
        queue: RunQueue,
        settings: Callable[[], Settings],
        views: DaemonViews,
    ) -> None:
        self._store = store
        self._queue = queue
        self._settings = settings
        self._views = views
        self._methods: dict[str, Callable[..., Any]] = {
            "ping": self.ping,
            "status": self.status,
            "start": self.start,
            "cancel": self.cancel,
            "reset": self.reset,
            "subscribe": self.subscribe,
            "restore": self.restore,
            "remove": self.remove,
        }

    async def __call__(self, request: rpc.Request, connection: Connection) -> Any:
        method = self._methods.get(request.method)
        if method is None:  # decode_request already refuses unknown names
            raise rpc.RpcError(rpc.METHOD_NOT_FOUND, f"unknown method {request.method!r}")
        if request.method == "subscribe":
            return await self.subscribe(connection, request, **request.params)
        return await method(**request.params)

    async def ping(self) -> dict[str, Any]:
        return {
            "version": __version__,
            "pid": os.getpid(),
            "uptime": round(time.monotonic() - self._views.started_monotonic, 3),
        }

    async def status(self) -> dict[str, Any]:
        """The status document (photos_sync.reporting.status), the running jobs' figures
        replaced by the live ones, and the daemon's own part under "daemon"."""
        document = await gather_status(self._settings(), self._store)
        _overlay_live(document["jobs"], self._queue.live)
        queue, views = self._queue, self._views
        document["daemon"] = {
            **(await self.ping()),
            "socket": str(views.socket_path),
            "run": _info(queue.current),
            "queue": [i.as_dict() for i in queue.pending()],
            "last_run": queue.last_end.as_dict() if queue.last_end else None,
            "schedule": views.backups.describe(),
            "next_run": views.backups.next_runs(),
            "verify_schedule": views.verifies.describe(),
            "next_verify": views.verifies.next_runs(),
            "foreign_jobs": views.foreign_jobs(),
            "bandwidth": views.bandwidth(),
        }
        return document

    async def start(
        self,
        destination: str | None = None,
        dry_run: bool = False,
        force: bool = False,
        full: bool = False,
    ) -> dict[str, Any]:
        """Queue a backup requested by a client (`full`: `backup --full`; the scheduler's
        and the start-up resume's runs never are, the manifest decides for them)."""
        if destination is None:
            names = [d.name for d in await self._store.list_destinations()]
            if len(names) > 1:  # no --to: each destination in turn, one Immich dump for all
                runs = await self._queue.submit_each(
                    names, dry_run=dry_run, force=force, full=full, reason="request"
                )
                return {"runs": runs}
        info, already, queued = await self._queue.submit(
            destination, dry_run=dry_run, force=force, full=full, reason="request"
        )
        return {"run": info.as_dict(), "already_running": already, "queued": queued}

    async def remove(self, destination: str | None = None) -> dict[str, Any]:
        """Forget a destination (not its data), unless a run uses it."""
        from photos_sync.core.events import RunRefused, UsageProblem
        from photos_sync.engine.removal import remove_destination

        if not destination:
            raise rpc.RpcError(rpc.INVALID_PARAMS, "remove: 'destination' is required")

        async def remove() -> int:
            return await remove_destination(self._settings(), self._store, destination)

        try:
            removed = await self._queue.while_idle_for(destination, remove, "remove it")
        except UsageProblem as exc:
            raise rpc.RpcError(rpc.USAGE, str(exc)) from None
        except RunRefused as exc:
            raise rpc.RpcError(rpc.BUSY, str(exc)) from None
        except StoreError as exc:
            raise rpc.RpcError(rpc.INTERNAL_ERROR, str(exc)) from None
        self._views.backups.wake()  # its next run and next verify leave `status`
        self._views.verifies.wake()
        return {"removed_jobs": removed}

    async def restore(
        self,
        to: str | None = None,
        destination: str | None = None,
        path: str = "",
        mode: str = "current",
        as_of: str | None = None,
        overwrite: bool = False,
        dry_run: bool = False,
        user: str | None = None,
        album: str | None = None,
        person: str | None = None,
        taken: str | None = None,
        immich: bool = False,
        from_versions: bool = False,
    ) -> dict[str, Any]:
        from photos_sync.core.events import MODES, RestoreRequest
        from photos_sync.core.immich_select import parse_criteria

        if not to:
            raise rpc.RpcError(rpc.INVALID_PARAMS, "restore: 'to' (the target folder) is required")
        if mode not in MODES:
            raise rpc.RpcError(rpc.INVALID_PARAMS, f"restore: mode must be one of {MODES}")
        moment = None
        if mode == "as-of":
            try:
                moment = datetime.fromisoformat(as_of or "")
            except ValueError:
                raise rpc.RpcError(
                    rpc.INVALID_PARAMS, "restore: as_of must be an ISO time with as-of mode"
                ) from None
            if moment.tzinfo is None:
                moment = moment.astimezone()
        try:
            criteria = parse_criteria(user, album, person, taken)
        except ValueError as exc:
            raise rpc.RpcError(rpc.INVALID_PARAMS, f"restore: {exc}") from None
        request = RestoreRequest(
            destination,
            Path(to),
            path,
            mode,
            moment,
            overwrite,
            dry_run,
            selection=None if criteria.empty else criteria,
            immich=immich,
            from_versions=from_versions,
        )
        info, already, queued = await self._queue.submit(
            destination, dry_run=dry_run, reason="restore", restore=request
        )
        return {"run": info.as_dict(), "already_running": already, "queued": queued}

    async def cancel(self) -> dict[str, Any]:
        info = await self._queue.cancel()
        return {"cancelled": info is not None, "run": _info(info)}

    async def reset(self, destination: str | None = None) -> dict[str, Any]:
        busy = self._queue.busy_with(destination)
        if busy is not None:
            raise rpc.RpcError(
                rpc.BUSY,
                f"a backup to {busy.destination!r} is running: cancel it (or let it end) "
                "before --reset",
            )
        from photos_sync.core.events import RunRefused, UsageProblem
        from photos_sync.engine.maintenance import reset_jobs

        try:
            removed = await reset_jobs(self._settings(), self._store, destination)
        except UsageProblem as exc:
            raise rpc.RpcError(rpc.USAGE, str(exc)) from None
        except RunRefused as exc:
            raise rpc.RpcError(rpc.BUSY, str(exc)) from None
        except StoreError as exc:
            raise rpc.RpcError(rpc.INTERNAL_ERROR, str(exc)) from None
        return {"removed": removed}

    async def subscribe(
        self,
        connection: Connection,
        request: rpc.Request,
        run: int | None = None,
        wait: bool = False,
    ) -> NoReply:
        """Reply at once, then stream `progress` notifications and a final `run_ended`.

        While it waits for a run to start, the subscription holds the connection: the client
        closing it ends the wait at once (a vanished watcher must not keep one of the daemon's
        connections busy until the next run), and what the client sends meanwhile is ignored.
        """
        queue = self._queue
        if not queue.would_wait(run, wait):
            found = await queue.subscribe(run, wait)
        else:
            waited = await self._wait_unless_hangup(connection, run, wait)
            if isinstance(waited, NoReply):
                return waited  # the client is gone
            found = waited
        if not isinstance(found, Subscription):
            ended = found.as_dict() if isinstance(found, RunEnd) else None
            run_info = found.run.as_dict() if isinstance(found, RunEnd) else None
            if not request.is_notification:
                await connection.send(rpc.response(request.id, {"run": run_info, "ended": ended}))
            return NO_REPLY
        try:
            if not request.is_notification:
                await connection.send(
                    rpc.response(request.id, {"run": found.entry.info.as_dict(), "ended": None})
                )
            await _stream(found, connection)
        finally:
            queue.unsubscribe(found)
        return NO_REPLY

    async def _wait_unless_hangup(
        self, connection: Connection, run: int | None, wait: bool
    ) -> Subscription | RunEnd | NoReply | None:
        """`queue.subscribe(run, wait)`, or NO_REPLY when the client hangs up first (or at the
        moment the run started: its subscription is dropped)."""
        queue = self._queue
        waiting = asyncio.create_task(queue.subscribe(run, wait))
        hangup = asyncio.create_task(connection.wait_hangup())
        try:
            await asyncio.wait({waiting, hangup}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            hangup.cancel()
            if not waiting.done():
                waiting.cancel()
            await asyncio.gather(waiting, hangup, return_exceptions=True)
        if waiting.cancelled():
            return NO_REPLY
        found = waiting.result()
        if hangup.done() and not hangup.cancelled() and isinstance(found, Subscription):
            queue.unsubscribe(found)
            return NO_REPLY
        return found


async def _stream(subscription: Subscription, connection: Connection) -> None:
    """Send the run's events as `progress` notifications until its `run_ended`."""
    while True:
        item = await subscription.next()
        if isinstance(item, RunEnd):
            await connection.send(rpc.notification("run_ended", item.as_dict()))
            return
        with contextlib.suppress(rpc.RpcError):  # an event too big to send is skipped
            await connection.send(rpc.notification("progress", item))


def _overlay_live(jobs: list[dict[str, Any]], live: dict[int, dict[str, Any]]) -> None:
    """Give each RUNNING job of `jobs` the run's latest figures for it (marked "live")."""
    for job in jobs:
        figures = live.get(job["id"])
        if figures is None or job["status"] != JobStatus.RUNNING:
            continue
        for source, target in _LIVE_FIELDS.items():
            if figures.get(source) is not None:
                job[target] = figures[source]
        total = job["bytes_total"]
        job["percent"] = (
            round(100.0 * min(job["bytes_transferred"], total) / total, 1) if total else 0.0
        )
        job["live"] = True


def _info(info: Any) -> dict[str, Any] | None:
    return info.as_dict() if info is not None else None
