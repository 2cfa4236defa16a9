"""`photos-sync restore` and `photos-sync verify` as a user runs them (the real CLI, the real
rclone, a local destination), the archive and its retention, and verify on the daemon's
schedule."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.immich_tree import TreeStats
from tests.support import plain_rclone
from tests.support.cli import PHOTOS_SYNC, photos_sync
from tests.support.daemon import DaemonPool, daemon_pool, setup_local

pytestmark = pytest.mark.timeout(120)

FOLDERS = ("backups", "library", "upload", "profile")


def ok(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = photos_sync(*args, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def files_of(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def media(root: Path) -> list[str]:
    return [f"library/{p}" for p in files_of(root / "library") if not p.endswith(".immich")]


def diff_r(expected: Path, actual: Path) -> None:
    result = subprocess.run(
        ["diff", "-r", str(expected), str(actual)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def snapshot(root: Path, into: Path) -> Path:
    for folder in FOLDERS:
        shutil.copytree(root / folder, into / folder)
    return into


def db_rows(data_dir: str, table: str) -> list[dict[str, Any]]:
    with contextlib.closing(sqlite3.connect(Path(data_dir) / "backup.db")) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute(f"SELECT * FROM {table} ORDER BY id")]


def crypt_env(dest: Path, isolated_env: dict[str, str]) -> dict[str, str]:
    keyfile = Path(isolated_env["PHOTOS_SYNC_DATA_DIR"]) / "secrets" / "nas.json"
    return plain_rclone.crypt_env(dest, keyfile)


@pytest.fixture
def backed_up(tmp_path: Path, immich: tuple[Path, TreeStats], isolated_env: dict[str, str]) -> Path:
    """A local destination `nas` holding a complete backup of the Immich tree."""
    dest = setup_local(tmp_path)
    ok("backup")
    return dest


def test_restore_everything_one_file_and_no_overwrite(
    backed_up: Path, immich: tuple[Path, TreeStats], tmp_path: Path
) -> None:
    root, _ = immich
    expected = snapshot(root, tmp_path / "expected")
    shutil.rmtree(root)

    target = tmp_path / "restored"
    result = ok("restore", "--from", "nas", "--to", str(target))
    assert f"restored {len(files_of(expected))} files" in result.stdout
    diff_r(expected, target)

    one = media(expected)[0]
    single = tmp_path / "single"
    ok("restore", "--from", "nas", "--to", str(single), "--path", one)
    assert files_of(single) == [one]

    # a file already in the target is left alone, then replaced with --overwrite
    (single / one).write_bytes(b"mine")
    result = ok("restore", "--from", "nas", "--to", str(single), "--path", "library", "--json")
    assert (single / one).read_bytes() == b"mine"
    assert json.loads(result.stdout)["ok"] is True
    ok("restore", "--from", "nas", "--to", str(single), "--path", "library", "--overwrite")
    diff_r(expected / "library", single / "library")

    missing_to = photos_sync("restore", "--from", "nas")
    assert missing_to.returncode == 2 and "--to" in missing_to.stderr
    both = photos_sync("restore", "--to", str(target), "--deleted", "--as-of", "2026-01-01")
    assert both.returncode == 2
    nothing = photos_sync("restore", "--to", str(target), "--path", "library/nope.jpg")
    assert nothing.returncode == 1 and "not in the backup" in nothing.stderr


def test_restore_says_which_files_differ_and_were_left_alone(
    backed_up: Path, immich: tuple[Path, TreeStats], tmp_path: Path
) -> None:
    """Restoring into a folder that holds other versions used to print "restored 0 files",
    exit 0, and say nothing of the files it did not replace."""
    target = tmp_path / "restored"
    ok("restore", "--from", "nas", "--to", str(target), "--path", "library")
    changed = sorted(
        p for p in (target / "library").rglob("*") if p.is_file() and p.name != ".immich"
    )[:2]
    for path in changed:
        path.write_bytes(b"a different version")
    again = ok("restore", "--from", "nas", "--to", str(target), "--path", "library")
    assert "restored 0 files" in again.stdout
    assert "2 files already in" in again.stdout
    assert "differ from the backup and were left as they are" in again.stdout
    assert "--overwrite" in again.stdout
    assert str(changed[0]) in again.stdout.replace("\n", "")
    document = json.loads(
        ok("restore", "--from", "nas", "--to", str(target), "--path", "library", "--json").stdout
    )
    assert document["differ"] == 2
    assert sorted(document["differ_paths"]) == sorted(str(p) for p in changed)
    assert all(p.read_bytes() == b"a different version" for p in changed)
    same = ok("restore", "--from", "nas", "--to", str(target), "--path", "library", "--overwrite")
    assert "differ" not in same.stdout
    assert all(p.read_bytes() != b"a different version" for p in changed)


def test_interrupted_restore_resumes(
    backed_up: Path,
    immich: tuple[Path, TreeStats],
    tmp_path: Path,
    isolated_env: dict[str, str],
) -> None:
    root, _ = immich
    target = tmp_path / "restored"
    env = {"BACKUP_BWLIMIT": "150k", "COLUMNS": "200"}
    import os

    proc = subprocess.Popen(
        [PHOTOS_SYNC, "restore", "--to", str(target)],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done = (
            [p for p in files_of(target) if not p.endswith(".partial")] if target.exists() else []
        )
        if len(done) >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, err
    assert "run the same command again" in err
    (row,) = db_rows(isolated_env["PHOTOS_SYNC_DATA_DIR"], "restore_jobs")
    assert row["status"] == "INTERRUPTED"
    before = {
        p: (target / p).stat().st_mtime_ns for p in files_of(target) if not p.endswith(".partial")
    }
    assert 0 < len(before) < len(files_of(root / "library")) + 20

    ok("restore", "--to", str(target))
    (row,) = db_rows(isolated_env["PHOTOS_SYNC_DATA_DIR"], "restore_jobs")
    assert row["status"] == "COMPLETED" and row["completed_at"]
    for folder in FOLDERS:
        diff_r(root / folder, target / folder)
    for path, mtime in before.items():
        assert (target / path).stat().st_mtime_ns == mtime, f"{path} was written twice"


def test_verify_names_the_damaged_missing_and_extra_files(
    backed_up: Path, immich: tuple[Path, TreeStats], isolated_env: dict[str, str]
) -> None:
    root, _ = immich
    result = ok("verify")
    assert "0 missing, 0 differ, 0 unreadable; 0 newer than the backup" in result.stdout
    status = json.loads(ok("backup", "--status", "--json").stdout)
    assert status["destinations"][0]["last_verify"]["ok"] is True

    env = crypt_env(backed_up, isolated_env)
    flipped, lost = media(root)[:2]
    for plain, action in ((flipped, "flip"), (lost, "delete")):
        decoded = plain_rclone.run(["cryptdecode", "--reverse", "check:", plain], env)
        encrypted = backed_up / decoded.stdout.split("\t")[-1].strip()
        if action == "flip":
            data = bytearray(encrypted.read_bytes())
            data[-1] ^= 0xFF
            encrypted.write_bytes(bytes(data))
        else:
            encrypted.unlink()
    subprocess.run(
        [plain_rclone.rclone_binary(), "rcat", "check:profile/stray.jpg"],
        input=b"stray",
        env=env,
        check=True,
        timeout=60,
    )

    result = photos_sync("verify", "--to", "nas")
    assert result.returncode == 1
    assert f"differs: {flipped}" in result.stderr
    assert f"missing from the backup: {lost}" in result.stderr
    # a file only in the backup is what a file deleted at the source since looks like
    assert "deleted at the source): profile/stray.jpg" in result.stdout

    as_json = photos_sync("verify", "--json", "--full")
    assert as_json.returncode == 1
    report = json.loads(as_json.stdout)
    assert (report["differ"], report["missing"], report["extra"]) == (
        [flipped],
        [lost],
        ["profile/stray.jpg"],
    )
    assert report["newer"] == [{"path": "profile/stray.jpg", "change": "deleted"}]
    assert report["mode"] == "full"

    last = json.loads(ok("backup", "--status", "--json").stdout)["destinations"][0]["last_verify"]
    assert last["ok"] is False
    assert (last["differ"], last["missing"], last["extra"]) == (1, 1, 1)
    human = ok("backup", "--status").stdout
    assert "last verify" in human and "PROBLEMS" in human

    bad = photos_sync("verify", "--sample", "150")
    assert bad.returncode == 2


def test_archive_list_restore_deleted_as_of_and_retention_dry_run(
    backed_up: Path,
    immich: tuple[Path, TreeStats],
    tmp_path: Path,
    isolated_env: dict[str, str],
) -> None:
    root, _ = immich
    gone = media(root)[0]
    original = (root / gone).read_bytes()
    between = datetime.now(UTC)
    time.sleep(1.1)
    (root / gone).unlink()
    ok("backup")

    listing = ok("restore", "--from", "nas", "--list-deleted", "--path", "library").stdout
    assert gone in listing
    as_json = json.loads(ok("restore", "--list-deleted", "--json").stdout)
    assert [r["path"] for r in as_json["archived"]] == [gone]

    target = tmp_path / "deleted"
    ok("restore", "--to", str(target), "--deleted", "--path", gone)
    assert (target / gone).read_bytes() == original

    target = tmp_path / "as-of"
    ok("restore", "--to", str(target), "--as-of", between.isoformat(), "--path", "library")
    assert (target / gone).read_bytes() == original
    assert sorted(files_of(target)) == sorted([*media(root), gone, "library/.immich"])

    # retention: plant archive runs 40 and 5 days old; BACKUP_KEEP_DELETED_DAYS=30
    env = crypt_env(backed_up, isolated_env)
    now = datetime.now(UTC)
    old, recent = ((now - timedelta(days=d)).strftime("%Y%m%dT%H%M%SZ") for d in (40, 5))
    for stamp in (old, recent):
        subprocess.run(
            [plain_rclone.rclone_binary(), "rcat", f"check:.deleted/{stamp}/x.jpg"],
            input=b"x",
            env=env,
            check=True,
            timeout=60,
        )
    keep = {"BACKUP_KEEP_DELETED_DAYS": "30"}
    # runs planted from outside: an incremental run knows only the archive runs recorded in
    # its manifest; a full sync lists the archive (#15)
    dry = ok("backup", "--dry-run", "--full", env=keep)
    assert f"would remove files deleted by the run of {old}" in dry.stdout
    assert recent not in dry.stdout

    listed = plain_rclone.run(["lsf", "--dirs-only", "check:.deleted"], env).stdout
    assert f"{old}/" in listed  # a dry run removes nothing (the real pruning: integration tests)


@pytest.fixture
def daemons() -> Iterator[DaemonPool]:
    with daemon_pool() as pool:
        yield pool


def test_daemon_runs_verify_on_its_schedule(
    backed_up: Path, daemons: DaemonPool, isolated_env: dict[str, str]
) -> None:
    data_dir = isolated_env["PHOTOS_SYNC_DATA_DIR"]
    assert db_rows(data_dir, "verify_runs") == []
    daemon = daemons.start({"BACKUP_VERIFY_SCHEDULE": "1h"})
    deadline = time.monotonic() + 30
    while not db_rows(data_dir, "verify_runs") and time.monotonic() < deadline:
        time.sleep(0.2)
    rows = db_rows(data_dir, "verify_runs")
    assert len(rows) == 1, daemon.stderr_text()
    assert rows[0]["ok"] == 1 and rows[0]["matched"] > 0
    status = daemon.call("status")
    assert status["daemon"]["verify_schedule"] == "every 1h"
    assert "nas" in status["daemon"]["next_verify"]
    assert status["destinations"][0]["last_verify"]["ok"] is True
    time.sleep(1.5)  # an hourly schedule does not fire again
    assert len(db_rows(data_dir, "verify_runs")) == 1


def test_bad_verify_schedule_is_a_usage_error(isolated_env: dict[str, str]) -> None:
    result = photos_sync("daemon", env={"BACKUP_VERIFY_SCHEDULE": "sometimes"})
    assert result.returncode == 2
    assert "BACKUP_VERIFY_SCHEDULE='sometimes' is invalid" in result.stderr


async def test_unfinished_restore_is_shown_in_status_with_what_to_do(
    tmp_path: Path, immich: tuple[Path, TreeStats], isolated_env: dict[str, str]
) -> None:
    from photos_sync.core.states import JobStatus
    from photos_sync.storage.store import RestoreAndVerifyStore, Store

    setup_local(tmp_path)
    store = await Store.open(Path(isolated_env["PHOTOS_SYNC_DATA_DIR"]) / "backup.db")
    try:
        destination = await store.get_destination("nas")
        assert destination is not None
        restores = RestoreAndVerifyStore(store)
        job = await restores.create_restore(
            destination.id, "library", str(tmp_path / "out"), "current", None, False
        )
        await restores.set_restore_status(job.id, JobStatus.RUNNING)
        await restores.set_restore_status(job.id, JobStatus.INTERRUPTED, "stopped")
    finally:
        await store.close()
    document = json.loads(ok("backup", "--status", "--json").stdout)
    (entry,) = document["restores"]
    assert entry["status"] == "INTERRUPTED" and entry["destination"] == "nas"
    assert entry["remote_path"] == "library"
    human = ok("backup", "--status").stdout
    assert "restore from nas into" in human and "INTERRUPTED" in human
    assert "run the same `photos-sync restore` command again" in human
