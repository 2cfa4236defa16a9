"""A backup.db with years of job history, and damage in the middle of it (#18).

Damage in the first pages is found by any query; damage in the middle of a sizeable DB is
read only by the queries that happen to reach it, which is what the tests need to show.
"""

from __future__ import annotations

import contextlib
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

FOLDERS = ("backups", "library", "upload", "profile")
PAGE = 4096


def grow_history(db: Path, runs: int) -> int:
    """Add `runs` finished daily runs (four jobs each) to the first destination's history,
    older than anything there; fold the WAL into the file. Returns the DB's page count."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        destination = conn.execute("SELECT id FROM backup_destinations LIMIT 1").fetchone()[0]
        count = runs * len(FOLDERS)
        # the history is older: it takes the low ids, the runs already there move above it
        conn.execute("UPDATE backup_jobs SET id = id + ?", (count,))
        start = datetime(2016, 1, 1, tzinfo=UTC)
        rows: list[tuple[int, int, str, str, str, int]] = []
        for day in range(runs):
            at = (start + timedelta(days=day)).isoformat()
            for priority, folder in enumerate(FOLDERS):
                rows.append(
                    (len(rows) + 1, destination, f"history-{day:05d}", folder, at, priority)
                )
        conn.executemany(
            "INSERT INTO backup_jobs (id, destination_id, run_id, folder, source_path, status, "
            "bytes_total, bytes_transferred, files_total, files_transferred, created_at, "
            "started_at, completed_at, last_update, priority) VALUES (?1, ?2, ?3, ?4, "
            "'/srv/' || ?4, 'COMPLETED', 1e9, 1e9, 1000, 1000, ?5, ?5, ?5, ?5, ?6)",
            rows,
        )
        conn.commit()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return int(conn.execute("PRAGMA page_count").fetchone()[0])


def damage_middle(db: Path, pages: int = 16) -> range:
    """Overwrite `pages` pages in the middle of `db` (not the header); return their numbers."""
    data = bytearray(db.read_bytes())
    count = len(data) // PAGE
    first = count // 2
    hit = range(first, min(first + pages, count))
    for number in hit:
        data[number * PAGE : (number + 1) * PAGE] = b"\xa5" * PAGE
    db.write_bytes(bytes(data))
    return hit
