"""What a run is asked to do, what it tells whoever watches it, and what it comes back with.

Pure: the shared vocabulary of the runner, the restorer, the daemon's queue, notifications
and the CLI's renderers, kept apart from the code that does the work so that reading an
event or a result pulls in no I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from photos_sync.core.config import Settings
from photos_sync.core.names import NameProblem
from photos_sync.core.records import Destination, Job
from photos_sync.core.states import JobStatus

if TYPE_CHECKING:
    from photos_sync.core.immich_select import Criteria


class RunRefused(RuntimeError):
    """The run did not start; the message is one line saying what is wrong and what to do."""


class UsageProblem(RunRefused):
    """The request itself was wrong (unknown or ambiguous destination): exit code 2."""


# -- events for whoever watches a run -------------------------------------------------------


class EventKind(enum.StrEnum):
    """What a RunEvent reports; the values are the `kind` strings of the RPC's notifications."""

    RUN_STARTED = "run_started"
    JOB_STARTED = "job_started"
    JOB_PROGRESS = "job_progress"
    JOB_FINISHED = "job_finished"
    MESSAGE = "message"
    RUN_FINISHED = "run_finished"


@dataclass(frozen=True, slots=True)
class RunEvent:
    kind: EventKind
    destination: str
    data: Mapping[str, Any] = field(default_factory=dict)


class ProgressSink(Protocol):
    def __call__(self, event: RunEvent, /) -> None: ...


# -- requests --------------------------------------------------------------------------------

#: How a restore picks the files it brings back (see photos_sync.engine.restore).
MODES = ("current", "deleted", "as-of")


@dataclass(frozen=True, slots=True)
class RestoreRequest:
    destination: str | None
    target: Path
    path: str = ""
    mode: str = "current"
    moment: datetime | None = None
    overwrite: bool = False
    dry_run: bool = False
    #: restore by meaning: the files of the database dump's assets these criteria choose
    selection: Criteria | None = None
    #: restore a whole Immich: its folders, the dump, the markers, then the check
    immich: bool = False
    #: read the provider's object versions as they were at `moment` (#17, --from-versions):
    #: for when the archive itself was tampered with
    from_versions: bool = False


class DumpReport(Protocol):
    """The outcome of asking Immich for a fresh database dump, as a run reports it."""

    def as_dict(self) -> dict[str, Any]: ...


class DumpCoordinator(Protocol):
    """Shares one Immich database dump between the runs of one backup (immich.SharedDump)."""

    async def take(
        self,
        settings: Settings,
        destination: Destination,
        backups_dir: Path,
        say: Callable[[str], None],
    ) -> DumpReport | None: ...


@dataclass(frozen=True, slots=True)
class RunRequest:
    destination: str | None = None
    dry_run: bool = False
    force: bool = False
    #: Set when the daemon's queue carries a restore instead of a backup.
    restore: RestoreRequest | None = None
    #: One Immich dump for the runs of a backup to several destinations: the first run that
    #: backs up backups/ asks Immich, the others reuse that dump (see immich.SharedDump).
    dump: DumpCoordinator | None = field(default=None, compare=False)
    #: `backup --full`: a full sync that lists the destination and rebuilds the manifest,
    #: whatever the manifest says (#15)
    full: bool = False


# -- results ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DryRunFolder:
    folder: str
    files: int
    bytes: int
    archived: int
    error: str | None
    #: the guard's refusal a real run would meet (BACKUP_MAX_DELETE), if any
    refused: str | None = None


@dataclass
class RunResult:
    destination: str
    run_id: str
    dry_run: bool
    jobs: list[Job] = field(default_factory=list)
    dry_run_folders: list[DryRunFolder] = field(default_factory=list)
    resumed: bool = False
    #: archive folders (run stamps) removed, or that would be with a dry run
    pruned: list[str] = field(default_factory=list)
    #: the fresh Immich DB dump's outcome (photos_sync.immich.server.DumpOutcome.as_dict), if asked
    immich: dict[str, Any] | None = None
    #: file names that need attention (Unicode twins, undecodable bytes, files rclone skipped)
    file_names: list[NameProblem] = field(default_factory=list)
    #: folder -> "incremental", or "full sync: <why>" (#15)
    folder_modes: dict[str, str] = field(default_factory=dict)
    #: files renamed inside the backup instead of sent again (moved at the source)
    moved: int = 0
    #: the consistency proof of the dump the run sent (core.consistency, as_dict), if any
    consistency: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        if self.dry_run:
            return all(f.error is None and f.refused is None for f in self.dry_run_folders)
        if self.immich is not None and self.immich.get("error"):
            return False  # a missing or refused Immich API key: the files went, fix the key
        if any(not p.backed_up for p in self.file_names) or self.files_skipped:
            return False  # a file was not backed up: the backup is not whole
        if self.consistency is not None and not self.consistency.get("ok"):
            return False  # a truncated dump, or a file the database needs is not backed up
        return all(j.status is JobStatus.COMPLETED for j in self.jobs)

    @property
    def files_skipped(self) -> int:
        """Files this run's jobs went past (unreadable, symlinks, names too long)."""
        return sum(j.files_skipped for j in self.jobs)

    def as_dict(self) -> dict[str, Any]:
        return {
            "destination": self.destination,
            "run_id": self.run_id,
            "dry_run": self.dry_run,
            "resumed": self.resumed,
            "ok": self.ok,
            "files_skipped": self.files_skipped,
            "pruned": self.pruned,
            "immich": self.immich,
            "file_names": [p.as_dict() for p in self.file_names],
            "folder_modes": self.folder_modes,
            "moved": self.moved,
            "consistency": self.consistency,
            "jobs": [j.as_dict() for j in self.jobs],
            "dry_run_folders": [
                {
                    "folder": f.folder,
                    "files": f.files,
                    "bytes": f.bytes,
                    "archived": f.archived,
                    "error": f.error,
                    "refused": f.refused,
                }
                for f in self.dry_run_folders
            ],
        }
