"""Start a REAL `photos-sync daemon` subprocess in the test's environment, and talk to it.

Readiness is an event, not a sleep: the harness binds a datagram socket, passes it as
NOTIFY_SOCKET (as systemd would), waits for the daemon's READY=1, then connects to the
control socket. Every daemon started through a `DaemonPool` is killed (with its rclone
children) when the test ends.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from photos_sync.system.control_socket import socket_location
from tests.support.cli import PHOTOS_SYNC
from tests.support.procs import children_of as children_of  # tests look for rclone children


class RpcFailure(RuntimeError):
    def __init__(self, error: Mapping[str, Any]) -> None:
        super().__init__(f"{error.get('code')}: {error.get('message')}")
        self.code = int(error.get("code", 0))
        self.message = str(error.get("message", ""))


def alive(pid: int) -> bool:
    """True if `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class Connection:
    """A blocking JSON-RPC connection to the daemon's socket."""

    def __init__(self, path: Path, timeout: float = 15.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.file = self.sock.makefile("rb")
        self._ids = itertools.count(1)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
            self.sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self) -> dict[str, Any] | None:
        line = self.file.readline()
        return json.loads(line) if line else None

    def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        request_id = next(self._ids)
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = dict(params)
        self.send_raw(json.dumps(message).encode() + b"\n")
        while True:
            reply = self.read()
            assert reply is not None, "the daemon closed the connection"
            if reply.get("id") != request_id:
                continue
            if "error" in reply:
                raise RpcFailure(reply["error"])
            return reply["result"]

    def follow(self, run: int | None = None, wait: bool = False) -> Iterator[dict[str, Any]]:
        """subscribe, then yield notifications until run_ended (included)."""
        params: dict[str, Any] = {"wait": wait}
        if run is not None:
            params["run"] = run
        ack = self.call("subscribe", params)
        if ack["ended"] is not None:
            yield {"method": "run_ended", "params": ack["ended"]}
            return
        assert ack["run"] is not None, "nothing to follow"
        while True:
            note = self.read()
            assert note is not None, "the daemon closed the connection"
            yield note
            if note.get("method") == "run_ended":
                return


@dataclass
class DaemonProcess:
    proc: subprocess.Popen[bytes]
    socket_path: Path
    notify: socket.socket
    stderr_path: Path
    notifications: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def connect(self, timeout: float = 15.0) -> Connection:
        return Connection(self.socket_path, timeout)

    def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        with self.connect() as conn:
            return conn.call(method, params)

    def wait_progress(self, folder: str | None = None, run: int | None = None) -> dict[str, Any]:
        """Block until the run reports bytes moving (in `folder`), mid-transfer; return it."""
        with self.connect(timeout=30) as conn:
            for note in conn.follow(run=run, wait=True):
                if note["method"] == "run_ended":
                    raise AssertionError(f"the run ended before any progress: {note}")
                event = note["params"]
                data = event["data"]
                if event["kind"] != "job_progress" or (folder and data["folder"] != folder):
                    continue
                if 0 < data["bytes_done"] < data["bytes_total"]:
                    return dict(data)
        raise AssertionError("no progress seen")

    def wait_run_end(self, run: int | None = None, wait: bool = True) -> dict[str, Any]:
        with self.connect(timeout=60) as conn:
            for note in conn.follow(run=run, wait=wait):
                if note["method"] == "run_ended":
                    return dict(note["params"])
        raise AssertionError("no end seen")

    def stderr_text(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def receive_notify(self, timeout: float) -> str:
        self.notify.settimeout(timeout)
        data = self.notify.recv(4096).decode()
        self.notifications.append(data)
        return data


class DaemonPool:
    """Starts daemons for one test and cleans them up."""

    def __init__(self) -> None:
        self._started: list[DaemonProcess] = []
        self._dir = Path(tempfile.mkdtemp(prefix="psd-", dir="/tmp"))
        self._count = itertools.count()

    def start(
        self,
        env: Mapping[str, str] | None = None,
        *,
        ready_timeout: float = 20.0,
        expect_ready: bool = True,
        argv: Sequence[str] | None = None,
        inherit_env: bool = True,
        cwd: Path | None = None,
        socket_path: Path | None = None,
    ) -> DaemonProcess:
        """Start `photos-sync daemon` (or `argv`) with the test's environment plus `env`;
        with `inherit_env=False`, with `env` alone (and NOTIFY_SOCKET), as a service manager
        would. `socket_path` defaults to PHOTOS_SYNC_SOCKET of that environment."""
        full_env = dict(os.environ) if inherit_env else {}
        full_env.update(env or {})
        notify_path = self._dir / f"notify-{next(self._count)}"
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(notify_path))
        full_env["NOTIFY_SOCKET"] = str(notify_path)
        socket_path = socket_path or Path(full_env["PHOTOS_SYNC_SOCKET"])
        stderr_path = self._dir / f"daemon-{notify_path.name}.err"
        with stderr_path.open("wb") as stderr:
            proc = subprocess.Popen(
                list(argv) if argv is not None else [PHOTOS_SYNC, "daemon"],
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                cwd=cwd,
            )
        socket_path = socket_location(socket_path)
        daemon = DaemonProcess(proc, socket_path, notify, stderr_path)
        self._started.append(daemon)
        if not expect_ready:
            return daemon
        deadline = time.monotonic() + ready_timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"daemon not ready in time:\n{daemon.stderr_text()}")
            try:
                message = daemon.receive_notify(min(remaining, 0.5))
            except TimeoutError:
                if proc.poll() is not None:
                    raise AssertionError(
                        f"daemon exited with {proc.returncode}:\n{daemon.stderr_text()}"
                    ) from None
                continue
            if "READY=1" in message.splitlines():
                break
        assert daemon.call("ping")["pid"] == proc.pid
        return daemon

    def close(self) -> None:
        for daemon in self._started:
            if daemon.proc.poll() is None:
                for child in children_of(daemon.pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(child, signal.SIGKILL)
                daemon.proc.kill()
                daemon.proc.wait(10)
            daemon.notify.close()
        for path in self._dir.iterdir():
            path.unlink()
        self._dir.rmdir()


@contextlib.contextmanager
def daemon_pool() -> Iterator[DaemonPool]:
    pool = DaemonPool()
    try:
        yield pool
    finally:
        pool.close()


def setup_local(tmp_path: Path, name: str = "nas") -> Path:
    """Create a local destination `name` in a fresh folder, as the CLI's
    `backup --setup local` does (a copy of one real setup when that is the same thing:
    tests/support/destinations.py)."""
    from tests.support.cli import photos_sync
    from tests.support.destinations import clone_local

    dest = tmp_path / f"dest-{name}"
    dest.mkdir()
    if clone_local(dest, name):
        return dest
    result = photos_sync("backup", "--setup", "local", "--name", name, "--path", str(dest), "--yes")
    assert result.returncode == 0, result.stderr
    return dest


def db_jobs(data_dir: str | Path) -> list[dict[str, Any]]:
    """Every job row, read straight from backup.db."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(Path(data_dir) / "backup.db")) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM backup_jobs ORDER BY id")]
