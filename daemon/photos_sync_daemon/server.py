"""The Unix socket: in a folder nobody else can write to, a socket only its owner may use
(0600), the peer's uid checked on every connection, one JSON-RPC message per line.

A connection is closed when the peer is another user, sends a line beyond the size cap, stays
silent past the idle timeout, or stops reading our replies. None of that touches other
connections: each one is its own task. Idle connections never lock others out: at the
connection cap the one idle the longest makes room, and only when every connection is busy
(a request in flight, or a subscription) is a newcomer turned away, with a BUSY error.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import stat
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from photos_sync.core import rpc
from photos_sync.system.control_socket import is_sticky, others_can_write
from photos_sync.system.logs import get_logger

from .peercred import peer_uid

log = get_logger("photos_sync.daemon.server")

#: Longest path bind() accepts for a Unix socket (sun_path is 108 bytes on Linux, 104 on macOS).
MAX_SOCKET_PATH = 103
#: A connection that sends nothing for this long is closed (subscribers are exempt).
IDLE_TIMEOUT = 300.0
#: A peer that does not read a reply within this time is dropped.
WRITE_TIMEOUT = 10.0
#: Connections served at once; beyond it an idle one is closed, or the newcomer refused.
MAX_CLIENTS = 128
#: Connections the kernel queues before we accept them (asyncio's default is 100).
BACKLOG = 1024
#: How long a refused connection stays open for the client to read why.
REFUSAL_LINGER = 5.0


class SocketError(RuntimeError):
    """The socket cannot be set up; the message says why and what to do."""


class NoReply:
    """Returned by a handler that has already written its own reply (subscribe)."""


NO_REPLY = NoReply()


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await asyncio.wait_for(self.writer.drain(), WRITE_TIMEOUT)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()

    async def wait_hangup(self) -> None:
        """Return once the peer closes its side; what it sends meanwhile is discarded. Only for
        a connection that expects no more requests (a subscription)."""
        with contextlib.suppress(OSError):
            while await self.reader.read(65536):
                pass


Dispatch = Callable[[rpc.Request, Connection], Awaitable[Any]]


def answers(path: Path, timeout: float = 1.0) -> bool:
    """True if something listens on the Unix socket at `path`, even one too busy to accept."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(timeout)
        try:
            probe.connect(str(path))
        except (TimeoutError, BlockingIOError):
            return True  # a full connection queue: a live listener
        except OSError:
            return False
    return True


def prepare_socket_dir(path: Path) -> None:
    """Make the socket's folder private to us without touching anyone else's folder.

    Folders that do not exist are created 0700 (those, and only those, get our mode). An
    existing folder is checked, never chmod-ed: it must be ours, and nobody else may write to
    it (they could replace the socket). Where a missing folder is created, the folder holding
    it must not let others rename it away: not writable by others, or sticky and owned by us
    or root (as /tmp is). `path` is where the socket goes (see control_socket.socket_location).
    """
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise SocketError(
            f"the socket path {path} is too long for a Unix socket ({len(os.fsencode(path))} > "
            f"{MAX_SOCKET_PATH} bytes): set PHOTOS_SYNC_SOCKET to a shorter path"
        )
    folder = path.parent
    missing: list[Path] = []
    base = folder
    while not base.exists() and base != base.parent:
        missing.append(base)
        base = base.parent
    try:
        if missing:
            _check_container(base)
        for created in reversed(missing):
            try:
                created.mkdir(mode=0o700)
            except FileExistsError:
                _check_ours(created)  # someone made it between our look and our mkdir
                continue
            os.chmod(created, 0o700)  # mkdir's mode is filtered by the umask
        _check_ours(folder)
    except OSError as exc:
        raise SocketError(f"cannot create {folder} for the socket: {exc.strerror}") from None


def _check_container(folder: Path) -> None:
    """`folder` will hold a folder we create: others must not be able to rename that away."""
    info = folder.stat()
    if others_can_write(info) and not (is_sticky(info) and info.st_uid in (0, os.getuid())):
        raise SocketError(
            f"{folder} (where the socket's folder would be created) is writable by other "
            "users: point PHOTOS_SYNC_SOCKET at a path in a folder of your own"
        )


def _check_ours(folder: Path) -> None:
    """An existing socket folder must be a folder of ours that nobody else can write to."""
    info = folder.stat()
    if not stat.S_ISDIR(info.st_mode):
        raise SocketError(
            f"{folder} (the socket's folder) is not a folder: point PHOTOS_SYNC_SOCKET elsewhere"
        )
    if info.st_uid != os.getuid():
        raise SocketError(
            f"{folder} (the socket's folder) belongs to another user: point PHOTOS_SYNC_SOCKET "
            "at a path in a folder of your own"
        )
    if others_can_write(info):
        raise SocketError(
            f"{folder} (the socket's folder) is writable by other users, who could replace the "
            f"socket: remove their write access (chmod go-w {folder}) or point "
            "PHOTOS_SYNC_SOCKET at a path in a folder of your own"
        )


def clear_stale_socket(path: Path) -> None:
    """Remove a socket file left by a crash; refuse if something still answers on it."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise SocketError(f"{path} exists and is not a socket: move it away or change the path")
    if answers(path):
        raise SocketError(
            f"another daemon answers on {path}: stop it first (photos-sync backup --status "
            "shows its pid)"
        )
    path.unlink(missing_ok=True)
    log.info("stale_socket_removed", path=str(path))


class RpcServer:
    def __init__(
        self,
        path: Path,
        dispatch: Dispatch,
        *,
        idle_timeout: float = IDLE_TIMEOUT,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self.path = path
        self._dispatch = dispatch
        self._idle_timeout = idle_timeout
        self._max_clients = max_clients
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        #: Connections waiting for their next request, with the monotonic time they began to.
        self._idle_since: dict[asyncio.Task[None], float] = {}
        self._inode: tuple[int, int] | None = None

    async def start(self) -> None:
        prepare_socket_dir(self.path)
        clear_stale_socket(self.path)
        old_umask = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(
                self._client, path=str(self.path), limit=rpc.MAX_MESSAGE, backlog=BACKLOG
            )
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise SocketError(f"{self.path} is in use by another process") from None
            raise SocketError(f"cannot listen on {self.path}: {exc.strerror}") from None
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)
        info = self.path.stat()
        self._inode = (info.st_dev, info.st_ino)
        log.info("listening", socket=str(self.path))

    def stop_accepting(self) -> None:
        if self._server is not None:
            self._server.close()
        self._remove_socket_file()

    async def close(self) -> None:
        """Stop accepting and drop every connection."""
        self.stop_accepting()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2.0)

    def _remove_socket_file(self) -> None:
        """Unlink the socket if it is still the one we bound (not a successor's)."""
        if self._inode is None:
            return
        with contextlib.suppress(OSError):
            info = self.path.lstat()
            if (info.st_dev, info.st_ino) == self._inode:
                self.path.unlink()
        self._inode = None

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        connection = Connection(reader, writer)
        sock = writer.get_extra_info("socket")
        try:
            uid = peer_uid(sock) if sock is not None else None
        except OSError:
            uid = None
        if uid is not None and uid != os.getuid():
            log.warning("peer_refused", uid=uid)
            connection.close()
            return
        if len(self._tasks) >= self._max_clients and not self._evict_idlest():
            log.warning("too_many_clients", limit=self._max_clients)
            busy = rpc.RpcError(
                rpc.BUSY,
                f"the daemon is serving {len(self._tasks)} connections, all busy: close some of "
                "them (watchers count too) and try again",
            )
            with contextlib.suppress(Exception):
                await connection.send(rpc.error_response(busy))
                writer.write_eof()
                # Close only once the client has sent its request (or after a moment): a
                # request written into a closed socket fails with EPIPE on the client's side,
                # which then never reads the refusal.
                async with asyncio.timeout(REFUSAL_LINGER):
                    while await reader.read(65536):
                        pass
            connection.close()
            return
        self._tasks.add(task)
        try:
            await self._serve(connection)
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("connection_failed")
        finally:
            self._tasks.discard(task)
            self._idle_since.pop(task, None)
            connection.close()

    def _evict_idlest(self) -> bool:
        """Close the connection that has waited longest for its next request; False if none
        is idle (every connection has a request in flight or is a subscription)."""
        if not self._idle_since:
            return False
        idlest = min(self._idle_since, key=self._idle_since.__getitem__)
        del self._idle_since[idlest]
        self._tasks.discard(idlest)
        idlest.cancel()
        log.info("idle_client_evicted", limit=self._max_clients)
        return True

    async def _serve(self, connection: Connection) -> None:
        reader = connection.reader
        task = asyncio.current_task()
        assert task is not None
        while True:
            self._idle_since[task] = time.monotonic()
            try:
                # asyncio.timeout, not wait_for: a line already buffered is taken in this same
                # step, so a connection with a request waiting never looks idle to _evict_idlest
                async with asyncio.timeout(self._idle_timeout):
                    line = await reader.readuntil(b"\n")
            except asyncio.LimitOverrunError:
                error = rpc.RpcError(
                    rpc.INVALID_REQUEST, f"message larger than {rpc.MAX_MESSAGE} bytes"
                )
                await connection.send(rpc.error_response(error))
                return
            except asyncio.IncompleteReadError:
                return  # EOF, possibly after a partial line
            except TimeoutError:
                log.info("client_idle_closed")
                return
            finally:
                self._idle_since.pop(task, None)
            await self._answer(connection, line)

    async def _answer(self, connection: Connection, line: bytes) -> None:
        """Decode one request, dispatch it, send its reply (or its error) unless it is a
        notification or the handler replied itself (NoReply)."""
        try:
            request = rpc.decode_request(line)
        except rpc.RpcError as error:
            await connection.send(rpc.error_response(error))
            return
        try:
            result = await self._dispatch(request, connection)
        except rpc.RpcError as error:
            error.id = request.id
            if not request.is_notification:
                await connection.send(rpc.error_response(error))
            return
        except (ConnectionError, TimeoutError, asyncio.CancelledError):
            raise
        except Exception as exc:
            log.exception("handler_failed", method=request.method)
            if not request.is_notification:
                internal = rpc.RpcError(rpc.INTERNAL_ERROR, f"internal error: {exc}", id=request.id)
                await connection.send(rpc.error_response(internal))
            return
        if isinstance(result, NoReply) or request.is_notification:
            return
        try:
            reply = rpc.response(request.id, result)
        except rpc.RpcError as error:
            error.id = request.id
            reply = rpc.error_response(error)
        await connection.send(reply)
