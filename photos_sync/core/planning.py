"""Which Immich folders a run backs up, in which order, and when to refuse. Pure: no I/O.

The facts (does a folder exist, does it carry Immich's `.immich` marker, is it empty) are
gathered by the runner and passed in, so every rule here is testable without a disk.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from photos_sync.core.extra_paths import EXTRA_FOLDER, ExtraPath
from photos_sync.core.states import JobStatus, is_resumable

IMMICH_MARKER = ".immich"


@dataclass(frozen=True, slots=True)
class ImmichFolder:
    name: str
    priority: int
    generated: bool
    why: str


#: Immich's folders in the order they are backed up. The DB dumps go first: Immich's
#: guidance is DB first, then files, so a restored DB never points at files the backup lacks.
IMMICH_FOLDERS: tuple[ImmichFolder, ...] = (
    ImmichFolder("backups", 1, False, "Immich's automatic database dumps"),
    ImmichFolder("library", 2, False, "originals (storage template)"),
    ImmichFolder("upload", 3, False, "originals"),
    ImmichFolder("profile", 4, False, "user avatars"),
    ImmichFolder("thumbs", 5, True, "thumbnails (regenerable)"),
    ImmichFolder("encoded-video", 6, True, "transcoded videos (regenerable)"),
)


#: Priority of the first extra folder (BACKUP_EXTRA_PATHS): after all of Immich's.
EXTRA_PRIORITY = max(f.priority for f in IMMICH_FOLDERS) + 1
#: The job that backs up, when thumbs/ is not backed up in full, the people thumbnails the
#: newest Immich dump references (#16.4): face detection would have to run again, by hand, to
#: make them anew. Same folder as thumbs/, but last of all (after the extra folders): its
#: read of the dump then does the consistency proof's pass too, every other job being done.
PEOPLE_THUMBNAILS = ImmichFolder(
    "thumbs", 1_000_000, True, "people thumbnails (only face detection can make them again)"
)


def is_people_thumbnails(folder: str, include_generated: bool) -> bool:
    """Is a job of `folder` the people-thumbnails job (thumbs/ restricted to the files the
    dump names), rather than a sync of the whole folder?"""
    return folder == PEOPLE_THUMBNAILS.name and not include_generated


def extra_folders(extras: Sequence[ExtraPath]) -> tuple[ImmichFolder, ...]:
    """One folder per BACKUP_EXTRA_PATHS entry, after Immich's, in the setting's order."""
    return tuple(
        ImmichFolder(extra.folder, EXTRA_PRIORITY + index, False, f"extra folder {extra.host}")
        for index, extra in enumerate(extras)
    )


def run_folders(
    immich_folders: Sequence[ImmichFolder],
    extras: Sequence[ExtraPath],
    *,
    people_thumbnails: bool,
) -> tuple[ImmichFolder, ...]:
    """Every folder of a run in priority order: Immich's selected folders, the people
    thumbnails when thumbs/ is not among them and `people_thumbnails`, the extra folders."""
    folders = list(immich_folders)
    if people_thumbnails and all(f.name != PEOPLE_THUMBNAILS.name for f in folders):
        folders.append(PEOPLE_THUMBNAILS)
    folders += extra_folders(extras)
    return tuple(sorted(folders, key=lambda f: f.priority))


def folder_source(immich_path: str, folder: str, extras: Sequence[ExtraPath]) -> str | None:
    """Where a job of `folder` reads from: its host folder for an extra folder (None when
    BACKUP_EXTRA_PATHS no longer lists it), else `<immich_path>/<folder>`."""
    for extra in extras:
        if extra.folder == folder:
            return extra.host
    if folder.startswith(f"{EXTRA_FOLDER}/"):
        return None
    return f"{immich_path.rstrip('/')}/{folder}"


@dataclass(frozen=True, slots=True)
class FolderFacts:
    """What the runner saw on disk for one Immich folder."""

    name: str
    exists: bool
    has_marker: bool
    has_files: bool  # any file besides the marker, anywhere below


class SourceRefused(Exception):
    """The source looks unmounted or wrong; running would endanger the backup."""


def selected_folders(include_generated: bool) -> tuple[ImmichFolder, ...]:
    """The folders a run covers, in priority order."""
    return tuple(f for f in IMMICH_FOLDERS if include_generated or not f.generated)


def check_sources(
    immich_path: str, facts: Mapping[str, FolderFacts], folders: Sequence[ImmichFolder]
) -> None:
    """Raise SourceRefused unless every selected folder exists and carries `.immich`.

    Immich writes the marker into each of its folders and refuses to start without them;
    a folder without one is an unmounted volume or a wrong BACKUP_IMMICH_PATH, and a sync
    from it would archive away the whole backup.
    """
    missing = [f.name for f in folders if not facts[f.name].exists]
    if len(missing) == len(folders):
        raise SourceRefused(
            f"{immich_path} holds none of Immich's folders ({', '.join(missing)}): "
            "is the volume mounted and BACKUP_IMMICH_PATH set to Immich's UPLOAD_LOCATION?"
        )
    unmarked = [f.name for f in folders if not facts[f.name].has_marker]
    if unmarked:
        names = ", ".join(f"{n}/" for n in unmarked)
        verb = "lacks" if len(unmarked) == 1 else "lack"
        raise SourceRefused(
            f"refusing to back up: {names} under {immich_path} {verb} Immich's {IMMICH_MARKER} "
            "marker (an unmounted or wrong volume would wipe the backup); mount the volume, "
            f"or if Immich really is here, create the marker: touch {immich_path}/<folder>/"
            f"{IMMICH_MARKER}"
        )


def check_extra_sources(extras: Sequence[ExtraPath], facts: Mapping[str, FolderFacts]) -> None:
    """Raise SourceRefused when a BACKUP_EXTRA_PATHS folder is missing at the source.

    Such a folder has no marker to prove it is the right one: a missing one is an unmounted
    disk or a wrong path, never something to sync (the emptied-source guard, check_not_emptied,
    covers a folder that is there but empty)."""
    missing = [extra for extra in extras if not facts[extra.folder].exists]
    if missing:
        paths = ", ".join(extra.host for extra in missing)
        verb = "is" if len(missing) == 1 else "are"
        raise SourceRefused(
            f"refusing to back up: {paths} (BACKUP_EXTRA_PATHS) {verb} missing or not a "
            "folder: mount it, or take it out of BACKUP_EXTRA_PATHS"
        )


def check_not_emptied(folder: str, source_has_files: bool, backup_has_files: bool) -> None:
    """Raise SourceRefused when the source folder is empty but its backup is not."""
    if not source_has_files and backup_has_files:
        raise SourceRefused(
            f"refusing to back up {folder}/: it is empty at the source but not in the backup "
            "(a missing mount would archive away the whole backup); check the volume, or "
            "rerun with --force if the folder really was emptied"
        )


@dataclass(frozen=True, slots=True)
class JobView:
    """The fields of a stored job that planning needs."""

    id: int
    run_id: str
    folder: str
    status: JobStatus
    retry_count: int
    priority: int
    refused: str | None = None


@dataclass(frozen=True, slots=True)
class RunPlan:
    """Either resume the unfinished jobs of `run_id`, or start a new run with `new_folders`."""

    run_id: str
    resume_job_ids: tuple[int, ...]
    new_folders: tuple[ImmichFolder, ...]

    @property
    def is_resume(self) -> bool:
        return bool(self.resume_job_ids)


def plan_run(
    latest_run_jobs: Iterable[JobView],
    folders: Sequence[ImmichFolder],
    max_retries: int,
    new_run_id: str,
) -> RunPlan:
    """Resume the latest run if it left work undone, else plan a fresh run of `folders`.

    `latest_run_jobs` are the jobs of the destination's most recent run (any status).
    Jobs of that run that completed, or failed with no retries left, are not redone; a
    fresh run is planned only when nothing in the latest run is resumable.
    """
    jobs = list(latest_run_jobs)
    resumable = sorted(
        (j for j in jobs if is_resumable(j.status, j.retry_count, max_retries, j.refused)),
        key=lambda j: (j.priority, j.id),
    )
    if resumable:
        return RunPlan(resumable[0].run_id, tuple(j.id for j in resumable), ())
    return RunPlan(new_run_id, (), tuple(sorted(folders, key=lambda f: f.priority)))
