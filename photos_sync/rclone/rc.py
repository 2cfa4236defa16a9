"""A tiny client for rclone's remote control API (`--rc`), over a Unix socket or loopback TCP.

Only what photos-sync needs: POST a JSON object to a method such as `core/bwlimit`, with
HTTP basic auth, and read the JSON answer. The credentials come from the RcServer that
the sync was started with (they reach rclone through its environment, never argv).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from photos_sync.core.rclone_args import RcServer

#: A Unix socket path must fit sockaddr_un (108 bytes on Linux, 104 on macOS).
_MAX_UNIX_PATH = 100


class RcError(RuntimeError):
    """rclone's remote control did not answer, or answered with an error."""


def new_server(socket_path: Path) -> RcServer:
    """An RcServer with fresh random credentials, on `socket_path` if it fits sockaddr_un,
    else on a free loopback TCP port."""
    if len(str(socket_path)) <= _MAX_UNIX_PATH:
        addr = f"unix://{socket_path}"
    else:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            addr = f"127.0.0.1:{probe.getsockname()[1]}"
    return RcServer(addr, "photos-sync", secrets.token_urlsafe(24))


def socket_file(server: RcServer) -> Path | None:
    return Path(server.addr[len("unix://") :]) if server.addr.startswith("unix://") else None


async def call(
    server: RcServer, method: str, params: Mapping[str, Any] | None = None, timeout: float = 5.0
) -> dict[str, Any]:
    """POST `params` to rclone's `method`; its JSON answer, or RcError."""
    body = json.dumps(dict(params or {})).encode()
    auth = base64.b64encode(f"{server.user}:{server.password}".encode()).decode()
    request = (
        f"POST /{method} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic {auth}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body
    path = socket_file(server)

    async def exchange() -> bytes:
        if path is not None:
            reader, writer = await asyncio.open_unix_connection(str(path))
        else:
            host, port = server.addr.rsplit(":", 1)
            reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write(request)
            await writer.drain()
            return await reader.read()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    try:
        raw = await asyncio.wait_for(exchange(), timeout)
    except (OSError, TimeoutError) as exc:
        raise RcError(f"rclone's remote control at {server.addr} did not answer ({exc})") from None
    head, _, payload = raw.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split()
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    if b"transfer-encoding: chunked" in head.lower():
        payload = _unchunk(payload)
    try:
        answer = json.loads(payload or b"{}")
    except ValueError:
        answer = {"error": payload.decode("utf-8", "replace").strip()}
    if status != 200:
        raise RcError(f"rclone {method}: HTTP {status}: {answer.get('error', answer)}")
    if not isinstance(answer, dict):
        raise RcError(f"rclone {method}: unexpected answer {answer!r}")
    return answer


def _unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2 :]
    return out


async def set_bwlimit(server: RcServer, rate: str) -> dict[str, Any]:
    """Set the running rclone's bandwidth limit (a single rate or "up:down"); its answer."""
    return await call(server, "core/bwlimit", {"rate": rate})


async def get_bwlimit(server: RcServer) -> dict[str, Any]:
    return await call(server, "core/bwlimit")
