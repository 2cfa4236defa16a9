"""Processes the tests start: default signal dispositions for them, and nothing left behind.

Two rules, whatever happens in a test and however the suite was started (issue #18, point 10):

* A child gets default signal dispositions. A script that starts the suite in the background
  (`pytest &` without job control) has SIGINT and SIGQUIT ignored, and `nohup` ignores SIGHUP;
  exec keeps an ignored signal ignored, so a CLI the test interrupts with SIGINT would never
  stop. `caught_not_ignored` turns each ignored signal into a handler that does nothing: the
  test process still ignores it, and exec resets a *caught* signal to its default in children.
* Every process a test starts is gone when the test ends, pass or fail. Each test gets a tag
  in its environment (`TAG_VARIABLE`); every process started during the test inherits it —
  the CLI, daemons, rclone, test servers, and orphans whose parent died — and `kill_tagged`
  finds them all through /proc and kills them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

#: The environment variable that marks a process as started by one test.
TAG_VARIABLE = "PHOTOS_SYNC_TEST_TAG"

#: Signals a shell or nohup may leave ignored for a background job.
_INHERITED_IGNORES = (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP)


def _do_nothing(signum: int, frame: object) -> None:
    """The handler standing in for SIG_IGN (see caught_not_ignored)."""


def caught_not_ignored() -> list[signal.Signals]:
    """Replace SIG_IGN for SIGINT, SIGQUIT and SIGHUP with a handler that does nothing, so
    children (after exec) get the default disposition. Returns the signals changed."""
    changed = []
    for sig in _INHERITED_IGNORES:
        if signal.getsignal(sig) == signal.SIG_IGN:
            signal.signal(sig, _do_nothing)
            changed.append(sig)
    return changed


def children_of(pid: int) -> list[int]:
    """Pids of the live descendants of `pid` (Linux /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def tagged_processes(tag: str) -> list[int]:
    """Pids of the processes (other than this one) started with TAG_VARIABLE=`tag`."""
    marker = f"{TAG_VARIABLE}={tag}".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as environ_file:
                environ = environ_file.read()
        except OSError:
            continue  # gone, or another user's
        if marker in environ and marker in environ.split(b"\0"):
            found.append(int(name))
    return found


def kill_tagged(tag: str) -> list[int]:
    """SIGKILL every process carrying `tag`; returns their pids."""
    victims = tagged_processes(tag)
    for pid in victims:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return victims


#: Audit events of this process starting another one (subprocess, asyncio, pty, os.*).
_SPAWN_EVENTS = frozenset(
    {"subprocess.Popen", "os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.system"}
)
_spawns = {"count": 0, "hooked": False}


def _count_spawns(event: str, args: tuple[object, ...]) -> None:
    if event in _SPAWN_EVENTS:
        _spawns["count"] += 1


def spawn_count() -> int:
    """How many processes this one has started so far (an audit hook counts them; the first
    call installs it). Lets a test's clean-up skip the /proc scan when it started none."""
    if not _spawns["hooked"]:
        sys.addaudithook(_count_spawns)
        _spawns["hooked"] = True
    return _spawns["count"]


def kill_tree(proc: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    """SIGKILL `proc`, its process group if it leads one, and all its descendants; reap it."""
    if proc.poll() is None:
        for pid in children_of(proc.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getpgid(proc.pid) == proc.pid:
                os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)
