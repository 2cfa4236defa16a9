"""`photos-sync restore`: bring files back from a destination, decrypted, into a folder.

Modes:
- current (default): the live backup — all of it, one folder, or one file (`--path`);
- deleted (`--deleted`): the newest archived copy of each file under `--path` that a run
  moved into `.deleted/` (deleted or replaced at the source);
- as-of (`--as-of TIME`): every file under `--path` as it was at TIME (archive + live).

Two restores read Immich's database dump first (photos_sync.engine.dump_restore), the newest
one in the backup (with `--as-of`, the newest at TIME), in either mode:
- by meaning (`--user/--album/--person/--taken`): only the originals, sidecars and live-photo
  videos of the assets the criteria choose (core/immich_select);
- `--immich`: Immich's folders into an empty DIR, the dump into DIR/backups/, the `.immich`
  markers, then the check of every path the dump references, and the next steps
  (core/immich_restore).

A restore never overwrites an existing file unless `overwrite` is set. It is tracked in the
DB like a backup job: a restore that was interrupted is resumed by running it again (files
already written are skipped).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from photos_sync.core.archive import (
    MOVES_RECORD,
    ArchivedFile,
    LiveFile,
    MovedFile,
    PointInTime,
    as_of,
    newest_archived,
    parse_archive_listing,
    parse_modtime,
    parse_stamp,
    under,
)
from photos_sync.core.events import (
    EventKind,
    ProgressSink,
    RestoreRequest,
    RunEvent,
    RunRefused,
    UsageProblem,
)
from photos_sync.core.immich_restore import DUMPS_FOLDER, RESTORED_FOLDERS, dump_facts, next_steps
from photos_sync.core.immich_select import Selected
from photos_sync.core.manifest import parse_moves_record
from photos_sync.core.names import display_path, is_utf8, raw_bytes
from photos_sync.core.rclone_args import (
    ARCHIVE_FOLDER,
    DESTINATION_MARKER,
    META_FOLDER,
    copy_argv,
    crypt_path,
)
from photos_sync.core.rclone_log import (
    ErrorLine,
    FileCopied,
    OtherLine,
    Outcome,
    SkippedName,
    StatsLine,
    classify_exit,
    parse_line,
)
from photos_sync.core.records import RestoreJob
from photos_sync.core.redact import redact
from photos_sync.core.states import JobStatus
from photos_sync.engine import dump_restore
from photos_sync.engine.destination import DestinationContext
from photos_sync.rclone.remote import CryptRemote
from photos_sync.storage.store import RestoreAndVerifyStore
from photos_sync.system import execute


def _files_from(step: CopyStep, folder: Path) -> str | None:
    """The --files-from-raw list of a step that copies chosen files, written into `folder`
    with each path's exact bytes (a name that is not UTF-8 must reach rclone as it is
    stored); None for a step that copies a whole folder."""
    if step.files is None:
        return None
    path = folder / "files.txt"
    path.write_bytes(b"".join(raw_bytes(p) + b"\n" for p in step.files))
    return str(path)


#: How many differing files a restore names (all are counted).
DIFFER_NAMED = 5


def differ_note(count: int, paths: list[str], target: str) -> str:
    """The line that tells a restore left differing files alone, and how to replace them."""
    noun = "file" if count == 1 else "files"
    verb = "differs" if count == 1 else "differ"
    shown = ", ".join(display_path(p) for p in paths)
    return (
        f"{count} {noun} already in {target} {verb} from the backup and "
        f"{'was' if count == 1 else 'were'} left as {'it is' if count == 1 else 'they are'}"
        + (f" (e.g. {shown})" if shown else "")
        + "; run the same restore with --overwrite to replace them with the backup's copy"
    )


@dataclass
class RestoreResult:
    job: RestoreJob | None
    files: int
    bytes: int
    error: str | None = None
    #: plain paths rclone ignored as duplicate names (NOT restored); raw, see names.display_path
    skipped: list[str] = field(default_factory=list)
    #: files already in the target that differ from the backup and were left as they are
    #: (without --overwrite): how many, and the first few paths below the target
    differ_count: int = 0
    differ: list[str] = field(default_factory=list)
    #: a restore by meaning: what it chose (see _selection_view), None otherwise
    selection: dict[str, Any] | None = None
    #: a `--immich` restore: the dump, the markers, the check, the next steps
    immich_restore: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        if self.selection is not None and self.selection.get("not_in_backup"):
            return False
        if self.immich_restore is not None:
            check = self.immich_restore.get("check") or {}
            if check.get("missing"):
                return False
        return self.error is None and not self.skipped

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "files": self.files,
            "bytes": self.bytes,
            "error": self.error,
            "skipped": [display_path(p) for p in self.skipped],
            "differ": self.differ_count,
            "differ_paths": [display_path(p) for p in self.differ],
            "job": self.job.as_dict() if self.job else None,
            "selection": self.selection,
            "immich_restore": self.immich_restore,
        }


def normalise_path(raw: str) -> str:
    """A plain path below the Immich root, without leading/trailing slashes; no `..`."""
    parts = [p for p in raw.strip().strip("/").split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise RunRefused(f"--path {raw!r} may not contain '..'")
    if parts and parts[0] in (ARCHIVE_FOLDER, DESTINATION_MARKER, META_FOLDER):
        raise RunRefused(f"--path {raw!r}: use --deleted to restore from the archive")
    return "/".join(parts)


async def list_archive(remote: CryptRemote) -> list[dict[str, object]]:
    """Every file in the archive, as lsjson-like entries {Path, Size, ModTime}."""
    return await remote.list_files(ARCHIVE_FOLDER)


def _wanted(files: list[ArchivedFile], prefix: str) -> list[ArchivedFile]:
    """Archived files under `prefix`, which may name a file by its shown form (`bad\\xff.jpg`,
    as --list-deleted prints a name that is not UTF-8) as well as by its exact bytes."""
    return [f for f in files if under(f.path, prefix) or under(display_path(f.path), prefix)]


@dataclass(frozen=True, slots=True)
class CopyStep:
    """One `rclone copy` of a restore: from where, into where, optionally a file list.

    With `renames`, the copy goes into a staging folder (`target`) and each (path below
    `target`, path below `final`) pair is then moved into place: the files a later run moved
    inside the backup, restored under the paths they had at the moment asked for."""

    source: str
    target: Path
    files: tuple[str, ...] | None = None
    excludes: tuple[str, ...] = ()
    renames: tuple[tuple[str, str], ...] = ()
    final: Path | None = None


#: Folder inside a restore's target where moved files land before they are renamed.
STAGING = ".photos-sync-staging"


def _renamed_steps(renamed: list[tuple[str | None, str, str]], target: Path) -> list[CopyStep]:
    """One copy per source (an archive run, or the live backup) of the files that a later
    run moved, into a staging folder, then renamed to their paths at the moment."""
    by_source: dict[str | None, list[tuple[str, str]]] = {}
    for stamp, where, path in renamed:
        by_source.setdefault(stamp, []).append((where, path))
    steps = []
    for index, (stamp, pairs) in enumerate(sorted(by_source.items(), key=lambda i: i[0] or "")):
        source = crypt_path(ARCHIVE_FOLDER, stamp) if stamp else crypt_path()
        steps.append(
            CopyStep(
                source,
                target / STAGING / str(index),
                tuple(sorted(w for w, _ in pairs)),
                renames=tuple(sorted(pairs)),
                final=target,
            )
        )
    return steps


def place_staged(step: CopyStep, overwrite: bool) -> None:
    """Move a renamed step's staged files to their paths below `step.final` (an existing
    file there is kept unless `overwrite`); then remove the staging folder."""
    assert step.final is not None
    for staged, path in step.renames:
        source = step.target / staged
        final = step.final / path
        if not source.exists():
            continue
        if final.exists() and not overwrite:
            source.unlink()
            continue
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, final)
    shutil.rmtree(step.target, ignore_errors=True)
    with contextlib.suppress(OSError):
        step.target.parent.rmdir()  # the staging folder, once its last step is placed


def _resolved(request: RestoreRequest) -> RestoreRequest:
    """`request` with its target made absolute (`~` expanded) and its path normalised."""
    target = request.target.expanduser().resolve()
    return dataclasses.replace(request, target=target, path=normalise_path(request.path))


def _create_target(target: Path) -> None:
    """Create the folder a restore writes into (RunRefused, saying why, if it cannot be)."""
    try:
        dump_restore.make_user_dirs(target)
    except OSError as exc:
        raise RunRefused(f"cannot create {display_path(str(target))}: {exc.strerror}") from None


async def _plan_current(remote: CryptRemote, path: str, target: Path) -> list[CopyStep]:
    """The copy of the live backup: all of it (without the archive and the marker), the
    folder `path`, or the file `path` into its parent folder below `target`."""
    if not path:
        excludes = (f"/{ARCHIVE_FOLDER}/**", f"/{DESTINATION_MARKER}", f"/{META_FOLDER}/**")
        return [CopyStep(crypt_path(), target, excludes=excludes)]
    entry = await remote.stat(path)
    if entry is None:
        raise RunRefused(f"{display_path(path)} is not in the backup of {remote.label!r}")
    if entry.get("IsDir"):
        return [CopyStep(crypt_path(path), target / path)]
    parent = path.rpartition("/")[0]
    return [CopyStep(crypt_path(path), target / parent if parent else target)]


def _plan_deleted(
    label: str, archived: list[ArchivedFile], path: str, target: Path
) -> list[CopyStep]:
    """One copy per archive run that holds the newest archived copy of a file under `path`,
    in the runs' order (RunRefused if the archive holds nothing there)."""
    chosen = newest_archived(_wanted(archived, path), "")
    if not chosen:
        raise RunRefused(
            f"the archive of {label!r} holds nothing under {display_path(path) or 'the backup'}"
        )
    by_stamp: dict[str, list[str]] = {}
    for item in chosen.values():
        by_stamp.setdefault(item.stamp, []).append(item.path)
    return [
        CopyStep(crypt_path(ARCHIVE_FOLDER, stamp), target, tuple(sorted(paths)))
        for stamp, paths in sorted(by_stamp.items())
    ]


async def _live_files(remote: CryptRemote, path: str) -> list[LiveFile]:
    """The live backup's files under `path` (the file itself if `path` names one; every
    folder but the archive when `path` is empty), with paths below the backup's root."""
    live_entries = await remote.list_files(path) if path else []
    if not path:
        for folder, is_dir in (await remote.list_root()).items():
            if is_dir and folder not in (ARCHIVE_FOLDER, META_FOLDER):
                live_entries += [
                    {**e, "Path": f"{folder}/{e['Path']}"} for e in await remote.list_files(folder)
                ]
    else:
        entry = await remote.stat(path)
        if entry is not None and not entry.get("IsDir"):
            live_entries = [{**entry, "Path": path}]
        else:
            live_entries = [{**e, "Path": f"{path}/{e['Path']}"} for e in live_entries]
    return [
        LiveFile(str(e["Path"]), _size(e.get("Size")), parse_modtime(e.get("ModTime")))
        for e in live_entries
    ]


async def _recorded_moves(
    remote: CryptRemote, listing: list[dict[str, object]], moment: datetime
) -> list[MovedFile]:
    """The moves recorded by the runs after `moment` (their MOVES_RECORD files)."""
    moves: list[MovedFile] = []
    for entry in listing:
        stamp, _, name = str(entry.get("Path", "")).partition("/")
        when = parse_stamp(stamp)
        if name != MOVES_RECORD or when is None or when <= moment:
            continue
        data = await remote.read_file(f"{ARCHIVE_FOLDER}/{stamp}/{MOVES_RECORD}")
        moves += parse_moves_record(stamp, data or b"")
    return moves


@dataclass(frozen=True, slots=True)
class _BackupHistory:
    """What a point-in-time choice needs: the archive, the live files and the moves."""

    archived: list[ArchivedFile]
    live: list[LiveFile]
    moves: list[MovedFile]


async def _backup_history(remote: CryptRemote, path: str, moment: datetime) -> _BackupHistory:
    """The archive, the moves after `moment` and the live files under `path` (the whole live
    backup when there are moves: a moved file may come from anywhere)."""
    listing = await list_archive(remote)
    moves = await _recorded_moves(remote, listing, moment)
    live = await _live_files(remote, "" if moves else path)
    return _BackupHistory(parse_archive_listing(listing), live, moves)


def _plan_as_of(
    archived: list[ArchivedFile],
    live: list[LiveFile],
    path: str,
    target: Path,
    moment: datetime,
    moves: list[MovedFile] = [],  # noqa: B006 - read only
) -> list[CopyStep]:
    """The copies that bring back every file under `path` as it was at `moment`: one per
    archive run, then one from the live backup (RunRefused if nothing existed then)."""
    steps = _steps_of(as_of(archived, live, path, moment, moves), target)
    if not steps:
        raise RunRefused(
            f"nothing under {display_path(path) or 'the backup'} existed at {moment.isoformat()}"
        )
    return steps


def _steps_of(choice: PointInTime, target: Path) -> list[CopyStep]:
    """The copies of a point-in-time choice: one per archive run, one from the live backup,
    then the files moved since (staged, then renamed)."""
    steps = [
        CopyStep(crypt_path(ARCHIVE_FOLDER, stamp), target, tuple(paths))
        for stamp, paths in choice.from_archive.items()
        if paths
    ]
    if choice.from_live:
        steps.append(CopyStep(crypt_path(), target, tuple(choice.from_live)))
    return steps + _renamed_steps(choice.renamed, target)


def _restricted(choice: PointInTime, keep: Callable[[str], bool]) -> PointInTime:
    """`choice` with only the files whose path at the moment `keep` accepts."""
    return PointInTime(
        {stamp: [p for p in paths if keep(p)] for stamp, paths in choice.from_archive.items()},
        [p for p in choice.from_live if keep(p)],
        [item for item in choice.renamed if keep(item[2])],
    )


def _label(request: RestoreRequest) -> str:
    """What a restore is called in its progress lines and its job's record."""
    if request.immich:
        return "Immich (--immich)"
    if request.selection is not None:
        where = f" under {display_path(request.path)}" if request.path else ""
        return request.selection.describe() + where
    return display_path(request.path) or "everything"


def _left_out(trashed: int, outside: int) -> str:
    """`; 2 in Immich's trash and 1 outside UPLOAD_LOCATION left out`, or ""."""
    parts = []
    if trashed:
        parts.append(f"{trashed} in Immich's trash")
    if outside:
        parts.append(f"{outside} outside UPLOAD_LOCATION (external libraries)")
    return f"; {' and '.join(parts)} left out" if parts else ""


def _selection_view(
    request: RestoreRequest,
    dump: str,
    selected: Selected,
    paths: tuple[str, ...],
    missing: list[str],
) -> dict[str, Any]:
    """What a restore by meaning reports: the criteria, the dump, the counts and the chosen
    files the backup did not give back."""
    assert request.selection is not None
    return {
        "criteria": request.selection.describe(),
        "dump": dump,
        **selected.as_dict(),
        "files": len(paths),
        "summary": (
            f"{request.selection.describe()}: {selected.assets} "
            f"asset{'s' if selected.assets != 1 else ''}, {len(paths)} "
            f"file{'s' if len(paths) != 1 else ''} in the database dump {dump}"
            + _left_out(selected.trashed, selected.outside)
        ),
        "not_in_backup": len(missing),
        "not_in_backup_paths": [display_path(p) for p in missing[:DIFFER_NAMED]],
    }


class Restorer:
    """Plans and runs restores from the destinations of `destinations`; tells `sink` how
    they go (every `live_interval` seconds while rclone copies, when set)."""

    def __init__(
        self,
        destinations: DestinationContext,
        sink: ProgressSink | None = None,
        *,
        live_interval: float | None = None,
        grace: float = execute.DEFAULT_GRACE,
    ) -> None:
        self.destinations = destinations
        self.settings = destinations.settings
        self.store = RestoreAndVerifyStore(destinations.store)
        self.sink: ProgressSink = sink or (lambda _event: None)
        self.live_interval = live_interval
        self.grace = grace

    async def plan(self, remote: CryptRemote, request: RestoreRequest) -> list[CopyStep]:
        """The copies that carry out `request` (RunRefused if there is nothing to restore)."""
        path = normalise_path(request.path)
        if request.mode == "current":
            return await _plan_current(remote, path, request.target)
        listing = await list_archive(remote)
        archived = parse_archive_listing(listing)
        if request.mode == "deleted":
            return _plan_deleted(remote.label, archived, path, request.target)
        assert request.mode == "as-of" and request.moment is not None
        moves = await _recorded_moves(remote, listing, request.moment)
        # a file moved inside the backup may come from anywhere: the whole live backup is
        # looked at when there are moves after the moment
        live = await _live_files(remote, "" if moves else path)
        return _plan_as_of(archived, live, path, request.target, request.moment, moves)

    async def run(self, request: RestoreRequest) -> RestoreResult:
        """Carry out `request`: plan it, create the target, track it as a restore job (not in
        a dry run), copy step by step until one fails, then say what was not restored and
        which files already in the target differ from the backup and were left alone. A
        restore by meaning or of a whole Immich reads the database dump first."""
        if request.from_versions and request.moment is None:
            raise UsageProblem("--from-versions goes with --as-of TIME: the moment to read")
        # --from-versions: the storage's own object versions at the moment (#17), for when the
        # archive itself was tampered with; the plan is the usual --as-of over that view.
        version_at = request.moment if request.from_versions else None
        opened = await self.destinations.open(request.destination, version_at=version_at)
        destination, remote = opened.destination, opened.remote
        request = _resolved(request)
        if request.immich or request.selection is not None:
            return await self._run_with_dump(destination.id, destination.name, remote, request)
        steps = await self.plan(remote, request)
        return await self._execute(destination.id, destination.name, remote, request, steps)

    async def _execute(
        self,
        destination_id: int,
        destination: str,
        remote: CryptRemote,
        request: RestoreRequest,
        steps: list[CopyStep],
        before: Callable[[_Totals], None] | None = None,
    ) -> RestoreResult:
        """Run the planned `steps` of `request` as one tracked restore job (`before`, when
        given, runs once the target exists, before the copies, and may count into the
        totals)."""
        target = request.target
        job: RestoreJob | None = None
        totals = _Totals()
        if not request.dry_run:
            _create_target(target)
            job = await self._start_job(destination_id, request)
            if before is not None:
                before(totals)
        label = _label(request)
        # "label": what the progress lines call it (a backup job is "<folder>/").
        job_view = {"id": job.id if job else 0, "folder": label, "label": label}
        self.sink(RunEvent(EventKind.JOB_STARTED, destination, job_view))
        skipped: list[str] = []
        error = await self._copy_steps(remote, steps, request, totals, job, destination, skipped)
        if job is not None:
            job = await self._finish_job(job, totals, error)
        self._report_finished(destination, job_view, totals, error, skipped)
        differ_count, differ = 0, list[str]()
        # `--immich` starts from an empty folder unless --overwrite: nothing can differ
        if error is None and not request.overwrite and not request.immich:
            differ_count, differ = await self._differing(remote, steps)
            if differ_count:
                self._say(destination, differ_note(differ_count, differ, str(target)))
        return RestoreResult(
            job,
            totals.files,
            totals.bytes,
            error,
            skipped,
            differ_count,
            differ,
        )

    def _say(self, destination: str, text: str) -> None:
        self.sink(RunEvent(EventKind.MESSAGE, destination, {"text": text}))

    async def _run_with_dump(
        self, destination_id: int, destination: str, remote: CryptRemote, request: RestoreRequest
    ) -> RestoreResult:
        """A restore that reads the database dump first: by meaning, or `--immich`."""
        target = request.target
        if request.immich and not request.overwrite and not dump_restore.target_is_empty(target):
            raise UsageProblem(
                f"{display_path(str(target))} is not empty: restore --immich builds a fresh "
                "UPLOAD_LOCATION; choose an empty folder, or add --overwrite (also to resume "
                "an interrupted restore there)"
            )
        history = None
        if request.mode == "as-of":
            assert request.moment is not None
            history = await _backup_history(remote, "", request.moment)
            dumps = dump_restore.dumps_at(
                as_of(history.archived, history.live, DUMPS_FOLDER, request.moment, history.moves)
            )
        else:
            dumps = await dump_restore.live_dumps(remote)
        dump = dump_restore.choose_dump(dumps, remote.label, request.moment)
        with dump_restore.private_folder(self.settings.data_dir) as folder:
            self._say(destination, f"reading the database dump {dump.name}")
            local = await dump_restore.fetch_dump(remote, dump, folder)
            if request.immich:
                return await self._restore_immich(
                    destination_id, destination, remote, request, dump.name, local, history
                )
            assert request.selection is not None
            selected = await asyncio.to_thread(
                dump_restore.select_from_dump, local, dump.name, request.selection
            )
        paths = tuple(p for p in selected.paths if under(p, request.path))
        if not paths:
            raise RunRefused(
                f"nothing to restore: no file in the database dump {dump.name} matches "
                f"{request.selection.describe()}"
                + (f" under {display_path(request.path)}" if request.path else "")
                + _left_out(selected.trashed, selected.outside)
            )
        if history is not None:
            assert request.moment is not None
            wanted = set(paths)
            steps = _steps_of(
                _restricted(
                    as_of(history.archived, history.live, "", request.moment, history.moves),
                    wanted.__contains__,
                ),
                target,
            )
        else:
            steps = [CopyStep(crypt_path(), target, paths)]
        result = await self._execute(destination_id, destination, remote, request, steps)
        missing = [] if request.dry_run else dump_restore.not_restored(paths, target)
        result.selection = _selection_view(request, dump.name, selected, paths, missing)
        return result

    async def _restore_immich(
        self,
        destination_id: int,
        destination: str,
        remote: CryptRemote,
        request: RestoreRequest,
        name: str,
        local: Path,
        history: _BackupHistory | None,
    ) -> RestoreResult:
        """`--immich`: the dump (checked whole first), Immich's folders, the markers, then
        the check of the restored tree and the next steps."""
        end = await asyncio.to_thread(dump_restore.check_dump, local, name)
        target = request.target
        if history is not None:
            assert request.moment is not None
            steps = _steps_of(
                _restricted(
                    as_of(history.archived, history.live, "", request.moment, history.moves),
                    lambda path: path.partition("/")[0] in RESTORED_FOLDERS,
                ),
                target,
            )
        else:
            present = await remote.list_root()
            steps = [
                CopyStep(crypt_path(folder), target / folder)
                for folder in RESTORED_FOLDERS
                if present.get(folder)
            ]

        def place(totals: _Totals) -> None:
            totals.bytes += dump_restore.place_dump(local, target, request.overwrite)
            totals.files += 1

        result = await self._execute(destination_id, destination, remote, request, steps, place)
        facts = dump_facts(name, end.dump_format, end.immich_version)
        view: dict[str, Any] = {
            "dump": name,
            "dump_format": facts.dump_format,
            "immich_version": facts.immich_version,
            "markers": [],
            "check": None,
            "next_steps": [],
        }
        result.immich_restore = view
        if request.dry_run or result.error is not None:
            return result
        view["markers"] = await asyncio.to_thread(dump_restore.write_markers, target)
        restored_dump = target / DUMPS_FOLDER / name
        check, _ = await asyncio.to_thread(dump_restore.check_tree, restored_dump, target)
        view["check"] = {**check.as_dict(), "summary": check.summary()}
        view["next_steps"] = next_steps(facts, str(target), check)
        return result

    async def _start_job(self, destination_id: int, request: RestoreRequest) -> RestoreJob:
        """The restore job of `request`, marked running: the interrupted one it resumes, else
        a new one."""
        moment = request.moment.isoformat() if request.moment else None
        # the DB keeps text: a path that is not UTF-8 is recorded as shown (\xNN)
        shown_target = display_path(str(request.target))
        plain = request.selection is None and not request.immich
        shown_path = display_path(request.path) if plain else _label(request)
        job = await self.store.resumable_restore(
            destination_id, shown_path, shown_target, request.mode, moment
        )
        if job is None:
            job = await self.store.create_restore(
                destination_id,
                shown_path,
                shown_target,
                request.mode,
                moment,
                request.overwrite,
            )
        return await self.store.set_restore_status(job.id, JobStatus.RUNNING)

    async def _copy_steps(
        self,
        remote: CryptRemote,
        steps: list[CopyStep],
        request: RestoreRequest,
        totals: _Totals,
        job: RestoreJob | None,
        destination: str,
        skipped: list[str],
    ) -> str | None:
        """Run the copies in order; the first one's error stops the rest and is returned. A
        cancelled restore marks its job interrupted ("stopped") before the cancellation goes
        on."""
        error: str | None = None
        try:
            for step in steps:
                error = await self._copy(remote, step, request, totals, job, destination, skipped)
                if error:
                    break
                if step.renames and not request.dry_run:
                    await asyncio.to_thread(place_staged, step, request.overwrite)
        except asyncio.CancelledError:
            if job is not None:
                await asyncio.shield(
                    self.store.set_restore_status(job.id, JobStatus.INTERRUPTED, "stopped")
                )
            raise
        return error

    async def _finish_job(self, job: RestoreJob, totals: _Totals, error: str | None) -> RestoreJob:
        """Record the job's final counts, then its end: failed with `error`, else completed."""
        await self.store.update_restore(
            job.id,
            bytes_transferred=totals.bytes,
            files_transferred=totals.files,
            bytes_total=max(totals.bytes_total, totals.bytes),
            files_total=max(totals.files_total, totals.files),
        )
        return await self.store.set_restore_status(
            job.id, JobStatus.FAILED if error else JobStatus.COMPLETED, error
        )

    def _report_finished(
        self,
        destination: str,
        job_view: dict[str, Any],
        totals: _Totals,
        error: str | None,
        skipped: list[str],
    ) -> None:
        """Tell the sink the job finished (with its counts and error), then one message per
        file rclone skipped as a duplicate name."""
        self.sink(
            RunEvent(
                EventKind.JOB_FINISHED,
                destination,
                {
                    **job_view,
                    "status": (JobStatus.FAILED if error else JobStatus.COMPLETED).value,
                    "files_transferred": totals.files,
                    "bytes_transferred": totals.bytes,
                    "bytes_total": max(totals.bytes, totals.bytes_total),
                    "error_message": error,
                },
            )
        )
        for path in skipped:
            self.sink(
                RunEvent(
                    EventKind.MESSAGE,
                    destination,
                    {
                        "text": f"NOT restored: {display_path(path)} — rclone ignored it as a "
                        "duplicate of another name in its folder",
                    },
                )
            )

    async def _differing(self, remote: CryptRemote, steps: list[CopyStep]) -> tuple[int, list[str]]:
        """Files in the target that differ from the backup (size or time), which a restore
        without --overwrite leaves as they are: a dry run of the same copy with --overwrite
        lists what it would still write, and of those, the ones already in the target."""
        count, first = 0, list[str]()
        for step in steps:
            if step.renames:
                continue  # placed file by file, an existing file kept: counted below
            with tempfile.TemporaryDirectory(prefix="photos-sync-restore-") as tmp:
                files_from = _files_from(step, Path(tmp))
                argv = copy_argv(
                    remote.binary,
                    step.source,
                    str(step.target),
                    stats_interval=3600,
                    overwrite=True,
                    files_from=files_from,
                    excludes=step.excludes,
                    dry_run=True,
                )
                would_write: list[str] = []

                def on_line(line: str, would_write: list[str] = would_write) -> None:
                    event = parse_line(line)
                    if (
                        isinstance(event, OtherLine)
                        and event.object is not None
                        and event.message.startswith("Skipped copy as --dry-run")
                    ):
                        would_write.append(event.object)

                process = execute.StreamingProcess(
                    argv, remote.child_env(), on_line, grace=self.grace
                )
                await process.start()
                await process.wait()
            for path in would_write:
                if (step.target / path).exists():
                    count += 1
                    if len(first) < DIFFER_NAMED:
                        first.append(str(Path(step.target, path)))
        return count, first

    async def _copy(
        self,
        remote: CryptRemote,
        step: CopyStep,
        request: RestoreRequest,
        totals: _Totals,
        job: RestoreJob | None,
        destination: str,
        skipped: list[str],
    ) -> str | None:
        """Run one copy (counting into `totals`, adding the names rclone skipped to
        `skipped`, telling the sink its progress), record the job's counts after it, and
        return its error: the last error rclone logged, or its exit status; None on success."""
        with tempfile.TemporaryDirectory(prefix="photos-sync-restore-") as tmp:
            files_from = _files_from(step, Path(tmp))
            argv = copy_argv(
                remote.binary,
                step.source,
                str(step.target),
                stats_interval=self.live_interval or 1.0,
                overwrite=request.overwrite,
                files_from=files_from,
                excludes=step.excludes,
                dry_run=request.dry_run,
                bwlimit=self.settings.bwlimit,
            )
            label = _label(request)
            output = _CopyOutput(
                step,
                totals,
                remote.secrets,
                dry_run=request.dry_run,
                skipped=skipped,
                progress=lambda stats: self._progress(destination, job, label, totals, stats),
            )
            process = execute.StreamingProcess(
                argv, remote.child_env(), output.on_line, grace=self.grace
            )
            await process.start()
            code = await process.wait()
            if job is not None:
                await self.store.update_restore(
                    job.id, bytes_transferred=totals.bytes, files_transferred=totals.files
                )
            if classify_exit(code) is Outcome.SUCCESS:
                return None
            errors = output.errors
            return errors[-1] if errors else f"rclone copy exited with status {code}"

    def _progress(
        self,
        destination: str,
        job: RestoreJob | None,
        label: str,
        totals: _Totals,
        stats: StatsLine | None,
    ) -> None:
        """Tell the sink how far the restore is (speed and ETA from rclone's `stats`, when
        the count changed because of them)."""
        self.sink(
            RunEvent(
                EventKind.JOB_PROGRESS,
                destination,
                {
                    "job_id": job.id if job else 0,
                    "folder": label,
                    "label": label,
                    "bytes_done": totals.bytes,
                    "bytes_total": max(totals.bytes_total, totals.bytes),
                    "files_done": totals.files,
                    "files_total": max(totals.files_total, totals.files),
                    "speed": stats.progress.speed if stats is not None else 0.0,
                    "eta": stats.progress.eta if stats is not None else None,
                },
            )
        )


class _CopyOutput:
    """Reads one restore copy's rclone log, line by line: counts copied files into `totals`
    (in a dry run, what rclone's stats say it would copy), raises the expected totals from
    the stats, keeps the errors (secrets redacted) and adds each name rclone skipped as a
    duplicate to `skipped` (as a path below the backup's root). After each change of the
    counts, calls `progress` with the stats line that caused it (None for a copied file)."""

    def __init__(
        self,
        step: CopyStep,
        totals: _Totals,
        secrets: tuple[str, ...],
        *,
        dry_run: bool,
        skipped: list[str],
        progress: Callable[[StatsLine | None], None],
    ) -> None:
        self.step = step
        self.totals = totals
        self.secrets = secrets
        self.dry_run = dry_run
        self.skipped = skipped
        self.progress = progress
        self.errors: list[str] = []
        # what the steps before this one counted: rclone's stats count this copy only
        self.base_bytes, self.base_files = totals.bytes, totals.files

    def on_line(self, line: str) -> None:
        event = parse_line(line)
        totals = self.totals
        if isinstance(event, FileCopied):
            totals.bytes += event.size
            totals.files += 1
            self.progress(None)
        elif isinstance(event, StatsLine):
            totals.bytes_total = max(
                totals.bytes_total, self.base_bytes + event.progress.total_bytes
            )
            totals.files_total = max(
                totals.files_total, self.base_files + event.progress.total_transfers
            )
            if self.dry_run:
                totals.bytes = self.base_bytes + event.progress.total_bytes
                totals.files = self.base_files + event.progress.total_transfers
            self.progress(event)
        elif isinstance(event, ErrorLine):
            self.errors.append(redact(event.message, self.secrets))
        elif isinstance(event, SkippedName):
            base = _below_root(self.step.source) if self.step.files is None else ""
            self.skipped.append(f"{base}/{event.path}" if base else event.path)


def _size(raw: object) -> int:
    return raw if isinstance(raw, int) else 0


def _below_root(source: str) -> str:
    """The plain path of a copy's source below the backup's root ("" for the root)."""
    return source.partition(":")[2].strip("/")


@dataclass
class _Totals:
    bytes: int = 0
    files: int = 0
    bytes_total: int = 0
    files_total: int = 0


async def archive_listing(
    destinations: DestinationContext, name: str | None, path: str
) -> list[dict[str, Any]]:
    """What the archive holds under `path`: [{path, run, archived_at, size}], newest first."""
    remote = (await destinations.open(name)).remote
    prefix = normalise_path(path)
    rows = []
    for item in _wanted(parse_archive_listing(await list_archive(remote)), prefix):
        when = parse_stamp(item.stamp)
        rows.append(
            {
                "path": display_path(item.path),
                "utf8": is_utf8(item.path),
                "run": item.stamp,
                "archived_at": when.isoformat() if when else None,
                "size": item.size,
            }
        )
    rows.sort(key=lambda r: (r["path"], r["run"]), reverse=False)
    return rows
