"""A destination's manifest as `--status` sees it: read-only, never created.

The manifest itself (storage.manifest_db.ManifestDB) is opened read-write and created when
missing, which is right for a run and wrong for a status query: `--status` on a destination
that has never run must not leave a manifest behind (it would look like one that was emptied),
and a query must never change a manifest a run is writing. This reads the same file through a
read-only connection (SQLite's `mode=ro`): the run's WAL is read as it stands.

Counting a manifest's files reads all of it (about 0.8 s per million files), and `--status
--watch` asks every second, in the daemon or in the watching process: the count is kept per
file and taken again only when the file or its WAL changed (a run writes the manifest at a
folder's start and end, not as it goes).
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from photos_sync.core.manifest import ManifestState
from photos_sync.storage.manifest_db import ManifestError, state_from_meta


@dataclass(frozen=True, slots=True)
class ManifestFacts:
    """What the manifest says about itself, and how many files it records."""

    state: ManifestState
    files: int
    #: the last run's consistency proof of the Immich dump (core.consistency, as_dict)
    consistency: dict[str, object] | None = None


#: manifest path -> (the stamp of its file and WAL when counted, the count)
_COUNTS: dict[Path, tuple[tuple[int, ...], int]] = {}


def _stamp(path: Path) -> tuple[int, ...]:
    """What changes when SQLite writes the manifest: its file's and its WAL's size and mtime."""
    stamp: list[int] = []
    for candidate in (path, Path(f"{path}-wal")):
        try:
            info = os.stat(candidate)
        except OSError:
            stamp += [-1, -1]
        else:
            stamp += [info.st_size, info.st_mtime_ns]
    return tuple(stamp)


def read_manifest_facts(path: Path) -> ManifestFacts | None:
    """The facts of the manifest at `path`; None when there is none. Opens it read-only and
    writes nothing to it; ManifestError when it cannot be read (a run sets such a file aside
    and does a full sync)."""
    if not path.is_file():
        return None
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise ManifestError(f"manifest {path}: {exc}") from None
    try:
        stamp = _stamp(path)  # before reading: a write after it is seen by the next read
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        known = _COUNTS.get(path)
        if known is not None and known[0] == stamp:
            files = known[1]
        else:
            files = int(conn.execute("SELECT COUNT(*) FROM files").fetchone()[0])
            _COUNTS[path] = (stamp, files)
        proof = json.loads(meta["consistency"]) if meta.get("consistency") else None
        return ManifestFacts(_state(meta), files, proof)
    except (sqlite3.Error, ValueError, TypeError) as exc:
        raise ManifestError(f"manifest {path}: {exc}") from None
    finally:
        conn.close()


def _state(meta: dict[str, str]) -> ManifestState:
    """The meta table as a ManifestState (the same reading as ManifestDB.state)."""
    return state_from_meta(meta)
