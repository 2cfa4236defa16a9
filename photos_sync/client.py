"""The CLI's side of the daemon's Unix socket (JSON-RPC 2.0, see photos_sync.rpc).

`connect` returns None when no daemon answers, which is how the CLI decides between the
daemon and running in the foreground.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import deque
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from photos_sync import rpc


class DaemonError(RuntimeError):
    """The daemon answered with an error, or the connection broke."""

    def __init__(self, message: str, code: int = rpc.INTERNAL_ERROR, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.data = data


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
        await self._writer.drain()
        async with asyncio.timeout(timeout):
            while True:
                message = await self._read()
                if "id" not in message:
                    self._backlog.append(message)
                    continue
                if message.get("id") != request_id:
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
    """A client connected to the daemon at `path`, or None if nothing answers (no daemon)."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_unix_connection(str(path), limit=rpc.MAX_MESSAGE)
    except (OSError, TimeoutError):
        return None
    client = DaemonClient(reader, writer)
    try:
        await client.call("ping", timeout=timeout)
    except (DaemonError, OSError, TimeoutError):
        await client.close()
        return None
    return client
