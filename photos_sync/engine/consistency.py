"""The consistency proof of a run (#16): the dump the run sent, read against the manifest.

After a run whose every job completed, the newest Immich dump in `backups/` is streamed
(photos_sync.immich.dump_file) and each path it references is looked up in the manifest of
the destination: no download, no listing. The proof goes into the run's result, the log, the
manifest (for `--status`) and, when it fails, makes the run a failure.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from photos_sync.core.consistency import (
    PERSON_THUMBNAIL,
    PROOF_RECORDS,
    ConsistencyProof,
    PendingProof,
    folder_coverage,
    prove,
    prove_deferring,
)
from photos_sync.core.extra_paths import EXTRA_FOLDER, Coverage
from photos_sync.core.immich_dump import DumpEnd, DumpRecord, Person, StoredPath, parse_dump_name
from photos_sync.core.immich_rules import is_dump_name
from photos_sync.engine.people_thumbnails import (
    PeopleThumbnails,
    newest_by_time,
    people_thumbnails_of,
)
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


@dataclass(frozen=True, slots=True)
class ProofScope:
    """What a proof counts as covered: the folders backed up in full, the people thumbnails,
    the extra folders."""

    covered_folders: frozenset[str]
    person_thumbnails: bool
    coverage: Coverage

    def covered(self) -> Callable[[StoredPath, str], str | None]:
        return folder_coverage(
            self.covered_folders,
            person_thumbnails=self.person_thumbnails,
            outside=self.coverage.cover,
        )

    def backup_path(self, path: StoredPath) -> str:
        if path.relative is not None:
            return path.relative
        found = self.coverage.cover(path.stored)
        return "/".join(found) if found else path.stored


def _presence(db: ManifestDB) -> Callable[[str], bool]:
    def present(path: str) -> bool:
        folder, _, rest = path.partition("/")
        if folder == EXTRA_FOLDER:  # extra/<name>/<path>
            name, _, rest = rest.partition("/")
            folder = f"{EXTRA_FOLDER}/{name}"
        return db.contains(folder, os.fsencode(rest))

    return present


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_size, info.st_mtime_ns


@dataclass
class SharedDumpRead:
    """The one read of the newest dump made by a run with a people-thumbnails job as its
    last job: the thumbnails that job backs up, and the consistency proof of every other
    reference (the other jobs are done), which `prove_run` settles once the thumbnails are
    in. Saves a second pass over a dump that takes tens of CPU seconds at 1M assets."""

    dump: Path
    identity: tuple[int, int]
    scope: ProofScope
    people: PeopleThumbnails
    pending: PendingProof


def read_people_and_proof(
    db: ManifestDB, immich_path: Path, scope: ProofScope
) -> SharedDumpRead | None:
    """Read the newest dump once for both (blocking: call in a thread). None when the
    people thumbnails and the proof would not read the same dump (their newest differ):
    each then reads its own."""
    backups = immich_path / "backups"
    dump = newest_dump(backups)
    if dump is None or newest_by_time(immich_path) != dump.name:
        return None
    identity = _identity(dump)
    if identity is None:
        return None
    people: list[Person] = []
    end: list[DumpEnd] = []

    def tee(records: Iterable[DumpRecord]) -> Iterator[DumpRecord]:
        for record in records:
            if isinstance(record, Person):
                people.append(record)
            elif isinstance(record, DumpEnd):
                end.append(record)
            yield record

    pending = prove_deferring(
        dump.name,
        tee(read_dump_file(dump, want=PROOF_RECORDS)),
        covered=scope.covered(),
        present=_presence(db),
        backup_path=scope.backup_path,
        defer=lambda kind: kind == PERSON_THUMBNAIL,
    )
    found = people_thumbnails_of(immich_path, dump.name, people, end[0] if end else None)
    return SharedDumpRead(dump, identity, scope, found, pending)


def _prove(dump: Path, db: ManifestDB, scope: ProofScope) -> ConsistencyProof:
    return prove(
        dump.name,
        read_dump_file(dump, want=PROOF_RECORDS),
        covered=scope.covered(),
        present=_presence(db),
        backup_path=scope.backup_path,
    )


async def prove_run(
    db: ManifestDB,
    immich_path: Path,
    covered_folders: Iterable[str],
    *,
    person_thumbnails: bool = False,
    coverage: Coverage | None = None,
    shared: SharedDumpRead | None = None,
) -> ConsistencyProof | None:
    """The proof of the newest dump against the manifest `db` (None: no dump to check):
    `covered_folders` are the folders below UPLOAD_LOCATION backed up in full; with
    `person_thumbnails`, the people's thumbnails are (#16.4); `coverage` maps external
    libraries to BACKUP_EXTRA_PATHS folders. `shared`, this run's earlier read of the dump,
    is settled instead of reading the dump again when it read this very dump (same name,
    size and mtime) with the same scope."""
    dump = newest_dump(immich_path / "backups")
    if dump is None:
        return None
    scope = ProofScope(frozenset(covered_folders), person_thumbnails, coverage or Coverage(()))
    if (
        shared is not None
        and shared.dump == dump
        and shared.identity == _identity(dump)
        and shared.scope == scope
    ):
        proof = await asyncio.to_thread(shared.pending.settle, _presence(db))
        reused = True
    else:
        proof = await asyncio.to_thread(_prove, dump, db, scope)
        reused = False
    log.info(
        "consistency_proof",
        reused_read=reused,
        **{k: v for k, v in proof.as_dict().items() if k != "not_covered"},
    )
    return proof
