"""Fault 7: clock jumps. A RUNNING job whose owner is alive but whose last_update lies far in
the future (the clock went back) or far in the past (it went forward) must be judged stale —
refused with a sensible message, taken over with --force — never "running" for ever.
"""

from __future__ import annotations

import contextlib
import re
import signal
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from photos_sync.core.records import to_iso, utcnow
from photos_sync.system import procinfo
from tests.immich_tree import TreeStats
from tests.reliability.harness import integrity_ok, jobs
from tests.support.cli import photos_sync
from tests.support.daemon import DaemonPool, setup_local

pytestmark = pytest.mark.reliability

HOLD_LOCK = (
    "import fcntl, sys, time\n"
    "handle = open(sys.argv[1], 'a+')\n"
    "fcntl.flock(handle, fcntl.LOCK_EX)\n"
    "print('locked', flush=True)\n"
    "time.sleep(120)\n"
)
JUMPS = {"future": timedelta(days=3650), "past": -timedelta(days=3650)}


def _plant_running_job(db: Path, owner_pid: int, last_update: str) -> None:
    """A RUNNING job of the latest run, owned by a live process on this host."""
    token = procinfo.process_token(owner_pid)
    with contextlib.closing(sqlite3.connect(db)) as conn:
        run_id = conn.execute("SELECT max(run_id) FROM backup_jobs").fetchone()[0]
        conn.execute(
            "UPDATE backup_jobs SET status = 'RUNNING', owner_pid = ?, owner_host = ?, "
            "owner_token = ?, last_update = ? WHERE run_id = ? AND folder = 'library'",
            (owner_pid, procinfo.hostname(), token, last_update, run_id),
        )
        conn.commit()


def test_clock_jumps_do_not_wedge_stale_detection(
    daemons: DaemonPool,
    tmp_path: Path,
    immich: tuple[Path, TreeStats],
    isolated_env: dict[str, str],
) -> None:
    db = Path(isolated_env["PHOTOS_SYNC_DATA_DIR"]) / "backup.db"
    setup_local(tmp_path)
    first = photos_sync("backup")
    assert first.returncode == 0, first.stderr
    # A live owner that holds the destination's run lock (as a running backup does) and
    # never reports.
    lock = Path(isolated_env["PHOTOS_SYNC_DATA_DIR"]) / "locks" / "destination-1.lock"
    owner = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(lock)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert owner.stdout is not None and owner.stdout.readline().strip() == "locked"
        for name, jump in JUMPS.items():
            _plant_running_job(db, owner.pid, to_iso(utcnow() + jump))
            refused = photos_sync("backup")
            assert refused.returncode == 1, (name, refused.stdout)
            assert "may be hung" in refused.stderr and "--force" in refused.stderr, refused.stderr
            silent = re.search(r"has not reported for (-?\d+) s", refused.stderr)
            assert silent is not None and int(silent.group(1)) > 0, refused.stderr
            # the daemon sees it as stale too, and does not start a run against it
            daemon = daemons.start()
            foreign = daemon.call("status")["daemon"]["foreign_jobs"]
            assert [(j["owner_pid"], j["stale"]) for j in foreign] == [(owner.pid, True)]
            assert foreign[0]["silent_seconds"] > 0
            daemon.signal(signal.SIGTERM)
            assert daemon.wait(15) == 0
            taken = photos_sync("backup", "--force")
            assert taken.returncode == 0, (name, taken.stdout, taken.stderr)
            assert "RUNNING" not in {j["status"] for j in jobs(db)}
    finally:
        owner.kill()
        owner.wait()
    assert integrity_ok(db) == "ok"
