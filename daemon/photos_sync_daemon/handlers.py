"""The JSON-RPC methods (see photos_sync.core.rpc for their params and results)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from photos_sync import __version__
from photos_sync.core import rpc
from photos_sync.reporting.status import gather_status
from photos_sync.storage.store import StoreError

from .queue import RunEnd, Subscription
from .server import NO_REPLY, Connection, NoReply

if TYPE_CHECKING:
    from .app import Daemon

#: Fields of a RUNNING job that the live figures replace in `status`.
_LIVE_FIELDS = {
    "bytes_done": "bytes_transferred",
    "bytes_total": "bytes_total",
    "files_done": "files_transferred",
    "files_total": "files_total",
    "speed": "transfer_speed",
    "eta": "eta_seconds",
}


class Handlers:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
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
            "uptime": round(time.monotonic() - self.daemon.started_monotonic, 3),
        }

    async def status(self) -> dict[str, Any]:
        daemon = self.daemon
        document = await gather_status(daemon.settings, daemon.store)
        live = daemon.queue.live
        for job in document["jobs"]:
            figures = live.get(job["id"])
            if figures is None or job["status"] != "RUNNING":
                continue
            for source, target in _LIVE_FIELDS.items():
                if figures.get(source) is not None:
                    job[target] = figures[source]
            total = job["bytes_total"]
            job["percent"] = (
                round(100.0 * min(job["bytes_transferred"], total) / total, 1) if total else 0.0
            )
            job["live"] = True
        document["daemon"] = {
            **(await self.ping()),
            "socket": str(daemon.socket_path),
            "run": _info(daemon.queue.current),
            "queue": [i.as_dict() for i in daemon.queue.pending()],
            "last_run": daemon.queue.last_end.as_dict() if daemon.queue.last_end else None,
            "schedule": daemon.scheduler.describe(),
            "next_run": daemon.scheduler.next_runs(),
            "verify_schedule": daemon.verifier.describe(),
            "next_verify": daemon.verifier.next_runs(),
            "foreign_jobs": daemon.foreign_jobs,
            "bandwidth": daemon.ops.describe(),
        }
        return document

    async def start(
        self, destination: str | None = None, dry_run: bool = False, force: bool = False
    ) -> dict[str, Any]:
        if destination is None:
            names = [d.name for d in await self.daemon.store.list_destinations()]
            if len(names) > 1:  # no --to: each destination in turn, one Immich dump for all
                runs = await self.daemon.queue.submit_each(
                    names, dry_run=dry_run, force=force, reason="request"
                )
                return {"runs": runs}
        info, already, queued = await self.daemon.queue.submit(
            destination, dry_run=dry_run, force=force, reason="request"
        )
        return {"run": info.as_dict(), "already_running": already, "queued": queued}

    async def remove(self, destination: str | None = None) -> dict[str, Any]:
        """Forget a destination (not its data), unless a run uses it."""
        from photos_sync.engine.removal import remove_destination
        from photos_sync.engine.runner import RunRefused, UsageProblem

        if not destination:
            raise rpc.RpcError(rpc.INVALID_PARAMS, "remove: 'destination' is required")
        daemon = self.daemon

        async def remove() -> int:
            return await remove_destination(daemon.settings, daemon.store, destination)

        try:
            removed = await daemon.queue.while_idle_for(destination, remove, "remove it")
        except UsageProblem as exc:
            raise rpc.RpcError(rpc.USAGE, str(exc)) from None
        except RunRefused as exc:
            raise rpc.RpcError(rpc.BUSY, str(exc)) from None
        except StoreError as exc:
            raise rpc.RpcError(rpc.INTERNAL_ERROR, str(exc)) from None
        daemon.scheduler.wake()  # its next run and next verify leave `status`
        daemon.verifier.wake()
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
    ) -> dict[str, Any]:
        from photos_sync.engine.restore import MODES, RestoreRequest

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
        request = RestoreRequest(destination, Path(to), path, mode, moment, overwrite, dry_run)
        info, already, queued = await self.daemon.queue.submit(
            destination, dry_run=dry_run, reason="restore", restore=request
        )
        return {"run": info.as_dict(), "already_running": already, "queued": queued}

    async def cancel(self) -> dict[str, Any]:
        info = await self.daemon.queue.cancel()
        return {"cancelled": info is not None, "run": _info(info)}

    async def reset(self, destination: str | None = None) -> dict[str, Any]:
        queue = self.daemon.queue
        busy = queue.busy_with(destination)
        if busy is not None:
            raise rpc.RpcError(
                rpc.BUSY,
                f"a backup to {busy.destination!r} is running: cancel it (or let it end) "
                "before --reset",
            )
        from photos_sync.engine.maintenance import reset_jobs
        from photos_sync.engine.runner import RunRefused, UsageProblem

        try:
            removed = await reset_jobs(self.daemon.store, destination)
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
        queue = self.daemon.queue
        if not queue.would_wait(run, wait):
            found = await queue.subscribe(run, wait)
        else:
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
                return NO_REPLY  # the client is gone
            found = waiting.result()
            if hangup.done() and not hangup.cancelled() and isinstance(found, Subscription):
                queue.unsubscribe(found)  # gone at the moment the run started
                return NO_REPLY
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
            while True:
                item = await found.next()
                if isinstance(item, RunEnd):
                    await connection.send(rpc.notification("run_ended", item.as_dict()))
                    return NO_REPLY
                with contextlib.suppress(rpc.RpcError):  # an event too big to send is skipped
                    await connection.send(rpc.notification("progress", item))
        finally:
            queue.unsubscribe(found)


def _info(info: Any) -> dict[str, Any] | None:
    return info.as_dict() if info is not None else None
