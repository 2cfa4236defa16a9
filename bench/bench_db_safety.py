"""Issue #18: what the DB's safety costs. Prints a table; docs/RELIABILITY.md quotes it.

1. A progress write (`Store.update_job`, once per job per stats tick) and a state change
   (`Store.set_status`) under `synchronous=NORMAL` and `FULL`, on an idle disk and while a
   writer dirties the page cache on the same file system (as rclone does when the backup
   folder shares the disk with the data dir).
2. `Store.open` (which runs `PRAGMA quick_check` and takes the write lock once) and the
   quick_check alone, for job histories of 1, 10 and 100 years of daily runs.

    .venv/bin/python bench/bench_db_safety.py [--writes 200] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import loadavg, machine, median, percentile, table

from photos_sync.core.states import JobStatus
from photos_sync.storage.store import Store

FOLDERS = ("backups", "library", "upload", "profile")


@contextlib.contextmanager
def page_cache_writer(folder: Path) -> Iterator[None]:
    """Keep writing 512 MiB files without fsync (dirty pages, as rclone leaves them)."""
    script = f"while true; do dd if=/dev/zero of={folder}/load bs=1M count=512 2>/dev/null; done"
    proc = subprocess.Popen(["sh", "-c", script], start_new_session=True)
    time.sleep(2)  # let dirty pages build up
    try:
        yield
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the shell and its dd, by the group we started
        proc.wait()
        (folder / "load").unlink(missing_ok=True)


async def write_latencies(db: Path, mode: str, writes: int) -> tuple[list[float], list[float]]:
    store = await Store.open(db)
    try:
        await store._conn.execute(f"PRAGMA synchronous = {mode}")
        destination = await store.create_destination(name="bench", type="local", secrets_ref="x")
        progress: list[float] = []
        states: list[float] = []
        for round_ in range(writes):
            (job,) = await store.create_jobs(
                destination.id, f"run-{mode}-{round_}", [("l", "/", 1)]
            )
            start = time.perf_counter()
            await store.set_status(job.id, JobStatus.RUNNING, owner=(os.getpid(), "bench", None))
            states.append(time.perf_counter() - start)
            start = time.perf_counter()
            await store.update_job(job.id, bytes_transferred=round_, files_transferred=round_)
            progress.append(time.perf_counter() - start)
            await store.mark_interrupted(job.id)
        return progress, states
    finally:
        await store.close()


def grow_history(db: Path, years: int) -> None:
    """Daily runs of four folders, as the runner leaves them."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        dest = conn.execute(
            "INSERT INTO backup_destinations (name, type, secrets_ref, created_at) "
            "VALUES ('h', 'local', 'x', '2020-01-01') RETURNING id"
        ).fetchone()[0]
        start = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
        rows = []
        for day in range(365 * years):
            at = (start + dt.timedelta(days=day)).isoformat()
            for priority, folder in enumerate(FOLDERS):
                rows.append((dest, f"r{day}", folder, f"/srv/immich/{folder}", at, priority))
        conn.executemany(
            "INSERT INTO backup_jobs (destination_id, run_id, folder, source_path, status, "
            "bytes_total, bytes_transferred, files_total, files_transferred, created_at, "
            "started_at, completed_at, last_update, priority) VALUES "
            "(?, ?, ?, ?, 'COMPLETED', 1e9, 1e9, 1000, 1000, ?5, ?5, ?5, ?5, ?6)",
            rows,
        )
        conn.commit()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


async def open_cost(db: Path, rounds: int) -> tuple[list[float], list[float]]:
    opens, checks = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        store = await Store.open(db)
        opens.append(time.perf_counter() - start)
        start = time.perf_counter()
        async with store._conn.execute("PRAGMA quick_check(1)") as cur:
            await cur.fetchone()
        checks.append(time.perf_counter() - start)
        await store.close()
    return opens, checks


def ms(values: list[float]) -> str:
    return (
        f"{median(values) * 1000:.2f} ms (p95 {percentile(values, 95) * 1000:.2f}, "
        f"max {max(values) * 1000:.1f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=200)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-db-", dir=args.workdir))
    try:
        print(f"load {loadavg()}; {machine(work)['Disk (data folder)']}")
        rows = []
        for label, load in (("idle disk", False), ("disk busy writing", True)):
            for mode in ("NORMAL", "FULL"):
                db = work / f"{mode}-{load}" / "backup.db"
                cm = page_cache_writer(work) if load else contextlib.nullcontext()
                with cm:
                    progress, states = asyncio.run(write_latencies(db, mode, args.writes))
                rows.append([label, mode, ms(progress), ms(states)])
        print(table(["disk", "synchronous", "progress write", "state change"], rows))
        rows = []
        for years in (1, 10, 100):
            db = work / f"history-{years}" / "backup.db"
            asyncio.run(_close_after_open(db))  # creates the schema
            grow_history(db, years)
            opens, checks = asyncio.run(open_cost(db, 10))
            size = db.stat().st_size / 1024 / 1024
            rows.append([f"{years} y ({size:.1f} MiB)", ms(opens), ms(checks)])
        print(table(["history", "Store.open (warm cache)", "quick_check alone"], rows))
        print(f"load {loadavg()}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def _close_after_open(db: Path) -> None:
    store = await Store.open(db)
    await store.close()


if __name__ == "__main__":
    main()
