"""The backup runner: plans a run, then drives one `rclone sync` per Immich folder.

The same runner serves the foreground CLI and the daemon. It talks to the outside world via
the store (job state), photos_sync.system.execute (rclone) and a ProgressSink (whoever is watching).

Contract of `Runner.run`:
- refuses (RunRefused) before touching the destination when the source looks unmounted (an
  Immich folder without its marker, a BACKUP_EXTRA_PATHS folder missing, a folder emptied at
  the source but not in the backup), the destination is unreachable, or another process is
  running a backup to the same destination;
- otherwise resumes the latest run's unfinished jobs, or creates one PENDING job per folder,
  and runs them one after another in priority order;
- writes progress at most once per stats tick per job, retries retryable failures with
  exponential backoff up to BACKUP_MAX_RETRIES, and leaves every job COMPLETED, FAILED or
  (when cancelled) INTERRUPTED — never RUNNING.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from photos_sync.core.append_only import is_append_only, kept_run_message, refused_delete
from photos_sync.core.archive import expired_stamps, parse_stamp
from photos_sync.core.config import Settings
from photos_sync.core.destinations import (
    DestinationError,
    destination_type,
)
from photos_sync.core.events import (
    DryRunFolder,
    EventKind,
    ProgressSink,
    RunEvent,
    RunRefused,
    RunRequest,
    RunResult,
)
from photos_sync.core.extra_paths import EXTRA_FOLDER, Coverage, ExtraPath
from photos_sync.core.guards import (
    FolderPreview,
    PreviewCollector,
    max_change_refusal,
    max_delete_refusal,
)
from photos_sync.core.manifest import FolderChanges, Reconcile
from photos_sync.core.names import (
    DISK_NAME_LIMIT,
    NameCheck,
    NameHazard,
    NameProblem,
    display_path,
    summary_note,
    with_skipped,
)
from photos_sync.core.people_thumbnails import overlay
from photos_sync.core.planning import (
    IMMICH_MARKER,
    PEOPLE_THUMBNAILS,
    FolderFacts,
    ImmichFolder,
    JobView,
    RunPlan,
    SourceRefused,
    check_extra_sources,
    check_not_emptied,
    check_sources,
    folder_source,
    is_people_thumbnails,
    plan_run,
    run_folders,
    selected_folders,
)
from photos_sync.core.rclone_args import (
    ARCHIVE_FOLDER,
    DESTINATION_MARKER,
    RcServer,
    SyncOptions,
    archive_path,
    crypt_path,
    listed_copy_argv,
    sync_argv,
    upload_argv,
)
from photos_sync.core.rclone_log import (
    DESTINATION_GONE,
    ErrorLine,
    FileCopied,
    Outcome,
    Progress,
    SkippedName,
    StatsLine,
    activity_marker,
    classify_exit,
    classify_failure,
    copied_file,
    ends_the_run,
    explain_failure,
    is_credentials_error,
    is_quiet_info,
    parse_line,
)
from photos_sync.core.records import Destination, Job, utcnow
from photos_sync.core.redact import redact
from photos_sync.core.skips import (
    ADVICE,
    KEPT_BY_NAME,
    SkipLog,
    SkipReason,
    classify,
    is_consequence,
    summary,
)
from photos_sync.core.states import JobStatus, Refusal, Staleness, stale_threshold
from photos_sync.core.units import human_bytes, plural
from photos_sync.engine.consistency import (
    ProofScope,
    SharedDumpRead,
    prove_run,
    read_people_and_proof,
)
from photos_sync.engine.destination import DestinationContext
from photos_sync.engine.incremental import ManifestRun
from photos_sync.engine.people_thumbnails import (
    PeopleThumbnails,
    find_people_thumbnails,
    newest_dump,
)
from photos_sync.rclone import rc as rclone_rc
from photos_sync.rclone.remote import CryptRemote
from photos_sync.storage.datadir import write_private
from photos_sync.storage.store import Store
from photos_sync.system import execute, procinfo
from photos_sync.system.logs import get_logger
from photos_sync.system.source_names import scan_names
from photos_sync.system.source_scan import find_symlink_loops

log = get_logger("photos_sync.engine.runner")

#: Longest pause between two attempts of a failing job.
MAX_BACKOFF = 900.0
#: Exit status recorded for an rclone stopped by the stall watchdog: rclone's own "temporary
#: error" (retryable), since the storage may well come back.
STALLED_EXIT = 5
#: Exit status recorded when the destination vanished: rclone's "fatal error" (no retry helps
#: until the disk is back; the next run resumes).
DESTINATION_GONE_EXIT = 7


def _signal_name(returncode: int) -> str:
    number = -returncode if returncode < 0 else returncode - 128
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _ignore(event: RunEvent) -> None:
    return None


# -- helpers ---------------------------------------------------------------------------------


def _run_stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _next_run_id(latest: str | None, now: datetime) -> str:
    """A new run's id: its start time to the second, later than the latest run's.

    Two runs started within one second (a quick rerun) must not share an id: jobs are
    grouped by it, and so is the archive folder `.deleted/<run id>/`.
    """
    candidate = now.replace(microsecond=0)
    previous = parse_stamp(latest) if latest else None
    if previous is not None and candidate <= previous:
        candidate = previous + timedelta(seconds=1)
    return _run_stamp(candidate)


def _has_files(folder: Path) -> bool:
    """True if `folder` holds any file besides Immich's marker, at any depth (stops early)."""
    stack = [folder]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
                    elif entry.name != IMMICH_MARKER:
                        return True
        except OSError:
            continue
    return False


def gather_facts(immich_path: Path, folders: tuple[ImmichFolder, ...]) -> dict[str, FolderFacts]:
    facts = {}
    for folder in folders:
        path = immich_path / folder.name
        exists = path.is_dir()
        facts[folder.name] = FolderFacts(
            name=folder.name,
            exists=exists,
            has_marker=exists and (path / IMMICH_MARKER).exists(),
            has_files=exists and _has_files(path),
        )
    return facts


def gather_extra_facts(extras: Sequence[ExtraPath]) -> dict[str, FolderFacts]:
    """The facts of the BACKUP_EXTRA_PATHS folders, by their job's folder (no marker there)."""
    facts = {}
    for extra in extras:
        path = Path(extra.host)
        exists = path.is_dir()
        facts[extra.folder] = FolderFacts(extra.folder, exists, False, exists and _has_files(path))
    return facts


class DestinationPresence:
    """Is the destination still the one this run checked at its start?

    At the start the run found the destination marker (encrypted with this destination's
    keys), so it was the right disk or bucket. A NAS or USB disk can still be unmounted
    while the run goes on (`umount -l`): rclone then writes into the empty mount point on
    the root file system and reports success. So the marker is looked for again after each
    folder, and for a local destination the file system (device id) of its folder is
    watched during every sync as well.
    """

    #: Seconds between two looks at a local destination's device id during a sync.
    WATCH_INTERVAL = 1.0

    def __init__(
        self,
        destination: Destination,
        remote: CryptRemote,
        device: int | None,
        marker_present: Callable[[], Awaitable[bool]] | None = None,
    ):
        self.destination = destination
        self.remote = remote
        self.device = device
        #: how to look for the marker; an incremental run reads the manifest's head by name
        #: instead of listing the destination's root
        self.marker_present = marker_present or remote.has_marker
        #: In an incremental run the marker is looked for only when something was written
        #: since it was last seen: only then can a vanished disk have swallowed files, and
        #: a folder with nothing to do is not worth a request. A full sync always looks.
        self.only_after_writes = False
        self.written = True

    def wrote(self) -> None:
        self.written = True

    @classmethod
    def take(
        cls,
        destination: Destination,
        remote: CryptRemote,
        marker_present: Callable[[], Awaitable[bool]] | None = None,
    ) -> DestinationPresence:
        """Record the device id of a local destination's folder, as the run sees it now."""
        device = None
        if destination.type == "local":
            with contextlib.suppress(OSError):
                device = os.stat(destination.remote_path or "").st_dev
        return cls(destination, remote, device, marker_present)

    def _moved(self) -> str | None:
        if self.device is None:
            return None
        path = self.destination.remote_path or ""
        try:
            device = os.stat(path).st_dev
        except OSError:
            return f"{DESTINATION_GONE}: {path} is no longer there (disk unmounted?)"
        if device != self.device:
            return (
                f"{DESTINATION_GONE}: {path} is no longer on the file system it was on when "
                "the run began (disk unmounted?); files written after that are not in the "
                "backup and may lie on the empty mount point: mount the disk and run again"
            )
        return None

    def _stored_marker(self) -> str | None:
        """A local destination's marker file as it lies on the disk (its encrypted name,
        learned from the first listing of the backup's root): looking at it needs no rclone
        start, and a disk that went away takes it along just the same."""
        if self.device is None:
            return None
        stored = self.remote.stored_root_names.get(DESTINATION_MARKER)
        if not stored:
            return None
        return os.path.join(self.destination.remote_path or "", stored)

    async def problem(self) -> str | None:
        """None while the destination is there; else a one-line explanation."""
        moved = self._moved()
        if moved is not None:
            return moved
        if self.only_after_writes:
            if not self.written:
                return None
            self.written = False
        stored = self._stored_marker()
        try:
            present = os.path.isfile(stored) if stored else await self.marker_present()
        except DestinationError as exc:
            return f"{DESTINATION_GONE}: {exc}"
        if not present:
            return (
                f"{DESTINATION_GONE}: the photos-sync marker is no longer at "
                f"{destination_type(self.destination.type).describe(self.destination)} "
                "(unmounted, or the bucket was emptied); check it and run again"
            )
        return None

    async def watch(self, process: execute.StreamingProcess, tracker: _JobTracker) -> None:
        """Stop rclone as soon as a local destination's folder changes file system."""
        if self.device is None:
            return
        while True:
            await asyncio.sleep(self.WATCH_INTERVAL)
            moved = self._moved()
            if moved is not None:
                tracker.vanished = moved
                log.error("destination_gone", folder=tracker.folder, problem=moved)
                await process.terminate()
                return


class _JobTracker:
    """Follows rclone's log lines for one attempt and keeps the latest figures in memory."""

    def __init__(self, job: Job, secrets: tuple[str, ...], on_change: Callable[[], None]) -> None:
        self.folder = job.folder
        self.base_bytes = job.bytes_confirmed
        self.base_files = job.files_transferred
        self.confirmed_bytes = job.bytes_confirmed
        self.confirmed_files = job.files_transferred
        self.progress = Progress()
        self.last_error: str | None = None
        #: The first error that says the storage refused our credentials (later lines such as
        #: "not deleting files as there were IO errors" must not hide it).
        self.auth_error: str | None = None
        #: When rclone last got something done (monotonic), for the stall watchdog.
        self.active_at = time.monotonic()
        self.stalled = False
        #: Set (to the message) when the destination went away during the sync.
        self.vanished: str | None = None
        #: The largest total rclone announced in this attempt: its last stats after a failed
        #: transfer drop that file from the total, which would show a failed job as 100 %.
        self.peak_total_bytes = 0
        self.peak_total_files = 0
        #: Files rclone went past (unreadable, symlinks, names too long): named, not retried.
        self.skips = SkipLog(job.folder)
        #: Error lines that are neither a skip nor a consequence of one: only when there are
        #: none does a failing exit status mean "completed, with skips".
        self.other_errors = 0
        self._marker = activity_marker(Progress())
        self._secrets = secrets
        self._on_change = on_change
        #: source paths (relative to the folder) rclone said it ignored, and if each is a folder
        self.skipped: dict[str, bool] = {}

    def _note_error(self, message: str) -> None:
        self.last_error = redact(message, self._secrets)
        if self.auth_error is None and is_credentials_error(self.last_error):
            self.auth_error = self.last_error

    def on_line(self, line: str) -> None:
        """Take in one stderr line of rclone. The lines of nearly every file (one "Copied"
        INFO line each) and the other INFO lines are recognised without a JSON parse; they
        must cost next to nothing, as a tree holds hundreds of thousands of files (#15)."""
        copied = copied_file(line)
        if copied is not None:
            self._count_copied(copied)
            return
        if is_quiet_info(line):
            return
        event = parse_line(line)
        if isinstance(event, StatsLine):
            self.progress = event.progress
            self.peak_total_bytes = max(self.peak_total_bytes, event.progress.total_bytes)
            self.peak_total_files = max(self.peak_total_files, event.progress.total_transfers)
            marker = activity_marker(event.progress)
            if marker != self._marker:
                self._marker = marker
                self.active_at = time.monotonic()
            if event.progress.last_error:
                self._note_error(event.progress.last_error)
        elif isinstance(event, FileCopied):
            self._count_copied(event)
            return
        elif isinstance(event, ErrorLine):
            reason = classify(event.level, event.message, event.object)
            if reason is not None and event.object is not None:
                self.skip(event.object, reason)
            elif not is_consequence(event.message):
                self.other_errors += 1
            self._note_error(event.message)
            log.warning("rclone_error", message=self.last_error)
            return
        elif isinstance(event, SkippedName):
            self.skipped[event.path] = event.is_directory
        elif event.object is not None and event.level == "notice":
            reason = classify(event.level, event.message, event.object)
            if reason is not None:
                self.skip(event.object, reason)
            return
        else:
            return
        self._on_change()

    def _count_copied(self, copied: FileCopied) -> None:
        """Count a file rclone sent. Counted only: watchers hear about it with the next stats
        tick (one progress event per file cost ~70 µs each on 100,000-file trees)."""
        self.confirmed_bytes += copied.size
        self.confirmed_files += 1
        self.active_at = time.monotonic()

    def skip(self, path: str, reason: SkipReason) -> None:
        if self.skips.add(path, reason):
            log.warning("file_skipped", path=f"{self.folder}/{path}", reason=str(reason))

    @property
    def only_skips(self) -> bool:
        """True when every error of this attempt was a file skipped at the source."""
        return self.skips.count > 0 and self.other_errors == 0

    def fields(self) -> dict[str, Any]:
        p = self.progress
        return {
            "files_skipped": self.skips.count,
            "skipped_detail": self.skips.detail_json(),
            "bytes_transferred": max(self.base_bytes + p.bytes, self.confirmed_bytes),
            "bytes_total": max(self.base_bytes + self.peak_total_bytes, self.confirmed_bytes),
            "bytes_confirmed": self.confirmed_bytes,
            "files_transferred": self.confirmed_files,
            "files_total": max(self.base_files + self.peak_total_files, self.confirmed_files),
            "files_archived": p.deletes + p.renames,
            "transfer_speed": p.speed,
            "eta_seconds": p.eta,
        }


# -- the runner ------------------------------------------------------------------------------


class Runner:
    """Runs backups for the destinations in `store`. One instance per process is enough."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        sink: ProgressSink = _ignore,
        live_interval: float | None = None,
        grace: float = execute.DEFAULT_GRACE,
    ) -> None:
        self.settings = settings
        self.store = store
        #: resolves, opens, locks and checks the destinations of this runner's runs
        self.destinations = DestinationContext(settings, store)
        self.sink = sink
        self.live_interval = live_interval
        self.grace = grace
        self._archive_present = True
        #: pid of the rclone process working right now, if any (for status and tests).
        self.rclone_pid: int | None = None
        #: When set (by the daemon), syncs serve rclone's remote control API there, so their
        #: bandwidth limit can be changed while they run.
        self.rc: RcServer | None = None
        #: job id -> what rclone skipped in its attempts (read by the run once the job ends)
        self._skipped: dict[int, dict[str, bool]] = {}
        #: the manifest of the run in progress (#15)
        self._manifest: ManifestRun | None = None
        #: job id -> paths (relative to its folder) its attempts left out of the backup
        self._left_out: dict[int, set[str]] = {}
        #: which guard refused the job being checked
        self._refused_by = Refusal.MAX_DELETE
        #: job id -> paths its incremental attempt moved into the archive
        self._archived: dict[int, list[bytes]] = {}
        #: the people thumbnails read for a job (its id): its staging and retries reuse them
        self._people: tuple[int, PeopleThumbnails] | None = None
        #: the people thumbnails' read of the dump, which also did the proof's pass over it
        self._shared_read: SharedDumpRead | None = None
        #: the result of the real run in progress (what the proof's scope is taken from)
        self._result: RunResult | None = None

    # the run

    async def run(self, request: RunRequest) -> RunResult:
        destination = await self.destinations.resolve(request.destination)
        immich_path = self.settings.require_immich_path()
        if not immich_path.is_dir():
            raise RunRefused(
                f"BACKUP_IMMICH_PATH={immich_path} does not exist or is not a folder: is the "
                "Immich volume mounted?"
            )
        folders = selected_folders(self.settings.include_generated)
        facts = gather_facts(immich_path, folders)
        try:
            check_sources(str(immich_path), facts, folders)
        except SourceRefused as exc:
            raise RunRefused(str(exc)) from None
        folders, facts = self._with_other_folders(immich_path, folders, facts)

        with self.destinations.lock(destination) as locked:
            if not locked or await self.store.active_job(destination.id):
                await self._take_over_running_jobs(destination, locked, request.force)
            remote = await self.destinations.open_remote(destination)
            manifest = await ManifestRun.open(
                self.settings, destination, remote, full=request.full, now=utcnow()
            )
            try:
                return await self._checked_run(
                    destination, remote, manifest, immich_path, folders, facts, request
                )
            finally:
                self._manifest = None
                await manifest.close()

    async def _checked_run(
        self,
        destination: Destination,
        remote: CryptRemote,
        manifest: ManifestRun,
        immich_path: Path,
        folders: tuple[ImmichFolder, ...],
        facts: Mapping[str, FolderFacts],
        request: RunRequest,
    ) -> RunResult:
        """Check the destination and the emptied-source guard, then run (or dry-run).

        A run the manifest lets go incrementally lists nothing: the manifest's head, read by
        name when the manifest was opened, proved the destination is there and is ours (its
        name and content decrypt with this destination's keys), and the manifest tells which
        folders the backup holds. A reconciling run lists the destination's root as before."""
        incremental = manifest.reason is None
        if incremental:
            backed_up = manifest.backed_up_folders()
            self._archive_present = bool(await manifest.archive_runs())
        else:
            backed_up = await self.destinations.check(destination, remote)
            backed_up |= self._extra_folders_in(backed_up)
            # Nothing in the archive before this run means nothing there can have expired:
            # spare the listing (one rclone start, and a list call on cloud storage).
            self._archive_present = ARCHIVE_FOLDER in backed_up
        for folder in folders:
            if not facts[folder.name].has_files and folder.name in backed_up:
                if incremental:
                    in_backup = await manifest.has_files(folder.name)
                else:
                    in_backup = await remote.folder_has_files(folder.name)
                try:
                    check_not_emptied(folder.name, False, in_backup)
                except SourceRefused as exc:
                    if request.force:
                        continue
                    sources = {
                        f.name: found
                        for f in folders
                        if (found := self._source(immich_path, f.name)) is not None
                    }
                    if incremental and await manifest.moved_away(folder.name, sources):
                        # Immich's storage-template migration empties upload/ into library/:
                        # every file it held is found again elsewhere, to be moved, not lost
                        log.info("folder_emptied_by_moves", folder=folder.name)
                        continue
                    raise RunRefused(str(exc)) from None
        self._manifest = manifest
        if request.dry_run:
            result = await self._dry_run(destination, remote, immich_path, folders, manifest)
            result.pruned = await self.prune_archive(destination, remote, dry_run=True)
            return result
        presence = DestinationPresence.take(
            destination, remote, manifest.head_present if incremental else None
        )
        # the head was just read: the destination is there until something is written
        presence.only_after_writes = incremental
        presence.written = not incremental
        return await self._real_run(
            destination, remote, immich_path, folders, request, backed_up, presence
        )

    async def _take_over_running_jobs(
        self, destination: Destination, locked: bool, force: bool
    ) -> None:
        """Settle RUNNING jobs left in the DB before a new run starts.

        If we hold the destination lock, their owner is gone (the kernel released its
        lock): mark them INTERRUPTED. Otherwise another process is running: refuse, unless it
        has been silent past the stale threshold and the user passed --force.
        """
        threshold = stale_threshold(self.settings.stats_interval)
        for job in await self.store.jobs_with_status(JobStatus.RUNNING, destination.id):
            verdict, silence = procinfo.job_staleness(job, threshold)
            if locked or verdict is Staleness.ORPHANED:
                await self.store.mark_interrupted(job.id, "the process running it stopped")
                log.info("job_orphaned", job_id=job.id, folder=job.folder, pid=job.owner_pid)
                continue
            if verdict is Staleness.STALE:
                if not force:
                    raise RunRefused(
                        f"a backup to {destination.name!r} (pid {job.owner_pid} on "
                        f"{job.owner_host}) has not reported for {int(silence)} s and may be "
                        "hung: stop it, or rerun with --force to take over"
                    )
                await self.store.mark_interrupted(job.id, "taken over with --force")
                log.warning("job_taken_over", job_id=job.id, pid=job.owner_pid)
                continue
            raise RunRefused(
                f"a backup to {destination.name!r} is already running (pid {job.owner_pid} on "
                f"{job.owner_host}); see `photos-sync backup --status`"
            )
        if not locked and not force:
            raise RunRefused(
                f"a backup to {destination.name!r} is already starting in another process; "
                "see `photos-sync backup --status`"
            )

    async def prune_archive(
        self, destination: Destination, remote: CryptRemote, *, dry_run: bool
    ) -> list[str]:
        """Remove archive folders older than BACKUP_KEEP_DELETED_DAYS (0 keeps them forever).

        Called after a run in which every job completed, so a failing backup never eats
        into the history it might be needed to restore. Returns the stamps removed (or, for a
        dry run, that would be).
        """
        if self.settings.keep_deleted_days <= 0 or not self._archive_present:
            return []
        manifest = self._manifest
        try:
            if manifest is not None and manifest.reason is None:
                stamps = await manifest.archive_runs()  # an incremental run lists nothing
            else:
                stamps = await remote.list_archive_runs()
                if manifest is not None and not dry_run:
                    await manifest.set_archive_runs(stamps)
        except DestinationError as exc:
            log.warning("archive_listing_failed", error=str(exc))
            return []
        expired = expired_stamps(stamps, self.settings.keep_deleted_days, utcnow())
        kept: list[str] = []
        for stamp in expired:
            verb = "would remove" if dry_run else "removing"
            self.sink(
                RunEvent(
                    EventKind.MESSAGE,
                    destination.name,
                    {
                        "text": f"archive: {verb} files deleted by the run of {stamp} "
                        f"(older than {self.settings.keep_deleted_days} days)",
                    },
                )
            )
            if not dry_run:
                try:
                    await remote.remove_folder(crypt_path(ARCHIVE_FOLDER, stamp))
                except DestinationError as exc:
                    # An append-only destination may refuse deletes by design (#17): the run
                    # folder stays, and the bucket's lifecycle rule expires it.
                    if not (is_append_only(destination) and refused_delete(str(exc))):
                        raise
                    kept.append(stamp)
                    self._say(destination, kept_run_message(stamp))
                    log.warning("archive_run_kept", destination=destination.name, run=stamp)
                    continue
                log.info("archive_pruned", destination=destination.name, run=stamp)
        expired = [s for s in expired if s not in kept]
        if expired and manifest is not None and not dry_run:
            await manifest.set_archive_runs(s for s in stamps if s not in expired)
        return expired

    def _sync_options(self, dry_run: bool, force: bool) -> SyncOptions:
        interval: float = self.settings.stats_interval
        if self.live_interval is not None:
            interval = min(interval, self.live_interval)
        return SyncOptions(
            stats_interval=interval,
            dry_run=dry_run,
            bwlimit=self.settings.bwlimit,
            transfers=self.settings.transfers,
            checkers=self.settings.checkers,
            max_delete=None if force else self.settings.max_delete,
            copy_links=self.settings.follow_symlinks,
            rc_addr=self.rc.addr if self.rc is not None and not dry_run else None,
        )

    async def _preview(
        self,
        remote: CryptRemote,
        source: str,
        folder: str,
        run_id: str,
        options: SyncOptions,
    ) -> FolderPreview:
        """What a sync of `folder` from `source` would send and archive (an rclone dry run
        with the run's own flags): nothing is written to the backup."""
        options = await self._with_loop_guard(options, source)
        argv = sync_argv(
            remote.binary,
            source,
            crypt_path(folder),
            archive_path(run_id, folder),
            # No --max-delete: rclone would stop counting at the limit; the guard wants it all.
            replace(options, dry_run=True, rc_addr=None, max_delete=None),
        )
        collector = PreviewCollector()
        process = execute.StreamingProcess(
            argv, remote.child_env(), collector.on_line, grace=self.grace
        )
        await process.start()
        code = await process.wait()
        preview = collector.preview(0 if classify_exit(code) is Outcome.SUCCESS else code)
        if preview.error:
            preview = replace(preview, error=redact(preview.error, remote.secrets))
        return preview

    async def _dry_run(
        self,
        destination: Destination,
        remote: CryptRemote,
        immich_path: Path,
        folders: tuple[ImmichFolder, ...],
        manifest: ManifestRun,
    ) -> RunResult:
        """What a run would do, folder by folder, nothing written. Folders a real run would
        take incrementally are previewed from the manifest (no rclone, no listing); the
        others by an rclone dry run of their sync."""
        run_id = _run_stamp(utcnow())
        result = RunResult(destination.name, run_id, dry_run=True)
        options = destination_type(destination.type).tune(self._sync_options(True, False))
        log.info("dry_run_started", destination=destination.name, source=str(immich_path))
        await manifest.plan(
            {
                name: walked
                for name in self._walked([f.name for f in folders])
                if (walked := self._source(immich_path, name)) is not None
            },
            _name_limit(destination),
        )
        for folder in folders:
            why = manifest.reconciling.get(folder.name)
            result.folder_modes[folder.name] = "incremental" if why is None else f"full sync: {why}"
        self._note_unwalked([f.name for f in folders], result)
        if manifest.moves:
            result.moved = len(manifest.moves)
            self._say(
                destination,
                f"would move {plural(len(manifest.moves), 'file')} inside the backup (moved or "
                "renamed at the source), sending nothing for them",
            )
        for folder in folders:
            source = str(self._source(immich_path, folder.name))
            hazards = await self._name_hazards(source, folder.name, destination)
            self._tell_names(destination.name, hazards)
            result.file_names += hazards
            changes = manifest.incremental.get(folder.name)
            if changes is not None:
                preview = _preview_of(changes)
            elif self._is_people_thumbnails(folder.name):
                preview = await self._preview_people_thumbnails(
                    destination, remote, immich_path, run_id, options
                )
            else:
                preview = await self._preview(remote, source, folder.name, run_id, options)
            refusal = max_delete_refusal(folder.name, preview, self.settings.max_delete)
            if refusal is None and changes is not None and changes.changed:
                refusal = max_change_refusal(
                    folder.name,
                    len(changes.changed),
                    await asyncio.to_thread(manifest.db.count, folder.name),
                    tuple(os.fsdecode(c.path) for c in changes.changed[:5]),
                    self.settings.max_change,
                )
            entry = DryRunFolder(
                folder.name,
                preview.files_to_send,
                preview.bytes_to_send,
                preview.deletes + preview.replaced,
                explain_failure(preview.exit_code, preview.error) if preview.exit_code else None,
                refusal,
            )
            result.dry_run_folders.append(entry)
            self.sink(
                RunEvent(
                    EventKind.MESSAGE,
                    destination.name,
                    {
                        "text": f"{folder.name}/: would send {plural(entry.files, 'file')} "
                        f"({human_bytes(entry.bytes)}), archive {plural(entry.archived, 'file')}"
                        + (f"; error: {entry.error}" if entry.error else "")
                        + (f"; a real run would be {refusal}" if refusal else ""),
                    },
                )
            )
            log.info(
                "dry_run_folder",
                folder=folder.name,
                files=entry.files,
                bytes=entry.bytes,
                archived=entry.archived,
                error=entry.error,
                refused=refusal,
            )
        return result

    async def _real_run(
        self,
        destination: Destination,
        remote: CryptRemote,
        immich_path: Path,
        folders: tuple[ImmichFolder, ...],
        request: RunRequest,
        backed_up: set[str],
        presence: DestinationPresence,
    ) -> RunResult:
        """The run proper, after every pre-run check passed: resume or plan its jobs, take a
        fresh Immich dump when `backups/` is among them, run the jobs in order, and settle
        the run. Folders already in the backup (`backed_up`) are guarded by
        BACKUP_MAX_DELETE unless `--force`."""
        plan, jobs = await self._jobs_of_this_run(destination, immich_path, folders)
        result = RunResult(destination.name, plan.run_id, dry_run=False, resumed=plan.is_resume)
        self._result = result
        self._announce_run(destination, plan, jobs, immich_path)
        options = destination_type(destination.type).tune(self._sync_options(False, request.force))
        guard_deletions = not request.force and (
            self.settings.max_delete > 0 or self.settings.max_change is not None
        )
        guarded = {j.folder for j in jobs if j.folder in backed_up and guard_deletions}
        # the people thumbnails go through a copy: it archives nothing deleted at the source
        guarded = {f for f in guarded if not self._is_people_thumbnails(f)}
        try:
            if any(j.folder == "backups" for j in jobs):  # Immich: a fresh DB dump first (#9)
                result.immich = await self._fresh_immich_dump(destination, immich_path, request)
            walked = [j for j in jobs if self._is_walked(j.folder)]
            await self._plan_manifest(destination, walked, immich_path, plan.run_id, result)
            self._note_unwalked([j.folder for j in jobs], result)
            if self._manifest is not None and self._manifest.moves:
                presence.wrote()
            await self._run_jobs(
                destination, remote, jobs, plan.run_id, options, presence, guarded, result
            )
        except asyncio.CancelledError:
            # Cancelled anywhere (the dump, the plan, starting rclone, a DB write, a retry's
            # pause): no job of this run may stay RUNNING under a live owner, or the next run
            # would refuse; and none may stay PENDING, which reads as "about to start".
            await asyncio.shield(self._interrupt_own_jobs(destination.id, plan.run_id))
            raise
        return await self._settle_run(destination, remote, plan.run_id, result)

    async def _plan_manifest(
        self,
        destination: Destination,
        jobs: list[Job],
        immich_path: Path,
        run_id: str,
        result: RunResult,
    ) -> None:
        """Decide each folder's way (incremental or full sync), say it, and rename inside
        the destination the files that moved at the source (after the Immich dump: the walk
        must see the dump it takes)."""
        manifest = self._manifest
        if manifest is None:
            return
        await manifest.plan({j.folder: Path(j.source_path) for j in jobs}, _name_limit(destination))
        for job in jobs:
            why = manifest.reconciling.get(job.folder)
            result.folder_modes[job.folder] = "incremental" if why is None else f"full sync: {why}"
        reasons = sorted({r.value for r in manifest.reconciling.values()})
        if reasons:
            folders = ", ".join(f"{f}/" for f in manifest.reconciling)
            self._say(destination, f"full sync of {folders} ({'; '.join(reasons)})")
        result.moved = await manifest.apply_moves(run_id, lambda t: self._say(destination, t))

    def _say(self, destination: Destination, text: str) -> None:
        self.sink(RunEvent(EventKind.MESSAGE, destination.name, {"text": text}))

    async def _jobs_of_this_run(
        self, destination: Destination, immich_path: Path, folders: tuple[ImmichFolder, ...]
    ) -> tuple[RunPlan, list[Job]]:
        """The plan and its jobs: the latest run's unfinished jobs (pointed at the current
        source) when it left work undone, else one new PENDING job per folder."""
        latest = await self.store.latest_run_jobs(destination.id)
        plan = plan_run(
            [
                JobView(j.id, j.run_id, j.folder, j.status, j.retry_count, j.priority, j.refused)
                for j in latest
                # an extra folder taken out of BACKUP_EXTRA_PATHS is not resumed
                if self._source(immich_path, j.folder) is not None
            ],
            folders,
            self.settings.max_retries,
            _next_run_id(latest[0].run_id if latest else None, utcnow()),
        )
        if plan.is_resume:
            jobs = await self._point_at_current_source(
                destination, [j for j in latest if j.id in plan.resume_job_ids], immich_path
            )
        else:
            jobs = await self.store.create_jobs(
                destination.id,
                plan.run_id,
                [
                    (f.name, str(self._source(immich_path, f.name)), f.priority)
                    for f in plan.new_folders
                ],
            )
        return plan, jobs

    def _announce_run(
        self, destination: Destination, plan: RunPlan, jobs: list[Job], immich_path: Path
    ) -> None:
        """Log the run's start and tell the sink (RUN_STARTED with its folders)."""
        log.info(
            "run_started",
            destination=destination.name,
            run_id=plan.run_id,
            resumed=plan.is_resume,
            source=str(immich_path),
            folders=[j.folder for j in jobs],
        )
        self.sink(
            RunEvent(
                EventKind.RUN_STARTED,
                destination.name,
                {
                    "run_id": plan.run_id,
                    "resumed": plan.is_resume,
                    "folders": [j.folder for j in jobs],
                },
            )
        )

    async def _fresh_immich_dump(
        self, destination: Destination, immich_path: Path, request: RunRequest
    ) -> dict[str, Any] | None:
        """Have Immich write a fresh database dump into `backups/` before it is synced (the
        request's own dump step if it brings one); its outcome for the run's result."""
        from photos_sync.immich.server import prepare_dump

        take = request.dump.take if request.dump is not None else prepare_dump
        outcome = await take(
            self.settings,
            destination,
            immich_path / "backups",
            lambda text: self.sink(RunEvent(EventKind.MESSAGE, destination.name, {"text": text})),
        )
        return outcome.as_dict() if outcome is not None else None

    async def _run_jobs(
        self,
        destination: Destination,
        remote: CryptRemote,
        jobs: list[Job],
        run_id: str,
        options: SyncOptions,
        presence: DestinationPresence,
        guarded: set[str],
        result: RunResult,
    ) -> None:
        """Run `jobs` one after another, adding each finished job and its folder's file-name
        problems to `result`. Stops early, marking the jobs not attempted FAILED, when the
        destination vanished between two folders or a failure would end every later folder
        the same way (refused credentials, storage down, disk full)."""
        manifest = self._manifest
        for index, job in enumerate(jobs):
            if (
                manifest is not None
                and not manifest.is_incremental(job.folder)
                and not self._is_people_thumbnails(job.folder)
            ):
                # a folder to reconcile is walked into the manifest's stage before its sync;
                # that one walk checks its file names too
                names = NameCheck(job.folder, _name_limit(destination))
                await manifest.stage(job.folder, Path(job.source_path), names)
            # the walk sees each name's exact bytes (rclone's notices do not), in a thread
            hazards = await self._name_hazards(job.source_path, job.folder, destination)
            gone = await presence.problem() if index else None
            if gone is not None:
                result.jobs += await self._skip_jobs(jobs[index:], gone)
                return
            self._full_sync_for_twins(job.folder, hazards, result)
            finished = await self._run_job(
                destination,
                remote,
                job,
                run_id,
                options,
                presence,
                guard=job.folder in guarded,
            )
            hazards = with_skipped(job.folder, hazards, self._skipped.pop(job.id, {}))
            self._tell_names(destination.name, hazards)
            result.file_names += hazards
            finished = await self._record_lost_names(finished, hazards)
            result.jobs.append(finished)
            if finished.status is JobStatus.FAILED and ends_the_run(finished.error_message):
                # Every other folder would be refused (or time out) the same way: no
                # retry storm, and no hours RUNNING against a storage that is down.
                result.jobs += await self._skip_jobs(jobs[index + 1 :], finished)
                return

    async def _prove_consistency(self, destination: Destination, result: RunResult) -> None:
        """Check the dump the run sent against the manifest (#16) and say how it went."""
        manifest = self._manifest
        immich_path = self.settings.immich_path
        scope = self._proof_scope(result)
        if manifest is None or immich_path is None or scope is None:
            return
        proof = await prove_run(
            manifest.db,
            immich_path,
            scope.covered_folders,
            person_thumbnails=scope.person_thumbnails,
            coverage=scope.coverage,
            shared=self._shared_read,
        )
        self._shared_read = None
        if proof is None:
            return
        result.consistency = proof.as_dict()
        await asyncio.to_thread(manifest.db.set_consistency, json.dumps(result.consistency))
        self._say(destination, proof.line())
        if not proof.ok:
            log.error(
                "consistency_failed", dump=proof.dump, problem=proof.problem, missing=proof.missing
            )

    def _proof_scope(self, result: RunResult) -> ProofScope | None:
        """What the proof of this run counts as backed up: every folder the backup held or
        this run covers (thumbs/ as the people thumbnails only, unless generated folders are
        backed up), and the extra folders."""
        manifest = self._manifest
        if manifest is None:
            return None
        backed_up = manifest.state.folders | set(result.folder_modes)
        people = "thumbs" in backed_up and not self.settings.include_generated
        return ProofScope(
            frozenset(backed_up - ({"thumbs"} if people else set())),
            people,
            Coverage(self.settings.extra_paths, self.settings.external_library_map),
        )

    def _full_sync_for_twins(
        self, folder: str, hazards: list[NameProblem], result: RunResult
    ) -> None:
        """Names that differ only in Unicode normalisation go through a full sync: only a
        sync that lists the folder notices (and names) a twin that rclone drops; an upload
        by name would let one overwrite the other in silence."""
        manifest = self._manifest
        if manifest is None or not manifest.is_incremental(folder):
            return
        if any(h.hazard is NameHazard.UNICODE_TWIN for h in hazards):
            manifest.demote(folder, Reconcile.TWINS)
            result.folder_modes[folder] = f"full sync: {Reconcile.TWINS}"

    async def _settle_run(
        self, destination: Destination, remote: CryptRemote, run_id: str, result: RunResult
    ) -> RunResult:
        """End the run: when every job of it completed, record the backup as complete and
        prune the expired archive; then log and tell the sink (RUN_FINISHED)."""
        all_jobs = await self.store.jobs_of_run(destination.id, run_id)
        if all(j.status is JobStatus.COMPLETED for j in all_jobs):
            await self.store.mark_backup_completed(destination.id, utcnow())
            result.pruned = await self.prune_archive(destination, remote, dry_run=False)
            if self._manifest is not None:
                await self._prove_consistency(destination, result)
                await self._manifest.finish_run(
                    run_id, utcnow(), lambda t: self._say(destination, t)
                )
        log.info("run_finished", destination=destination.name, run_id=run_id, ok=result.ok)
        self.sink(RunEvent(EventKind.RUN_FINISHED, destination.name, result.as_dict()))
        return result

    async def _record_lost_names(self, job: Job, hazards: list[NameProblem]) -> Job:
        """Add the names that were NOT backed up to the job's skipped files, so that
        `--status` names them too (a name rclone also failed on is counted once)."""
        lost = [h for h in hazards if not h.backed_up]
        if not lost:
            return job
        detail = json.loads(job.skipped_detail or "[]")
        known = {d["path"] for d in detail}
        added = 0
        for problem in lost:
            shown = problem.shown().rstrip("/")
            if shown in known:
                continue
            added += 1
            if len(detail) < KEPT_BY_NAME:
                detail.append(
                    {"path": shown, "reason": SkipReason.NAME.value, "advice": problem.detail}
                )
        if not added:
            return job
        await self.store.update_job(
            job.id,
            files_skipped=job.files_skipped + added,
            skipped_detail=json.dumps(detail),
        )
        return replace(
            job, files_skipped=job.files_skipped + added, skipped_detail=json.dumps(detail)
        )

    #: At most this many file-name lines per folder on the console; all go to backup.log and
    #: to the run's result (--json).
    NAMES_SHOWN = 20

    def _tell_names(self, destination: str, problems: list[NameProblem]) -> None:
        for index, problem in enumerate(problems):
            log.warning(
                "file_name",
                kind=problem.hazard.value,
                path=display_path(problem.path),
                backed_up=problem.backed_up,
                detail=problem.detail,
            )
            if index < self.NAMES_SHOWN:
                self.sink(RunEvent(EventKind.MESSAGE, destination, {"text": problem.line()}))
        if len(problems) > self.NAMES_SHOWN:
            more = len(problems) - self.NAMES_SHOWN
            text = f"… and {more} more file names (all of them: backup.log, or --json)"
            self.sink(RunEvent(EventKind.MESSAGE, destination, {"text": text}))

    async def _skip_jobs(self, jobs: list[Job], cause: Job | str) -> list[Job]:
        """Mark jobs not attempted after the storage refused, did not answer, filled up or
        vanished FAILED (their retries untouched, so the next run resumes them)."""
        reason = (
            cause
            if isinstance(cause, str)
            else f"{cause.folder}/ failed first with {cause.error_message}"
        )
        skipped = []
        for job in jobs:
            current = await self.store.get_job(job.id)
            if current is None:
                continue
            if current.status is not JobStatus.FAILED:
                current = await self.store.set_status(
                    job.id, JobStatus.FAILED, error_message=f"not attempted: {reason}"
                )
            skipped.append(current)
        return skipped

    async def _point_at_current_source(
        self, destination: Destination, jobs: list[Job], immich_path: Path
    ) -> list[Job]:
        """Resumed jobs sync the folders of the *current* BACKUP_IMMICH_PATH, the one every
        pre-run check just looked at, never the path stored when the run began."""
        current = []
        for job in jobs:
            source = str(self._source(immich_path, job.folder))
            if job.source_path != source:
                await self.store.set_source_path(job.id, source)
                log.warning("job_source_changed", job_id=job.id, old=job.source_path, new=source)
                self.sink(
                    RunEvent(
                        EventKind.MESSAGE,
                        destination.name,
                        {
                            "text": f"{job.folder}/: resuming from the current source {source} "
                            f"(the interrupted run read {job.source_path})",
                        },
                    )
                )
                job = replace(job, source_path=source)
            current.append(job)
        return current

    async def _interrupt_own_jobs(self, destination_id: int, run_id: str) -> None:
        """After a cancel: mark this process's RUNNING jobs of a destination INTERRUPTED, and
        the jobs of run `run_id` that never started too (the next run resumes both, no retry
        spent)."""
        pid = os.getpid()
        for job in await self.store.jobs_with_status(JobStatus.RUNNING, destination_id):
            if job.owner_pid == pid:
                await self.store.mark_interrupted(job.id, "stopped before it finished")
                log.info("job_interrupted", job_id=job.id, folder=job.folder)
        for job in await self.store.jobs_of_run(destination_id, run_id):
            if job.status is JobStatus.PENDING:
                await self.store.mark_interrupted(job.id, "cancelled before it started")
                log.info("job_interrupted", job_id=job.id, folder=job.folder)

    async def _run_job(
        self,
        destination: Destination,
        remote: CryptRemote,
        job: Job,
        run_id: str,
        options: SyncOptions,
        presence: DestinationPresence,
        *,
        guard: bool,
    ) -> Job:
        """Run one job to an end state: COMPLETED, FAILED, or INTERRUPTED if cancelled.

        With `guard`, each attempt first previews the sync and refuses the job, nothing
        archived, when it would archive more deleted files than BACKUP_MAX_DELETE. A sync
        counts as COMPLETED only if the destination is still there afterwards. A retryable
        failure with retries left is attempted again after an exponential pause.
        """
        manifest = self._manifest
        changes = manifest.incremental.get(job.folder) if manifest is not None else None
        while True:
            job = await self._start_job(destination, job)
            refusal, code, last_error, only_skips = None, 0, None, False
            if guard:
                refusal, code, last_error = await self._check_deletions(
                    remote, job, run_id, options, changes
                )
            if refusal is not None:
                return await self._refuse_job(destination, job, refusal)
            if manifest is not None:
                await manifest.begin([job.folder], run_id)
                if changes is None and not manifest.take_fresh_stage(job.folder):
                    await self._stage(destination, manifest, job)
            if code == 0 and changes is not None:
                code, last_error, only_skips = await self._attempt_incremental(
                    destination, remote, job, run_id, options, presence, changes
                )
            elif code == 0 and self._is_people_thumbnails(job.folder):
                code, last_error, only_skips = await self._attempt_people_thumbnails(
                    destination, remote, job, run_id, options, presence
                )
            elif code == 0:
                code, last_error, only_skips = await self._attempt(
                    destination, remote, job, run_id, options, presence
                )
            code, last_error, outcome = await self._judge_attempt(
                code, last_error, only_skips, presence
            )
            if outcome is Outcome.SUCCESS:
                await self._record_in_manifest(job, run_id, changes)
                job = await self._complete_job(destination, job)
            else:
                job, pause = await self._fail_job(destination, job, code, last_error, outcome)
                if pause is not None:
                    await asyncio.sleep(pause)
                    continue
            return self._finish_job(destination, job)

    async def _start_job(self, destination: Destination, job: Job) -> Job:
        """Mark the job RUNNING, owned by this process, and say so (JOB_STARTED)."""
        job = await self.store.set_status(job.id, JobStatus.RUNNING, owner=procinfo.current_owner())
        self.sink(RunEvent(EventKind.JOB_STARTED, destination.name, job.as_dict()))
        log.info("job_started", job_id=job.id, folder=job.folder, attempt=job.retry_count + 1)
        return job

    async def _refuse_job(self, destination: Destination, job: Job, refusal: str) -> Job:
        """Fail the job refused by the BACKUP_MAX_DELETE guard (no retry: the next run
        previews again) and say so (JOB_FINISHED)."""
        job = await self.store.set_status(
            job.id, JobStatus.FAILED, error_message=refusal, refused=self._refused_by
        )
        log.error("job_refused", job_id=job.id, folder=job.folder, reason=refusal)
        self.sink(RunEvent(EventKind.JOB_FINISHED, destination.name, job.as_dict()))
        return job

    @staticmethod
    async def _judge_attempt(
        code: int, last_error: str | None, only_skips: bool, presence: DestinationPresence
    ) -> tuple[int, str | None, Outcome]:
        """What an attempt's exit status and last error mean: (code, error, outcome).

        Only skips at the source count as success (no retry can fix them); a success with the
        destination gone since is FATAL; rclone killed from outside is retryable."""
        outcome = classify_failure(code, last_error)
        if only_skips and outcome is Outcome.RETRYABLE:
            # Unreadable files, symlinks, names too long: problems at the source that no
            # retry can fix. The rest of the folder was sent; the skips are named.
            outcome = Outcome.SUCCESS
        if outcome is Outcome.SUCCESS:
            gone = await presence.problem()
            if gone is not None:
                return DESTINATION_GONE_EXIT, gone, Outcome.FATAL
        if outcome is Outcome.INTERRUPTED:
            # Our own cancel never gets here (it raises CancelledError): rclone was killed
            # from outside, typically by the kernel's out-of-memory killer. Try again.
            killed = f"rclone was killed by {_signal_name(code)} (out of memory?)"
            return code, killed, Outcome.RETRYABLE
        return code, last_error, outcome

    async def _complete_job(self, destination: Destination, job: Job) -> Job:
        """Mark the job COMPLETED; name the files it skipped, if any, in one message."""
        job = await self.store.mark_completed(job.id)
        if job.files_skipped:
            text = f"{job.folder}/: " + summary(job.files_skipped, job.as_dict()["skipped_detail"])
            log.warning("job_skipped_files", folder=job.folder, count=job.files_skipped)
            self.sink(RunEvent(EventKind.MESSAGE, destination.name, {"text": text}))
        return job

    async def _fail_job(
        self,
        destination: Destination,
        job: Job,
        code: int,
        last_error: str | None,
        outcome: Outcome,
    ) -> tuple[Job, float | None]:
        """Mark the job FAILED with rclone's error explained. When the failure is retryable
        and retries are left, count the retry, announce it and return the pause before the
        next attempt (doubling from BACKUP_RETRY_DELAY, at most MAX_BACKOFF); else None."""
        message = explain_failure(code, last_error)
        retry = outcome is Outcome.RETRYABLE and job.retry_count < self.settings.max_retries
        job = await self.store.set_status(
            job.id, JobStatus.FAILED, error_message=message, increment_retry=retry
        )
        log.error(
            "job_failed",
            job_id=job.id,
            folder=job.folder,
            error=message,
            retry=retry,
            exit_code=code,
        )
        if not retry:
            return job, None
        pause = min(MAX_BACKOFF, self.settings.retry_delay * 2 ** (job.retry_count - 1))
        self.sink(
            RunEvent(
                EventKind.MESSAGE,
                destination.name,
                {
                    "text": f"{job.folder}/ failed ({message}); retry "
                    f"{job.retry_count}/{self.settings.max_retries} in {pause:.0f} s",
                },
            )
        )
        return job, pause

    def _finish_job(self, destination: Destination, job: Job) -> Job:
        """Log the job's end state and tell the sink (JOB_FINISHED)."""
        log.info(
            "job_finished",
            job_id=job.id,
            folder=job.folder,
            status=job.status.value,
            bytes=job.bytes_transferred,
            files=job.files_transferred,
        )
        self.sink(RunEvent(EventKind.JOB_FINISHED, destination.name, job.as_dict()))
        return job

    async def _check_deletions(
        self,
        remote: CryptRemote,
        job: Job,
        run_id: str,
        options: SyncOptions,
        changes: FolderChanges | None = None,
    ) -> tuple[str | None, int, str | None]:
        """Preview the job's sync: (refusal, 0, None) when it would archive more deleted
        files than BACKUP_MAX_DELETE or replace more than BACKUP_MAX_CHANGE; (None, code,
        error) when the preview itself failed (the attempt fails the same way); (None, 0,
        None) when the sync may go on. An incremental folder's `changes` are its preview, and
        so is a periodic reconcile's walk against a trusted manifest (ManifestRun.
        judged_by_stage): no dry run, no listing. Any other full sync is previewed by an
        rclone dry run."""
        judged_by = "manifest"
        manifest = self._manifest
        if changes is None and manifest is not None and not self._is_people_thumbnails(job.folder):
            changes = await manifest.staged_changes(job.folder, Path(job.source_path))
        if changes is not None:
            preview = _preview_of(changes)
        else:
            judged_by = "dry run"
            preview = await self._preview(remote, job.source_path, job.folder, run_id, options)
        if preview.exit_code:
            return None, preview.exit_code, preview.error
        refusal = max_delete_refusal(job.folder, preview, options.max_delete)
        self._refused_by = Refusal.MAX_DELETE
        if refusal is None and self._manifest is not None and preview.replaced:
            existing = await asyncio.to_thread(self._manifest.db.count, job.folder)
            refusal = max_change_refusal(
                job.folder,
                preview.replaced,
                existing,
                preview.replaced_examples,
                self.settings.max_change,
            )
            self._refused_by = Refusal.MAX_CHANGE
        log.info(
            "deletions_checked",
            job_id=job.id,
            folder=job.folder,
            deletes=preview.deletes,
            replaced=preview.replaced,
            refused=refusal is not None,
            judged_by=judged_by,
        )
        return refusal, 0, None

    async def _attempt(
        self,
        destination: Destination,
        remote: CryptRemote,
        job: Job,
        run_id: str,
        options: SyncOptions,
        presence: DestinationPresence,
    ) -> tuple[int, str | None, bool]:
        """One rclone sync of the job's folder; progress flushed once per stats tick.

        Returns rclone's exit status, its last error, and whether every error was a file
        skipped at the source (the rest of the folder went through: no retry can help).

        A local destination whose disk goes away mid-sync (its path moves to another file
        system) stops rclone at once: it would otherwise fill the empty mount point."""
        tracker = _JobTracker(
            job, remote.secrets, lambda: self._emit_progress(destination, job, tracker)
        )
        options = await self._with_loop_guard(
            options,
            job.source_path,
            lambda text: self.sink(
                RunEvent(EventKind.MESSAGE, destination.name, {"text": f"{job.folder}/{text}"})
            ),
        )
        argv = sync_argv(
            remote.binary,
            job.source_path,
            crypt_path(job.folder),
            archive_path(run_id, job.folder),
            options,
        )
        presence.wrote()  # a full sync writes: the marker is looked for again after it
        process = await self._start_sync(remote, job, argv, tracker)
        code = await self._follow_sync(job, process, tracker, presence)
        self._note_skips(job, tracker)
        return self._attempt_verdict(code, tracker)

    def _note_skips(self, job: Job, tracker: _JobTracker) -> None:
        """Keep what the attempt left out: named at the job's end, and kept out of the
        manifest (a file not backed up must be tried again by the next run)."""
        self._skipped.setdefault(job.id, {}).update(tracker.skipped)
        left_out = self._left_out.setdefault(job.id, set())
        left_out.update(tracker.skips.relative_paths())
        left_out.update(tracker.skipped)

    async def _attempt_incremental(
        self,
        destination: Destination,
        remote: CryptRemote,
        job: Job,
        run_id: str,
        options: SyncOptions,
        presence: DestinationPresence,
        changes: FolderChanges,
    ) -> tuple[int, str | None, bool]:
        """One incremental attempt at the job's folder: move its deleted and replaced files
        into this run's archive, then copy exactly its new and changed files (nothing
        listed). Same result as `_attempt`."""
        manifest = self._manifest
        assert manifest is not None
        if changes.to_archive or changes.to_send:
            presence.wrote()
        archived, error = await manifest.archive(job.folder, run_id)
        self._archived[job.id] = archived
        if error is not None:
            return STALLED_EXIT, error, False
        files_from = await manifest.files_from(job.folder, run_id)
        if files_from is None:
            await self.store.update_job(job.id, files_archived=len(archived))
            return 0, None, False
        tracker = _JobTracker(
            job, remote.secrets, lambda: self._emit_progress(destination, job, tracker)
        )
        argv = upload_argv(
            remote.binary, job.source_path, crypt_path(job.folder), str(files_from), options
        )
        process = await self._start_sync(remote, job, argv, tracker)
        try:
            code = await self._follow_sync(job, process, tracker, presence)
        finally:
            files_from.unlink(missing_ok=True)
        self._note_skips(job, tracker)
        await self.store.update_job(job.id, files_archived=len(archived))
        return self._attempt_verdict(code, tracker)

    async def _record_in_manifest(
        self, job: Job, run_id: str, changes: FolderChanges | None
    ) -> None:
        """Write a completed job's work into the manifest, less what it left out."""
        manifest = self._manifest
        if manifest is None:
            return
        left_out = self._left_out.pop(job.id, set())
        if changes is not None:
            await manifest.commit_incremental(
                job.folder, self._archived.pop(job.id, []), left_out, run_id
            )
        else:
            await manifest.commit_reconciled(job.folder, left_out, run_id)

    async def _start_sync(
        self,
        remote: CryptRemote,
        job: Job,
        argv: tuple[str, ...],
        tracker: _JobTracker,
    ) -> execute.StreamingProcess:
        """Start rclone with `argv` (a sync, or an incremental run's upload) for the job's
        folder, its stderr lines going to `tracker`."""
        process = execute.StreamingProcess(
            argv, self._sync_env(remote), tracker.on_line, grace=self.grace
        )
        await process.start()
        self.rclone_pid = process.pid
        log.info("rclone_started", job_id=job.id, pid=process.pid, folder=job.folder)
        return process

    def _sync_env(self, remote: CryptRemote) -> dict[str, str]:
        """The environment of a sync: the remote's, plus the remote control API's
        credentials when syncs serve it (its stale socket, if any, removed)."""
        env = remote.child_env()
        if self.rc is not None:
            env.update(self.rc.env())
            stale_socket = rclone_rc.socket_file(self.rc)
            if stale_socket is not None:
                # An rclone that died (killed, or a CRITICAL at start-up) leaves its rc socket,
                # and the next one would then fail at once with "address already in use".
                with contextlib.suppress(OSError):
                    stale_socket.unlink()
        return env

    async def _follow_sync(
        self,
        job: Job,
        process: execute.StreamingProcess,
        tracker: _JobTracker,
        presence: DestinationPresence,
    ) -> int:
        """Wait for the started sync, watched for stalls and a vanishing destination, its
        figures flushed to the DB each stats tick and once more at its end; rclone's exit
        status. If cancelled: rclone is stopped, the job marked INTERRUPTED, and the
        cancellation goes on."""
        watchdog = asyncio.create_task(self._watch_stall(job, process, tracker))
        vanish_watch = asyncio.create_task(presence.watch(process, tracker))
        async with self._flushing(job, tracker):
            try:
                code = await process.wait()
            except asyncio.CancelledError:
                await self._flush(job, tracker)
                with contextlib.suppress(Exception):
                    await asyncio.shield(
                        self.store.mark_interrupted(job.id, "stopped before it finished")
                    )
                log.info("job_interrupted", job_id=job.id, folder=job.folder)
                raise
            finally:
                self.rclone_pid = None
                for task in (watchdog, vanish_watch):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
        await self._flush(job, tracker)
        return code

    def _attempt_verdict(self, code: int, tracker: _JobTracker) -> tuple[int, str | None, bool]:
        """(exit status, last error, only skips) of a finished sync: the runner's own status
        and message when it stopped rclone because the destination vanished or rclone
        stalled, else rclone's (an error refusing the credentials wins over later ones)."""
        if tracker.vanished is not None:
            return DESTINATION_GONE_EXIT, tracker.vanished, False
        if tracker.stalled:
            reason = tracker.auth_error or tracker.last_error
            return (
                STALLED_EXIT,
                f"no progress for {self.settings.stall_timeout:g} s (BACKUP_STALL_TIMEOUT)"
                + (f"; last error: {reason}" if reason else ""),
                False,
            )
        return code, tracker.auth_error or tracker.last_error, tracker.only_skips

    async def _with_loop_guard(
        self, options: SyncOptions, source: str, say: Callable[[str], None] | None = None
    ) -> SyncOptions:
        """With BACKUP_FOLLOW_SYMLINKS, leave out the links that lead back into their own
        folder (rclone would follow them until the path is too long) and name them. What they
        lead to is backed up through its own path, so nothing is lost by leaving them out."""
        if not options.copy_links:
            return options
        loops = await asyncio.to_thread(find_symlink_loops, Path(source))
        for path in loops:
            log.warning("symlink_loop_left_out", source=source, path=path)
            if say is not None:
                say(f"{path}: {ADVICE[SkipReason.SYMLINK_LOOP]}, left out")
        return replace(options, exclude_paths=(*options.exclude_paths, *loops))

    async def _watch_stall(
        self, job: Job, process: execute.StreamingProcess, tracker: _JobTracker
    ) -> None:
        """Stop rclone when it has got nothing done for BACKUP_STALL_TIMEOUT seconds.

        rclone retries an unreachable storage on its own for a very long time (every file, low
        level retries, then whole passes); without this a permanent outage would leave the job
        RUNNING for hours. The attempt then counts as a retryable failure.
        """
        timeout = self.settings.stall_timeout
        while True:
            silent = time.monotonic() - tracker.active_at
            if silent >= timeout:
                break
            await asyncio.sleep(min(timeout - silent, 10.0) + 0.01)
        tracker.stalled = True
        log.warning("rclone_stalled", job_id=job.id, folder=job.folder, seconds=timeout)
        await process.terminate()

    def _emit_progress(self, destination: Destination, job: Job, tracker: _JobTracker) -> None:
        f = tracker.fields()
        self.sink(
            RunEvent(
                EventKind.JOB_PROGRESS,
                destination.name,
                {
                    "job_id": job.id,
                    "folder": job.folder,
                    "bytes_done": f["bytes_transferred"],
                    "bytes_total": f["bytes_total"],
                    "files_done": f["files_transferred"],
                    "files_total": f["files_total"],
                    "speed": f["transfer_speed"],
                    "eta": f["eta_seconds"],
                },
            )
        )

    async def _flush(self, job: Job, tracker: _JobTracker) -> None:
        fields = tracker.fields()
        await asyncio.shield(self.store.update_job(job.id, **fields))

    @contextlib.asynccontextmanager
    async def _flushing(self, job: Job, tracker: _JobTracker) -> AsyncIterator[None]:
        """Write the tracker's figures (and a heartbeat) to the DB once per stats tick."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(self.settings.stats_interval)
                await self._flush(job, tracker)
                log.info(
                    "progress",
                    job_id=job.id,
                    folder=job.folder,
                    **{
                        k: v
                        for k, v in tracker.fields().items()
                        if k not in ("eta_seconds", "skipped_detail")
                    },
                )

        task = asyncio.create_task(loop())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- extra folders (#16.3) and people thumbnails (#16.4)

    def _with_other_folders(
        self,
        immich_path: Path,
        folders: tuple[ImmichFolder, ...],
        facts: Mapping[str, FolderFacts],
    ) -> tuple[tuple[ImmichFolder, ...], dict[str, FolderFacts]]:
        """The run's folders beyond Immich's selected ones, with their facts: the people
        thumbnails (when thumbs/ is not backed up in full, holds files, and backups/ has a
        dump to read) and the BACKUP_EXTRA_PATHS folders. RunRefused when one of those is
        missing (see planning.check_extra_sources)."""
        self._people = None  # read anew by each run
        self._shared_read = None
        self._result = None
        extras = self.settings.extra_paths
        all_facts = {**facts, **gather_extra_facts(extras)}
        try:
            check_extra_sources(extras, all_facts)
        except SourceRefused as exc:
            raise RunRefused(str(exc)) from None
        people = False
        if not self.settings.include_generated:
            thumbs = gather_facts(immich_path, (PEOPLE_THUMBNAILS,))[PEOPLE_THUMBNAILS.name]
            people = thumbs.has_files and newest_dump(immich_path) is not None
            if people:
                all_facts[thumbs.name] = thumbs
        return run_folders(folders, extras, people_thumbnails=people), all_facts

    def _extra_folders_in(self, backed_up: set[str]) -> set[str]:
        """The extra folders the backup may hold, from its root listing: all of them when it
        has an `extra/` folder (the emptied-source check then lists each one)."""
        if EXTRA_FOLDER not in backed_up:
            return set()
        return {extra.folder for extra in self.settings.extra_paths}

    def _source(self, immich_path: Path, folder: str) -> Path | None:
        """Where the job of `folder` reads from (None: an extra folder no longer listed)."""
        source = folder_source(str(immich_path), folder, self.settings.extra_paths)
        return Path(source) if source is not None else None

    def _is_people_thumbnails(self, folder: str) -> bool:
        return is_people_thumbnails(folder, self.settings.include_generated)

    def _is_walked(self, folder: str) -> bool:
        """Does the manifest's plan walk `folder`? Not the people thumbnails, a few listed
        files of thumbs/: they go through a listed copy, staged by `_stage`."""
        return not self._is_people_thumbnails(folder)

    def _walked(self, folders: Sequence[str]) -> list[str]:
        return [folder for folder in folders if self._is_walked(folder)]

    def _note_unwalked(self, folders: Sequence[str], result: RunResult) -> None:
        """Say the way of the folders the manifest does not plan (see `_is_walked`)."""
        for folder in folders:
            if self._is_people_thumbnails(folder):
                result.folder_modes[folder] = "full sync: people thumbnails only"

    async def _name_hazards(
        self, source: str, folder: str, destination: Destination
    ) -> list[NameProblem]:
        """The file-name problems of a folder (a walk, in a thread); none for the people
        thumbnails, whose names Immich makes (`<uuid>.jpeg`), and whose folder holds every
        other thumbnail too."""
        if self._is_people_thumbnails(folder):
            return []
        limit = _name_limit(destination)
        walked = self._manifest.names.get(folder) if self._manifest is not None else None
        if walked is not None and walked.name_limit == limit:
            return walked.problems()  # the manifest's walk of this run checked them
        return await asyncio.to_thread(scan_names, Path(source), folder, limit)

    async def _people_thumbnails(
        self, destination: Destination, immich_path: Path, job: Job | None = None
    ) -> PeopleThumbnails:
        """The people thumbnails of the newest dump (read in a thread), said in one line when
        some are missing at the source or none can be backed up. Read once per `job`: its
        retries and its staging reuse them. When the proof will follow this job (see
        `_proof_follows`), the same pass over the dump does the proof's reading too."""
        cached = self._people
        if job is not None and cached is not None and cached[0] == job.id:
            return cached[1]
        shared = None
        scope = await self._proof_follows(destination, job)
        if scope is not None and self._manifest is not None:
            shared = await asyncio.to_thread(
                read_people_and_proof, self._manifest.db, immich_path, scope
            )
        self._shared_read = shared
        if shared is not None:
            found = shared.people
        else:
            found = await asyncio.to_thread(find_people_thumbnails, immich_path)
        if job is not None:
            self._people = (job.id, found)
        log.info(
            "people_thumbnails",
            dump=found.dump,
            present=len(found.present),
            missing=len(found.missing),
            problem=found.problem,
            proof_read_too=shared is not None,
        )
        if found.problem is not None:
            log.warning("people_thumbnails_skipped", reason=found.problem)
            self._say(destination, f"thumbs/: people thumbnails not backed up: {found.problem}")
        elif found.missing:
            first = display_path(os.fsdecode(found.missing[0]))
            self._say(
                destination,
                f"thumbs/: {plural(len(found.missing), 'people thumbnail')} that {found.dump} "
                f"names {'is' if len(found.missing) == 1 else 'are'} not at the source (first: "
                f"thumbs/{first}): Immich shows those people without a face",
            )
        return found

    async def _proof_follows(self, destination: Destination, job: Job | None) -> ProofScope | None:
        """The proof's scope when a consistency proof is sure to come right after `job` if
        it completes: a real run with a manifest whose every other job has completed (the
        people thumbnails run last). None otherwise: then the proof reads the dump itself."""
        result = self._result
        if job is None or result is None or self._manifest is None:
            return None
        jobs = await self.store.jobs_of_run(destination.id, job.run_id)
        if any(j.status is not JobStatus.COMPLETED for j in jobs if j.id != job.id):
            return None
        return self._proof_scope(result)

    async def _stage(self, destination: Destination, manifest: ManifestRun, job: Job) -> None:
        """Walk a folder about to be reconciled into the manifest's staging area. The people
        thumbnails' backup keeps what it held (a copy deletes nothing), with the listed files
        as they are now: the manifest then says which thumbnails the backup holds, and only
        those (thumbs/ may later be backed up in full, incrementally)."""
        if not self._is_people_thumbnails(job.folder):
            await manifest.stage(job.folder, Path(job.source_path))
            return
        people = await self._people_thumbnails(destination, Path(job.source_path).parent, job)
        db = manifest.db

        def stage() -> int:
            return db.stage(job.folder, overlay(db.entries(job.folder), people.present))

        count = await asyncio.to_thread(stage)
        log.info("folder_staged", folder=job.folder, files=count, listed=len(people.present))

    async def _attempt_people_thumbnails(
        self,
        destination: Destination,
        remote: CryptRemote,
        job: Job,
        run_id: str,
        options: SyncOptions,
        presence: DestinationPresence,
    ) -> tuple[int, str | None, bool]:
        """One attempt at the people thumbnails: an rclone copy of exactly the thumbnails the
        newest dump names (nothing else of thumbs/ is listed or sent), archiving the copies
        it replaces. None to copy (no usable dump, or none named): done, with what
        `_people_thumbnails` said. Same result as `_attempt`."""
        people = await self._people_thumbnails(destination, Path(job.source_path).parent, job)
        if not people.present:
            return 0, None, False
        tracker = _JobTracker(
            job, remote.secrets, lambda: self._emit_progress(destination, job, tracker)
        )
        files_from = self.settings.data_dir / f"people-thumbnails-{destination.id}.txt"
        await asyncio.to_thread(write_private, files_from, people.files_from())
        argv = listed_copy_argv(
            remote.binary,
            job.source_path,
            crypt_path(job.folder),
            archive_path(run_id, job.folder),
            str(files_from),
            options,
        )
        presence.wrote()
        try:
            process = await self._start_sync(remote, job, argv, tracker)
            code = await self._follow_sync(job, process, tracker, presence)
        finally:
            files_from.unlink(missing_ok=True)
        self._note_skips(job, tracker)
        return self._attempt_verdict(code, tracker)

    async def _preview_people_thumbnails(
        self,
        destination: Destination,
        remote: CryptRemote,
        immich_path: Path,
        run_id: str,
        options: SyncOptions,
    ) -> FolderPreview:
        """What the people thumbnails' copy would send and archive (its rclone dry run)."""
        people = await self._people_thumbnails(destination, immich_path)
        if not people.present:
            return FolderPreview()
        files_from = self.settings.data_dir / f"people-thumbnails-{destination.id}-dry.txt"
        await asyncio.to_thread(write_private, files_from, people.files_from())
        argv = listed_copy_argv(
            remote.binary,
            str(immich_path / PEOPLE_THUMBNAILS.name),
            crypt_path(PEOPLE_THUMBNAILS.name),
            archive_path(run_id, PEOPLE_THUMBNAILS.name),
            str(files_from),
            replace(options, dry_run=True, rc_addr=None),
        )
        collector = PreviewCollector()
        try:
            process = execute.StreamingProcess(
                argv, remote.child_env(), collector.on_line, grace=self.grace
            )
            await process.start()
            code = await process.wait()
        finally:
            files_from.unlink(missing_ok=True)
        preview = collector.preview(0 if classify_exit(code) is Outcome.SUCCESS else code)
        if preview.error:
            preview = replace(preview, error=redact(preview.error, remote.secrets))
        return preview


def _preview_of(changes: FolderChanges) -> FolderPreview:
    """An incremental folder's preview: what it would send and archive, from its changes."""
    return FolderPreview(
        files_to_send=len(changes.to_send),
        bytes_to_send=changes.bytes_to_send,
        deletes=len(changes.deleted),
        replaced=len(changes.changed),
        deleted_examples=tuple(os.fsdecode(s.path) for s in changes.deleted[:5]),
        replaced_examples=tuple(os.fsdecode(s.path) for s in changes.changed[:5]),
    )


def summarise(result: RunResult | Mapping[str, Any]) -> str:
    """One line for the end of a run, from the result or its as_dict() (as the daemon sends
    it): '4/4 folders backed up to nas: 12 files (3.1 MiB) sent'."""
    data = result.as_dict() if isinstance(result, RunResult) else result
    destination = data.get("destination", "")
    if data.get("dry_run"):
        folders = data.get("dry_run_folders") or []
        files = sum(int(f["files"]) for f in folders)
        size = sum(int(f["bytes"]) for f in folders)
        return (
            f"dry run: {plural(files, 'file')} ({human_bytes(size)}) would be sent to {destination}"
        ) + names_note(data.get("file_names") or [])
    jobs = data.get("jobs") or []
    done = sum(1 for j in jobs if j["status"] == JobStatus.COMPLETED.value)
    files = sum(int(j.get("files_transferred") or 0) for j in jobs)
    size = sum(int(j.get("bytes_transferred") or 0) for j in jobs)
    line = (
        f"{done}/{plural(len(jobs), 'folder')} backed up to {destination}: "
        f"{plural(files, 'file')} ({human_bytes(size)}) sent"
    )
    skipped = sum(int(j.get("files_skipped") or 0) for j in jobs)
    if skipped:
        noun = "file was" if skipped == 1 else "files were"
        line += (
            f"; WARNING: {skipped} {noun} not backed up (named above and in "
            "`photos-sync backup --status`)"
        )
    return line + names_note(data.get("file_names") or [])


def _name_limit(destination: Destination) -> int | None:
    """The longest encrypted name the destination stores: a local disk's; None for cloud
    storage, whose limit is on the whole key (1,024 bytes), not on each name."""
    return DISK_NAME_LIMIT if destination.type == "local" else None


def names_note(problems: Sequence[NameProblem | Mapping[str, Any]]) -> str:
    """The end of the run's summary line about file names ("" when there are none); the
    problems as objects or as their as_dict() (from the daemon)."""
    lost = sum(
        1
        for p in problems
        if not (p.backed_up if isinstance(p, NameProblem) else p.get("backed_up"))
    )
    return summary_note(len(problems), lost)
