"""A request-counting HTTP proxy in front of the loopback S3 server (tests/support/s3server.py).

rclone is pointed at the proxy as its S3 endpoint. The proxy forwards every byte unchanged in
both directions (keep-alive, `Expect: 100-continue`, chunked bodies, streamed large bodies)
and classifies each request in S3 terms (`Kind`). Signature V4 keeps working because the Host
header rclone signed (the proxy's address) reaches the server unchanged: `rclone serve s3`
checks the signature over the headers as received and does not compare Host with its own
address (every test in tests/integration/test_s3_counting.py goes through the proxy).

Requests are path-style (`/BUCKET/KEY`), as rclone sends them to provider `Other`.

    with serve_counting_s3(tmp_path / "s3") as s3:
        env = s3.rclone_env("s3")            # remote `s3:` through the proxy
        run(["rclone", "lsjson", "-R", f"s3:{s3.bucket}"], env)
        assert s3.counter.snapshot()[Kind.LIST] >= 1

Each request is recorded when its response head arrives from the server, before the proxy
forwards any of that response: once rclone has seen a response, its request is counted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import socket
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest

from tests.support.s3server import S3Server, serve_s3

READ_SIZE = 64 * 1024
MAX_LINE = 64 * 1024


class Kind(enum.StrEnum):
    """What an S3 request does, as far as cost and "did it list?" go."""

    LIST = "LIST"  # ListObjects(V2), ListBuckets, ListObjectVersions, ListMultipartUploads/Parts
    HEAD = "HEAD"  # HeadObject, HeadBucket
    GET = "GET"  # GetObject (a download)
    PUT = "PUT"  # PutObject, UploadPart
    COPY = "COPY"  # CopyObject, UploadPartCopy (server-side, x-amz-copy-source)
    DELETE = "DELETE"  # DeleteObject, DeleteObjects (POST ?delete)
    OTHER = "OTHER"  # bucket create/delete, multipart initiate/complete/abort, ACLs, ...


# Sub-resources of a bucket GET that list what the bucket holds.
_LISTING_PARAMS = frozenset(
    {"list-type", "prefix", "delimiter", "marker", "continuation-token", "start-after"}
    | {"max-keys", "encoding-type", "fetch-owner", "versions", "uploads"}
)


def classify(method: str, target: str, headers: Mapping[str, str]) -> Kind:
    """The S3 kind of a path-style request `METHOD TARGET` with (lower-cased) `headers`."""
    parts = urlsplit(target)
    # x-id names the SDK operation (`?x-id=PutObject`): a hint, not a sub-resource.
    params = {name for name, _ in parse_qsl(parts.query, keep_blank_values=True)} - {"x-id"}
    bucket, _, key = unquote(parts.path).lstrip("/").partition("/")
    method = method.upper()
    if method == "HEAD":
        return Kind.HEAD
    if method == "GET":
        if not bucket:
            return Kind.LIST
        if not key:
            return Kind.LIST if not params or params & _LISTING_PARAMS else Kind.OTHER
        if "uploadId" in params:
            return Kind.LIST  # ListParts
        return Kind.OTHER if params - {"versionId", "partNumber"} else Kind.GET
    if method == "PUT" and key:
        if "x-amz-copy-source" in headers:
            return Kind.COPY
        return Kind.PUT if params <= {"partNumber", "uploadId", "versionId"} else Kind.OTHER
    if method == "DELETE" and key and "uploadId" not in params:
        return Kind.DELETE
    if method == "POST" and bucket and "delete" in params:
        return Kind.DELETE
    return Kind.OTHER


@dataclass(frozen=True)
class RequestRecord:
    """One request that got a response (status 0: the connection ended before one came)."""

    kind: Kind
    method: str
    target: str  # path and query as sent, percent-encoded
    status: int
    body_bytes: int  # request body bytes forwarded (chunked framing removed)

    def __str__(self) -> str:
        return f"{self.kind:<6} {self.method} {self.target} -> {self.status}"


@dataclass(frozen=True)
class CountSnapshot:
    """The counts at one moment. `snapshot[Kind.LIST]` is the number of LIST requests."""

    counts: Mapping[Kind, int]  # answered requests per kind
    put_bytes: int  # body bytes of PUT requests (object uploads and parts) forwarded
    requests: tuple[RequestRecord, ...]  # in the order their responses came (or went missing)

    def __getitem__(self, kind: Kind) -> int:
        return self.counts[kind]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def unanswered(self) -> int:
        """Requests whose connection ended before a response (not in `counts`)."""
        return sum(1 for request in self.requests if not request.status)

    def nonzero(self) -> dict[str, int]:
        """{kind: count} for the kinds seen, e.g. {"HEAD": 2, "PUT": 1}: handy in asserts."""
        return {str(kind): n for kind, n in self.counts.items() if n}

    def describe(self) -> str:
        """The counts on one line and then one line per request, for assertion messages."""
        head = " ".join(f"{kind}={n}" for kind, n in self.counts.items()) + (
            f" put_bytes={self.put_bytes} unanswered={self.unanswered}"
        )
        return "\n".join([head, *(f"  {r}" for r in self.requests)])


class RequestCounter:
    """Counts per `Kind`, PUT body bytes and the request log; safe to use from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._counts = dict.fromkeys(Kind, 0)
        self._put_bytes = 0
        self._requests: list[RequestRecord] = []

    def add_put_bytes(self, n: int) -> None:
        with self._lock:
            self._put_bytes += n

    def record(self, request: RequestRecord) -> None:
        """Log `request`; count it unless it went unanswered (status 0): the server did not
        answer it, and rclone sends it again on a new connection, where it is counted."""
        with self._lock:
            if request.status:
                self._counts[request.kind] += 1
            self._requests.append(request)
            self._lock.notify_all()

    def reset(self) -> None:
        """Forget everything counted so far (requests in flight are counted when answered)."""
        with self._lock:
            self._counts = dict.fromkeys(Kind, 0)
            self._put_bytes = 0
            self._requests = []

    def snapshot(self) -> CountSnapshot:
        with self._lock:
            return self._snapshot()

    def wait_for(
        self, condition: Callable[[CountSnapshot], bool], timeout: float = 10.0
    ) -> CountSnapshot:
        """Wait until a request recorded makes `condition(snapshot)` true; that snapshot.
        Raises TimeoutError if none does within `timeout` seconds."""
        with self._lock:
            if not self._lock.wait_for(lambda: condition(self._snapshot()), timeout):
                raise TimeoutError(f"not seen within {timeout} s:\n{self._snapshot().describe()}")
            return self._snapshot()

    def _snapshot(self) -> CountSnapshot:
        return CountSnapshot(dict(self._counts), self._put_bytes, tuple(self._requests))


class _Pending:
    """A request forwarded to the server whose response has not arrived yet."""

    def __init__(self, kind: Kind, method: str, target: str) -> None:
        self.kind = kind
        self.method = method
        self.target = target
        self.body_bytes = 0

    def done(self, status: int) -> RequestRecord:
        return RequestRecord(self.kind, self.method, self.target, status, self.body_bytes)


class _ProtocolError(Exception):
    """The peer sent something that is not HTTP/1.x: the connection is dropped."""


def _read_line(reader: BinaryIO) -> bytes:
    line = reader.readline(MAX_LINE)
    if line and not line.endswith(b"\n"):
        raise _ProtocolError("line too long or cut off")
    return line


def _read_head(reader: BinaryIO) -> tuple[bytes, list[bytes]] | None:
    """The raw bytes of a message head and its lines (without CRLF); None at a clean EOF."""
    raw = bytearray()
    lines: list[bytes] = []
    while True:
        line = _read_line(reader)
        if not line:
            if raw:
                raise _ProtocolError("connection closed inside a message head")
            return None
        raw += line
        stripped = line.rstrip(b"\r\n")
        if not stripped:
            if lines:
                return bytes(raw), lines
            continue  # stray CRLF between messages (RFC 9112 2.2)
        lines.append(stripped)


def _header_map(lines: list[bytes]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise _ProtocolError(f"bad header line {line!r}")
        key = name.strip().lower()
        headers[key] = f"{headers[key]},{value.strip()}" if key in headers else value.strip()
    return headers


def _forward_body(
    reader: BinaryIO,
    sink: socket.socket,
    headers: Mapping[str, str],
    counted: list[_Pending | RequestCounter],
    until_close: bool,
) -> None:
    """Forward one message body unchanged. Its payload bytes are added to each of `counted`
    *before* they are sent, so a response to them never overtakes their count."""

    def payload(data: bytes) -> None:
        for target in counted:
            if isinstance(target, _Pending):
                target.body_bytes += len(data)
            else:
                target.add_put_bytes(len(data))
        sink.sendall(data)

    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size_line = _read_line(reader)
            if not size_line:
                raise _ProtocolError("connection closed inside a chunked body")
            sink.sendall(size_line)
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                break
            remaining = size
            while remaining:
                data = reader.read(min(remaining, READ_SIZE))
                if not data:
                    raise _ProtocolError("connection closed inside a chunk")
                remaining -= len(data)
                payload(data)
            sink.sendall(_read_line(reader))  # the CRLF closing the chunk
        while True:  # trailer fields, then the empty line
            line = _read_line(reader)
            if not line:
                raise _ProtocolError("connection closed inside chunked trailers")
            sink.sendall(line)
            if not line.rstrip(b"\r\n"):
                return
    if "content-length" in headers:
        remaining = int(headers["content-length"].split(",")[0])
        while remaining:
            data = reader.read(min(remaining, READ_SIZE))
            if not data:
                raise _ProtocolError("connection closed inside a body")
            remaining -= len(data)
            payload(data)
        return
    if until_close:
        read1 = getattr(reader, "read1", reader.read)
        while data := read1(READ_SIZE):
            payload(data)


class _Connection:
    """One client connection and its own connection to the server, two pumping threads."""

    def __init__(
        self,
        client: socket.socket,
        upstream: tuple[str, int],
        counter: RequestCounter,
        on_closed: Callable[[_Connection], None],
    ) -> None:
        self.client = client
        self.on_closed = on_closed
        self.server = socket.create_connection(upstream)
        for sock in (self.client, self.server):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.counter = counter
        self.pending: deque[_Pending] = deque()
        self.threads = [
            threading.Thread(target=self._requests, name="s3-proxy-requests", daemon=True),
            threading.Thread(target=self._responses, name="s3-proxy-responses", daemon=True),
        ]
        self._closing = threading.Lock()
        self._ended = 0

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def close(self) -> None:
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _half_done(self, sink: socket.socket, failed: bool) -> None:
        """One direction ended: pass the EOF on; close both sockets when both have ended
        (or at once after an error, which also wakes the other thread)."""
        with self._closing:
            self._ended += 1
            both = self._ended == 2
        if failed or both:
            self.close()
            if both:
                for pending in self.pending:  # asked, never answered
                    self.counter.record(pending.done(0))
                self.pending.clear()
                self.on_closed(self)
        else:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

    def _requests(self) -> None:
        failed = False
        try:
            with self.client.makefile("rb") as reader:
                while head := _read_head(reader):
                    raw, lines = head
                    method, target, _version = lines[0].decode("latin-1").split(" ", 2)
                    headers = _header_map(lines)
                    pending = _Pending(classify(method, target, headers), method, target)
                    self.pending.append(pending)  # before the server can answer it
                    self.server.sendall(raw)
                    counted: list[_Pending | RequestCounter] = [pending]
                    if pending.kind is Kind.PUT:
                        counted.append(self.counter)
                    _forward_body(reader, self.server, headers, counted, until_close=False)
        except (OSError, ValueError, _ProtocolError):
            failed = True
        self._half_done(self.server, failed)

    def _responses(self) -> None:
        failed = False
        try:
            with self.server.makefile("rb") as reader:
                while head := _read_head(reader):
                    raw, lines = head
                    status = int(lines[0].split(b" ", 2)[1])
                    headers = _header_map(lines)
                    if 100 <= status < 200:  # 100 Continue: the final response follows
                        self.client.sendall(raw)
                        continue
                    pending = self.pending.popleft()
                    self.counter.record(pending.done(status))
                    self.client.sendall(raw)
                    if pending.method != "HEAD" and status not in (204, 304):
                        _forward_body(reader, self.client, headers, [], until_close=True)
        except (OSError, ValueError, IndexError, _ProtocolError):
            failed = True
        self._half_done(self.client, failed)


class CountingProxy:
    """The proxy: listens on 127.0.0.1 (a free port), forwards to `upstream` (host, port)."""

    def __init__(self, upstream: tuple[str, int], counter: RequestCounter | None = None) -> None:
        self.upstream = upstream
        self.counter = counter or RequestCounter()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._connections: set[_Connection] = set()
        self._lock = threading.Lock()
        self._accepted = 0
        self._accepting = threading.Thread(target=self._accept, name="s3-proxy", daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def connections_accepted(self) -> int:
        """Client connections accepted so far (keep-alive reuses one for many requests)."""
        with self._lock:
            return self._accepted

    def start(self) -> CountingProxy:
        self._accepting.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut every open connection."""
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._accepting.join(timeout=5)
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            connection.close()
        for connection in connections:
            for thread in connection.threads:
                thread.join(timeout=5)

    def _accept(self) -> None:
        while True:
            try:
                client, _address = self._listener.accept()
            except OSError:
                return  # closed by stop()
            try:
                connection = _Connection(client, self.upstream, self.counter, self._closed)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._connections.add(connection)
                self._accepted += 1
            connection.start()

    def _closed(self, connection: _Connection) -> None:
        with self._lock:
            self._connections.discard(connection)


@dataclass(frozen=True)
class CountingS3:
    """A loopback S3 server reached through a counting proxy.

    `endpoint` is the proxy's URL (what rclone gets), `bucket` an existing empty bucket,
    `server` the S3 server behind the proxy (its `root` holds the buckets as folders).
    """

    server: S3Server
    proxy: CountingProxy
    bucket: str

    @property
    def endpoint(self) -> str:
        return self.proxy.endpoint

    @property
    def access_key_id(self) -> str:
        return self.server.access_key_id

    @property
    def secret_access_key(self) -> str:
        return self.server.secret_access_key

    @property
    def counter(self) -> RequestCounter:
        return self.proxy.counter

    @property
    def root(self) -> Path:
        return self.server.root

    def rclone_env(self, remote: str = "s3") -> dict[str, str]:
        """RCLONE_CONFIG_* variables defining `remote:` (type s3, provider Other) through the
        proxy; add RCLONE_CONFIG="" and the rest of the environment yourself."""
        return dataclasses.replace(self.server, endpoint=self.endpoint).rclone_env(remote)


@contextlib.contextmanager
def serve_counting_s3(root: Path, bucket: str = "bucket") -> Iterator[CountingS3]:
    """`rclone serve s3 ROOT` with a counting proxy in front, and `bucket` created (empty)."""
    with serve_s3(root) as server:
        server.bucket(bucket).mkdir(parents=True, exist_ok=True)
        host, port = server.endpoint.removeprefix("http://").rsplit(":", 1)
        proxy = CountingProxy((host, int(port))).start()
        try:
            yield CountingS3(server, proxy, bucket)
        finally:
            proxy.stop()


@pytest.fixture
def counting_s3(tmp_path: Path) -> Iterator[CountingS3]:
    """A loopback S3 server over tmp_path/s3 behind a counting proxy, bucket "bucket" empty."""
    with serve_counting_s3(tmp_path / "s3") as s3:
        yield s3
