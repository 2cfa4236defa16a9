"""The CLI's side of the daemon's Unix socket (JSON-RPC 2.0, see photos_sync.core.rpc).

`find_daemon` is how the CLI decides between the daemon and running in the foreground: None
only when no daemon holds the data dir's lock; a daemon that holds it but does not answer is
DaemonUnreachable, never a reason to start a second backup beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
from collections import deque
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from photos_sync.core import rpc
from photos_sync.system.control_socket import lock_holder, socket_location


class DaemonError(RuntimeError):
    """The daemon answered with an error, or the connection broke."""

    def __init__(self, message: str, code: int = rpc.INTERNAL_ERROR, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.data = data


class DaemonUnreachable(DaemonError):
    """A daemon holds the data dir's lock but does not answer on the socket; `short` says so
    in a few words (for a status line), the message in full."""

    def __init__(self, message: str, short: str) -> None:
        super().__init__(message)
        self.short = short


class DaemonClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(1)
        self._backlog: deque[dict[str, Any]] = deque()

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()

    async def _read(self) -> dict[str, Any]:
        try:
            line = await self._reader.readuntil(b"\n")
        except asyncio.IncompleteReadError:
            raise DaemonError("the daemon closed the connection") from None
        except asyncio.LimitOverrunError:
            raise DaemonError("the daemon sent a message larger than 1 MiB") from None
        try:
            return rpc.decode_message(line)
        except rpc.RpcError as exc:
            raise DaemonError(f"unreadable message from the daemon: {exc.message}") from None

    async def call(
        self, method: str, params: Mapping[str, Any] | None = None, *, timeout: float = 60.0
    ) -> Any:
        """Send a request and return its result; DaemonError for an error reply."""
        request_id = next(self._ids)
        self._writer.write(rpc.request(request_id, method, params))
        # If the daemon hung up, a refusal it sent first (BUSY) is read below; else _read
        # reports the closed connection.
        with contextlib.suppress(ConnectionError):
            await self._writer.drain()
        async with asyncio.timeout(timeout):
            while True:
                message = await self._read()
                if "id" not in message:
                    self._backlog.append(message)
                    continue
                # An error without id is the daemon refusing the connection (BUSY at its cap).
                refused = message.get("id") is None and "error" in message
                if message.get("id") != request_id and not refused:
                    continue
                if "error" in message:
                    error = message["error"] or {}
                    raise DaemonError(
                        str(error.get("message", "unknown error")),
                        int(error.get("code", rpc.INTERNAL_ERROR)),
                        error.get("data"),
                    )
                return message.get("result")

    async def notifications(self) -> AsyncIterator[dict[str, Any]]:
        """Notifications as {"method": ..., "params": ...}, until the connection ends."""
        while True:
            if self._backlog:
                yield self._backlog.popleft()
                continue
            message = await self._read()
            if "method" in message and "id" not in message:
                yield message


async def connect(path: Path, *, timeout: float = 2.0) -> DaemonClient | None:
    """A client of whatever answers a ping on the socket configured as `path`, or None."""
    try:
        return await _open(socket_location(path), timeout)
    except (DaemonError, OSError, TimeoutError):
        return None


async def find_daemon(
    data_dir: Path, socket_path: Path, *, timeout: float = 2.0
) -> DaemonClient | None:
    """A client of the daemon that owns `data_dir`, or None when no daemon does.

    The data dir's lock says whether a daemon runs, not whether a connect succeeds. A daemon
    that holds the lock but does not answer a ping within `timeout` (stopped, starting,
    stopping, overloaded, or listening on another socket path) raises DaemonUnreachable.
    """
    try:
        holder = lock_holder(data_dir)
    except OSError:
        # The lock cannot be read (another user's data dir): only the socket can tell.
        return await connect(socket_path, timeout=timeout)
    if holder is None:
        return None
    path = socket_location(socket_path)
    try:
        return await _open(path, timeout)
    except (DaemonError, OSError, TimeoutError) as exc:
        who = f"the photos-sync daemon (pid {holder.pid})" if holder.pid else "a photos-sync daemon"
        if isinstance(exc, DaemonError) and exc.code == rpc.BUSY:
            problem = f"turned this connection away: {exc}"
        else:
            problem = f"does not answer on {path} ({_why(exc, timeout)})"
        raise DaemonUnreachable(
            f"{who} runs for this data dir but {problem}; nothing was started: try again in a "
            "moment, and restart the daemon if this persists",
            short=f"{who} does not answer",
        ) from None


async def _open(path: Path, timeout: float) -> DaemonClient:
    """Connect and ping; OSError, TimeoutError or DaemonError when that fails."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_unix_connection(str(path), limit=rpc.MAX_MESSAGE)
    client = DaemonClient(reader, writer)
    try:
        await client.call("ping", timeout=timeout)
    except BaseException:
        await client.close()
        raise
    return client


def _why(exc: BaseException, timeout: float) -> str:
    """Why a connection to the daemon failed, in words."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, DaemonError):
        return str(exc)  # e.g. "the daemon closed the connection"
    if isinstance(exc, FileNotFoundError):
        return (
            "no socket there: the daemon is starting or stopping, or was started with another "
            "PHOTOS_SYNC_SOCKET"
        )
    if isinstance(exc, ConnectionRefusedError):
        return "nothing listens on it: the daemon is starting or stopping"
    if isinstance(exc, OSError) and exc.errno == errno.EAGAIN:
        return "its queue of new connections is full"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)
