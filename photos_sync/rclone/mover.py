"""Server-side moves inside a destination, file by file, through one `rclone rcd`.

An incremental run (#15) moves files whose paths it knows: deleted and replaced files into the
run's archive folder, renamed files (Immich's storage-template migration) to their new
paths. `rclone move` keeps paths, and one `rclone moveto` per file would start rclone
thousands of times; so one `rclone rcd` serves the destination's remotes (defined in its
environment, like every rclone photos-sync starts) and each move is one `operations/movefile`
call: a rename on a local disk, a server-side copy and delete on S3, copy and hide on B2.
Nothing is uploaded again, and nothing is listed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import TracebackType

from photos_sync.core.rclone_args import CRYPT_REMOTE, RcServer
from photos_sync.core.redact import redact
from photos_sync.rclone import rc
from photos_sync.rclone.remote import CryptRemote
from photos_sync.system import execute

#: How many moves run at once: server-side copies on S3/B2 are bound by the round trip.
PARALLEL_MOVES = 8
#: Longest wait for `rclone rcd` to serve its socket.
START_TIMEOUT = 30.0
#: Longest single move: a server-side copy of a large video on S3 takes a while.
MOVE_TIMEOUT = 900.0

_NOT_FOUND = ("object not found", "not found", "no such file", "directory not found")


class MoverError(RuntimeError):
    """rclone's remote control could not be started or stopped answering."""


def is_not_found(error: str) -> bool:
    lowered = error.lower()
    return any(marker in lowered for marker in _NOT_FOUND)


class ServerSideMover:
    """`async with ServerSideMover(remote, socket) as mover: await mover.move_all(...)`."""

    def __init__(
        self, remote: CryptRemote, socket_path: Path, *, grace: float = execute.DEFAULT_GRACE
    ) -> None:
        self.remote = remote
        self.server: RcServer = rc.new_server(socket_path)
        self._grace = grace
        self._process: execute.StreamingProcess | None = None
        self._running: asyncio.Task[int] | None = None
        self._last_line = ""

    def _on_line(self, line: str) -> None:
        self._last_line = line

    async def _answers(self) -> bool:
        """Wait until rclone answers on its socket (it logs nothing when it listens on a
        Unix socket, so it is asked): True, or False if it exited or did not answer within
        START_TIMEOUT."""
        assert self._running is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        pause = 0.005
        while loop.time() < deadline and not self._running.done():
            try:
                await rc.call(self.server, "rc/noop", timeout=2.0)
            except rc.RcError:
                await asyncio.wait({self._running}, timeout=pause)
                pause = min(pause * 2, 0.2)
                continue
            return True
        return False

    async def __aenter__(self) -> ServerSideMover:
        socket = rc.socket_file(self.server)
        if socket is not None:
            with contextlib.suppress(OSError):
                socket.unlink()  # left by an rclone that was killed
        argv = (
            self.remote.binary,
            "rcd",
            "--rc-addr",
            self.server.addr,
            "--use-json-log",
            "--retries",
            "1",
            "--low-level-retries",
            "10",
        )
        env = self.remote.child_env()
        env.update(self.server.env())
        self._process = execute.StreamingProcess(argv, env, self._on_line, grace=self._grace)
        await self._process.start()
        self._running = asyncio.create_task(self._process.wait())
        if not await self._answers():
            await self._stop()
            last = redact(self._last_line, self.remote.secrets)[-300:]
            raise MoverError(f"rclone's remote control did not start ({last or 'no output'})")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._stop()

    async def _stop(self) -> None:
        if self._process is not None:
            await self._process.terminate()
        if self._running is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._running

    async def move(self, source: str, target: str) -> str | None:
        """Move the file at plain path `source` to `target`, both below the backup's root;
        None when done, else rclone's error (scrubbed of secrets)."""
        try:
            await rc.call(
                self.server,
                "operations/movefile",
                {
                    "srcFs": f"{CRYPT_REMOTE}:",
                    "srcRemote": source,
                    "dstFs": f"{CRYPT_REMOTE}:",
                    "dstRemote": target,
                },
                timeout=MOVE_TIMEOUT,
            )
        except rc.RcError as exc:
            return redact(str(exc), self.remote.secrets)
        return None

    async def move_all(
        self,
        pairs: Sequence[tuple[str, str]],
        on_done: Callable[[int, str | None], Awaitable[None] | None] | None = None,
    ) -> list[str | None]:
        """Move every (source, target) pair, PARALLEL_MOVES at a time; each pair's error or
        None, in the pairs' order. `on_done(index, error)` hears about each as it ends."""
        results: list[str | None] = [None] * len(pairs)
        gate = asyncio.Semaphore(PARALLEL_MOVES)

        async def one(index: int) -> None:
            async with gate:
                results[index] = await self.move(*pairs[index])
            if on_done is not None:
                outcome = on_done(index, results[index])
                if outcome is not None:
                    await outcome

        await asyncio.gather(*(one(i) for i in range(len(pairs))))
        return results
