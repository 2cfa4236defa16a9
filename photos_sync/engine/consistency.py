"""The consistency proof of a run (#16): the dump the run sent, read against the manifest.

After a run whose every job completed, the newest Immich dump in `backups/` is streamed
(photos_sync.immich.dump_file) and each path it references is looked up in the manifest of
the destination: no download, no listing. The proof goes into the run's result, the log, the
manifest (for `--status`) and, when it fails, makes the run a failure.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from pathlib import Path

from photos_sync.core.consistency import (
    PROOF_RECORDS,
    ConsistencyProof,
    folder_coverage,
    prove,
)
from photos_sync.core.extra_paths import EXTRA_FOLDER, Coverage
from photos_sync.core.immich_dump import StoredPath, parse_dump_name
from photos_sync.core.immich_rules import is_dump_name
from photos_sync.immich.dump_file import read_dump_file
from photos_sync.storage.manifest_db import ManifestDB
from photos_sync.system.logs import get_logger

log = get_logger("photos_sync.engine.consistency")


def newest_dump(backups: Path) -> Path | None:
    """The newest Immich dump in `backups/` (by the time in its name, else its mtime)."""
    try:
        candidates = [p for p in backups.iterdir() if p.is_file() and is_dump_name(p.name)]
    except OSError:
        return None
    if not candidates:
        return None

    def when(path: Path) -> tuple[float, str]:
        parsed = parse_dump_name(path.name)
        if parsed is not None and parsed.created is not None:
            return parsed.created.timestamp(), path.name
        return path.stat().st_mtime, path.name

    return max(candidates, key=when)


def _prove(
    dump: Path,
    db: ManifestDB,
    covered_folders: Iterable[str],
    person_thumbnails: bool,
    coverage: Coverage,
) -> ConsistencyProof:
    def present(path: str) -> bool:
        folder, _, rest = path.partition("/")
        if folder == EXTRA_FOLDER:  # extra/<name>/<path>
            name, _, rest = rest.partition("/")
            folder = f"{EXTRA_FOLDER}/{name}"
        return db.contains(folder, os.fsencode(rest))

    def backup_path(path: StoredPath) -> str:
        if path.relative is not None:
            return path.relative
        found = coverage.cover(path.stored)
        return "/".join(found) if found else path.stored

    return prove(
        dump.name,
        read_dump_file(dump, want=PROOF_RECORDS),
        covered=folder_coverage(
            covered_folders, person_thumbnails=person_thumbnails, outside=coverage.cover
        ),
        present=present,
        backup_path=backup_path,
    )


async def prove_run(
    db: ManifestDB,
    immich_path: Path,
    covered_folders: Iterable[str],
    *,
    person_thumbnails: bool = False,
    coverage: Coverage | None = None,
) -> ConsistencyProof | None:
    """The proof of the newest dump against the manifest `db` (None: no dump to check):
    `covered_folders` are the folders below UPLOAD_LOCATION backed up in full; with
    `person_thumbnails`, the people's thumbnails are (#16.4); `coverage` maps external
    libraries to BACKUP_EXTRA_PATHS folders."""
    dump = newest_dump(immich_path / "backups")
    if dump is None:
        return None
    proof = await asyncio.to_thread(
        _prove, dump, db, tuple(covered_folders), person_thumbnails, coverage or Coverage(())
    )
    log.info(
        "consistency_proof", **{k: v for k, v in proof.as_dict().items() if k != "not_covered"}
    )
    return proof
