"""Issue #18, points 4 and 9a, with real daemon subprocesses.

4: the daemon gives its modes only to folders it creates. A folder it finds keeps its mode; a
shared sticky folder (/tmp-like) gets a private `photos-sync-<uid>` subfolder; a folder other
users can write to is refused with one line.

9a: the CLI decides "is a daemon there" from the data dir's lock, not from a connect. Idle
connections do not lock the CLI out; a daemon that holds the lock but does not answer (stopped,
all connections busy) is an error, never a reason to back up in the foreground beside it.
"""

from __future__ import annotations

import fcntl
import os
import select
import shutil
import signal
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from photos_sync_daemon.lock import DataDirLock

from photos_sync.core import rpc
from photos_sync.system.control_socket import LockHolder, lock_holder, socket_location
from tests.immich_tree import TreeStats
from tests.support.cli import photos_sync
from tests.support.daemon import Connection, DaemonPool, daemon_pool, db_jobs, setup_local

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def daemons() -> Iterator[DaemonPool]:
    with daemon_pool() as pool:
        yield pool


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A fresh folder with a short path (a Unix socket path holds ~104 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="ps18-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


# -- 4: the socket's folder ----------------------------------------------------------------


def test_an_existing_folder_keeps_its_mode(
    daemons: DaemonPool, isolated_env: dict[str, str]
) -> None:
    sock_path = Path(isolated_env["PHOTOS_SYNC_SOCKET"])
    sock_path.parent.mkdir()
    os.chmod(sock_path.parent, 0o755)  # e.g. /run as root: not ours to tighten
    daemon = daemons.start()
    assert mode(sock_path.parent) == 0o755
    assert stat.S_ISSOCK(sock_path.lstat().st_mode) and mode(sock_path) == 0o600
    status = photos_sync("backup", "--status")
    assert status.returncode == 0, status.stderr
    assert f"daemon: pid {daemon.pid}" in status.stdout


def test_missing_folders_are_created_private(
    daemons: DaemonPool, tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    sock_path = tmp_path / "a" / "b" / "d.sock"
    daemons.start({"PHOTOS_SYNC_SOCKET": str(sock_path)})
    assert mode(tmp_path / "a") == 0o700 and mode(tmp_path / "a" / "b") == 0o700
    assert mode(sock_path) == 0o600


def test_a_sticky_shared_folder_gets_a_private_subfolder(
    daemons: DaemonPool, short_dir: Path, isolated_env: dict[str, str]
) -> None:
    shared = short_dir / "t"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # like /tmp
    configured = shared / "d.sock"
    daemon = daemons.start({"PHOTOS_SYNC_SOCKET": str(configured)})
    assert mode(shared) == 0o1777
    private = shared / f"photos-sync-{os.getuid()}"
    assert daemon.socket_path == private / "d.sock" == socket_location(configured)
    assert mode(private) == 0o700
    assert stat.S_ISSOCK(daemon.socket_path.lstat().st_mode) and mode(daemon.socket_path) == 0o600
    assert not configured.exists()
    assert daemon.call("status")["daemon"]["socket"] == str(private / "d.sock")
    # the CLI finds it there
    status = photos_sync("backup", "--status", env={"PHOTOS_SYNC_SOCKET": str(configured)})
    assert status.returncode == 0, status.stderr
    assert f"daemon: pid {daemon.pid}" in status.stdout


@pytest.mark.parametrize("owner", ["us, writable by others", "another user"])
def test_a_private_subfolder_that_is_not_private_is_refused(
    daemons: DaemonPool, short_dir: Path, isolated_env: dict[str, str], owner: str
) -> None:
    shared = short_dir / "t"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    private = shared / f"photos-sync-{os.getuid()}"
    private.mkdir()
    if owner == "another user":
        if os.getuid() != 0:
            pytest.skip("giving a folder to another user needs root")
        os.chown(private, 65534, 65534)
        os.chmod(private, 0o700)
        expected = "belongs to another user"
    else:
        os.chmod(private, 0o777)
        expected = "writable by other users"
    before = mode(private)
    daemon = daemons.start({"PHOTOS_SYNC_SOCKET": str(shared / "d.sock")}, expect_ready=False)
    assert daemon.wait(20) == 1
    (line,) = error_lines(daemon.stderr_text())
    assert expected in line and str(private) in line, line
    assert mode(private) == before and not list(private.iterdir())


@pytest.mark.parametrize("missing", [False, True], ids=["socket folder", "its parent"])
def test_a_folder_others_can_write_to_is_refused(
    daemons: DaemonPool, short_dir: Path, isolated_env: dict[str, str], missing: bool
) -> None:
    open_folder = short_dir / "w"
    open_folder.mkdir()
    os.chmod(open_folder, 0o777)  # world-writable, no sticky bit: anyone may swap the socket
    sock_path = open_folder / "sub" / "d.sock" if missing else open_folder / "d.sock"
    daemon = daemons.start({"PHOTOS_SYNC_SOCKET": str(sock_path)}, expect_ready=False)
    assert daemon.wait(20) == 1
    (line,) = error_lines(daemon.stderr_text())
    assert "writable by other users" in line and str(open_folder) in line, line
    assert mode(open_folder) == 0o777
    assert list(open_folder.iterdir()) == []


# -- 9a: "is a daemon there" ------------------------------------------------------------------


def test_idle_connections_do_not_send_the_cli_to_the_foreground(
    daemons: DaemonPool,
    tmp_path: Path,
    immich: tuple[Path, TreeStats],
    isolated_env: dict[str, str],
) -> None:
    setup_local(tmp_path)
    daemon = daemons.start()
    idle: list[socket.socket] = []
    try:
        for _ in range(200):  # more than the daemon's 128 connections
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            idle.append(sock)
            sock.connect(str(daemon.socket_path))
        result = photos_sync("backup", timeout=60)
        assert result.returncode == 0, result.stderr
        assert "running in the photos-sync daemon" in result.stdout
        last = daemon.call("status")["daemon"]["last_run"]
        assert last is not None and last["ok"], last
    finally:
        for sock in idle:
            sock.close()


def test_a_daemon_that_does_not_answer_is_not_taken_for_none(
    daemons: DaemonPool,
    tmp_path: Path,
    immich: tuple[Path, TreeStats],
    isolated_env: dict[str, str],
) -> None:
    dest = setup_local(tmp_path)
    before = sorted(p.name for p in dest.iterdir())
    daemon = daemons.start()
    daemon.signal(signal.SIGSTOP)  # holds the lock and the socket, answers nothing
    try:
        for args in (
            ["backup"],
            ["backup", "--status"],
            ["backup", "--status", "--json"],
            ["restore", "--to", str(tmp_path / "restored")],
        ):
            result = photos_sync(*args, timeout=30)
            assert result.returncode == 1, (args, result.stdout, result.stderr)
            assert result.stdout == "", args
            (line,) = error_lines(result.stderr)
            assert f"daemon (pid {daemon.pid})" in line and "does not answer" in line, line
            assert "no answer within" in line and "nothing was started" in line, line
        assert db_jobs(isolated_env["PHOTOS_SYNC_DATA_DIR"]) == []
        assert sorted(p.name for p in dest.iterdir()) == before
        assert not (tmp_path / "restored").exists()
        # the live view reads the DB instead, and says why
        view = photos_sync("backup", "--status", "--watch", "--once", timeout=30)
        assert view.returncode == 0, view.stderr
        assert f"daemon (pid {daemon.pid}) does not answer: figures from the job" in view.stdout
    finally:
        daemon.signal(signal.SIGCONT)
    # No socket file where the CLI looks (another PHOTOS_SYNC_SOCKET, or a daemon starting or
    # stopping): still no foreground run.
    moved = photos_sync("backup", env={"PHOTOS_SYNC_SOCKET": str(tmp_path / "elsewhere.sock")})
    assert moved.returncode == 1
    (line,) = error_lines(moved.stderr)
    assert "no socket there" in line and "PHOTOS_SYNC_SOCKET" in line, line
    assert db_jobs(isolated_env["PHOTOS_SYNC_DATA_DIR"]) == []


def test_when_every_connection_is_busy_the_newcomer_is_told_so(
    daemons: DaemonPool,
    tmp_path: Path,
    immich: tuple[Path, TreeStats],
    isolated_env: dict[str, str],
) -> None:
    setup_local(tmp_path)
    daemon = daemons.start()
    waiting: list[Connection] = []
    try:
        for _ in range(128):  # each one then waits for the next run: busy, not idle
            conn = daemon.connect()
            waiting.append(conn)
            conn.send_raw(rpc.request(1, "ping") + rpc.request(2, "subscribe", {"wait": True}))
            reply = conn.read()
            assert reply is not None and reply["id"] == 1  # the daemon serves this connection
        deadline = time.monotonic() + 10
        while True:  # a probe answered means one subscription was not read yet: ask again
            with daemon.connect() as probe:
                # The refusal comes before any request. A request sent a moment after it (as
                # a slow client does) must still land, so the client reads why, not EPIPE.
                if select.select([probe.sock], [], [], 2)[0]:
                    time.sleep(0.5)
                probe.send_raw(rpc.request(7, "ping"))
                answer = probe.read()
            if answer is None or "error" in answer or time.monotonic() > deadline:
                break
        assert answer is not None and answer["error"]["code"] == rpc.BUSY, answer
        assert answer["id"] is None and "all busy" in answer["error"]["message"]

        result = photos_sync("backup", timeout=60)
        assert result.returncode == 1, result.stdout
        (line,) = error_lines(result.stderr)
        assert "all busy" in line and f"pid {daemon.pid}" in line, line
        assert db_jobs(isolated_env["PHOTOS_SYNC_DATA_DIR"]) == []
    finally:
        for conn in waiting:
            conn.close()
    # The daemon notices the hang-ups as its loop gets to them: once it has, it answers again.
    deadline = time.monotonic() + 20
    while True:
        try:
            assert daemon.call("ping")["pid"] == daemon.pid
            break
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)  # no event tells a client that a slot is free again


# -- the lock as the CLI reads it -----------------------------------------------------------


def test_lock_holder_reads_the_daemon_lock(tmp_path: Path) -> None:
    assert lock_holder(tmp_path) is None  # no lock file
    lock = DataDirLock(tmp_path)
    lock.acquire()
    try:
        assert lock_holder(tmp_path) == LockHolder(os.getpid())
    finally:
        lock.release()
    assert (tmp_path / "daemon.lock").exists()
    assert lock_holder(tmp_path) is None  # a file nobody holds


def test_a_daemon_starting_during_a_cli_probe_still_starts(tmp_path: Path) -> None:
    """The CLI's probe holds a shared lock for an instant; a daemon starting then waits it out
    instead of reporting "already running" (with "pid unknown")."""
    (tmp_path / "daemon.lock").touch()
    probe = os.open(tmp_path / "daemon.lock", os.O_RDONLY)
    fcntl.flock(probe, fcntl.LOCK_SH | fcntl.LOCK_NB)
    release = threading.Timer(0.1, os.close, (probe,))
    release.start()
    lock = DataDirLock(tmp_path)
    try:
        lock.acquire()
        assert (tmp_path / "daemon.lock").read_text().strip() == str(os.getpid())
    finally:
        release.join()
        lock.release()
