"""The daemon's control socket: start-up, ping/status, modes, bad input, one instance per data dir.

Every test runs a real `photos-sync daemon` subprocess (tests/support/daemon.py).
"""

from __future__ import annotations

import json
import signal
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from photos_sync.core import rpc
from tests.support.cli import photos_sync
from tests.support.daemon import DaemonPool, RpcFailure, daemon_pool

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def daemons() -> Iterator[DaemonPool]:
    with daemon_pool() as pool:
        yield pool


def test_ping_and_status_over_the_socket(daemons: DaemonPool, isolated_env: dict[str, str]) -> None:
    daemon = daemons.start()
    pong = daemon.call("ping")
    assert pong["pid"] == daemon.pid
    assert pong["version"]
    assert pong["uptime"] >= 0
    status = daemon.call("status")
    assert status["destinations"] == [] and status["jobs"] == []
    assert status["daemon"]["pid"] == daemon.pid
    assert status["daemon"]["run"] is None
    assert status["daemon"]["schedule"] is None
    assert daemon.call("cancel") == {"cancelled": False, "run": None}
    # start without a destination is a usage error, with the app code
    with pytest.raises(RpcFailure) as caught:
        daemon.call("start")
    assert caught.value.code == rpc.USAGE
    assert "--setup" in caught.value.message
    # the daemon wrote its pid in the data dir lock
    lock = Path(isolated_env["PHOTOS_SYNC_DATA_DIR"]) / "daemon.lock"
    assert lock.read_text().strip() == str(daemon.pid)


def test_socket_and_folder_modes(daemons: DaemonPool, isolated_env: dict[str, str]) -> None:
    sock_path = Path(isolated_env["PHOTOS_SYNC_SOCKET"])
    assert not sock_path.parent.exists()
    daemons.start()
    # a folder the daemon creates is private (one it finds is left alone: test_daemon_socket.py)
    assert stat.S_IMODE(sock_path.parent.stat().st_mode) == 0o700
    info = sock_path.stat()
    assert stat.S_ISSOCK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o600


def test_sd_notify_ready_status_and_watchdog(daemons: DaemonPool) -> None:
    daemon = daemons.start({"WATCHDOG_USEC": "200000"})
    ready = next(m for m in daemon.notifications if "READY=1" in m)
    assert f"MAINPID={daemon.pid}" in ready and "STATUS=" in ready
    assert "WATCHDOG=1" in daemon.receive_notify(5)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(10) == 0
    assert any("STOPPING=1" in daemon.receive_notify(5) for _ in range(5))


def test_stale_socket_is_replaced_but_a_live_one_is_not(
    daemons: DaemonPool, isolated_env: dict[str, str]
) -> None:
    sock_path = Path(isolated_env["PHOTOS_SYNC_SOCKET"])
    sock_path.parent.mkdir(mode=0o700)
    leftover = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    leftover.bind(str(sock_path))  # bound, never listening, then closed: what a crash leaves
    leftover.close()
    assert sock_path.exists()
    daemon = daemons.start()
    assert daemon.call("ping")["pid"] == daemon.pid

    # Something else answering on the socket path (another data dir's daemon) is never removed.
    other = daemons.start(
        {"PHOTOS_SYNC_DATA_DIR": str(sock_path.parent.parent / "other-data")}, expect_ready=False
    )
    assert other.wait(20) == 1
    assert "answers on" in other.stderr_text()
    assert daemon.call("ping")["pid"] == daemon.pid


def test_a_regular_file_at_the_socket_path_is_refused(
    daemons: DaemonPool, isolated_env: dict[str, str]
) -> None:
    sock_path = Path(isolated_env["PHOTOS_SYNC_SOCKET"])
    sock_path.parent.mkdir(mode=0o700)
    sock_path.write_text("not a socket")
    daemon = daemons.start(expect_ready=False)
    assert daemon.wait(20) == 1
    assert "not a socket" in daemon.stderr_text()
    assert sock_path.read_text() == "not a socket"


def test_a_second_daemon_is_refused_naming_the_first(daemons: DaemonPool) -> None:
    first = daemons.start()
    second = photos_sync("daemon", timeout=20)
    assert second.returncode == 1
    assert f"pid {first.pid}" in second.stderr
    assert first.call("ping")["pid"] == first.pid


def test_bad_frames_of_every_kind_and_the_daemon_still_answers(daemons: DaemonPool) -> None:
    daemon = daemons.start()

    def exchange(payload: bytes) -> dict[str, object] | None:
        with daemon.connect() as conn:
            conn.send_raw(payload)
            return conn.read()

    def code(reply: dict[str, object] | None) -> int:
        assert reply is not None
        error = reply["error"]
        assert isinstance(error, dict)
        return int(error["code"])

    # a client that connects and says nothing does not block anyone
    silent = daemon.connect()
    assert code(exchange(b"\x00\xff\xfe\x80garbage\n")) == rpc.PARSE_ERROR
    assert code(exchange(b'{"jsonrpc": "2.0", "id": 1, "method": "ping"\n')) == rpc.PARSE_ERROR
    deep = b'{"jsonrpc":"2.0","id":1,"method":"start","params":' + b"[" * 100_000
    assert code(exchange(deep + b"]" * 100_000 + b"}\n")) == rpc.INVALID_REQUEST
    wrong = b'{"jsonrpc":"2.0","id":2,"method":"start","params":{"dry_run":"yes"}}\n'
    reply = exchange(wrong)
    assert code(reply) == rpc.INVALID_PARAMS and reply is not None and reply["id"] == 2
    assert code(exchange(b'{"jsonrpc":"2.0","id":3,"method":"format_disk"}\n')) == (
        rpc.METHOD_NOT_FOUND
    )
    assert code(exchange(b'[{"jsonrpc":"2.0","id":4,"method":"ping"}]\n')) == rpc.INVALID_REQUEST
    # a notification (no id) gets no reply, and the connection goes on
    with daemon.connect() as conn:
        conn.send_raw(b'{"jsonrpc":"2.0","method":"ping"}\n')
        assert conn.call("ping")["pid"] == daemon.pid
    # oversized line: an error, then the connection is closed
    with daemon.connect() as conn:
        conn.send_raw(b"x" * (rpc.MAX_MESSAGE + 10))
        assert code(conn.read()) == rpc.INVALID_REQUEST
        assert conn.read() is None
    # garbage then hang-up mid-line
    with daemon.connect() as conn:
        conn.send_raw(b'{"jsonrpc": "2.0", "id"')
    # errors do not close a connection: the next request is served
    with daemon.connect() as conn:
        conn.send_raw(b"nonsense\n")
        assert code(conn.read()) == rpc.PARSE_ERROR
        assert conn.call("ping")["pid"] == daemon.pid
    assert daemon.call("ping")["pid"] == daemon.pid
    silent.close()
    assert daemon.proc.poll() is None


def test_many_clients_at_once(daemons: DaemonPool) -> None:
    daemon = daemons.start()
    results: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(40)

    def client() -> None:
        try:
            with daemon.connect() as conn:
                barrier.wait(10)
                for _ in range(5):
                    results.append(conn.call("ping")["pid"])
                conn.call("status")
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=client) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    assert results == [daemon.pid] * 200


def test_subscribe_with_nothing_running_returns_at_once(daemons: DaemonPool) -> None:
    daemon = daemons.start()
    assert daemon.call("subscribe") == {"run": None, "ended": None}
    assert daemon.call("subscribe", {"run": 99}) == {"run": None, "ended": None}


def test_status_json_is_serialisable_and_stable(daemons: DaemonPool) -> None:
    daemon = daemons.start()
    with daemon.connect() as conn:
        conn.send_raw(b'{"jsonrpc":"2.0","id":"s","method":"status"}\n')
        raw = conn.file.readline()
    reply = json.loads(raw)
    assert reply["id"] == "s" and set(reply["result"]) >= {"destinations", "jobs", "daemon"}
