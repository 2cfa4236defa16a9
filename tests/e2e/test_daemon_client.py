"""`photos-sync backup` as the daemon's client, and its fallback when no daemon answers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.immich_tree import TreeStats
from tests.support.cli import PHOTOS_SYNC, photos_sync
from tests.support.daemon import DaemonPool, RpcFailure, daemon_pool, db_jobs, setup_local

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def daemons() -> Iterator[DaemonPool]:
    with daemon_pool() as pool:
        yield pool


def test_without_a_daemon_the_client_runs_in_the_foreground(
    tmp_path: Path, immich: tuple[Path, TreeStats], isolated_env: dict[str, str]
) -> None:
    setup_local(tmp_path)
    detached = photos_sync("backup", "--detach")
    assert detached.returncode == 1
    assert "photos-sync daemon" in detached.stderr and "Traceback" not in detached.stderr
    result = photos_sync("backup")
    assert result.returncode == 0, result.stderr
    assert "daemon" not in result.stdout
    assert "4/4 folders backed up to nas" in result.stdout
    status = photos_sync("backup", "--status", "--json")
    document = json.loads(status.stdout)
    assert "daemon" not in document
    assert {j["status"] for j in document["jobs"]} == {"COMPLETED"}
    human = photos_sync("backup", "--status")
    assert "daemon: not running" in human.stdout


def test_with_a_daemon_the_backup_runs_there_and_is_followed(
    daemons: DaemonPool,
    tmp_path: Path,
    immich: tuple[Path, TreeStats],
    isolated_env: dict[str, str],
) -> None:
    setup_local(tmp_path)
    daemon = daemons.start({"BACKUP_SCHEDULE": "daily@03:00"})
    result = photos_sync("backup")
    assert result.returncode == 0, result.stderr
    assert "in the photos-sync daemon" in result.stdout
    assert "backups/: started" in result.stdout  # events from the start were replayed
    assert "4/4 folders backed up to nas" in result.stdout
    last = daemon.call("status")["daemon"]["last_run"]
    assert last["ok"] is True and last["run"]["reason"] == "request"
    # --json prints the run result
    again = photos_sync("backup", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["destination"] == "nas"
    # --status goes through the daemon: its pid and the next scheduled run
    status = json.loads(photos_sync("backup", "--status", "--json").stdout)
    assert status["daemon"]["pid"] == daemon.pid
    assert status["daemon"]["schedule"] == "daily at 03:00"
    assert set(status["daemon"]["next_run"]) == {"nas"}
    human = photos_sync("backup", "--status")
    assert f"daemon: pid {daemon.pid}" in human.stdout
    assert "next run to nas" in human.stdout
    # unknown destination: usage error (2) from the daemon
    unknown = photos_sync("backup", "--to", "nowhere")
    assert unknown.returncode == 2 and "unknown destination" in unknown.stderr
    # reset through the daemon
    reset = photos_sync("backup", "--reset", "--yes")
    assert reset.returncode == 0, reset.stderr
    assert db_jobs(isolated_env["PHOTOS_SYNC_DATA_DIR"]) == []


def test_detach_returns_at_once_and_ctrl_c_leaves_the_run_alone(
    daemons: DaemonPool,
    tmp_path: Path,
    immich: tuple[Path, TreeStats],
    isolated_env: dict[str, str],
) -> None:
    setup_local(tmp_path)
    daemon = daemons.start({"BACKUP_BWLIMIT": "150k"})
    detached = photos_sync("backup", "--detach", timeout=20)
    assert detached.returncode == 0, detached.stderr
    assert "started in the daemon" in detached.stdout
    run = daemon.call("status")["daemon"]["run"]
    assert run is not None and run["destination"] == "nas"

    follower = subprocess.Popen(
        [PHOTOS_SYNC, "backup"],
        env=dict(os.environ, COLUMNS="200"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert follower.stdout is not None
    first = follower.stdout.readline()
    assert "already running in the photos-sync daemon" in first
    follower.send_signal(signal.SIGINT)
    _out, err = follower.communicate(timeout=15)
    assert follower.returncode == 0
    assert "carries on" in err
    still = daemon.call("status")["daemon"]["run"]
    assert still is not None and still["id"] == run["id"]
    assert {j["status"] for j in db_jobs(isolated_env["PHOTOS_SYNC_DATA_DIR"])} & {
        "RUNNING",
        "PENDING",
    }
    daemon.call("cancel")


def test_with_a_daemon_restore_runs_there_and_never_overwrites(
    daemons: DaemonPool,
    tmp_path: Path,
    immich: tuple[Path, TreeStats],
    isolated_env: dict[str, str],
) -> None:
    source, _ = immich
    setup_local(tmp_path)
    daemon = daemons.start()
    assert photos_sync("backup").returncode == 0
    target = tmp_path / "restored"
    result = photos_sync("restore", "--from", "nas", "--to", str(target), "--path", "library")
    assert result.returncode == 0, result.stderr
    assert "restore with nas running in the photos-sync daemon" in result.stdout
    assert "restored 13 files" in result.stdout
    originals = sorted(p for p in (source / "library").rglob("*") if p.is_file())
    for original in originals:
        copy = target / original.relative_to(source)
        assert copy.read_bytes() == original.read_bytes()
    last = daemon.call("status")["daemon"]["last_run"]
    assert last["ok"] is True and last["run"]["reason"] == "restore"
    # a file changed in the target is left alone without --overwrite, even via the daemon
    changed = target / originals[1].relative_to(source)
    changed.write_bytes(b"edited by the user")
    again = photos_sync("restore", "--from", "nas", "--to", str(target), "--path", "library")
    assert again.returncode == 0, again.stderr
    assert changed.read_bytes() == b"edited by the user"
    with pytest.raises(RpcFailure) as caught:
        daemon.call("restore", {"destination": "nas"})
    assert caught.value.code == -32602 and "required" in str(caught.value)
