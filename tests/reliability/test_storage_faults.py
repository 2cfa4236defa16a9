"""Faults 2 and 3: the S3 server goes away mid-run (for a while, or for good), or comes back
with other keys (credentials revoked). Real daemon, real rclone, real `rclone serve s3`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.immich_tree import TreeStats
from tests.reliability.harness import (
    BACKED_UP,
    RcloneRecorder,
    S3Service,
    assert_cryptcheck_clean,
    crypt_env_s3,
    integrity_ok,
    jobs,
    setup_s3,
)
from tests.support.daemon import DaemonPool, DaemonProcess

pytestmark = pytest.mark.reliability

SLOW = {
    "BACKUP_BWLIMIT": "600k",
    "BACKUP_STATS_INTERVAL": "1",
    "BACKUP_RETRY_DELAY": "0.2",
}


def _start_mid_library(daemon: DaemonProcess) -> dict[str, Any]:
    run = daemon.call("start", {"destination": "cloud"})["run"]
    daemon.wait_progress("library", run["id"])
    return dict(run)


def _syncs_of(recorder: RcloneRecorder, folder: str) -> int:
    return sum(1 for _pid, argv in recorder.syncs() if recorder.sync_folder(argv) == folder)


def outage(
    daemons: DaemonPool,
    s3: S3Service,
    source: Path,
    data_dir: Path,
    seconds: float,
) -> dict[str, Any]:
    setup_s3(s3)
    daemon = daemons.start({**SLOW, "BACKUP_MAX_RETRIES": "3"})
    run = _start_mid_library(daemon)
    s3.stop()
    time.sleep(seconds)  # the fault itself: the storage is away this long
    s3.start()
    end = daemon.wait_run_end(run["id"])
    rows = jobs(data_dir / "backup.db")
    assert "RUNNING" not in {j["status"] for j in rows}
    if not end["ok"]:
        # Allowed: FAILED with a clear message, and the next run completes.
        for row in rows:
            if row["status"] != "COMPLETED":
                assert row["status"] == "FAILED", row
                assert row["error_message"], row
        again = daemon.call("start", {"destination": "cloud"})["run"]
        end = daemon.wait_run_end(again["id"])
    assert end["ok"] is True, (end, daemon.stderr_text()[-3000:])
    assert integrity_ok(data_dir / "backup.db") == "ok"
    assert_cryptcheck_clean(
        source, crypt_env_s3(s3, data_dir / "secrets" / "cloud.json"), BACKED_UP
    )
    return end


def test_storage_outage_mid_run_heals(
    daemons: DaemonPool,
    s3: S3Service,
    big_immich: tuple[Path, TreeStats],
    isolated_env: dict[str, str],
) -> None:
    outage(daemons, s3, big_immich[0], Path(isolated_env["PHOTOS_SYNC_DATA_DIR"]), 4.0)


@pytest.mark.soak
@pytest.mark.timeout(900)
@pytest.mark.parametrize("seconds", [10.0, 20.0, 30.0])
def test_storage_outage_soak(
    daemons: DaemonPool,
    s3: S3Service,
    big_immich: tuple[Path, TreeStats],
    isolated_env: dict[str, str],
    seconds: float,
) -> None:
    outage(daemons, s3, big_immich[0], Path(isolated_env["PHOTOS_SYNC_DATA_DIR"]), seconds)


def test_permanent_outage_ends_failed_not_running(
    daemons: DaemonPool,
    s3: S3Service,
    recorder: RcloneRecorder,
    big_immich: tuple[Path, TreeStats],
    isolated_env: dict[str, str],
) -> None:
    data_dir = Path(isolated_env["PHOTOS_SYNC_DATA_DIR"])
    setup_s3(s3)
    daemon = daemons.start({**SLOW, "BACKUP_MAX_RETRIES": "1", "BACKUP_STALL_TIMEOUT": "3"})
    run = _start_mid_library(daemon)
    s3.stop()  # for good
    began = time.monotonic()
    end = daemon.wait_run_end(run["id"])
    took = time.monotonic() - began
    assert end["ok"] is False
    rows = {j["folder"]: j for j in jobs(data_dir / "backup.db")}
    assert "RUNNING" not in {j["status"] for j in rows.values()}
    library = rows["library"]
    assert library["status"] == "FAILED"
    assert library["retry_count"] == 1  # retried up to BACKUP_MAX_RETRIES, then gave up
    assert "no progress for 3 s" in library["error_message"]
    assert "unreachable" in library["error_message"]
    assert _syncs_of(recorder, "library") == 2
    # the folders after it are not tried against a storage that is down
    for folder in ("upload", "profile"):
        assert rows[folder]["status"] == "FAILED"
        assert rows[folder]["error_message"].startswith("not attempted: library/ failed")
        assert _syncs_of(recorder, folder) == 0
    assert took < 40, f"the run took {took:.0f} s to give up"
    assert daemon.call("ping")["pid"] == daemon.pid
    # the storage returns: the next run resumes the failed folders and completes
    s3.start()
    again = daemon.call("start", {"destination": "cloud"})["run"]
    end = daemon.wait_run_end(again["id"])
    assert end["ok"] is True, end
    assert end["result"]["resumed"] is True


def test_credentials_revoked_mid_run_fail_without_retry_storm(
    daemons: DaemonPool,
    s3: S3Service,
    recorder: RcloneRecorder,
    big_immich: tuple[Path, TreeStats],
    isolated_env: dict[str, str],
) -> None:
    data_dir = Path(isolated_env["PHOTOS_SYNC_DATA_DIR"])
    setup_s3(s3)
    daemon = daemons.start({**SLOW, "BACKUP_MAX_RETRIES": "3"})
    run = _start_mid_library(daemon)
    s3.stop()
    s3.start(keys=("revoked" + "0" * 8, "x" * 40))
    before = len(recorder.calls())
    end = daemon.wait_run_end(run["id"])
    assert end["ok"] is False
    rows = {j["folder"]: j for j in jobs(data_dir / "backup.db")}
    assert "RUNNING" not in {j["status"] for j in rows.values()}
    library = rows["library"]
    assert library["status"] == "FAILED"
    assert "credentials" in library["error_message"], library["error_message"]
    assert library["retry_count"] == 0, "a refused key is not retried"
    # No retry storm: one rclone sync for library (the one that met the new keys), none for
    # the folders after it, and no other rclone call since the keys changed.
    assert _syncs_of(recorder, "library") == 1
    for folder in ("upload", "profile"):
        assert rows[folder]["status"] == "FAILED"
        assert "credentials" in rows[folder]["error_message"]
    assert len(recorder.calls()) == before
    assert integrity_ok(data_dir / "backup.db") == "ok"
    # The keys come back (the user fixed them): the next run resumes and completes.
    s3.stop()
    s3.start()
    again = daemon.call("start", {"destination": "cloud"})["run"]
    end = daemon.wait_run_end(again["id"])
    assert end["ok"] is True, end
    assert_cryptcheck_clean(
        big_immich[0], crypt_env_s3(s3, data_dir / "secrets" / "cloud.json"), BACKED_UP
    )
