"""The manifest of what a backup holds, and the decisions made from it. Pure: no I/O.

photos-sync keeps, per destination, a list of every file it has sent: plain path (exact bytes),
size and modification time (#15). An *incremental* run walks the source on the local disk,
merges that walk with the manifest (both sorted the same way, so neither is held in memory),
and hands rclone only what is new or changed; deleted and replaced files are moved into the
archive by path, and moved files are renamed inside the destination. It never lists the
destination, which on B2 or S3 costs one request per 1,000 names every night.

A *reconcile* run is the full `rclone sync` of before: it lists both sides, repairs whatever
the manifest could have missed, and rebuilds the manifest. `reconcile_reason` says when one is
due; everything it checks exists to keep a wrong manifest from ever deciding what the backup
holds (a wrong "already sent" would leave a photo out of the backup without a word).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import NamedTuple

from photos_sync.core.archive import MovedFile
from photos_sync.core.rclone_args import META_FOLDER

#: The manifest's copy in the destination (a gzip'd SQLite file, encrypted by crypt).
MANIFEST_COPY = f"{META_FOLDER}/manifest.sqlite.gz"
#: Small JSON document naming the run the manifest's copy belongs to; read at each run's
#: start (one small download, no listing) to tell that the local manifest is the current one.
MANIFEST_HEAD = f"{META_FOLDER}/manifest-head.json"
#: Version of the head document and the manifest's layout; a copy of another version is
#: not used (a reconcile rebuilds it).
MANIFEST_FORMAT = 1
#: Default of BACKUP_RECONCILE_EVERY.
DEFAULT_RECONCILE_EVERY = timedelta(days=7)


class FileState(NamedTuple):
    """One file as the source walk saw it or as the manifest records it."""

    #: path below the folder, '/'-separated, the name's exact bytes
    path: bytes
    size: int
    mtime_ns: int


def crypt_size(plain: int) -> int:
    """The size of a file once rclone crypt encrypted it (what an upload sends): a 32-byte
    header (magic and nonce), then each 64 KiB block of content plus its 16-byte tag."""
    blocks = -(-plain // 65536)
    return 32 + plain + 16 * blocks


class Change(StrEnum):
    NEW = "new"
    CHANGED = "changed"
    DELETED = "deleted"


def walk_order(name: bytes, is_dir: bool) -> bytes:
    """Sort key of a directory entry that makes a depth-first walk yield full paths in plain
    byte order (the order SQLite returns BLOBs in): a folder sorts as its name plus '/', since
    every path below it starts so. ('a.jpg' < 'a/x' < 'a0' as bytes; a walk that sorted
    the folder 'a' by its bare name would visit it before 'a.jpg'.)"""
    return name + b"/" if is_dir else name


def diff_sorted(
    scanned: Iterable[FileState], recorded: Iterable[FileState]
) -> Iterator[tuple[Change, FileState]]:
    """Merge the source walk with the manifest, both in byte order of their paths.

    Yields (NEW, scanned state), (CHANGED, scanned state) when the size or modification time
    differ, and (DELETED, recorded state). Files equal on both sides yield nothing. Memory
    does not grow with the number of files: one entry of each side is held at a time.
    """
    missing = FileState(b"", -1, -1)
    left, right = iter(scanned), iter(recorded)
    a = next(left, missing)
    b = next(right, missing)
    while a is not missing or b is not missing:
        if b is missing or (a is not missing and a.path < b.path):
            yield Change.NEW, a
            a = next(left, missing)
        elif a is missing or b.path < a.path:
            yield Change.DELETED, b
            b = next(right, missing)
        else:
            if a.size != b.size or a.mtime_ns != b.mtime_ns:
                yield Change.CHANGED, a
            a = next(left, missing)
            b = next(right, missing)


@dataclass
class FolderChanges:
    """What an incremental run has to do for one folder."""

    folder: str
    new: list[FileState] = field(default_factory=list)
    changed: list[FileState] = field(default_factory=list)
    deleted: list[FileState] = field(default_factory=list)
    #: files the manifest already holds as they are
    unchanged: int = 0
    #: files found by the walk
    scanned: int = 0

    def add(self, change: Change, state: FileState) -> None:
        {Change.NEW: self.new, Change.CHANGED: self.changed, Change.DELETED: self.deleted}[
            change
        ].append(state)

    @property
    def to_send(self) -> list[FileState]:
        return self.new + self.changed

    @property
    def bytes_to_send(self) -> int:
        """What the upload sends: the files' encrypted sizes (as rclone counts them)."""
        return sum(crypt_size(f.size) for f in self.new) + sum(
            crypt_size(f.size) for f in self.changed
        )

    @property
    def to_archive(self) -> list[bytes]:
        """Paths whose backed-up copy moves into the archive: deleted and replaced files."""
        return [f.path for f in self.deleted] + [f.path for f in self.changed]

    @property
    def nothing_to_do(self) -> bool:
        return not (self.new or self.changed or self.deleted)


def folder_changes(
    folder: str, scanned: Iterable[FileState], recorded: Iterable[FileState]
) -> FolderChanges:
    """The changes of one folder, from its sorted walk and its sorted manifest entries."""
    changes = FolderChanges(folder)
    counted = _Counting(scanned)
    for change, state in diff_sorted(counted, recorded):
        changes.add(change, state)
    changes.scanned = counted.count
    changes.unchanged = counted.count - len(changes.new) - len(changes.changed)
    return changes


class _Counting:
    """An iterable that counts what it yields (the walk's size, without a second pass)."""

    def __init__(self, items: Iterable[FileState]) -> None:
        self._items = items
        self.count = 0

    def __iter__(self) -> Iterator[FileState]:
        for item in self._items:
            self.count += 1
            yield item


@dataclass(frozen=True, slots=True)
class Move:
    """A file that vanished at one path and appeared at another, renamed in the backup."""

    from_folder: str
    from_path: bytes
    to_folder: str
    to_path: bytes
    size: int
    mtime_ns: int

    @property
    def source(self) -> str:
        """The old plain path below the backup's root."""
        return f"{self.from_folder}/{self.from_path.decode('utf-8')}"

    @property
    def target(self) -> str:
        return f"{self.to_folder}/{self.to_path.decode('utf-8')}"


def _utf8(path: bytes) -> bool:
    try:
        path.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def find_moves(changes: Sequence[FolderChanges]) -> list[Move]:
    """Files renamed or moved between (or within) folders since the manifest was written.

    A deleted file and a new file are one file moved when their (size, modification time)
    pair is unique among the deleted files AND among the new files: Immich's storage-template
    migration renames files and keeps their times. Anything ambiguous is left to upload and
    archive as usual: two photos taken in the same nanosecond with the same size would be
    confused otherwise. Empty files are never matched (every `.immich` marker is one), nor
    are names that are not UTF-8 (rclone's remote control takes names as JSON strings).

    The moved files are removed from `changes` (they are neither sent nor archived).
    """
    deleted: dict[tuple[int, int], list[tuple[str, FileState]]] = {}
    new: dict[tuple[int, int], list[tuple[str, FileState]]] = {}
    for folder in changes:
        for state in folder.deleted:
            deleted.setdefault((state.size, state.mtime_ns), []).append((folder.folder, state))
        for state in folder.new:
            new.setdefault((state.size, state.mtime_ns), []).append((folder.folder, state))
    moves = []
    for key, gone in deleted.items():
        appeared = new.get(key)
        if key[0] == 0 or appeared is None or len(gone) != 1 or len(appeared) != 1:
            continue
        (from_folder, old), (to_folder, current) = gone[0], appeared[0]
        if not (_utf8(old.path) and _utf8(current.path)):
            continue
        moves.append(
            Move(from_folder, old.path, to_folder, current.path, current.size, current.mtime_ns)
        )
    moved_from = {(m.from_folder, m.from_path) for m in moves}
    moved_to = {(m.to_folder, m.to_path) for m in moves}
    for folder in changes:
        folder.deleted = [s for s in folder.deleted if (folder.folder, s.path) not in moved_from]
        folder.new = [s for s in folder.new if (folder.folder, s.path) not in moved_to]
    return sorted(moves, key=lambda m: (m.to_folder, m.to_path))


def moves_record(moves: Iterable[Move]) -> bytes:
    """The MOVES_RECORD file of a run: one JSON object per line."""
    return b"".join(
        json.dumps(
            {"from": m.source, "to": m.target, "size": m.size, "mtime_ns": m.mtime_ns},
            ensure_ascii=False,
        ).encode("utf-8")
        + b"\n"
        for m in moves
    )


def parse_moves_record(stamp: str, data: bytes) -> list[MovedFile]:
    """The moves of the run `stamp` from its MOVES_RECORD (lines that do not parse are
    skipped: a record cut short by a crash still gives the moves it names)."""
    moves = []
    for line in data.decode("utf-8", "replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("from"), str):
            target = entry.get("to")
            if isinstance(target, str):
                moves.append(MovedFile(stamp, entry["from"], target))
    return moves


# -- trusting the manifest ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ManifestState:
    """What the local manifest says about itself."""

    #: identity of the destination it was written for (destination_key)
    destination_key: str | None = None
    #: the run whose end the destination's copy of the manifest reflects
    copy_run: str | None = None
    #: when the last reconcile of every folder finished
    reconciled_at: datetime | None = None
    #: folder -> the run that began changing its entries and has not finished them
    unfinished: Mapping[str, str] = field(default_factory=dict)
    #: folders a finished run recorded (reconciled or sent incrementally)
    folders: frozenset[str] = frozenset()
    format: int = MANIFEST_FORMAT
    #: emptied by `--reset`: rebuilt by a full sync, never taken from the destination's copy
    forgotten: bool = False


@dataclass(frozen=True, slots=True)
class ManifestHead:
    """The head document next to the manifest's copy in the destination."""

    run: str
    destination_key: str
    files: int
    format: int = MANIFEST_FORMAT

    def encode(self) -> bytes:
        return json.dumps(
            {
                "format": self.format,
                "run": self.run,
                "destination": self.destination_key,
                "files": self.files,
            },
            sort_keys=True,
        ).encode()


def parse_head(data: bytes | None) -> ManifestHead | None:
    """The head document, or None when it is absent or not one photos-sync can use."""
    if not data:
        return None
    try:
        entry = json.loads(data)
    except ValueError:
        return None
    if not isinstance(entry, dict) or entry.get("format") != MANIFEST_FORMAT:
        return None
    run, key, files = entry.get("run"), entry.get("destination"), entry.get("files")
    if not isinstance(run, str) or not isinstance(key, str) or not isinstance(files, int):
        return None
    return ManifestHead(run, key, files)


def destination_key(kind: str, bucket: str | None, path: str | None, endpoint: str | None) -> str:
    """Where a destination's backup lives, as one string: a manifest written for another
    place (the destination was pointed at a new disk or bucket) is never used for this one."""
    return "|".join((kind, bucket or "", (path or "").rstrip("/"), endpoint or ""))


class Reconcile(StrEnum):
    """Why a run is a full sync rather than an incremental one."""

    FIRST = "first backup with a manifest"
    ASKED = "--full"
    RESET = "after --reset"
    UNFINISHED = "the last run stopped before it finished"
    OTHER_DESTINATION = "the manifest was written for another destination"
    STALE_COPY = "the manifest does not match the one in the destination (restored or copied DB?)"
    DUE = "periodic reconcile (BACKUP_RECONCILE_EVERY)"
    SYMLINKS = "BACKUP_FOLLOW_SYMLINKS is on"
    NEW_FOLDER = "a folder the manifest does not cover yet"
    NAMES = "a file name holds a line break, or a file to archive has a name that is not UTF-8"
    UNREADABLE = "a folder could not be read"
    TWINS = "names that differ only in Unicode normalisation (a full sync checks them)"


def run_reconcile(
    state: ManifestState | None,
    head: ManifestHead | None,
    *,
    key: str,
    now: datetime,
    every: timedelta | None,
    full: bool,
    follow_symlinks: bool,
) -> Reconcile | None:
    """Why the whole run must reconcile, or None when its folders may go incrementally
    (each may still need one: see folder_reconcile).

    `every` is BACKUP_RECONCILE_EVERY (None: only when the rules below demand it). The local
    manifest is trusted only if it was written for this destination and the head read from
    the destination names the run of the local state's last copy: a DB restored from an
    older backup, or the destination written meanwhile by another machine, makes them differ.
    """
    if full:
        return Reconcile.ASKED
    if follow_symlinks:
        # links can lead anywhere and loop; rclone -L follows them in a full sync only
        return Reconcile.SYMLINKS
    if state is not None and state.forgotten:
        return Reconcile.RESET
    if state is None or state.reconciled_at is None or state.format != MANIFEST_FORMAT:
        return Reconcile.FIRST
    if state.destination_key != key:
        return Reconcile.OTHER_DESTINATION
    if head is None or head.run != state.copy_run:
        return Reconcile.STALE_COPY
    if every is not None and now - state.reconciled_at >= every:
        return Reconcile.DUE
    return None


def folder_reconcile(state: ManifestState, folder: str) -> Reconcile | None:
    """Why one folder of an otherwise incremental run must reconcile, or None."""
    if folder in state.unfinished:
        return Reconcile.UNFINISHED
    if folder not in state.folders:
        return Reconcile.NEW_FOLDER
    return None


def incremental_obstacle(changes: FolderChanges) -> Reconcile | None:
    """Why a folder's changes cannot be carried out incrementally, or None.

    New and changed files reach rclone in a `--files-from-raw` list, one name per line: a
    name holding a line break cannot be listed. Archived files are moved by name through
    rclone's remote control, which takes names as JSON strings: a name that is not UTF-8
    cannot be sent. Such a folder reconciles (a full sync handles any name)."""
    if any(b"\n" in s.path or b"\r" in s.path for s in changes.to_send):
        return Reconcile.NAMES
    if not all(_utf8(path) for path in changes.to_archive):
        return Reconcile.NAMES
    return None
