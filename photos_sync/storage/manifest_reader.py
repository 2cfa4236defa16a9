"""A destination's manifest as `--status` sees it: read-only, never created.

The manifest itself (storage.manifest_db.ManifestDB) is opened read-write and created when
missing, which is right for a run and wrong for a status query: `--status` on a destination
that has never run must not leave a manifest behind (it would look like one that was emptied),
and a query must never change a manifest a run is writing. This reads the same file through a
read-only connection (SQLite's `mode=ro`): the run's WAL is read as it stands.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from photos_sync.core.manifest import MANIFEST_FORMAT, ManifestState
from photos_sync.storage.manifest_db import ManifestError


@dataclass(frozen=True, slots=True)
class ManifestFacts:
    """What the manifest says about itself, and how many files it records."""

    state: ManifestState
    files: int


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
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        files = int(conn.execute("SELECT COUNT(*) FROM files").fetchone()[0])
        return ManifestFacts(_state(meta), files)
    except (sqlite3.Error, ValueError, TypeError) as exc:
        raise ManifestError(f"manifest {path}: {exc}") from None
    finally:
        conn.close()


def _state(meta: dict[str, str]) -> ManifestState:
    """The meta table as a ManifestState (the keys ManifestDB.state reads)."""
    reconciled = meta.get("reconciled_at")
    return ManifestState(
        destination_key=meta.get("destination_key"),
        copy_run=meta.get("copy_run"),
        reconciled_at=datetime.fromisoformat(reconciled) if reconciled else None,
        unfinished=json.loads(meta.get("unfinished", "{}")),
        folders=frozenset(json.loads(meta.get("folders", "[]"))),
        format=int(meta.get("format", MANIFEST_FORMAT)),
    )
