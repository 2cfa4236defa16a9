"""The manifest of one destination: a SQLite file of its own, `<data dir>/manifests/<id>.sqlite`.

Its own file, not a table of backup.db: it holds a row per backed-up file (a million rows for a
large library), it is written in long transactions by the run, and its copy is uploaded to the
destination as it is (`MANIFEST_COPY`), so a new machine can start from it. backup.db stays
small and quick for `--status` while a run rewrites a folder's entries.

Synchronous (sqlite3); callers off the event loop use it through asyncio.to_thread, one call
at a time. Paths are BLOBs with the names' exact bytes; SQLite orders BLOBs by their bytes,
the order of core.manifest.walk_order, so a folder's entries stream in the walk's order.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path

from photos_sync.core.manifest import MANIFEST_FORMAT, FileState, ManifestState, Move
from photos_sync.core.records import to_iso

_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS files (
        folder TEXT NOT NULL,
        path BLOB NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        run TEXT NOT NULL,
        PRIMARY KEY (folder, path)
    ) WITHOUT ROWID
    """,
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # a reconciled folder's walk, taken before its sync and made its entries after it
    """
    CREATE TABLE IF NOT EXISTS staged (
        folder TEXT NOT NULL,
        path BLOB NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        PRIMARY KEY (folder, path)
    ) WITHOUT ROWID
    """,
)

#: rows per executemany batch when a folder's entries are rewritten
_BATCH = 5000


def state_from_meta(meta: Mapping[str, str]) -> ManifestState:
    """A manifest's meta table as a ManifestState."""
    reconciled = meta.get("reconciled_at")
    return ManifestState(
        destination_key=meta.get("destination_key"),
        copy_run=meta.get("copy_run"),
        reconciled_at=datetime.fromisoformat(reconciled) if reconciled else None,
        unfinished=json.loads(meta.get("unfinished", "{}")),
        folders=frozenset(json.loads(meta.get("folders", "[]"))),
        format=int(meta.get("format", MANIFEST_FORMAT)),
        forgotten=meta.get("forgotten") == "1",
    )


def manifest_path(data_dir: Path, destination_id: int) -> Path:
    return data_dir / "manifests" / f"{destination_id}.sqlite"


class ManifestError(Exception):
    """The manifest file cannot be opened or read; the run reconciles without it."""


_ENTRIES = "SELECT path, size, mtime_ns FROM files WHERE folder = ? ORDER BY path"
_STAGED_ENTRIES = "SELECT path, size, mtime_ns FROM staged WHERE folder = ? ORDER BY path"


class ManifestDB:
    """One destination's manifest. Every write is one transaction: a crash leaves the file
    as it was before the write or after it, never half-way."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            for statement in _SCHEMA:
                self._conn.execute(statement)
        except sqlite3.DatabaseError as exc:
            raise ManifestError(f"manifest {path}: {exc}") from None
        with contextlib.suppress(OSError):
            os.chmod(path, 0o600)

    def close(self) -> None:
        self._conn.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    # -- its state

    def _meta(self) -> dict[str, str]:
        return dict(self._conn.execute("SELECT key, value FROM meta").fetchall())

    def state(self) -> ManifestState:
        return state_from_meta(self._meta())

    def _set(self, conn: sqlite3.Connection, **values: str) -> None:
        conn.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            list(values.items()),
        )

    def begin_folder(self, folder: str, run: str) -> None:
        """Mark `folder` as being changed by `run`: until finish_folder, its entries are not
        trusted (a crash in between makes the next run reconcile it)."""
        with self._transaction() as conn:
            unfinished = json.loads(self._meta().get("unfinished", "{}"))
            unfinished[folder] = run
            self._set(conn, unfinished=json.dumps(unfinished, sort_keys=True))

    def _finish(self, conn: sqlite3.Connection, folder: str) -> None:
        meta = self._meta()
        unfinished = json.loads(meta.get("unfinished", "{}"))
        unfinished.pop(folder, None)
        folders = set(json.loads(meta.get("folders", "[]"))) | {folder}
        self._set(
            conn,
            unfinished=json.dumps(unfinished, sort_keys=True),
            folders=json.dumps(sorted(folders)),
        )

    def archive_runs(self) -> list[str]:
        """The archive folders (`.deleted/<run>`) runs recorded here, for the expiry of an
        incremental run (which lists nothing)."""
        return list(json.loads(self._meta().get("archive_runs", "[]")))

    def set_archive_runs(self, stamps: Iterable[str]) -> None:
        with self._transaction() as conn:
            self._set(conn, archive_runs=json.dumps(sorted(set(stamps))))

    def note_change(self, run: str) -> None:
        """`run` changed the entries: the destination's copy is out of date until uploaded."""
        with self._transaction() as conn:
            self._set(conn, changed_run=run)

    def copy_outdated(self) -> bool:
        meta = self._meta()
        return meta.get("changed_run") != meta.get("copy_run") or "copy_run" not in meta

    def set_identity(self, destination_key: str) -> None:
        with self._transaction() as conn:
            self._set(conn, destination_key=destination_key, format=str(MANIFEST_FORMAT))

    def mark_reconciled(self, moment: datetime) -> None:
        with self._transaction() as conn:
            self._set(conn, reconciled_at=to_iso(moment))
            conn.execute("DELETE FROM meta WHERE key = 'forgotten'")

    def mark_copied(self, run: str) -> None:
        """The destination's copy of the manifest now is the one of `run`."""
        with self._transaction() as conn:
            self._set(conn, copy_run=run)

    def forget(self) -> None:
        """Drop every entry and all state (after --reset): the next run reconciles, and
        does not start from the destination's copy either (the mark says so)."""
        with self._transaction() as conn:
            conn.execute("DELETE FROM files")
            conn.execute("DELETE FROM staged")
            conn.execute("DELETE FROM meta")
            self._set(conn, forgotten="1")

    # -- its entries

    def entries(self, folder: str) -> Iterator[FileState]:
        """The folder's entries in byte order of their paths, streamed."""
        return self._streamed(_ENTRIES, folder)

    def staged_entries(self, folder: str) -> Iterator[FileState]:
        """The folder's staged walk (see `stage`) in byte order of its paths, streamed."""
        return self._streamed(_STAGED_ENTRIES, folder)

    def _streamed(self, query: str, folder: str) -> Iterator[FileState]:
        for path, size, mtime_ns in self._conn.execute(query, (folder,)):
            yield FileState(bytes(path), size, mtime_ns)

    def count(self, folder: str | None = None) -> int:
        if folder is None:
            row = self._conn.execute("SELECT COUNT(*) FROM files").fetchone()
        else:
            row = self._conn.execute(
                "SELECT COUNT(*) FROM files WHERE folder = ?", (folder,)
            ).fetchone()
        return int(row[0])

    def contains(self, folder: str, path: bytes) -> bool:
        """True if the manifest holds the file `path` of `folder`."""
        row = self._conn.execute(
            "SELECT 1 FROM files WHERE folder = ? AND path = ?", (folder, path)
        ).fetchone()
        return row is not None

    def set_consistency(self, document: str) -> None:
        """Keep the last consistency proof (JSON) for `--status`."""
        with self._transaction() as conn:
            self._set(conn, consistency=document)

    def consistency(self) -> str | None:
        return self._meta().get("consistency")

    def has_files(self, folder: str) -> bool:
        """True if the manifest holds a file of `folder` besides Immich's marker."""
        row = self._conn.execute(
            "SELECT 1 FROM files WHERE folder = ? AND path != ? LIMIT 1", (folder, b".immich")
        ).fetchone()
        return row is not None

    def stage(self, folder: str, states: Iterable[FileState]) -> int:
        """Keep the walk of a folder about to be reconciled (taken before its sync: a file
        that appears during the sync is then sent again by the next run, never missed)."""
        count = 0
        with self._transaction() as conn:
            conn.execute("DELETE FROM staged WHERE folder = ?", (folder,))
            batch: list[tuple[str, bytes, int, int]] = []
            for state in states:
                batch.append((folder, state.path, state.size, state.mtime_ns))
                if len(batch) >= _BATCH:
                    conn.executemany("INSERT OR REPLACE INTO staged VALUES (?, ?, ?, ?)", batch)
                    count += len(batch)
                    batch = []
            conn.executemany("INSERT OR REPLACE INTO staged VALUES (?, ?, ?, ?)", batch)
            count += len(batch)
        return count

    def commit_staged(self, folder: str, left_out: Iterable[bytes], run: str) -> int:
        """After a successful reconcile of `folder`: its staged walk, less the files rclone
        left out (skipped, unreadable), becomes its entries; the folder is finished. Returns
        how many entries it has."""
        with self._transaction() as conn:
            conn.execute("DELETE FROM files WHERE folder = ?", (folder,))
            conn.execute(
                "INSERT INTO files (folder, path, size, mtime_ns, run) "
                "SELECT folder, path, size, mtime_ns, ? FROM staged WHERE folder = ?",
                (run, folder),
            )
            conn.executemany(
                "DELETE FROM files WHERE folder = ? AND path = ?",
                [(folder, path) for path in left_out],
            )
            conn.execute("DELETE FROM staged WHERE folder = ?", (folder,))
            self._finish(conn, folder)
        return self.count(folder)

    def replace_folder(self, folder: str, states: Iterable[FileState], run: str) -> int:
        """Rewrite all of `folder`'s entries (a reconcile) and mark it finished; returns how
        many entries it now has."""
        count = 0
        with self._transaction() as conn:
            conn.execute("DELETE FROM files WHERE folder = ?", (folder,))
            batch: list[tuple[str, bytes, int, int, str]] = []
            for state in states:
                batch.append((folder, state.path, state.size, state.mtime_ns, run))
                if len(batch) >= _BATCH:
                    self._insert(conn, batch)
                    count += len(batch)
                    batch = []
            self._insert(conn, batch)
            count += len(batch)
            self._finish(conn, folder)
        return count

    @staticmethod
    def _insert(conn: sqlite3.Connection, rows: list[tuple[str, bytes, int, int, str]]) -> None:
        conn.executemany(
            "INSERT INTO files (folder, path, size, mtime_ns, run) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (folder, path) DO UPDATE SET size = excluded.size, "
            "mtime_ns = excluded.mtime_ns, run = excluded.run",
            rows,
        )

    def apply(
        self,
        folder: str,
        *,
        sent: Iterable[FileState],
        archived: Iterable[bytes],
        run: str,
    ) -> None:
        """Record an incremental run's work on `folder` and mark it finished: the files it
        sent, and the files it moved into the archive (gone from the live backup)."""
        with self._transaction() as conn:
            conn.executemany(
                "DELETE FROM files WHERE folder = ? AND path = ?",
                [(folder, path) for path in archived],
            )
            self._insert(conn, [(folder, s.path, s.size, s.mtime_ns, run) for s in sent])
            self._finish(conn, folder)

    def apply_moves(self, moves: Iterable[Move], run: str) -> None:
        """Record files renamed inside the backup: each leaves its old path for its new one."""
        with self._transaction() as conn:
            for move in moves:
                conn.execute(
                    "DELETE FROM files WHERE folder = ? AND path = ?",
                    (move.from_folder, move.from_path),
                )
                self._insert(conn, [(move.to_folder, move.to_path, move.size, move.mtime_ns, run)])

    # -- its copy in the destination

    def export(self, target: Path) -> None:
        """A consistent, compact gzip'd copy of the manifest at `target` (for the upload)."""
        plain = target.with_suffix(".tmp")
        plain.unlink(missing_ok=True)
        self._conn.execute("VACUUM INTO ?", (str(plain),))
        try:
            with plain.open("rb") as source, gzip.open(target, "wb", compresslevel=1) as sink:
                shutil.copyfileobj(source, sink, 1024 * 1024)
        finally:
            plain.unlink(missing_ok=True)


def import_copy(packed: Path, target: Path, facts: Mapping[str, str]) -> None:
    """Install a manifest downloaded from the destination (gzip'd SQLite) as `target`,
    setting `facts` (meta keys) in it; ManifestError if it is not a readable manifest.
    The file is built beside `target` and renamed into place: never half-written."""
    building = target.with_suffix(".importing")
    building.unlink(missing_ok=True)
    try:
        with gzip.open(packed, "rb") as source, building.open("wb") as sink:
            shutil.copyfileobj(source, sink, 1024 * 1024)
        manifest = ManifestDB(building)
        try:
            manifest._conn.execute("SELECT COUNT(*) FROM files").fetchone()
            with manifest._transaction() as conn:
                manifest._set(conn, **facts)
        finally:
            manifest.close()
    except (OSError, EOFError, sqlite3.DatabaseError, ManifestError) as exc:
        building.unlink(missing_ok=True)
        raise ManifestError(f"the destination's copy of the manifest is unusable: {exc}") from None
    for suffix in ("-wal", "-shm"):
        Path(str(target) + suffix).unlink(missing_ok=True)
    os.replace(building, target)
