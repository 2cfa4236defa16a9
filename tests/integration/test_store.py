"""The SQLite store: migrations, state machine enforcement, stale detection, coalesced writes."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from photos_sync.core.records import to_iso, utcnow
from photos_sync.core.states import InvalidTransition, JobStatus
from photos_sync.storage.store import SCHEMA_VERSION, SchemaTooNew, Store, StoreError
from tests.support.db_history import damage_middle, grow_history

OWNER = (12345, "host", None)


async def test_migrations_twice_are_harmless(tmp_path: Path) -> None:
    path = tmp_path / "backup.db"
    store = await Store.open(path)
    destination = await store.create_destination(
        name="nas", type="local", secrets_ref="file:/x", remote_path="/d"
    )
    assert await store.migrate() == SCHEMA_VERSION
    await store.close()
    again = await Store.open(path)
    assert await again.schema_version() == SCHEMA_VERSION
    assert (await again.get_destination("nas")) == destination
    assert await again.integrity_check() == "ok"
    await again.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"idx_jobs_status", "idx_jobs_destination", "idx_jobs_last_update"} <= indexes
    conn.close()


async def test_newer_schema_refused(tmp_path: Path) -> None:
    path = tmp_path / "backup.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaTooNew, match="newer photos-sync"):
        await Store.open(path)


async def test_garbage_file_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "backup.db"
    path.write_bytes(b"\x00garbage" * 1000)
    with pytest.raises(StoreError, match="damaged"):
        await Store.open(path)


async def test_state_machine_enforced_and_times_stamped(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "backup.db")
    dest = await store.create_destination(name="nas", type="local", secrets_ref="file:/x")
    (job,) = await store.create_jobs(dest.id, "r1", [("library", "/src/library", 2)])
    assert job.status is JobStatus.PENDING and job.started_at is None
    with pytest.raises(InvalidTransition):
        await store.mark_completed(job.id)
    running = await store.set_status(job.id, JobStatus.RUNNING, owner=OWNER)
    assert running.owner_pid == 12345 and running.started_at
    await store.update_job(job.id, bytes_transferred=10, bytes_total=20)
    failed = await store.set_status(
        job.id, JobStatus.FAILED, error_message="boom", increment_retry=True
    )
    assert failed.retry_count == 1 and failed.error_message == "boom" and failed.owner_pid is None
    await store.set_status(job.id, JobStatus.RUNNING, owner=OWNER)
    done = await store.mark_completed(job.id)
    assert done.completed_at and done.error_message is None
    with pytest.raises(InvalidTransition):
        await store.set_status(job.id, JobStatus.RUNNING, owner=OWNER)
    with pytest.raises(ValueError, match="not progress fields"):
        await store.update_job(job.id, status="COMPLETED")
    await store.close()


async def test_stale_detection_both_directions(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "backup.db")
    dest = await store.create_destination(name="nas", type="local", secrets_ref="file:/x")
    jobs = await store.create_jobs(dest.id, "r1", [("a", "/a", 1), ("b", "/b", 2), ("c", "/c", 3)])
    for job in jobs:
        await store.set_status(job.id, JobStatus.RUNNING, owner=OWNER)
    now = utcnow()
    conn = sqlite3.connect(tmp_path / "backup.db")
    conn.execute(
        "UPDATE backup_jobs SET last_update = ? WHERE folder = 'a'",
        (to_iso(now - timedelta(hours=3)),),
    )
    conn.execute(
        "UPDATE backup_jobs SET last_update = ? WHERE folder = 'b'",
        (to_iso(now + timedelta(days=2)),),
    )  # clock went back since
    conn.commit()
    conn.close()
    stale = await store.stale_jobs(120, now=now)
    assert sorted(j.folder for j in stale) == ["a", "b"]
    assert (await store.active_job(dest.id)) is not None
    assert await store.reset(dest.id) == 3
    await store.close()


# -- #18: modes, damage in the middle, errors after open -----------------------------------


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The most permissive umask: whatever photos-sync makes private, it made so itself."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_db_wal_and_shm_are_private_whatever_the_umask(
    tmp_path: Path, open_umask: None
) -> None:
    data_dir = tmp_path / "missing" / "data"
    store = await Store.open(data_dir / "backup.db")
    try:
        await store.create_destination(name="nas", type="local", secrets_ref="file:/x")
        modes = {p.name: _mode(p) for p in data_dir.iterdir()}
        # SQLite gives -wal and -shm the DB file's mode: 0600 from the start
        assert modes == {"backup.db": 0o600, "backup.db-wal": 0o600, "backup.db-shm": 0o600}
        assert _mode(data_dir) == 0o700 and _mode(data_dir.parent) == 0o700
    finally:
        await store.close()


async def test_files_an_older_version_left_open_are_tightened(tmp_path: Path) -> None:
    path = tmp_path / "backup.db"
    store = await Store.open(path)
    await store.close()
    leftovers = [path, tmp_path / "backup.db-wal", tmp_path / "backup.db-shm"]
    for leftover in leftovers[1:]:
        leftover.write_bytes(b"")
    for leftover, mode in zip(leftovers, (0o644, 0o644, 0o444), strict=True):
        leftover.chmod(mode)  # 0444: what a read-only `--status` of older versions left
    store = await Store.open(path)
    await store.create_destination(name="nas", type="local", secrets_ref="file:/x")
    await store.close()
    assert _mode(path) == 0o600
    for leftover in leftovers[1:]:
        assert not leftover.exists() or _mode(leftover) == 0o600


async def _with_history(tmp_path: Path, runs: int = 3000) -> Path:
    path = tmp_path / "backup.db"
    store = await Store.open(path)
    dest = await store.create_destination(name="nas", type="local", secrets_ref="file:/x")
    await store.create_jobs(dest.id, "latest", [("library", "/src/library", 1)])
    await store.close()
    pages = grow_history(path, runs)
    assert pages > 600, pages  # megabytes of history, as years of daily runs leave
    return path


async def test_damage_in_the_middle_is_refused_at_open(tmp_path: Path) -> None:
    path = await _with_history(tmp_path)
    store = await Store.open(path)
    assert [j.run_id for j in await store.latest_run_jobs(1)] == ["latest"]
    await store.close()
    damage_middle(path)
    # the newest run, all `--status` reads, lies outside the damage: only a check finds it
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT run_id FROM backup_jobs ORDER BY id DESC LIMIT 1").fetchone()
    raw.close()
    with pytest.raises(StoreError, match=r"is damaged \(database disk image is malformed: "):
        await Store.open(path)


async def test_sqlite_errors_after_open_are_store_errors(tmp_path: Path) -> None:
    path = await _with_history(tmp_path)
    store = await Store.open(path)
    try:
        damage_middle(path)
        # another process writes: the store drops its page cache and reads the file again
        other = sqlite3.connect(path)
        other.execute("UPDATE backup_destinations SET last_backup_at = 'x'")
        other.commit()
        other.close()
        with pytest.raises(StoreError, match=r"is damaged .* move it aside"):
            await store.all_jobs(limit=100_000)
    finally:
        await store.close()


def _blocked_signals(task: Path) -> int:
    for line in (task / "status").read_text().splitlines():
        if line.startswith("SigBlk:"):
            return int(line.split()[1], 16)
    raise AssertionError(f"no SigBlk in {task}/status")


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux's /proc")
async def test_the_db_thread_leaves_ctrl_c_and_stop_signals_to_the_main_thread(
    tmp_path: Path,
) -> None:
    """A Ctrl-C taken by the DB's worker thread would leave a wizard question blocked in its
    read until Enter: the worker blocks the signals the main thread handles."""
    import signal
    import threading

    before = set(os.listdir("/proc/self/task"))
    store = await Store.open(tmp_path / "backup.db")
    try:
        new_threads = set(os.listdir("/proc/self/task")) - before
        assert new_threads, "opening the store started no thread: the check would be empty"
        wanted = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
        for task in new_threads:
            mask = _blocked_signals(Path("/proc/self/task") / task)
            assert all(mask & (1 << (sig - 1)) for sig in wanted), (task, hex(mask))
        main = Path("/proc/self/task") / str(threading.get_native_id())
        assert not _blocked_signals(main) & (1 << (signal.SIGINT - 1))
    finally:
        await store.close()
