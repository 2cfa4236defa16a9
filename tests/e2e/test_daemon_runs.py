"""Runs in the daemon: no duplicates, crash recovery, clean shutdown, the schedule.

A slow rclone (BACKUP_BWLIMIT) gives the tests a "mid-transfer" to act in; they wait for it
through the daemon's own progress stream, never by sleeping.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from photos_sync.core import rpc
from tests.conftest import rclone_binary
from tests.immich_tree import TreeStats
from tests.support.cli import PHOTOS_SYNC, photos_sync
from tests.support.daemon import (
    DaemonPool,
    RpcFailure,
    alive,
    children_of,
    daemon_pool,
    db_jobs,
    setup_local,
)

pytestmark = pytest.mark.timeout(90)

SLOW = {"BACKUP_BWLIMIT": "150k"}
BACKED_UP = ("backups", "library", "upload", "profile")


@pytest.fixture
def daemons() -> Iterator[DaemonPool]:
    with daemon_pool() as pool:
        yield pool


def rclone_children(pid: int) -> list[int]:
    return [p for p in children_of(pid) if "rclone" in Path(f"/proc/{p}/cmdline").read_text()]


def test_ten_simultaneous_starts_make_one_run(
    daemons: DaemonPool,
    tmp_path: Path,
    immich: tuple[Path, TreeStats],
    isolated_env: dict[str, str],
) -> None:
    setup_local(tmp_path)
    daemon = daemons.start(SLOW)
    answers: list[dict[str, Any]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(10)

    def start() -> None:
        try:
            with daemon.connect(timeout=30) as conn:
                barrier.wait(10)
                answers.append(conn.call("start", {"destination": "nas"}))
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    assert len(answers) == 10
    assert len({a["run"]["id"] for a in answers}) == 1
    assert sum(1 for a in answers if not a["already_running"]) == 1
    # a dry run is refused while the real one goes
    with pytest.raises(RpcFailure) as caught:
        daemon.call("start", {"dry_run": True})
    assert caught.value.code == rpc.RUN_REFUSED
    # reset is refused while it runs
    with pytest.raises(RpcFailure) as caught:
        daemon.call("reset")
    assert caught.value.code == rpc.BUSY
    jobs = db_jobs(isolated_env["PHOTOS_SYNC_DATA_DIR"])
    assert len({j["run_id"] for j in jobs}) == 1
    assert sorted(j["folder"] for j in jobs) == sorted(BACKED_UP)
    cancelled = daemon.call("cancel")
    assert cancelled["cancelled"] is True
    statuses = {j["status"] for j in db_jobs(isolated_env["PHOTOS_SYNC_DATA_DIR"])}
    assert "RUNNING" not in statuses and "INTERRUPTED" in statuses


def test_sigkill_mid_transfer_then_restart_completes_by_itself(
    daemons: DaemonPool,
    tmp_path: Path,
    immich: tuple[Path, TreeStats],
    isolated_env: dict[str, str],
) -> None:
    source, _ = immich
    setup_local(tmp_path)
    daemon = daemons.start(SLOW)
    run = daemon.call("start", {"destination": "nas"})["run"]
    daemon.wait_progress("upload", run["id"])
    rclones = rclone_children(daemon.pid)
    assert rclones, "rclone should be running mid-transfer"
    daemon.proc.kill()
    for pid in rclones:
        os.kill(pid, signal.SIGKILL)
    daemon.wait(10)
    data_dir = isolated_env["PHOTOS_SYNC_DATA_DIR"]
    before = db_jobs(data_dir)
    assert "RUNNING" in {j["status"] for j in before}
    assert {j["owner_pid"] for j in before if j["status"] == "RUNNING"} == {daemon.pid}

    # A new daemon (full speed) takes over and finishes without being asked.
    restarted = daemons.start()
    end = restarted.wait_run_end()
    assert end["run"]["reason"] == "resume"
    assert end["result"]["resumed"] is True
    # rclone's leftover *.partial files from the killed transfer make the first pass of the
    # resumed sync fail ("failed to delete N files"); rclone's second pass (--retries 2)
    # clears them, so the resumed run completes in one go.
    assert end["ok"] is True, (end["result"], restarted.stderr_text())
    after = db_jobs(data_dir)
    assert {j["status"] for j in after} == {"COMPLETED"}
    assert len({j["run_id"] for j in after}) == 1  # the same run, resumed

    # Plain rclone, with only the recovery kit, agrees the backup matches the source.
    kit = photos_sync("recovery-kit", "nas")
    assert kit.returncode == 0, kit.stderr
    conf = tmp_path / "kit.conf"
    conf.write_text(kit.stdout)
    for folder in BACKED_UP:
        check = subprocess.run(
            [
                rclone_binary(),
                "--config",
                str(conf),
                "cryptcheck",
                str(source / folder),
                f"pscrypt:{folder}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env={k: v for k, v in os.environ.items() if not k.startswith("RCLONE_")},
        )
        assert check.returncode == 0, check.stderr
        assert "0 differences found" in check.stderr


def test_sigterm_mid_transfer_exits_in_time_leaving_the_job_interrupted(
    daemons: DaemonPool,
    tmp_path: Path,
    immich: tuple[Path, TreeStats],
    isolated_env: dict[str, str],
) -> None:
    setup_local(tmp_path)
    daemon = daemons.start(SLOW)
    run = daemon.call("start", {"destination": "nas"})["run"]
    daemon.wait_progress("upload", run["id"])
    rclones = rclone_children(daemon.pid)
    assert rclones
    began = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(10) == 0
    assert time.monotonic() - began < 10
    assert not [pid for pid in rclones if alive(pid)], "rclone outlived the daemon"
    jobs = {j["folder"]: j for j in db_jobs(isolated_env["PHOTOS_SYNC_DATA_DIR"])}
    assert jobs["upload"]["status"] == "INTERRUPTED"
    assert jobs["upload"]["owner_pid"] is None
    assert jobs["upload"]["bytes_transferred"] > 0  # progress was saved
    assert "RUNNING" not in {j["status"] for j in jobs.values()}
    assert not Path(isolated_env["PHOTOS_SYNC_SOCKET"]).exists()
    assert "daemon_stopped" in daemon.stderr_text()


def test_schedule_fires_with_a_short_interval(
    daemons: DaemonPool,
    tmp_path: Path,
    immich: tuple[Path, TreeStats],
    isolated_env: dict[str, str],
) -> None:
    setup_local(tmp_path)
    first = photos_sync("backup")  # no daemon: foreground, makes the history
    assert first.returncode == 0, first.stderr
    daemon = daemons.start({"BACKUP_SCHEDULE": "3s"})
    status = daemon.call("status")["daemon"]
    assert status["schedule"] == "every 3s"
    ends = [daemon.wait_run_end(wait=True), daemon.wait_run_end(wait=True)]
    for end in ends:
        assert end["ok"] is True, end
        assert end["run"]["reason"] == "schedule"
    from photos_sync.core.units import from_iso

    started = [from_iso(e["run"]["started_at"]) for e in ends]
    assert started[0] is not None and started[1] is not None
    assert (started[1] - started[0]).total_seconds() >= 2.5
    runs = {j["run_id"] for j in db_jobs(isolated_env["PHOTOS_SYNC_DATA_DIR"])}
    assert len(runs) >= 3
    assert "nas" in daemon.call("status")["daemon"]["next_run"]


def test_a_job_running_in_a_live_process_is_reported_not_touched(
    daemons: DaemonPool,
    tmp_path: Path,
    immich: tuple[Path, TreeStats],
    isolated_env: dict[str, str],
) -> None:
    setup_local(tmp_path)
    # Slow enough that library/ (344 KiB) stays RUNNING for ~20 s, however loaded the machine:
    # between two folders (the destination is looked at again) no job is RUNNING.
    env = dict(os.environ, BACKUP_BWLIMIT="16k")
    foreground = subprocess.Popen(
        [PHOTOS_SYNC, "backup"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert foreground.stdout is not None
        for line in foreground.stdout:
            if line.startswith("library/: started"):
                break
        daemon = daemons.start()
        status = daemon.call("status")
        foreign = status["daemon"]["foreign_jobs"]
        assert [j["owner_pid"] for j in foreign] == [foreground.pid]
        assert status["daemon"]["run"] is None  # no resume for a destination that is busy
        with pytest.raises(RpcFailure) as caught:
            daemon.call("start")
        assert caught.value.code == rpc.RUN_REFUSED
        assert str(foreground.pid) in caught.value.message
        running = [
            j for j in db_jobs(isolated_env["PHOTOS_SYNC_DATA_DIR"]) if j["status"] == "RUNNING"
        ]
        assert [j["owner_pid"] for j in running] == [foreground.pid]
    finally:
        foreground.send_signal(signal.SIGINT)
        foreground.wait(15)


def test_backup_full_in_the_daemon_and_a_full_request_never_gets_a_plain_run(
    daemons: DaemonPool,
    tmp_path: Path,
    immich: tuple[Path, TreeStats],
    isolated_env: dict[str, str],
) -> None:
    setup_local(tmp_path)
    daemon = daemons.start(SLOW)
    plain = daemon.call("start", {"destination": "nas"})  # the first backup: slow
    assert plain["run"]["full"] is False and not plain["queued"]
    full = daemon.call("start", {"destination": "nas", "full": True})
    # not the plain run in progress: a full one queued after it
    assert full["run"]["id"] != plain["run"]["id"]
    assert (full["run"]["full"], full["queued"], full["already_running"]) == (True, True, False)
    again = daemon.call("start", {"destination": "nas", "full": True})
    assert (again["run"]["id"], again["already_running"]) == (full["run"]["id"], True)
    assert daemon.call("start", {"destination": "nas"})["run"]["id"] == plain["run"]["id"]
    assert daemon.wait_run_end(plain["run"]["id"])["ok"] is True
    end = daemon.wait_run_end(full["run"]["id"])
    assert end["ok"] is True, end
    assert set(end["result"]["folder_modes"].values()) == {"full sync: --full"}

    # the command line passes --full to the daemon, and says how each folder went
    folders = "backups/, library/, upload/, profile/"
    forced = photos_sync("backup", "--full")
    assert forced.returncode == 0, forced.stderr
    assert "running in the photos-sync daemon" in forced.stdout
    assert f"full sync of {folders} (--full)" in forced.stdout
    incremental = photos_sync("backup")
    assert incremental.returncode == 0, incremental.stderr
    assert f"incremental: {folders}" in incremental.stdout
