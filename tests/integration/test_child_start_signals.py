"""A terminal's Ctrl-C reaches photos-sync, never a child it is starting (system/execute).

Until its setsid() a child is still in the terminal's foreground process group. Started by
vfork, it would get the SIGINT with its handlers already reset to the default and die
without a word (setup's 1Password item, whose save is held through Ctrl-C, failed with "no
error text"). The probe below starts children in a loop while another thread sends SIGINT
to its whole process group every 0.5 ms, as a terminal does on Ctrl-C."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT

PROBE = r"""
import asyncio, json, os, signal, sys, threading, time
from photos_sync.system import execute

seen = 0
def noted(signum, frame):
    global seen
    seen += 1
signal.signal(signal.SIGINT, noted)

def pelt(stop):
    while not stop.is_set():
        os.killpg(os.getpgrp(), signal.SIGINT)
        time.sleep(0.0005)

async def main():
    stop = threading.Event()
    thread = threading.Thread(target=pelt, args=(stop,))
    thread.start()
    started = died = 0
    deadline = time.monotonic() + float(sys.argv[1])
    try:
        while time.monotonic() < deadline:
            done = await execute.run_captured(["/bin/sh", "-c", "exit 0"], dict(os.environ))
            started += 1
            died += done.returncode != 0
    finally:
        stop.set()
        thread.join()
    print(json.dumps({"started": started, "died": died, "sigints": seen}))

os.setpgrp()  # a group of its own: the test's own processes are never hit
asyncio.run(main())
"""


def test_children_started_during_ctrl_c_are_not_killed_by_it(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    done = subprocess.run(
        [sys.executable, str(probe), "3"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    counts = json.loads(done.stdout)
    assert counts["sigints"] > 100 and counts["started"] > 100, counts  # the probe did pelt
    assert counts["died"] == 0, counts
