"""Issue #18, point 10: the suite passes however it is started.

`pytest &` in a script (no job control) starts the suite with SIGINT and SIGQUIT ignored, and
exec passes an ignored signal on: a CLI that a test stops with SIGINT, as Ctrl-C would, then
never stopped. The suite is run here the way such a script runs it, with SIGINT ignored. And a
test that fails leaves nothing running (tests/support/procs.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.support.procs import kill_tree

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

#: Runs the rest of the command line with SIGINT and SIGQUIT ignored, as `cmd &` does.
IGNORING_SIGINT = ["sh", "-c", 'trap "" INT QUIT; exec "$@"', "sh"]


def inner_pytest(tmp_path: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """`pytest ARGS` in the repository, started with SIGINT ignored; killed on `timeout`."""
    argv = [
        *IGNORING_SIGINT,
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:xdist",
        "--basetemp",
        str(tmp_path / "inner"),
        *args,
    ]
    with subprocess.Popen(
        argv,
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    ) as proc:
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_tree(proc)
            out, _ = proc.communicate()
            pytest.fail(f"the inner pytest did not finish in {timeout} s:\n{out}")
    return subprocess.CompletedProcess(argv, proc.returncode, out, "")


def test_ctrl_c_in_a_pty_works_when_the_suite_ignores_sigint(tmp_path: Path) -> None:
    result = inner_pytest(
        tmp_path, "tests/e2e/test_operations.py::test_watch_in_a_pty_until_ctrl_c", timeout=90
    )
    assert result.returncode == 0, result.stdout
    assert "1 passed" in result.stdout


LEAKY_TEST = """
import subprocess
from pathlib import Path

def test_starts_processes_and_fails(tmp_path):
    pids = Path({pidfile!r})
    # an orphan (its shell exits at once) and a child in its own session, never waited for
    subprocess.run(["sh", "-c", "sleep 300 >/dev/null 2>&1 & echo $! >> " + str(pids)], check=True)
    child = subprocess.Popen(["sleep", "300"], start_new_session=True)
    with pids.open("a") as out:
        out.write(f"{{child.pid}}\\n")
    assert False, "fails with its processes still running"
"""


def test_a_failed_test_leaves_no_process_behind(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    test_file = tmp_path / "test_leaky.py"
    test_file.write_text(LEAKY_TEST.format(pidfile=str(pidfile)))
    result = inner_pytest(tmp_path, "-p", "tests.conftest", str(test_file), timeout=60)
    pids = [int(line) for line in pidfile.read_text().split()]
    try:
        assert result.returncode == 1 and "1 failed" in result.stdout, result.stdout
        assert len(pids) == 2
        alive = [pid for pid in pids if Path(f"/proc/{pid}").exists() and _not_zombie(pid)]
        assert alive == [], f"left running: {alive}"
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _not_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
