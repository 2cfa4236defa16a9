"""The SQLite store (aiosqlite, WAL): destinations and jobs.

The records themselves (Destination, Job, RestoreJob) live in photos_sync.core.records;
this module turns rows into them and keeps them.

Schema changes are a list of migrations keyed by `PRAGMA user_version`. Opening a DB applies
the missing ones, each in its own transaction, so running them twice is harmless; a DB
written by a newer photos-sync is refused rather than guessed at.
Timestamps are ISO-8601 UTC strings ("2026-11-25T17:29:22.123456+00:00").
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import aiosqlite

from photos_sync.core.records import Destination, Job, RestoreJob, to_iso, utcnow
from photos_sync.core.states import JobStatus, check_transition
from photos_sync.core.units import from_iso
from photos_sync.storage import datadir


class StoreError(RuntimeError):
    """The DB cannot be used; the message says why and what to do."""


class SchemaTooNew(StoreError):
    pass


_STATUS_CHECK = ", ".join(f"'{s.value}'" for s in JobStatus)

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: destinations and jobs
    (
        """
        CREATE TABLE IF NOT EXISTS backup_destinations (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            type TEXT NOT NULL,
            bucket_name TEXT,
            remote_path TEXT,
            endpoint TEXT,
            region TEXT,
            secrets_ref TEXT NOT NULL,
            options TEXT NOT NULL DEFAULT '{}',
            created_at TEXT NOT NULL,
            last_backup_at TEXT
        )
        """,
        f"""
        CREATE TABLE IF NOT EXISTS backup_jobs (
            id INTEGER PRIMARY KEY,
            destination_id INTEGER NOT NULL
                REFERENCES backup_destinations(id) ON DELETE CASCADE,
            run_id TEXT NOT NULL,
            folder TEXT NOT NULL,
            source_path TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ({_STATUS_CHECK})),
            bytes_total INTEGER NOT NULL DEFAULT 0,
            bytes_transferred INTEGER NOT NULL DEFAULT 0,
            bytes_confirmed INTEGER NOT NULL DEFAULT 0,
            files_total INTEGER NOT NULL DEFAULT 0,
            files_transferred INTEGER NOT NULL DEFAULT 0,
            files_archived INTEGER NOT NULL DEFAULT 0,
            transfer_speed REAL NOT NULL DEFAULT 0,
            eta_seconds REAL,
            created_at TEXT NOT NULL,
            started_at TEXT,
            completed_at TEXT,
            last_update TEXT,
            error_message TEXT,
            retry_count INTEGER NOT NULL DEFAULT 0,
            priority INTEGER NOT NULL DEFAULT 100,
            owner_pid INTEGER,
            owner_host TEXT,
            owner_token TEXT
        )
        """,
        "CREATE INDEX IF NOT EXISTS idx_jobs_status ON backup_jobs(status)",
        "CREATE INDEX IF NOT EXISTS idx_jobs_destination ON backup_jobs(destination_id)",
        "CREATE INDEX IF NOT EXISTS idx_jobs_last_update ON backup_jobs(last_update)",
        "CREATE INDEX IF NOT EXISTS idx_jobs_run ON backup_jobs(destination_id, run_id)",
    ),
    # 2: restores (tracked and resumable like backups) and verify results
    (
        f"""
        CREATE TABLE IF NOT EXISTS restore_jobs (
            id INTEGER PRIMARY KEY,
            destination_id INTEGER NOT NULL
                REFERENCES backup_destinations(id) ON DELETE CASCADE,
            remote_path TEXT NOT NULL,
            target_dir TEXT NOT NULL,
            mode TEXT NOT NULL,
            as_of TEXT,
            overwrite INTEGER NOT NULL DEFAULT 0,
            status TEXT NOT NULL CHECK (status IN ({_STATUS_CHECK})),
            bytes_total INTEGER NOT NULL DEFAULT 0,
            bytes_transferred INTEGER NOT NULL DEFAULT 0,
            files_total INTEGER NOT NULL DEFAULT 0,
            files_transferred INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            started_at TEXT,
            completed_at TEXT,
            last_update TEXT,
            error_message TEXT,
            owner_pid INTEGER
        )
        """,
        "CREATE INDEX IF NOT EXISTS idx_restore_status ON restore_jobs(status)",
        """
        CREATE TABLE IF NOT EXISTS verify_runs (
            id INTEGER PRIMARY KEY,
            destination_id INTEGER NOT NULL
                REFERENCES backup_destinations(id) ON DELETE CASCADE,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            ok INTEGER,
            mode TEXT NOT NULL,
            matched INTEGER NOT NULL DEFAULT 0,
            missing INTEGER NOT NULL DEFAULT 0,
            extra INTEGER NOT NULL DEFAULT 0,
            differ INTEGER NOT NULL DEFAULT 0,
            errors INTEGER NOT NULL DEFAULT 0,
            unverified INTEGER NOT NULL DEFAULT 0,
            downloaded_bytes INTEGER NOT NULL DEFAULT 0,
            report TEXT NOT NULL DEFAULT '{{}}'
        )
        """,
        "CREATE INDEX IF NOT EXISTS idx_verify_destination ON verify_runs(destination_id)",
    ),
    # 3: a job a safety guard refused stays refused (not resumed; the next run checks again),
    # and files a job could not send are counted and named instead of skipped in silence
    (
        "ALTER TABLE backup_jobs ADD COLUMN refused TEXT",
        "ALTER TABLE backup_jobs ADD COLUMN files_skipped INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE backup_jobs ADD COLUMN skipped_detail TEXT NOT NULL DEFAULT '[]'",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


_JOB_COLUMNS = tuple(Job.__slots__)
_DEST_COLUMNS = tuple(Destination.__slots__)


def _job(row: sqlite3.Row) -> Job:
    values = dict(zip(_JOB_COLUMNS, row, strict=True))
    values["status"] = JobStatus(values["status"])
    return Job(**values)


def _destination(row: sqlite3.Row) -> Destination:
    values = dict(zip(_DEST_COLUMNS, row, strict=True))
    values["options"] = json.loads(values["options"] or "{}")
    return Destination(**values)


#: Fields of a job that `update_job` may set directly (status goes through `set_status`).
_PROGRESS_FIELDS = frozenset(
    {
        "bytes_total",
        "bytes_transferred",
        "bytes_confirmed",
        "files_total",
        "files_transferred",
        "files_archived",
        "transfer_speed",
        "eta_seconds",
        "error_message",
        "files_skipped",
        "skipped_detail",
    }
)


#: Signals the main thread handles (Ctrl-C at a prompt, the service manager's stop, a reload).
MAIN_THREAD_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP})


@contextlib.contextmanager
def _threads_started_here_ignore_signals() -> Iterator[None]:
    """Block the main thread's signals while a thread is started here, so the new thread
    inherits a mask that keeps them away from it for good.

    The kernel hands a process-wide signal to any thread that does not block it. Caught by
    the DB's worker thread, a Ctrl-C typed at a wizard question left the main thread blocked
    in its read until Enter (the question seemed to ignore it). Blocked signals stay pending
    and arrive in the main thread when the block ends."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, MAIN_THREAD_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class _GuardedConnection(aiosqlite.Connection):
    """An aiosqlite connection whose SQLite errors are StoreErrors with a one-line message.

    Every call (the connection's and its cursors') goes through `_execute`, so damage or a
    full disk met by any query reaches the user as "backup.db is damaged: …", not as a
    traceback or an "internal error".
    """

    path: Path

    @classmethod
    async def to(cls, path: Path) -> _GuardedConnection:
        def connector() -> sqlite3.Connection:
            return sqlite3.connect(path, timeout=30)

        conn = cls(connector, 64)
        conn.path = path
        await conn
        return conn

    def __await__(self) -> Any:
        # aiosqlite starts its worker thread here (synchronously)
        with _threads_started_here_ignore_signals():
            return super().__await__()

    async def _execute(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super()._execute(fn, *args, **kwargs)  # type: ignore[no-untyped-call]
        except sqlite3.DatabaseError as exc:
            raise StoreError(_explain_db_error(self.path, exc)) from None


#: What `Store.job_history` tells of each backup job ("name": its destination's).
HISTORY_FIELDS = (
    "name",
    "run_id",
    "folder",
    "status",
    "bytes_transferred",
    "files_transferred",
    "created_at",
    "started_at",
    "completed_at",
    "last_update",
    "retry_count",
    "error_message",
)


class Store:
    """Async access to backup.db. Open with `await Store.open(path)`; close with `close()`."""

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path

    @classmethod
    async def open(cls, path: Path) -> Store:
        """Open (creating if needed) and migrate the DB at `path`, and check it is sound.

        Raises StoreError with a one-line explanation for an unreadable, read-only, damaged
        or too-new DB, before anything is written. Afterwards every SQLite error of the
        connection is a StoreError too (see `_GuardedConnection`).
        """
        try:
            datadir.ensure_data_dir(path.parent)
            datadir.prepare_db(path)
        except datadir.DataDirError as exc:
            raise StoreError(str(exc)) from None
        except OSError as exc:
            raise StoreError(
                f"cannot use {path} ({exc.strerror}): check the data dir's owner and mode"
            ) from None
        try:
            conn = await _GuardedConnection.to(path)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {path}: {exc}; check the folder's permissions") from None
        store = cls(conn, path)
        try:
            await store._prepare()
        except BaseException:
            await conn.close()
            raise
        return store

    async def _prepare(self) -> None:
        await self._conn.execute("PRAGMA busy_timeout = 30000")
        await self._conn.execute("PRAGMA journal_mode = WAL")
        await self._conn.execute("PRAGMA foreign_keys = ON")
        # FULL: each commit is on disk when it returns (in WAL mode one fdatasync of the WAL).
        # Under NORMAL a power cut loses the commits since the last checkpoint, which can be
        # the whole run record (#18; docs/RELIABILITY.md has the cost).
        await self._conn.execute("PRAGMA synchronous = FULL")
        await self._check_sound()
        await self.migrate()

    async def _check_sound(self) -> None:
        """Refuse a damaged or unwritable DB now, before migrating and rather than mid-run.

        `PRAGMA quick_check` reads every page (docs/RELIABILITY.md has its cost), so damage
        anywhere is found, not only in the pages a command happens to read. The write lock
        is then taken and released (nothing is written) to learn that SQLite can write.
        """
        async with self._conn.execute("PRAGMA quick_check(1)") as cur:
            row = await cur.fetchone()
        verdict = str(row[0]) if row else "no answer"
        if verdict != "ok":
            found = " ".join(verdict.replace("*** in database main ***", "").split())
            problem = sqlite3.DatabaseError(f"database disk image is malformed: {found}")
            raise StoreError(_explain_db_error(self.path, problem))
        await self._conn.execute("BEGIN IMMEDIATE")
        await self._conn.execute("ROLLBACK")

    async def schema_version(self) -> int:
        async with self._conn.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def migrate(self) -> int:
        """Apply missing migrations; return the resulting version. Safe to call repeatedly."""
        current = await self.schema_version()
        if current > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"{self.path} was written by a newer photos-sync (schema {current}, this "
                f"version knows {SCHEMA_VERSION}): upgrade photos-sync"
            )
        for version in range(current + 1, SCHEMA_VERSION + 1):
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                # Re-read inside the write lock: another process may have migrated meanwhile.
                if await self.schema_version() >= version:
                    await self._conn.execute("ROLLBACK")
                    continue
                for statement in MIGRATIONS[version - 1]:
                    await self._conn.execute(statement)
                await self._conn.execute(f"PRAGMA user_version = {version}")
                await self._conn.execute("COMMIT")
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
        return await self.schema_version()

    async def close(self) -> None:
        await self._conn.close()

    async def integrity_check(self) -> str:
        async with self._conn.execute("PRAGMA integrity_check") as cur:
            row = await cur.fetchone()
        return str(row[0]) if row else "no answer"

    # -- destinations -------------------------------------------------------------------

    async def create_destination(
        self,
        *,
        name: str,
        type: str,
        secrets_ref: str,
        remote_path: str | None = None,
        bucket_name: str | None = None,
        endpoint: str | None = None,
        region: str | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> Destination:
        """Insert a destination, or update the one with the same name. Returns it."""
        now = to_iso(utcnow())
        await self._conn.execute(
            """
            INSERT INTO backup_destinations
                (name, type, bucket_name, remote_path, endpoint, region, secrets_ref, options,
                 created_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT(name) DO UPDATE SET
                type = excluded.type, bucket_name = excluded.bucket_name,
                remote_path = excluded.remote_path, endpoint = excluded.endpoint,
                region = excluded.region, secrets_ref = excluded.secrets_ref,
                options = excluded.options
            """,
            (
                name,
                type,
                bucket_name,
                remote_path,
                endpoint,
                region,
                secrets_ref,
                json.dumps(dict(options or {}), sort_keys=True),
                now,
            ),
        )
        await self._conn.commit()
        destination = await self.get_destination(name)
        assert destination is not None
        return destination

    async def get_destination(self, name: str) -> Destination | None:
        cols = ", ".join(_DEST_COLUMNS)
        async with self._conn.execute(
            f"SELECT {cols} FROM backup_destinations WHERE name = ?",
            (name,),
        ) as cur:
            row = await cur.fetchone()
        return _destination(row) if row else None

    async def list_destinations(self) -> list[Destination]:
        cols = ", ".join(_DEST_COLUMNS)
        async with self._conn.execute(
            f"SELECT {cols} FROM backup_destinations ORDER BY name"
        ) as cur:
            rows = await cur.fetchall()
        return [_destination(r) for r in rows]

    async def delete_destination(self, destination_id: int) -> int:
        """Delete a destination; its backup jobs, restore jobs and verify results go with it
        (ON DELETE CASCADE, with foreign_keys on). Returns how many backup jobs went."""
        async with self._conn.execute(
            "SELECT count(*) FROM backup_jobs WHERE destination_id = ?", (destination_id,)
        ) as cur:
            row = await cur.fetchone()
        await self._conn.execute("DELETE FROM backup_destinations WHERE id = ?", (destination_id,))
        await self._conn.commit()
        return int(row[0]) if row else 0

    async def mark_backup_completed(self, destination_id: int, moment: datetime) -> None:
        await self._conn.execute(
            "UPDATE backup_destinations SET last_backup_at = ? WHERE id = ?",
            (to_iso(moment), destination_id),
        )
        await self._conn.commit()

    # -- jobs ---------------------------------------------------------------------------

    async def create_jobs(
        self,
        destination_id: int,
        run_id: str,
        folders: Iterable[tuple[str, str, int]],
    ) -> list[Job]:
        """Create PENDING jobs for (folder, source_path, priority) in one transaction."""
        now = to_iso(utcnow())
        rows = [
            (destination_id, run_id, folder, source, JobStatus.PENDING.value, now, priority)
            for folder, source, priority in folders
        ]
        await self._conn.executemany(
            """
            INSERT INTO backup_jobs
                (destination_id, run_id, folder, source_path, status, created_at, priority)
            VALUES (?, ?, ?, ?, ?, ?, ?)
            """,
            rows,
        )
        await self._conn.commit()
        return await self.jobs_of_run(destination_id, run_id)

    async def _select_jobs(self, where: str, params: Sequence[Any]) -> list[Job]:
        cols = ", ".join(_JOB_COLUMNS)
        async with self._conn.execute(
            f"SELECT {cols} FROM backup_jobs WHERE {where}",
            tuple(params),
        ) as cur:
            rows = await cur.fetchall()
        return [_job(r) for r in rows]

    async def get_job(self, job_id: int) -> Job | None:
        jobs = await self._select_jobs("id = ?", (job_id,))
        return jobs[0] if jobs else None

    async def jobs_of_run(self, destination_id: int, run_id: str) -> list[Job]:
        return await self._select_jobs(
            "destination_id = ? AND run_id = ? ORDER BY priority, id", (destination_id, run_id)
        )

    async def latest_run_jobs(self, destination_id: int) -> list[Job]:
        """Jobs of the destination's most recently created run (empty if none)."""
        async with self._conn.execute(
            "SELECT run_id FROM backup_jobs WHERE destination_id = ? ORDER BY id DESC LIMIT 1",
            (destination_id,),
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            return []
        return await self.jobs_of_run(destination_id, str(row[0]))

    async def jobs_with_status(
        self, status: JobStatus, destination_id: int | None = None
    ) -> list[Job]:
        if destination_id is None:
            return await self._select_jobs("status = ? ORDER BY id", (status.value,))
        return await self._select_jobs(
            "status = ? AND destination_id = ? ORDER BY id", (status.value, destination_id)
        )

    async def active_job(self, destination_id: int | None = None) -> Job | None:
        """The RUNNING job (of a destination, or any), if there is one."""
        jobs = await self.jobs_with_status(JobStatus.RUNNING, destination_id)
        return jobs[0] if jobs else None

    async def stale_jobs(self, threshold_seconds: float, now: datetime | None = None) -> list[Job]:
        """RUNNING jobs whose last_update is more than `threshold_seconds` away from now.

        The distance is absolute, so a last_update in the future (the clock went back) does
        not hide a job that stopped reporting.
        """
        moment = now or utcnow()
        stale = []
        for job in await self.jobs_with_status(JobStatus.RUNNING):
            updated = from_iso(job.last_update or job.started_at or job.created_at)
            if updated is None or abs((moment - updated).total_seconds()) > threshold_seconds:
                stale.append(job)
        return stale

    async def set_status(
        self,
        job_id: int,
        status: JobStatus,
        *,
        error_message: str | None = None,
        owner: tuple[int, str, str | None] | None = None,
        increment_retry: bool = False,
        refused: str | None = None,
    ) -> Job:
        """Move a job to `status`, enforcing the state machine, and stamp the times.

        RUNNING records the owner (pid, host, token) and started_at; COMPLETED sets
        completed_at and clears the error; leaving RUNNING clears the owner. `refused` (with
        FAILED) records the guard that refused the job, which keeps it from being resumed.
        """
        job = await self.get_job(job_id)
        if job is None:
            raise StoreError(f"job {job_id} does not exist")
        check_transition(job.status, status)
        now = to_iso(utcnow())
        sets = ["status = ?", "last_update = ?"]
        params: list[Any] = [status.value, now]
        if status is JobStatus.RUNNING:
            assert owner is not None, "a RUNNING job needs an owner"
            sets += ["owner_pid = ?", "owner_host = ?", "owner_token = ?"]
            params += list(owner)
            if job.started_at is None:
                sets.append("started_at = ?")
                params.append(now)
        else:
            sets += ["owner_pid = NULL", "owner_token = NULL", "transfer_speed = 0"]
        if status is JobStatus.COMPLETED:
            sets += ["completed_at = ?", "error_message = NULL", "eta_seconds = NULL"]
            params.append(now)
        elif error_message is not None:
            sets.append("error_message = ?")
            params.append(error_message)
        if increment_retry:
            sets.append("retry_count = retry_count + 1")
        if refused is not None:
            assert status is JobStatus.FAILED, "only a FAILED job can be refused"
            sets.append("refused = ?")
            params.append(refused)
        params.append(job_id)
        await self._conn.execute(
            f"UPDATE backup_jobs SET {', '.join(sets)} WHERE id = ?",
            params,
        )
        await self._conn.commit()
        updated = await self.get_job(job_id)
        assert updated is not None
        return updated

    async def update_job(self, job_id: int, **fields: Any) -> None:
        """Write progress fields and refresh last_update, in one statement."""
        unknown = set(fields) - _PROGRESS_FIELDS
        if unknown:
            raise ValueError(f"not progress fields: {sorted(unknown)}")
        sets = [f"{name} = ?" for name in fields] + ["last_update = ?"]
        params = [*fields.values(), to_iso(utcnow()), job_id]
        await self._conn.execute(
            f"UPDATE backup_jobs SET {', '.join(sets)} WHERE id = ?",
            params,
        )
        await self._conn.commit()

    async def set_source_path(self, job_id: int, source_path: str) -> None:
        """Point an unfinished job at the source it must sync now (the current settings')."""
        await self._conn.execute(
            "UPDATE backup_jobs SET source_path = ? WHERE id = ?", (source_path, job_id)
        )
        await self._conn.commit()

    async def mark_interrupted(self, job_id: int, reason: str | None = None) -> Job:
        return await self.set_status(job_id, JobStatus.INTERRUPTED, error_message=reason)

    async def mark_completed(self, job_id: int) -> Job:
        return await self.set_status(job_id, JobStatus.COMPLETED)

    async def reset(self, destination_id: int | None = None) -> int:
        """Delete job history (of one destination, or all). Returns how many jobs went."""
        if destination_id is None:
            cur = await self._conn.execute("DELETE FROM backup_jobs")
        else:
            cur = await self._conn.execute(
                "DELETE FROM backup_jobs WHERE destination_id = ?", (destination_id,)
            )
        await self._conn.commit()
        return cur.rowcount

    async def all_jobs(self, destination_id: int | None = None, limit: int = 200) -> list[Job]:
        """Most recent jobs first."""
        if destination_id is None:
            return await self._select_jobs("1 ORDER BY id DESC LIMIT ?", (limit,))
        return await self._select_jobs(
            "destination_id = ? ORDER BY id DESC LIMIT ?", (destination_id, limit)
        )

    async def last_completed_jobs(self, destination_id: int) -> dict[str, Job]:
        """Folder -> its most recent COMPLETED job for the destination: the backup of that
        folder holds what this job's run sent (the run started at its run_id / created_at)."""
        jobs = await self._select_jobs(
            "id IN (SELECT MAX(id) FROM backup_jobs WHERE destination_id = ? AND status = ? "
            "GROUP BY folder) ORDER BY id",
            (destination_id, JobStatus.COMPLETED.value),
        )
        return {job.folder: job for job in jobs}

    async def job_history(self, destination: str | None = None) -> list[dict[str, Any]]:
        """Every backup job, oldest first, as a dict of HISTORY_FIELDS ("name" is its
        destination's name); only the jobs of the destination so named, when given."""
        where = ""
        params: tuple[str, ...] = ()
        if destination is not None:
            where, params = "WHERE d.name = ?", (destination,)
        cols = ", ".join(("d.name", *(f"j.{c}" for c in HISTORY_FIELDS[1:])))
        tables = "backup_jobs j JOIN backup_destinations d ON d.id = j.destination_id"
        sql = f"SELECT {cols} FROM {tables} {where} ORDER BY j.id"
        async with self._conn.execute(sql, params) as cur:
            return [dict(zip(HISTORY_FIELDS, row, strict=True)) for row in await cur.fetchall()]


def _low_on_space(path: Path, margin: int = 1024 * 1024) -> bool:
    """True if the file system holding `path` has less than `margin` bytes free."""
    try:
        info = os.statvfs(path.parent)
    except OSError:
        return False
    return info.f_bavail * info.f_frsize < margin


def _explain_db_error(path: Path, exc: sqlite3.DatabaseError) -> str:
    text = str(exc)
    if "not a database" in text or "malformed" in text:
        # The DB also holds the destinations: moving it aside alone would leave "no
        # destination is set up yet", so say what brings them back.
        return (
            f"{path} is damaged ({text}): move it aside, run `photos-sync backup --setup` "
            "again for each destination (the backup and its secrets are kept and reused), "
            "then back up as usual"
        )
    if "disk i/o error" in text.lower() and _low_on_space(path):
        # SQLite in WAL mode reports a full disk as an I/O error on the -wal/-shm files.
        text = "database or disk is full"
    if "readonly" in text or "read-only" in text:
        return (
            f"{path} is read-only ({text}): photos-sync records its job state there; make it "
            f"and its folder writable (`chmod 600 {path}`, `chmod 700 {path.parent}`)"
        )
    if "disk" in text and "full" in text:
        return f"no space left for {path}: free some space where the data dir lives"
    if "locked" in text:
        return f"{path} is locked by another process: wait for it, or stop it"
    return f"cannot use {path} ({text})"


# -- restores and verify results ------------------------------------------------------------


_RESTORE_COLUMNS = tuple(RestoreJob.__slots__)

_VERIFY_FIELDS = (
    "ok",
    "matched",
    "missing",
    "extra",
    "differ",
    "errors",
    "unverified",
    "downloaded_bytes",
)


def _restore(row: sqlite3.Row) -> RestoreJob:
    values = dict(zip(_RESTORE_COLUMNS, row, strict=True))
    values["status"] = JobStatus(values["status"])
    return RestoreJob(**values)


class RestoreAndVerifyStore:
    """Queries for restore jobs and verify results, sharing a Store's connection."""

    def __init__(self, store: Store) -> None:
        self._conn = store._conn

    async def _restores(self, where: str, params: Sequence[Any]) -> list[RestoreJob]:
        cols = ", ".join(_RESTORE_COLUMNS)
        async with self._conn.execute(
            f"SELECT {cols} FROM restore_jobs WHERE {where}", tuple(params)
        ) as cur:
            rows = await cur.fetchall()
        return [_restore(r) for r in rows]

    async def get_restore(self, job_id: int) -> RestoreJob:
        (job,) = await self._restores("id = ?", (job_id,))
        return job

    async def recent_restores(self, limit: int = 5) -> list[RestoreJob]:
        """The latest restore jobs, newest first."""
        return await self._restores("1 ORDER BY id DESC LIMIT ?", (limit,))

    async def resumable_restore(
        self,
        destination_id: int,
        remote_path: str,
        target_dir: str,
        mode: str,
        as_of: str | None,
    ) -> RestoreJob | None:
        """The latest unfinished restore of the same request, if any (to resume it)."""
        jobs = await self._restores(
            "destination_id = ? AND remote_path = ? AND target_dir = ? AND mode = ? "
            "AND coalesce(as_of, '') = ? AND status != ? ORDER BY id DESC LIMIT 1",
            (destination_id, remote_path, target_dir, mode, as_of or "", JobStatus.COMPLETED.value),
        )
        return jobs[0] if jobs else None

    async def create_restore(
        self,
        destination_id: int,
        remote_path: str,
        target_dir: str,
        mode: str,
        as_of: str | None,
        overwrite: bool,
    ) -> RestoreJob:
        cur = await self._conn.execute(
            """
            INSERT INTO restore_jobs
                (destination_id, remote_path, target_dir, mode, as_of, overwrite, status,
                 created_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            """,
            (
                destination_id,
                remote_path,
                target_dir,
                mode,
                as_of,
                int(overwrite),
                JobStatus.PENDING.value,
                to_iso(utcnow()),
            ),
        )
        await self._conn.commit()
        assert cur.lastrowid is not None
        return await self.get_restore(cur.lastrowid)

    async def set_restore_status(
        self, job_id: int, status: JobStatus, error_message: str | None = None
    ) -> RestoreJob:
        job = await self.get_restore(job_id)
        check_transition(job.status, status)
        now = to_iso(utcnow())
        sets = ["status = ?", "last_update = ?", "error_message = ?"]
        params: list[Any] = [status.value, now, error_message]
        if status is JobStatus.RUNNING:
            sets.append("owner_pid = ?")
            params.append(os.getpid())
            if job.started_at is None:
                sets.append("started_at = ?")
                params.append(now)
        else:
            sets.append("owner_pid = NULL")
        if status is JobStatus.COMPLETED:
            sets.append("completed_at = ?")
            params.append(now)
        params.append(job_id)
        await self._conn.execute(f"UPDATE restore_jobs SET {', '.join(sets)} WHERE id = ?", params)
        await self._conn.commit()
        return await self.get_restore(job_id)

    async def update_restore(self, job_id: int, **fields: int) -> None:
        allowed = {"bytes_total", "bytes_transferred", "files_total", "files_transferred"}
        if set(fields) - allowed:
            raise ValueError(f"not restore progress fields: {sorted(set(fields) - allowed)}")
        sets = [f"{name} = ?" for name in fields] + ["last_update = ?"]
        params = [*fields.values(), to_iso(utcnow()), job_id]
        await self._conn.execute(f"UPDATE restore_jobs SET {', '.join(sets)} WHERE id = ?", params)
        await self._conn.commit()

    async def record_verify(
        self,
        destination_id: int,
        started_at: datetime,
        mode: str,
        figures: Mapping[str, int],
        report: Mapping[str, Any],
    ) -> None:
        values = [int(figures.get(name, 0)) for name in _VERIFY_FIELDS]
        await self._conn.execute(
            f"""
            INSERT INTO verify_runs
                (destination_id, started_at, finished_at, mode, report, {", ".join(_VERIFY_FIELDS)})
            VALUES (?, ?, ?, ?, ?, {", ".join("?" for _ in _VERIFY_FIELDS)})
            """,
            (
                destination_id,
                to_iso(started_at),
                to_iso(utcnow()),
                mode,
                json.dumps(dict(report), sort_keys=True),
                *values,
            ),
        )
        await self._conn.commit()

    async def last_verify(self, destination_id: int) -> dict[str, Any] | None:
        cols = ("started_at", "finished_at", "mode", *_VERIFY_FIELDS)
        async with self._conn.execute(
            f"SELECT {', '.join(cols)} FROM verify_runs WHERE destination_id = ? "
            "ORDER BY id DESC LIMIT 1",
            (destination_id,),
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        result = dict(zip(cols, row, strict=True))
        result["ok"] = bool(result["ok"])
        return result
