"""The daemon's run queue: one run at a time, in submission order, never two for one destination.

`submit` is the only way work enters: a `start` request, the start-up resume and the scheduler
all go through it, under one lock, so simultaneous requests for a destination that is running
or queued get that run back instead of a new one. Each run drives the shared Runner; its
events fan out to subscribers and feed the live figures that `status` shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

from photos_sync.core import rpc
from photos_sync.core.config import ConfigError
from photos_sync.core.destinations import DestinationError
from photos_sync.core.events import (
    EventKind,
    ProgressSink,
    RunEvent,
    RunRefused,
    RunRequest,
    RunResult,
    UsageProblem,
)
from photos_sync.core.records import to_iso, utcnow
from photos_sync.credentials.keyfile import SecretsError
from photos_sync.immich.server import SharedDump
from photos_sync.storage.store import StoreError
from photos_sync.system import execute
from photos_sync.system.logs import get_logger

if TYPE_CHECKING:
    from photos_sync.core.events import RestoreRequest

log = get_logger("photos_sync.daemon.queue")

T = TypeVar("T")

#: Progress events kept for a subscriber that reads slowly; older ones are dropped.
SUBSCRIBER_BACKLOG = 1000
#: How long `start` waits for a fresh run to get past the runner's checks before answering.
START_WAIT = 10.0
#: Events of a run replayed to a subscriber that arrives late (progress excluded).
HISTORY_LIMIT = 500
#: Finished runs remembered (for `subscribe {run}` arriving after the end).
KEEP_ENDED = 20

_REFUSALS: tuple[type[BaseException], ...] = (
    RunRefused,
    ConfigError,
    DestinationError,
    SecretsError,
    StoreError,
    execute.RcloneNotFound,
)


@dataclass
class RunInfo:
    id: int
    destination: str
    dry_run: bool
    force: bool
    reason: str  # request | resume | schedule
    #: `backup --full`: a full sync whatever the manifest says (only a request asks for one)
    full: bool = False
    state: str = "queued"  # queued | running | finished
    submitted_at: str = field(default_factory=lambda: to_iso(utcnow()))
    started_at: str | None = None
    finished_at: str | None = None
    run_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "destination": self.destination,
            "dry_run": self.dry_run,
            "force": self.force,
            "reason": self.reason,
            "full": self.full,
            "state": self.state,
            "submitted_at": self.submitted_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "run_id": self.run_id,
        }


@dataclass
class RunEnd:
    run: RunInfo
    ok: bool
    cancelled: bool = False
    error: str | None = None
    error_code: int | None = None
    result: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "run": self.run.as_dict(),
            "ok": self.ok,
            "cancelled": self.cancelled,
            "error": self.error,
            "error_code": self.error_code,
            "result": self.result,
        }


_END = object()


class _Wait:
    """What `RunQueue._lookup` says when a subscriber has to wait for a run to start."""


_WAIT = _Wait()


class Subscription:
    """Events of one run for one client; iterate until the run ends."""

    def __init__(self, entry: Entry) -> None:
        self.entry = entry
        self._queue: asyncio.Queue[object] = asyncio.Queue()

    def push(self, item: object) -> None:
        if item is not _END and self._queue.qsize() >= SUBSCRIBER_BACKLOG:
            return  # a slow reader loses progress lines, never the end
        self._queue.put_nowait(item)

    async def next(self) -> dict[str, Any] | RunEnd:
        item = await self._queue.get()
        if item is _END:
            assert self.entry.end is not None
            return self.entry.end
        assert isinstance(item, dict)
        return item


@dataclass(eq=False)
class Entry:
    info: RunInfo
    request: RunRequest
    started: asyncio.Future[None]
    task: asyncio.Task[None] | None = None
    end: RunEnd | None = None
    subscribers: set[Subscription] = field(default_factory=set)
    #: Events so far (progress: only the latest per job), replayed to late subscribers.
    history: list[dict[str, Any]] = field(default_factory=list)
    last_progress: dict[int, dict[str, Any]] = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)


RunFunction = Callable[[RunRequest, ProgressSink], Awaitable[RunResult]]
Resolver = Callable[[str | None], Awaitable[str]]


class RunQueue:
    """Owns the worker task; see the module docstring."""

    def __init__(self, run: RunFunction, resolve: Resolver) -> None:
        self._run = run
        self._resolve = resolve
        self._pending: deque[Entry] = deque()
        self._current: Entry | None = None
        self._ended: dict[int, Entry] = {}
        self._lock = asyncio.Lock()
        self._changed = asyncio.Condition()
        self._wakeup = asyncio.Event()
        self._ids = itertools.count(1)
        self._closed = False
        self._worker: asyncio.Task[None] | None = None
        #: Latest job_progress data per job id, for the current run.
        self.live: dict[int, dict[str, Any]] = {}
        self.last_end: RunEnd | None = None

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._worker = asyncio.create_task(self._work(), name="run-queue")

    async def close(self) -> None:
        """Take no more work, cancel the run in progress (rclone stopped, job INTERRUPTED)."""
        self._closed = True
        await self.cancel()
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker

    # -- views -----------------------------------------------------------------------------

    @property
    def current(self) -> RunInfo | None:
        return self._current.info if self._current else None

    def busy_with(self, destination: str | None) -> RunInfo | None:
        """The run in progress (for `destination`, or any when None)."""
        current = self._current
        if current is None:
            return None
        if destination is None or current.info.destination == destination:
            return current.info
        return None

    def pending(self) -> list[RunInfo]:
        return [e.info for e in self._pending]

    # -- requests --------------------------------------------------------------------------

    async def submit(
        self,
        destination: str | None,
        *,
        dry_run: bool = False,
        force: bool = False,
        full: bool = False,
        reason: str = "request",
        wait_start: bool = True,
        restore: RestoreRequest | None = None,
        dump: SharedDump | None = None,
    ) -> tuple[RunInfo, bool, bool]:
        """Queue a run; return (run, already_running, queued).

        A destination with a run in progress or queued gets that run back; a `full` request
        never gets a run that is not a full sync (a queued one becomes one, else a full run
        is queued after the one in progress). A fresh run that
        is first in line is awaited until the runner has passed its checks, so a refusal
        comes back as an RpcError rather than a run that dies at once.
        """
        async with self._lock:
            if self._closed:
                raise rpc.RpcError(rpc.SHUTTING_DOWN, "the daemon is shutting down")
            try:
                name = await self._resolve(destination)
            except UsageProblem as exc:
                raise rpc.RpcError(rpc.USAGE, str(exc)) from None
            except _REFUSALS as exc:
                raise rpc.RpcError(rpc.RUN_REFUSED, str(exc)) from None
            if restore is None:  # every restore request is its own run
                existing = self._same_backup(name, dry_run, full)
                if existing is not None:
                    return existing
            current = self._current
            entry = Entry(
                RunInfo(next(self._ids), name, dry_run, force, reason, full),
                RunRequest(name, dry_run, force, restore, dump=dump, full=full),
                asyncio.get_running_loop().create_future(),
            )
            first_in_line = current is None and not self._pending
            self._pending.append(entry)
            self._wakeup.set()
        log.info("run_queued", run=entry.info.id, destination=name, reason=reason)
        if not (first_in_line and wait_start):
            return entry.info, False, not first_in_line
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(entry.started), START_WAIT)
        end = entry.end
        if end is not None and end.error is not None:
            raise rpc.RpcError(end.error_code or rpc.RUN_REFUSED, end.error, data=end.as_dict())
        return entry.info, False, False

    def _same_backup(
        self, name: str, dry_run: bool, full: bool
    ) -> tuple[RunInfo, bool, bool] | None:
        """The backup to `name` running or queued that a new request gets instead, as `submit`
        returns it; RpcError for a dry run while a real backup to `name` runs. A `full`
        request makes a queued backup a full one, and is not given a running backup that is
        not (None: a full run is queued after it)."""
        current = self._current
        if current is not None and current.info.destination == name and current.end is None:
            if dry_run and not current.info.dry_run:
                raise rpc.RpcError(
                    rpc.RUN_REFUSED,
                    f"a backup to {name!r} is running: try the dry run after it ends",
                )
            if current.info.full or not full:
                return current.info, True, False
        for queued in self._pending:
            if (
                queued.info.destination == name
                and queued.info.dry_run == dry_run
                and queued.request.restore is None
            ):
                if full and not queued.info.full:
                    queued.info.full = True
                    queued.request = replace(queued.request, full=True)
                return queued.info, True, True
        return None

    async def submit_each(
        self,
        destinations: Sequence[str],
        *,
        dry_run: bool = False,
        force: bool = False,
        full: bool = False,
        reason: str = "request",
    ) -> list[dict[str, Any]]:
        """Queue a backup to each of `destinations`, in order, sharing one Immich dump.

        Returns one entry per destination: {"run", "already_running", "queued"} as `submit`
        gives them, or {"destination", "error", "error_code"} for one that was refused at
        once. A refusal of one never keeps the others from being queued; none is awaited.
        """
        dump = SharedDump()
        entries: list[dict[str, Any]] = []
        for name in destinations:
            try:
                info, already, queued = await self.submit(
                    name,
                    dry_run=dry_run,
                    force=force,
                    full=full,
                    reason=reason,
                    wait_start=False,
                    dump=dump,
                )
            except rpc.RpcError as exc:
                entries.append({"destination": name, "error": exc.message, "error_code": exc.code})
                continue
            entries.append({"run": info.as_dict(), "already_running": already, "queued": queued})
        return entries

    async def while_idle_for(
        self, destination: str, action: Callable[[], Awaitable[T]], doing: str
    ) -> T:
        """Run `action` while no run for `destination` is in progress or queued (no new one can
        be queued meanwhile); RpcError BUSY otherwise. `doing` names the action in the error."""
        async with self._lock:
            current = self._current
            if (
                current is not None
                and current.end is None
                and current.info.destination == destination
            ):
                raise rpc.RpcError(
                    rpc.BUSY,
                    f"a {'restore' if current.request.restore else 'backup'} with "
                    f"{destination!r} is running in the daemon: {doing} after it has ended",
                )
            if any(e.info.destination == destination for e in self._pending):
                raise rpc.RpcError(
                    rpc.BUSY,
                    f"a run with {destination!r} is queued in the daemon: {doing} after it "
                    "has ended",
                )
            return await action()

    async def cancel(self) -> RunInfo | None:
        """Drop queued runs and cancel the one in progress; return it once it has stopped."""
        async with self._changed:
            for entry in self._pending:
                self._finish(entry, RunEnd(entry.info, ok=False, cancelled=True))
            self._pending.clear()
            self._changed.notify_all()
        current = self._current
        if current is None or current.task is None:
            return None
        current.task.cancel()
        await asyncio.wait([current.task])
        if current.end is None:  # cancelled before it ever ran
            self._finish(current, RunEnd(current.info, ok=False, cancelled=True))
        return current.info

    async def subscribe(self, run_id: int | None, wait: bool) -> Subscription | RunEnd | None:
        """A Subscription to the run in progress (or `run_id`), its end if it is over, or None.

        With `wait`, and nothing running, waits for the next run to start; a pending `run_id`
        is waited for too (`would_wait` says beforehand whether it will).
        """
        async with self._changed:
            while True:
                found = self._lookup(run_id, wait)
                if not isinstance(found, _Wait):
                    return self._attach(found) if isinstance(found, Entry) else found
                await self._changed.wait()

    def would_wait(self, run_id: int | None, wait: bool) -> bool:
        """True if `subscribe(run_id, wait)`, called now, would wait for a run to start."""
        return isinstance(self._lookup(run_id, wait), _Wait)

    def _lookup(self, run_id: int | None, wait: bool) -> Entry | RunEnd | _Wait | None:
        """What `subscribe` returns now (an Entry to attach to), or _WAIT."""
        current = self._current
        if run_id is None:
            if current is not None:
                return current
            return _WAIT if wait and not self._closed else None
        if current is not None and current.info.id == run_id:
            return current
        ended = self._ended.get(run_id)
        if ended is not None:
            assert ended.end is not None
            return ended.end
        return _WAIT if any(e.info.id == run_id for e in self._pending) else None

    def unsubscribe(self, subscription: Subscription) -> None:
        subscription.entry.subscribers.discard(subscription)

    def _attach(self, entry: Entry) -> Subscription:
        subscription = Subscription(entry)
        for item in (*entry.history, *entry.last_progress.values()):
            subscription.push(item)
        entry.subscribers.add(subscription)
        if entry.end is not None:
            subscription.push(_END)
        return subscription

    # -- the worker ------------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending and not self._closed:
                async with self._changed:
                    entry = self._pending.popleft()
                    self._current = entry
                    entry.info.state = "running"
                    entry.info.started_at = to_iso(utcnow())
                    self.live.clear()
                    entry.task = asyncio.create_task(self._execute(entry), name="run")
                    self._changed.notify_all()
                try:
                    await asyncio.wait([entry.task])
                    if entry.end is None:
                        self._finish(entry, RunEnd(entry.info, ok=False, cancelled=True))
                finally:
                    async with self._changed:
                        self._current = None
                        self.live.clear()
                        self._changed.notify_all()

    async def _execute(self, entry: Entry) -> None:
        def sink(event: RunEvent) -> None:
            self._on_event(entry, event)

        end: RunEnd
        try:
            result = await self._run(entry.request, sink)
            end = RunEnd(entry.info, ok=result.ok, result=result.as_dict())
        except asyncio.CancelledError:
            end = RunEnd(entry.info, ok=False, cancelled=True, error="the run was cancelled")
        except UsageProblem as exc:
            end = RunEnd(entry.info, ok=False, error=str(exc), error_code=rpc.USAGE)
        except _REFUSALS as exc:
            end = RunEnd(entry.info, ok=False, error=str(exc), error_code=rpc.RUN_REFUSED)
        except Exception as exc:
            log.exception("run_crashed", run=entry.info.id)
            end = RunEnd(
                entry.info, ok=False, error=f"internal error: {exc}", error_code=rpc.INTERNAL_ERROR
            )
        log.info(
            "run_ended",
            run=entry.info.id,
            destination=entry.info.destination,
            ok=end.ok,
            cancelled=end.cancelled,
            error=end.error,
        )
        self._finish(entry, end)

    def _finish(self, entry: Entry, end: RunEnd) -> None:
        if entry.end is not None:
            return
        entry.info.state = "finished"
        entry.info.finished_at = to_iso(utcnow())
        entry.end = end
        self.last_end = end
        self._ended[entry.info.id] = entry
        while len(self._ended) > KEEP_ENDED:
            del self._ended[next(iter(self._ended))]
        if not entry.started.done():
            entry.started.set_result(None)
        for subscription in list(entry.subscribers):
            subscription.push(_END)
        entry.done.set()

    def _on_event(self, entry: Entry, event: RunEvent) -> None:
        data = dict(event.data)
        if event.kind is EventKind.RUN_STARTED:
            entry.info.run_id = str(data.get("run_id"))
        if event.kind is EventKind.JOB_PROGRESS:
            self.live[int(data["job_id"])] = data
        elif event.kind is EventKind.JOB_FINISHED:
            self.live.pop(int(data["id"]), None)
        if not entry.started.done() and event.kind in (EventKind.RUN_STARTED, EventKind.MESSAGE):
            entry.started.set_result(None)
        item = {"kind": event.kind.value, "destination": event.destination, "data": data}
        if event.kind is EventKind.JOB_PROGRESS:
            entry.last_progress[int(data["job_id"])] = item
        else:
            if event.kind is EventKind.JOB_FINISHED:
                entry.last_progress.pop(int(data["id"]), None)
            if len(entry.history) < HISTORY_LIMIT:
                entry.history.append(item)
        for subscription in list(entry.subscribers):
            subscription.push(item)
