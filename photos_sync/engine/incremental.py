"""The manifest's part in a backup run (#15): incremental folders, moves, the manifest's copy.

Contract of a run with a manifest (the runner drives it, see engine/runner.py):
- `ManifestRun.open` reads the local manifest and the head document in the destination (one
  small download, no listing) and decides whether the whole run reconciles (a full sync,
  core.manifest.run_reconcile) or may go folder by folder incrementally;
- `plan` walks the incremental folders' sources and finds what changed and what moved;
  a folder whose walk was incomplete, or that the manifest does not cover, reconciles;
- `apply_moves` renames moved files inside the destination (recorded first in the run's
  archive folder for `restore --as-of`); `archive` moves a folder's deleted and replaced
  files into `.deleted/<run>/`; the runner then uploads the new and changed files;
- `commit_incremental` / `commit_reconciled` record a folder's finished work; a folder is
  marked unfinished before the first change to its backup, so a crash makes the next run
  reconcile it (a manifest written by a run that did not finish is never trusted);
- `finish_run`, after a run whose every job completed, uploads the manifest's copy and then
  the head naming this run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path

from photos_sync.core.archive import MOVES_RECORD
from photos_sync.core.config import Settings
from photos_sync.core.destinations import DestinationError
from photos_sync.core.manifest import (
    MANIFEST_COPY,
    MANIFEST_HEAD,
    Change,
    FileState,
    FolderChanges,
    ManifestHead,
    ManifestState,
    Move,
    Reconcile,
    destination_key,
    diff_sorted,
    find_moves,
    folder_changes,
    folder_reconcile,
    incremental_obstacle,
    moves_record,
    parse_head,
    run_reconcile,
)
from photos_sync.core.names import NameCheck
from photos_sync.core.rclone_args import ARCHIVE_FOLDER
from photos_sync.core.records import Destination, to_iso
from photos_sync.core.units import plural
from photos_sync.rclone.mover import MoverError, ServerSideMover, is_not_found
from photos_sync.rclone.remote import CryptRemote
from photos_sync.storage.manifest_db import ManifestDB, ManifestError, import_copy, manifest_path
from photos_sync.system.logs import get_logger
from photos_sync.system.source_scan import WalkProblems, walk_files

log = get_logger("photos_sync.engine.incremental")


class ManifestRun:
    """One run's manifest: its decisions and the work it records. See the module's contract."""

    def __init__(
        self,
        settings: Settings,
        destination: Destination,
        remote: CryptRemote,
        db: ManifestDB,
        state: ManifestState,
        head: ManifestHead | None,
        reason: Reconcile | None,
    ) -> None:
        self.settings = settings
        self.destination = destination
        self.remote = remote
        self.db = db
        self.state = state
        self.head = head
        #: why the whole run reconciles; None when its folders may go incrementally
        self.reason = reason
        self.key = _key(destination)
        #: folder -> its changes, for the folders that go incrementally
        self.incremental: dict[str, FolderChanges] = {}
        #: folder -> why it reconciles
        self.reconciling: dict[str, Reconcile] = {}
        self.moves: list[Move] = []
        #: the file-name check of each folder walked whole by `plan`
        self.names: dict[str, NameCheck] = {}
        self._fresh_stages: set[str] = set()
        #: folders whose last stage could not read every directory
        self._incomplete_stages: set[str] = set()
        self._mover: ServerSideMover | None = None
        self._mover_stack = contextlib.AsyncExitStack()

    # -- opening

    @classmethod
    async def open(
        cls,
        settings: Settings,
        destination: Destination,
        remote: CryptRemote,
        *,
        full: bool,
        now: datetime,
    ) -> ManifestRun:
        """The run's manifest and whether the run reconciles (see core.manifest)."""
        path = manifest_path(settings.data_dir, destination.id)
        db = await asyncio.to_thread(_open_db, path)
        state = await asyncio.to_thread(db.state)
        head = None
        if not full and not settings.follow_symlinks:
            try:
                head = parse_head(await _read_small(remote, settings, destination, MANIFEST_HEAD))
            except DestinationError as exc:
                # unreachable, refused, unmounted: the run reconciles, and the destination
                # check that comes with it says what is wrong in the usual words
                log.info("manifest_head_unreadable", error=str(exc))
                head = None
            if head is not None and state.reconciled_at is None and not state.forgotten:
                # A new machine (or a new data dir) with the same keys: start from the copy
                # the last run left in the destination instead of a full reconcile.
                db, state = await _adopt_copy(db, remote, settings, destination, head)
        reason = run_reconcile(
            state,
            head,
            key=_key(destination),
            now=now,
            every=settings.reconcile_every,
            full=full,
            follow_symlinks=settings.follow_symlinks,
        )
        log.info(
            "manifest_opened",
            destination=destination.name,
            reconcile=reason.value if reason else None,
            files=await asyncio.to_thread(db.count),
        )
        return cls(settings, destination, remote, db, state, head, reason)

    async def close(self) -> None:
        await self._mover_stack.aclose()
        self._mover = None
        await asyncio.to_thread(self.db.close)

    # -- what the destination holds, without listing it

    async def has_files(self, folder: str) -> bool:
        return await asyncio.to_thread(self.db.has_files, folder)

    def backed_up_folders(self) -> set[str]:
        """The folders the manifest covers (what the root listing would show)."""
        return set(self.state.folders)

    async def archive_runs(self) -> list[str]:
        return await asyncio.to_thread(self.db.archive_runs)

    async def set_archive_runs(self, stamps: Iterable[str]) -> None:
        await asyncio.to_thread(self.db.set_archive_runs, stamps)

    async def head_present(self) -> bool:
        """Is the head still in the destination (the presence check of incremental runs:
        one small download instead of a listing of the destination's root)?"""
        data = await _read_small(self.remote, self.settings, self.destination, MANIFEST_HEAD)
        return data is not None

    # -- planning

    async def plan(self, sources: Mapping[str, Path], name_limit: int | None = None) -> None:
        """Decide the way of each folder (name -> where its source is); walk the incremental
        ones and find their changes and the files moved between them. The walk checks the
        file names too (`name_limit`: see core.names.find_name_problems): `names` holds the
        problems of every folder walked whole, so the runner need not walk it again."""
        for folder, source in sources.items():
            why = self.reason or folder_reconcile(self.state, folder)
            changes = None
            if why is None:
                changes, why = await asyncio.to_thread(
                    self._changes, folder, source, NameCheck(folder, name_limit)
                )
            if why is not None or changes is None:
                self.reconciling[folder] = why or Reconcile.UNREADABLE
            else:
                self.incremental[folder] = changes
        if self.incremental:
            self.moves = find_moves(list(self.incremental.values()))
        log.info(
            "manifest_planned",
            incremental=sorted(self.incremental),
            reconciling={f: r.value for f, r in self.reconciling.items()},
            moves=len(self.moves),
        )

    def _changes(
        self, folder: str, source: Path, names: NameCheck
    ) -> tuple[FolderChanges | None, Reconcile | None]:
        problems = WalkProblems()
        changes = folder_changes(
            folder, walk_files(source, problems, names), self.db.entries(folder)
        )
        if problems.unreadable:
            log.warning(
                "walk_incomplete",
                folder=folder,
                unreadable=[os.fsdecode(p) for p in problems.unreadable[:5]],
            )
            return None, Reconcile.UNREADABLE
        self.names[folder] = names
        obstacle = incremental_obstacle(changes)
        if obstacle is not None:
            return None, obstacle
        return changes, None

    async def moved_away(self, folder: str, sources: Mapping[str, Path]) -> bool:
        """True if every file the manifest records for `folder` (now empty at the source)
        appears, new, in another folder with the same size and modification time: the
        folder was emptied by moves (Immich's storage-template migration), not unmounted.
        Walks the other folders: only asked when a folder was found empty."""

        def every_file_found_elsewhere() -> bool:
            wanted = {(s.size, s.mtime_ns) for s in self.db.entries(folder) if s.path != b".immich"}
            for other, source in sources.items():
                if not wanted:
                    break
                if other == folder:
                    continue
                problems = WalkProblems()
                walked = walk_files(source, problems)
                for change, state in diff_sorted(walked, self.db.entries(other)):
                    if change is Change.NEW:
                        wanted.discard((state.size, state.mtime_ns))
            return not wanted

        return await asyncio.to_thread(every_file_found_elsewhere)

    def is_incremental(self, folder: str) -> bool:
        return folder in self.incremental

    def demote(self, folder: str, why: Reconcile) -> None:
        """Make an incremental folder a full sync after all (its moves already done stay:
        the manifest recorded them)."""
        if self.incremental.pop(folder, None) is not None:
            self.reconciling[folder] = why
            log.info("folder_demoted", folder=folder, reason=why.value)

    # -- the work

    async def _mover_for_run(self) -> ServerSideMover:
        if self._mover is None:
            socket = self.settings.data_dir / f"rcd-{self.destination.id}-{os.getpid()}.sock"
            self._mover = await self._mover_stack.enter_async_context(
                ServerSideMover(self.remote, socket)
            )
        return self._mover

    async def begin(self, folders: Iterable[str], run_id: str) -> None:
        """Mark `folders` unfinished before their backup changes (see the contract)."""
        for folder in sorted(set(folders)):
            await asyncio.to_thread(self.db.begin_folder, folder, run_id)

    async def apply_moves(self, run_id: str, say: Callable[[str], None]) -> int:
        """Rename the moved files inside the destination; a move that fails goes back to
        upload-and-archive. Returns how many files were moved."""
        if not self.moves:
            return 0
        moves = self.moves
        await self.begin({m.from_folder for m in moves} | {m.to_folder for m in moves}, run_id)
        errors: list[str | None]
        try:
            # the record first: a move done but not recorded would hide the file from
            # `restore --as-of` an earlier time
            record = f"{ARCHIVE_FOLDER}/{run_id}/{MOVES_RECORD}"
            await self.remote.write_file(record, moves_record(moves))
            mover = await self._mover_for_run()
            errors = await mover.move_all([(m.source, m.target) for m in moves])
        except (DestinationError, MoverError) as exc:
            errors = [str(exc)] * len(moves)
        done = [m for m, error in zip(moves, errors, strict=True) if error is None]
        for move, error in zip(moves, errors, strict=True):
            if error is None:
                continue
            log.warning("move_failed", source=move.source, target=move.target, error=error)
            self.incremental[move.to_folder].new.append(
                FileState(move.to_path, move.size, move.mtime_ns)
            )
            self.incremental[move.from_folder].deleted.append(
                FileState(move.from_path, move.size, move.mtime_ns)
            )
        await asyncio.to_thread(self.db.apply_moves, done, run_id)
        await asyncio.to_thread(self.db.note_change, run_id)
        await self._note_archive_run(run_id)
        say(
            f"moved {plural(len(done), 'file')} inside the backup (moved or renamed at the "
            "source): nothing uploaded for them"
            + (f"; {len(moves) - len(done)} will be sent instead" if len(done) < len(moves) else "")
        )
        log.info("files_moved", moved=len(done), failed=len(moves) - len(done))
        return len(done)

    async def archive(self, folder: str, run_id: str) -> tuple[list[bytes], str | None]:
        """Move the folder's deleted and replaced files into `.deleted/<run>/<folder>/`.
        Returns the paths no longer in the live backup and the first error, if any (a file
        already gone from the backup counts as archived)."""
        paths = self.incremental[folder].to_archive
        if not paths:
            return [], None
        try:
            mover = await self._mover_for_run()
        except MoverError as exc:
            return [], str(exc)
        pairs = [
            (
                f"{folder}/{p.decode('utf-8')}",
                f"{ARCHIVE_FOLDER}/{run_id}/{folder}/{p.decode('utf-8')}",
            )
            for p in paths
        ]
        errors = await mover.move_all(pairs)
        await self._note_archive_run(run_id)
        archived = []
        first_error = None
        for path, error in zip(paths, errors, strict=True):
            if error is None or is_not_found(error):
                archived.append(path)
            elif first_error is None:
                first_error = error
        return archived, first_error

    async def _note_archive_run(self, run_id: str) -> None:
        stamps = await self.archive_runs()
        if run_id not in stamps:
            await self.set_archive_runs([*stamps, run_id])

    async def files_from(self, folder: str, run_id: str) -> Path | None:
        """The `--files-from-raw` list of the folder's new and changed files (None: none)."""
        changes = self.incremental[folder]
        if not changes.to_send:
            return None
        safe = folder.replace("/", "_")  # extra/<name>
        path = self.settings.data_dir / "manifests" / f"send-{self.destination.id}-{safe}.txt"
        data = b"".join(s.path + b"\n" for s in changes.to_send)
        await asyncio.to_thread(path.write_bytes, data)
        return path

    async def commit_incremental(
        self, folder: str, archived: list[bytes], left_out: set[str], run_id: str
    ) -> None:
        changes = self.incremental[folder]
        sent = [s for s in changes.to_send if os.fsdecode(s.path) not in left_out]
        await asyncio.to_thread(self.db.apply, folder, sent=sent, archived=archived, run=run_id)
        if sent or archived:
            await asyncio.to_thread(self.db.note_change, run_id)

    async def stage(self, folder: str, source: Path, names: NameCheck | None = None) -> None:
        """Walk a folder about to be reconciled into the manifest's staging area (checking
        its file names on the way with `names`, kept in `names` when the walk was whole).
        The stage is fresh until `take_fresh_stage` hands it to the folder's first attempt."""
        problems = WalkProblems()
        count = await asyncio.to_thread(self.db.stage, folder, walk_files(source, problems, names))
        if names is not None and not problems.unreadable:
            self.names[folder] = names
        self._fresh_stages.add(folder)
        if problems.unreadable:
            self._incomplete_stages.add(folder)
        else:
            self._incomplete_stages.discard(folder)
        log.info("folder_staged", folder=folder, files=count, unreadable=len(problems.unreadable))

    def take_fresh_stage(self, folder: str) -> bool:
        """True once after `stage(folder)`: an attempt may use that walk instead of walking
        again (a retry walks afresh: the source may have changed meanwhile)."""
        if folder in self._fresh_stages:
            self._fresh_stages.discard(folder)
            return True
        return False

    def judged_by_stage(self, folder: str) -> bool:
        """True when a folder about to be reconciled may have its guards judged from its walk
        against the manifest, without an rclone dry run listing the destination: the run is
        only a periodic reconcile (BACKUP_RECONCILE_EVERY) of a manifest trusted in every
        other way (written for this destination, matching its copy there, finished for this
        folder), so the manifest says what the backup holds. Whatever else makes a run a full
        sync (--full, a first backup, a manifest from elsewhere or from a run that stopped,
        followed links, odd names) keeps the dry run: there the destination may hold what
        the manifest does not know of."""
        return (
            self.reason is Reconcile.DUE
            and self.reconciling.get(folder) is Reconcile.DUE
            and folder_reconcile(self.state, folder) is None
            and not self.settings.follow_symlinks
        )

    async def staged_changes(self, folder: str, source: Path) -> FolderChanges | None:
        """What the reconcile of `folder` will send and archive, from its walk (staged now
        unless a fresh stage is waiting for the attempt, which then keeps it) against the
        manifest; None when the folder is not `judged_by_stage` or the walk could not read
        every directory (a dry run judges it then)."""
        if not self.judged_by_stage(folder):
            return None
        if folder not in self._fresh_stages:
            await self.stage(folder, source)
        if folder in self._incomplete_stages:
            return None

        def diff() -> FolderChanges:
            return folder_changes(folder, self.db.staged_entries(folder), self.db.entries(folder))

        return await asyncio.to_thread(diff)

    async def commit_reconciled(self, folder: str, left_out: set[str], run_id: str) -> None:
        left = [os.fsencode(p) for p in left_out]
        count = await asyncio.to_thread(self.db.commit_staged, folder, left, run_id)
        await asyncio.to_thread(self.db.note_change, run_id)
        log.info("folder_reconciled", folder=folder, files=count)

    async def finish_run(self, run_id: str, now: datetime, say: Callable[[str], None]) -> None:
        """After a run whose every job completed: record a full reconcile, then bring the
        destination's copy of the manifest up to date (copy first, head last)."""
        if self.reason is not None:
            await asyncio.to_thread(self.db.set_identity, self.key)
            await asyncio.to_thread(self.db.mark_reconciled, now)
        if not await asyncio.to_thread(self.db.copy_outdated):
            return
        packed = self.settings.data_dir / "manifests" / f"upload-{self.destination.id}.gz"
        try:
            await asyncio.to_thread(self.db.export, packed)
            await self.remote.upload(str(packed), MANIFEST_COPY)
            files = await asyncio.to_thread(self.db.count)
            head = ManifestHead(run_id, self.key, files)
            await self.remote.write_file(MANIFEST_HEAD, head.encode())
            await asyncio.to_thread(self.db.mark_copied, run_id)
            log.info("manifest_copied", run_id=run_id, files=files)
        except Exception as exc:  # the backup itself is complete; only the copy is late
            log.warning("manifest_copy_failed", error=str(exc))
            say(
                "the manifest's copy could not be written to the destination "
                f"({exc}); the next run tries again"
            )
        finally:
            packed.unlink(missing_ok=True)


def _key(destination: Destination) -> str:
    return destination_key(
        destination.type, destination.bucket_name, destination.remote_path, destination.endpoint
    )


def _open_db(path: Path) -> ManifestDB:
    """The manifest at `path`; one that cannot be read is set aside and a new one started
    (the run then reconciles, which rebuilds it)."""
    try:
        return ManifestDB(path)
    except ManifestError as exc:
        log.warning("manifest_unreadable", path=str(path), error=str(exc))
        aside = path.with_name(path.name + f".broken-{to_iso(datetime.now()).replace(':', '')}")
        with contextlib.suppress(OSError):
            os.replace(path, aside)
        return ManifestDB(path)


async def _read_small(
    remote: CryptRemote, settings: Settings, destination: Destination, path: str
) -> bytes | None:
    """A small file of the destination (downloaded by name, no listing), or None."""
    local = settings.data_dir / "manifests" / f"read-{destination.id}-{os.getpid()}.tmp"
    try:
        if not await remote.download(path, str(local)):
            return None
        return await asyncio.to_thread(local.read_bytes)
    finally:
        local.unlink(missing_ok=True)


async def _adopt_copy(
    db: ManifestDB,
    remote: CryptRemote,
    settings: Settings,
    destination: Destination,
    head: ManifestHead,
) -> tuple[ManifestDB, ManifestState]:
    """Install the destination's copy of the manifest (named by `head`) as the local one;
    the local one unchanged if the copy cannot be had."""
    packed = settings.data_dir / "manifests" / f"download-{destination.id}.gz"
    try:
        if not await remote.download(MANIFEST_COPY, str(packed)):
            return db, await asyncio.to_thread(db.state)
        await asyncio.to_thread(db.close)
        await asyncio.to_thread(
            import_copy,
            packed,
            db.path,
            {"copy_run": head.run, "changed_run": head.run, "destination_key": _key(destination)},
        )
        log.info("manifest_adopted", run=head.run, files=head.files)
    except (ManifestError, OSError) as exc:
        log.warning("manifest_copy_unusable", error=str(exc))
    finally:
        packed.unlink(missing_ok=True)
    db = await asyncio.to_thread(_open_db, db.path)
    return db, await asyncio.to_thread(db.state)
