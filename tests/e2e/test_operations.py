"""Issue #8 end to end: notifications to a real loopback HTTP server, Prometheus metrics
(textfile and the daemon's endpoint), bandwidth changed by SIGHUP while rclone runs, the
live --status --watch view in a pseudo-terminal, and --history."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import select
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.immich_tree import TreeStats
from tests.support.cli import PHOTOS_SYNC, photos_sync
from tests.support.daemon import DaemonPool, daemon_pool, setup_local
from tests.support.recorder import recording_server

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def daemons() -> Iterator[DaemonPool]:
    with daemon_pool() as pool:
        yield pool


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_foreground_run_notifies_writes_metrics_and_history(
    tmp_path: Path, immich: tuple[Path, TreeStats]
) -> None:
    dest = setup_local(tmp_path)
    metrics_file = tmp_path / "textfile" / "photos_sync.prom"
    with recording_server() as hc, recording_server() as hook:
        env = {
            "BACKUP_HEALTHCHECK_URL": f"{hc.url}/ping/abc",
            "BACKUP_NOTIFY_URLS": f"json://127.0.0.1:{hook.port}/, json://127.0.0.1:1/",
            "BACKUP_NOTIFY_EVENTS": "all",
            "BACKUP_METRICS_FILE": str(metrics_file),
        }
        result = photos_sync("backup", env=env)
        assert result.returncode == 0, result.stderr  # the dead json://…:1 notifier is harmless
        assert hc.paths() == ["/ping/abc/start", "/ping/abc"]
        assert "4/4 folders backed up to nas" in hc.requests[1].body.decode()
        messages = [r.json() for r in hook.wait_for(2)]
        assert [m["type"] for m in messages] == ["info", "success"]
        assert "succeeded" in messages[1]["title"] and "4/4 folders" in messages[1]["message"]

        samples = _samples(metrics_file.read_text())
        assert (
            samples[("photos_sync_last_success_timestamp_seconds", (("destination", "nas"),))] > 0
        )
        assert (
            samples[("photos_sync_runs_total", (("destination", "nas"), ("result", "completed")))]
            == 1
        )
        job = (("destination", "nas"), ("folder", "library"), ("state", "COMPLETED"))
        assert samples[("photos_sync_job_state", job)] == 1
        assert not list(metrics_file.parent.glob(".*tmp"))

        # a verify result goes to apprise (not to the backup's healthcheck)
        verified = photos_sync("verify", env=env)
        assert verified.returncode == 0, verified.stderr
        assert "verify of nas ok" in hook.wait_for(3)[-1].json()["title"]
        assert len(hc.requests) == 2
        assert (
            _samples(metrics_file.read_text())[("photos_sync_verify_ok", (("destination", "nas"),))]
            == 1
        )

        # a refused run: healthchecks /fail and an apprise failure
        dest.rename(tmp_path / "unmounted")
        result = photos_sync("backup", env=env)
        assert result.returncode == 1
        assert hc.paths()[-1] == "/ping/abc/fail"
        assert "does not exist" in hc.requests[-1].body.decode()
        failure = hook.wait_for(4)[-1].json()
        assert failure["type"] == "failure" and "FAILED" in failure["title"]

    history = photos_sync("backup", "--history", "--json")
    assert history.returncode == 0, history.stderr
    runs = json.loads(history.stdout)["runs"]
    assert len(runs) == 1 and runs[0]["result"] == "completed" and runs[0]["files"] > 0
    assert runs[0]["duration_seconds"] is not None
    human = photos_sync("backup", "--history")
    assert "completed" in human.stdout and runs[0]["run_id"] in human.stdout
    once = photos_sync("backup", "--status", "--watch", "--once")
    assert once.returncode == 0, once.stderr
    assert "library/" in once.stdout and "COMPLETED" in once.stdout
    assert "last success" in once.stdout and "no daemon" in once.stdout
    assert photos_sync("backup", "--watch").returncode == 2


@pytest.fixture
def terminal_children() -> Iterator[list[tuple[int, int]]]:
    """(pid, master fd) of the CLIs a test runs on a pseudo-terminal; killed with their
    process group, reaped and closed at the end, pass or fail. pty.fork makes each child the
    leader of its own session and group; until reaped here, its pid names only that group."""
    started: list[tuple[int, int]] = []
    yield started
    for pid, fd in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(fd)


def _exit_status(pid: int, fd: int, timeout: float) -> int | None:
    """The exit code of the child `pid` once it ends, or None if it still runs after
    `timeout`. Its terminal (master `fd`) is drained meanwhile, so it never blocks writing."""
    pidfd = os.pidfd_open(pid)  # readable once the process has ended
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([pidfd, fd], [], [], deadline - time.monotonic())
            if pidfd in ready:
                # WNOWAIT: left unreaped, so the pid (and its group) stay ours to clean up
                info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
                assert info is not None
                exited = info.si_code == os.CLD_EXITED
                return info.si_status if exited else -info.si_status
            if fd in ready:
                with contextlib.suppress(OSError):  # EIO once the child side is closed
                    if not os.read(fd, 65536):
                        fd = pidfd
        return None
    finally:
        os.close(pidfd)


def test_watch_in_a_pty_until_ctrl_c(
    tmp_path: Path,
    immich: tuple[Path, TreeStats],
    terminal_children: list[tuple[int, int]],
) -> None:
    setup_local(tmp_path)
    assert photos_sync("backup").returncode == 0
    pid, fd = pty.fork()
    if pid == 0:  # child: the real CLI on a terminal
        try:
            env = dict(os.environ, COLUMNS="120", LINES="40", TERM="xterm")
            os.execve(PHOTOS_SYNC, [PHOTOS_SYNC, "backup", "--status", "--watch"], env)
        finally:
            os._exit(127)
    terminal_children.append((pid, fd))
    output = b""
    deadline = time.monotonic() + 20
    while b"profile/" not in output and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            output += os.read(fd, 65536)
    assert b"profile/" in output and b"COMPLETED" in output
    os.kill(pid, signal.SIGINT)  # what Ctrl-C at the terminal sends
    assert _exit_status(pid, fd, 15) == 0, "the CLI did not stop on SIGINT with exit 0"


def test_daemon_metrics_endpoint_notifications_and_live_bwlimit(
    daemons: DaemonPool,
    tmp_path: Path,
    immich: tuple[Path, TreeStats],
    isolated_env: dict[str, str],
) -> None:
    root, _ = immich
    (root / "library" / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    setup_local(tmp_path)
    data_dir = Path(isolated_env["PHOTOS_SYNC_DATA_DIR"])
    dotenv = data_dir / ".env"
    dotenv.write_text("BACKUP_BWLIMIT=100k\n")
    port = _free_port()
    with recording_server() as hc:
        daemon = daemons.start(
            {"BACKUP_METRICS_ADDR": f"127.0.0.1:{port}", "BACKUP_HEALTHCHECK_URL": hc.url}
        )
        run = daemon.call("start")["run"]
        progress = daemon.wait_progress(folder="library", run=run["id"])
        assert progress["speed"] < 400 * 1024

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            samples = _samples(answer.read().decode())
        lib = (("destination", "nas"), ("folder", "library"))
        assert samples[("photos_sync_job_state", (*lib, ("state", "RUNNING")))] == 1
        assert samples[("photos_sync_run_in_progress", (("destination", "nas"),))] == 1
        assert samples[("photos_sync_job_bytes_total", lib)] > 0
        assert samples[("photos_sync_daemon_up", ())] == 1

        status = daemon.call("status")["daemon"]["bandwidth"]
        assert status["configured"] == "100k" and status["applied"] == "100k"
        dotenv.write_text("BACKUP_BWLIMIT=10M\n")
        daemon.signal(signal.SIGHUP)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            bandwidth = daemon.call("status")["daemon"]["bandwidth"]
            if (bandwidth.get("rclone") or {}).get("rate") == "10Mi":
                break
            time.sleep(0.2)
        assert bandwidth["rclone"]["bytesPerSecond"] == 10 * 1024 * 1024, bandwidth
        assert bandwidth["applied"] == "10M"

        end = daemon.wait_run_end(run=run["id"])
        assert end["ok"], end
        assert hc.wait_for(2)[:2] and hc.paths()[:2] == ["/start", "/"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            samples = _samples(answer.read().decode())
        assert (
            samples[("photos_sync_last_success_timestamp_seconds", (("destination", "nas"),))] > 0
        )
        assert samples[("photos_sync_run_in_progress", (("destination", "nas"),))] == 0
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/nope", timeout=5)
    assert "RCLONE_RC_PASS" not in daemon.stderr_text()
    cmdlines = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert "--rc-pass" not in cmdlines
