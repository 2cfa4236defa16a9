"""Fault 6: a hostile control socket. Thousands of fuzzed frames (hypothesis), 8 MiB lines,
deeply nested JSON, half-open connections and 100 clients at once: the daemon stays up,
answers correctly afterwards, and holds no more file descriptors than before.
"""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from photos_sync.core import rpc
from tests.reliability.harness import fd_count, wait_until
from tests.support.daemon import DaemonPool, DaemonProcess

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(120)]

FRAMES = 2000
METHODS = [*rpc.PARAMS, "nope", "", "PING", "ping\x00", "__init__"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
requests = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.sampled_from(["2.0", "1.0", 2.0, None]),
        "id": st.one_of(st.integers(), st.text(max_size=10), st.none(), st.booleans(), json_values),
        "method": st.one_of(st.sampled_from(METHODS), json_values),
        "params": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "destination": json_values,
                    "dry_run": json_values,
                    "force": json_values,
                    "run": json_values,
                    "wait": st.just(False),
                },
            ),
            json_values,
        ),
        "extra": json_values,
    },
)
frames = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(str.encode),
    json_values.map(lambda v: json.dumps(v).encode()),
    requests.map(lambda v: json.dumps(v).encode()),
    requests.map(lambda v: json.dumps(v).encode()[: max(1, len(json.dumps(v)) // 2)]),
)


class Client:
    """A raw connection that sends a frame, then a ping, and reads up to the ping's answer."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = self._open()
        self.buffer = b""
        self.sent = 0
        self.reconnects = 0

    def _open(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        sock.connect(str(self.path))
        return sock

    def _line(self) -> bytes:
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line

    def exchange(self, frame: bytes) -> list[dict[str, Any]]:
        marker = f"sentinel-{self.sent}"
        self.sent += 1
        ping = rpc.request(marker, "ping")
        try:
            # a frame without a newline would swallow the ping: end it first
            self.sock.sendall(frame + b"\n" + ping)
            replies: list[dict[str, Any]] = []
            while True:
                message = json.loads(self._line())
                assert message.get("jsonrpc") == "2.0", message
                assert ("result" in message) != ("error" in message), message
                if message.get("id") == marker:
                    assert message["result"]["pid"] > 0
                    return replies
                replies.append(message)
        except (ConnectionError, TimeoutError, OSError):
            # The daemon may close a connection (an oversized line): carry on with a new one.
            self.sock.close()
            self.sock = self._open()
            self.buffer = b""
            self.reconnects += 1
            return []


def _answers_correctly(daemon: DaemonProcess) -> None:
    assert daemon.call("ping")["pid"] == daemon.pid
    status = daemon.call("status")
    assert status["daemon"]["pid"] == daemon.pid
    assert status["jobs"] == []


def test_hostile_control_socket(daemons: DaemonPool, isolated_env: dict[str, str]) -> None:
    daemon = daemons.start()
    _answers_correctly(daemon)
    baseline = fd_count(daemon.pid)
    socket_path = daemon.socket_path

    # 1. fuzzed frames, each followed by a ping that must be answered
    client = Client(socket_path)

    @settings(
        max_examples=FRAMES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(frame=frames)
    def fuzz(frame: bytes) -> None:
        for reply in client.exchange(frame):
            if "error" in reply:
                assert isinstance(reply["error"]["code"], int)
                assert isinstance(reply["error"]["message"], str)

    fuzz()
    client.sock.close()
    assert client.sent >= FRAMES
    assert client.reconnects == 0, "no fuzzed frame is a reason to drop the connection"

    # 2. 8 MiB lines, with and without a newline, and deeply nested JSON
    for payload in (b"x" * (8 << 20) + b"\n", b'{"a":' * (4 << 20), b"[" * 500_000 + b"\n"):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(20)
            sock.connect(str(socket_path))
            try:
                sock.sendall(payload)
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the daemon hung up mid-line: allowed
            try:
                reply = sock.recv(65536)
            except OSError:
                reply = b""
            if reply:
                assert json.loads(reply.splitlines()[0])["error"]["code"] in (
                    rpc.INVALID_REQUEST,
                    rpc.PARSE_ERROR,
                )
    deep = ("[" * 40 + "]" * 40).encode()
    nested = b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"a":' + deep + b"}}"
    with daemon.connect() as conn:
        conn.send_raw(nested + b"\n")
        answer = conn.read()
        assert answer is not None
        assert answer["error"]["code"] in (rpc.INVALID_REQUEST, rpc.INVALID_PARAMS)
        conn.send_raw(b"[" * 100_000 + b"]" * 100_000 + b"\n")
        answer = conn.read()
        assert answer is not None and answer["error"]["code"] == rpc.INVALID_REQUEST
    _answers_correctly(daemon)

    # 3. half-open connections (a partial line, then silence or a half close) while 100
    #    clients call at once
    half_open = []
    for n in range(20):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(socket_path))
        sock.sendall(b'{"jsonrpc":"2.0","id":1,"meth')
        if n % 2:
            sock.shutdown(socket.SHUT_WR)
        half_open.append(sock)
    results: list[Any] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(100)

    def call() -> None:
        try:
            with daemon.connect(timeout=30) as conn:
                barrier.wait(30)
                results.append((conn.call("ping")["pid"], conn.call("status")["daemon"]["pid"]))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors[:3]
    assert results == [(daemon.pid, daemon.pid)] * 100
    for sock in half_open:
        sock.close()

    # 4. still up, still right, and every connection's fd given back
    _answers_correctly(daemon)
    assert daemon.proc.poll() is None
    assert wait_until(lambda: fd_count(daemon.pid) <= baseline, 10), (
        f"fd leak: {fd_count(daemon.pid)} open, {baseline} before"
    )
