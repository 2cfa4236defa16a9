"""BACKUP_METRICS_ADDR: the daemon's Prometheus endpoint (GET /metrics), plain asyncio HTTP/1.1.

One request per connection, read with a size and time limit; the figures are the daemon's
`status` (live progress included) and the job history, rendered by photos_sync.reporting.metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from photos_sync.core.config import ConfigError, Settings
from photos_sync.reporting import metrics
from photos_sync.storage.store import Store
from photos_sync.system.logs import get_logger

log = get_logger("photos_sync.daemon.metrics")

#: Longest request head accepted, and how long a client may take to send it.
_HEAD_LIMIT = 16 * 1024
_READ_TIMEOUT = 5.0


#: The daemon's `status` document (Handlers.status), live progress included.
StatusDocument = Callable[[], Awaitable[dict[str, Any]]]


async def start_metrics_server(
    settings: Callable[[], Settings], store: Store, status: StatusDocument
) -> MetricsServer | None:
    """The endpoint BACKUP_METRICS_ADDR asks for, listening; None when it is not set, or is
    invalid or cannot be bound (logged: the daemon runs on without it)."""
    try:
        address = metrics.metrics_addr(settings().extra)
    except ConfigError as exc:
        log.error("metrics_addr_invalid", error=str(exc))
        return None
    if address is None:
        return None
    server = MetricsServer(settings, store, status, *address)
    try:
        await server.start()
    except OSError as exc:
        log.error("metrics_listen_failed", address=f"{address[0]}:{address[1]}", error=str(exc))
        return None
    return server


class MetricsServer:
    def __init__(
        self,
        settings: Callable[[], Settings],
        store: Store,
        status: StatusDocument,
        host: str,
        port: int,
    ) -> None:
        self._settings = settings
        self._store = store
        self._status = status
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, self.host, self.port, limit=_HEAD_LIMIT
        )
        sockets = self._server.sockets or ()
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        log.info("metrics_listening", address=f"{self.host}:{self.port}")

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _body(self) -> str:
        document = await self._status()
        return await metrics.collect(self._settings(), self._store, document)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_TIMEOUT)
            parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
            method, path = (parts[0], parts[1]) if len(parts) >= 2 else ("", "")
            if method not in ("GET", "HEAD"):
                status, body, kind = "405 Method Not Allowed", "GET only\n", "text/plain"
            elif path.split("?", 1)[0] in ("/metrics", "/"):
                status, body, kind = "200 OK", await self._body(), metrics.CONTENT_TYPE
            else:
                status, body, kind = "404 Not Found", "see /metrics\n", "text/plain"
            data = body.encode()
            writer.write(
                (
                    f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\n"
                    f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
                ).encode()
                + (b"" if method == "HEAD" else data)
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        except Exception:
            log.exception("metrics_request_failed")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
