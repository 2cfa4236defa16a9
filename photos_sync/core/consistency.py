"""The consistency proof (#16): does the backup hold every file Immich's database points at?
Pure: records of the dump come in, the manifest is asked through a callback.

Immich's docs call one failure unrecoverable: a restored database that points at files the
backup lacks. After each run, the dump that run sent is read (core.immich_dump) and every
path it references is looked up in the manifest of what the destination holds — no download,
no listing. Paths in folders the backup does not cover (thumbnails and encoded videos unless
BACKUP_INCLUDE_GENERATED, external libraries outside UPLOAD_LOCATION) are counted apart as
"not covered", with the setting that would cover them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from photos_sync.core.immich_dump import (
    Asset,
    AssetFile,
    DumpEnd,
    DumpRecord,
    Person,
    StoredPath,
    User,
)
from photos_sync.core.units import plural

#: The records whose paths the proof checks.
PROOF_RECORDS = frozenset((Asset, AssetFile, Person, User))
#: How many missing paths a proof names (all are counted).
MISSING_NAMED = 10

#: Why a referenced file is not in what the backup covers -> what would cover it.
NOT_COVERED = {
    "thumbs": "thumbs/ (regenerable by Immich; BACKUP_INCLUDE_GENERATED=true backs it up)",
    "encoded-video": (
        "encoded-video/ (regenerable by Immich; BACKUP_INCLUDE_GENERATED=true backs it up)"
    ),
    "outside": "external libraries outside UPLOAD_LOCATION (BACKUP_EXTRA_PATHS backs them up)",
}


@dataclass
class ConsistencyProof:
    """What one dump references and what of it the backup holds."""

    dump: str
    complete: bool
    #: why the dump is not whole (truncated, not gzip, damaged); None when it is
    problem: str | None = None
    truncated: bool = False
    immich_version: str | None = None
    #: False for a whole dump that holds none of Immich's tables (not Immich's database)
    immich_tables: bool = True
    referenced: int = 0
    present: int = 0
    missing: int = 0
    missing_paths: list[str] = field(default_factory=list)
    #: what would cover them -> how many references
    not_covered: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """A whole dump whose every covered reference is in the backup."""
        return self.complete and self.missing == 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "dump": self.dump,
            "ok": self.ok,
            "complete": self.complete,
            "truncated": self.truncated,
            "problem": self.problem,
            "immich_version": self.immich_version,
            "immich_tables": self.immich_tables,
            "referenced": self.referenced,
            "present": self.present,
            "missing": self.missing,
            "missing_paths": self.missing_paths,
            "not_covered": self.not_covered,
        }

    def line(self) -> str:
        """One line for people: the verdict, the counts, the first missing paths."""
        if not self.complete:
            return f"Immich database dump {self.dump}: ERROR: {self.problem}"
        if not self.immich_tables:
            return (
                f"Immich database dump {self.dump}: whole, but it holds none of Immich's "
                "tables: nothing to check the backup against"
            )
        text = (
            f"Immich database dump {self.dump}: {plural(self.referenced, 'file')} referenced, "
            f"{self.present} in the backup, {self.missing} missing"
        )
        if self.missing_paths:
            shown = ", ".join(self.missing_paths[:3])
            text += f" (e.g. {shown}" + (", …)" if self.missing > 3 else ")")
        if self.not_covered:
            parts = [f"{count} in {what}" for what, count in self.not_covered.items()]
            text += "; not covered: " + "; ".join(parts)
        return text


def proof_from_dict(data: dict[str, Any]) -> ConsistencyProof:
    """The proof from its as_dict() (as stored for `--status`)."""
    return ConsistencyProof(
        dump=str(data.get("dump", "")),
        complete=bool(data.get("complete")),
        problem=data.get("problem"),
        truncated=bool(data.get("truncated")),
        immich_version=data.get("immich_version"),
        immich_tables=bool(data.get("immich_tables", True)),
        referenced=int(data.get("referenced") or 0),
        present=int(data.get("present") or 0),
        missing=int(data.get("missing") or 0),
        missing_paths=list(data.get("missing_paths") or []),
        not_covered=dict(data.get("not_covered") or {}),
    )


#: The kind of reference a person's thumbnail is (backed up even without thumbs/, #16.4).
PERSON_THUMBNAIL = "person thumbnail"


def referenced_paths(record: DumpRecord) -> Iterable[tuple[StoredPath, str]]:
    """The file paths one record of the dump references, each with its kind."""
    if isinstance(record, Asset):
        kinds = ("original", "sidecar", "encoded video")
        paths = (record.original, record.sidecar, record.encoded_video)
        return [(p, kind) for p, kind in zip(paths, kinds, strict=True) if p]
    if isinstance(record, AssetFile):
        return [(record.path, record.type)]
    if isinstance(record, Person):
        return [(record.thumbnail, PERSON_THUMBNAIL)] if record.thumbnail else []
    if isinstance(record, User):
        return [(record.profile_image, "profile image")] if record.profile_image else []
    return []


def prove(
    dump: str,
    records: Iterable[DumpRecord],
    *,
    covered: Callable[[StoredPath, str], str | None],
    present: Callable[[str], bool],
    backup_path: Callable[[StoredPath], str] | None = None,
) -> ConsistencyProof:
    """Check every path the dump's `records` reference.

    `covered(path, kind)` is None when the backup covers the path, else the key of
    NOT_COVERED (or any text) saying why not; `present(relative)` says whether the backup
    holds the file at `backup_path(path)` (default: the path relative to UPLOAD_LOCATION; an
    external library's file lives under `extra/<name>/`). The records end with the dump's
    DumpEnd.
    """
    pending = prove_deferring(
        dump, records, covered=covered, present=present, backup_path=backup_path
    )
    return pending.settle(present)


@dataclass
class PendingProof:
    """A proof with some covered references not yet looked up: those of a job that has yet
    to run when the dump is read (the people thumbnails, read from the same pass)."""

    proof: ConsistencyProof
    #: the backup paths of the references put off, in the dump's order
    deferred: list[str] = field(default_factory=list)

    def settle(self, present: Callable[[str], bool]) -> ConsistencyProof:
        """The finished proof: the deferred references looked up with `present` now."""
        proof = replace(
            self.proof,
            missing_paths=list(self.proof.missing_paths),
            not_covered=dict(self.proof.not_covered),
        )
        for relative in self.deferred:
            _count(proof, relative, present(relative))
        return proof


def prove_deferring(
    dump: str,
    records: Iterable[DumpRecord],
    *,
    covered: Callable[[StoredPath, str], str | None],
    present: Callable[[str], bool],
    backup_path: Callable[[StoredPath], str] | None = None,
    defer: Callable[[str], bool] = lambda kind: False,
) -> PendingProof:
    """`prove`, except that the covered references of a kind for which `defer(kind)` is
    true are only collected: `PendingProof.settle` looks them up later."""
    proof = ConsistencyProof(dump, complete=False)
    pending = PendingProof(proof)
    end: DumpEnd | None = None
    for record in records:
        if isinstance(record, DumpEnd):
            end = record
            break
        for path, kind in referenced_paths(record):
            why = covered(path, kind)
            if why is not None:
                label = NOT_COVERED.get(why, why)
                proof.not_covered[label] = proof.not_covered.get(label, 0) + 1
                continue
            relative = backup_path(path) if backup_path else (path.relative or path.stored)
            if defer(kind):
                pending.deferred.append(relative)
            else:
                _count(proof, relative, present(relative))
    if end is None:
        proof.problem = "the dump ended before its last line (truncated)"
        proof.truncated = True
        return pending
    proof.complete = end.complete
    proof.immich_tables = end.has_immich_tables
    proof.problem = end.problem
    proof.truncated = end.truncated
    proof.immich_version = end.immich_version
    return pending


def _count(proof: ConsistencyProof, relative: str, held: bool) -> None:
    proof.referenced += 1
    if held:
        proof.present += 1
        return
    proof.missing += 1
    if len(proof.missing_paths) < MISSING_NAMED:
        proof.missing_paths.append(relative)


def folder_coverage(
    covered_folders: Iterable[str],
    *,
    person_thumbnails: bool = False,
    outside: Callable[[str], object | None] = lambda stored: None,
) -> Callable[[StoredPath, str], str | None]:
    """A `covered` callback for a backup of `covered_folders` of UPLOAD_LOCATION (and of
    the people's thumbnails in thumbs/, with `person_thumbnails`; and of the paths outside
    UPLOAD_LOCATION for which `outside(stored)` is not None: BACKUP_EXTRA_PATHS)."""
    folders = frozenset(covered_folders)

    def covered(path: StoredPath, kind: str) -> str | None:
        if path.relative is None:
            return None if outside(path.stored) is not None else "outside"
        folder = path.folder
        if folder is None or folder in folders:
            return None
        if folder == "thumbs" and kind == PERSON_THUMBNAIL and person_thumbnails:
            return None
        return folder

    return covered
