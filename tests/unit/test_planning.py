"""photos_sync.core.planning: folder order, source checks, resume-or-new-run planning."""

from __future__ import annotations

import pytest

from photos_sync.core.extra_paths import parse_extra_paths
from photos_sync.core.planning import (
    IMMICH_FOLDERS,
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
from photos_sync.core.states import JobStatus

P, R, C, N, F = (  # N: iNterrupted
    JobStatus.PENDING,
    JobStatus.RUNNING,
    JobStatus.COMPLETED,
    JobStatus.INTERRUPTED,
    JobStatus.FAILED,
)

# --- folders ----------------------------------------------------------------------------------


def test_default_folders_in_priority_order_db_dumps_first() -> None:
    folders = selected_folders(include_generated=False)
    assert [f.name for f in folders] == ["backups", "library", "upload", "profile"]
    assert [f.priority for f in folders] == [1, 2, 3, 4]
    assert not any(f.generated for f in folders)


def test_generated_folders_only_when_opted_in() -> None:
    folders = selected_folders(include_generated=True)
    assert [f.name for f in folders] == [
        "backups",
        "library",
        "upload",
        "profile",
        "thumbs",
        "encoded-video",
    ]
    assert [f.name for f in folders if f.generated] == ["thumbs", "encoded-video"]
    assert folders[-2].priority < folders[-1].priority
    assert max(f.priority for f in folders if not f.generated) < min(
        f.priority for f in folders if f.generated
    )


def test_immich_folder_table() -> None:
    assert IMMICH_MARKER == ".immich"
    assert len({f.name for f in IMMICH_FOLDERS}) == len(IMMICH_FOLDERS) == 6
    assert len({f.priority for f in IMMICH_FOLDERS}) == 6
    assert all(f.why for f in IMMICH_FOLDERS)


# --- check_sources ----------------------------------------------------------------------------


def facts(
    names: tuple[str, ...] = ("backups", "library", "upload", "profile"),
    *,
    missing: tuple[str, ...] = (),
    unmarked: tuple[str, ...] = (),
    empty: tuple[str, ...] = (),
) -> dict[str, FolderFacts]:
    result = {}
    for name in names:
        exists = name not in missing
        result[name] = FolderFacts(
            name,
            exists=exists,
            has_marker=exists and name not in unmarked,
            has_files=exists and name not in empty,
        )
    return result


DEFAULT = selected_folders(False)
ALL = selected_folders(True)
ALL_NAMES = tuple(f.name for f in ALL)


def test_a_complete_marked_tree_passes() -> None:
    check_sources("/immich", facts(), DEFAULT)
    check_sources("/immich", facts(ALL_NAMES), ALL)


def test_empty_but_marked_folders_pass() -> None:
    check_sources("/immich", facts(empty=("backups", "library", "upload", "profile")), DEFAULT)


def test_nothing_there_is_refused_naming_every_folder() -> None:
    everything_missing = facts(missing=("backups", "library", "upload", "profile"))
    with pytest.raises(SourceRefused) as info:
        check_sources("/mnt/immich", everything_missing, DEFAULT)
    message = str(info.value)
    assert message.startswith(
        "/mnt/immich holds none of Immich's folders (backups, library, upload, profile)"
    )
    assert "mounted" in message
    assert "BACKUP_IMMICH_PATH" in message
    assert "UPLOAD_LOCATION" in message


@pytest.mark.parametrize("folder", ["backups", "library", "upload", "profile"])
def test_a_missing_marker_is_refused(folder: str) -> None:
    with pytest.raises(SourceRefused) as info:
        check_sources("/mnt/immich", facts(unmarked=(folder,)), DEFAULT)
    message = str(info.value)
    assert message.startswith(f"refusing to back up: {folder}/ under /mnt/immich lacks ")
    assert "Immich's .immich marker" in message
    assert f"touch /mnt/immich/<folder>/{IMMICH_MARKER}" in message
    others = {"backups", "library", "upload", "profile"} - {folder}
    assert not any(f"{name}/" in message for name in others)


def test_every_unmarked_folder_is_listed_in_order() -> None:
    with pytest.raises(
        SourceRefused, match=r"refusing to back up: library/, profile/ under /i lack Immich"
    ):
        check_sources("/i", facts(unmarked=("profile", "library")), DEFAULT)


def test_a_missing_folder_among_present_ones_is_refused_as_unmarked() -> None:
    with pytest.raises(SourceRefused, match=r"refusing to back up: upload/ under /i lacks Immich"):
        check_sources("/i", facts(missing=("upload",)), DEFAULT)


def test_generated_folders_are_checked_only_when_selected() -> None:
    tree = facts(ALL_NAMES, missing=("thumbs", "encoded-video"))
    check_sources("/i", tree, DEFAULT)  # not selected: ignored
    with pytest.raises(SourceRefused, match=r"thumbs/, encoded-video/ under /i lack Immich"):
        check_sources("/i", tree, ALL)


def test_unmarked_generated_folder_is_refused_when_opted_in() -> None:
    with pytest.raises(SourceRefused, match=r"refusing to back up: thumbs/ under /i lacks Immich"):
        check_sources("/i", facts(ALL_NAMES, unmarked=("thumbs",)), ALL)


# --- check_not_emptied ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source_has_files", "backup_has_files"),
    [(True, True), (True, False), (False, False)],
)
def test_not_emptied_passes(source_has_files: bool, backup_has_files: bool) -> None:
    check_not_emptied("library", source_has_files, backup_has_files)


def test_emptied_source_with_a_full_backup_is_refused() -> None:
    with pytest.raises(SourceRefused) as info:
        check_not_emptied("library", source_has_files=False, backup_has_files=True)
    message = str(info.value)
    assert message.startswith("refusing to back up library/: it is empty at the source")
    assert "--force" in message


# --- plan_run ---------------------------------------------------------------------------------


def job(
    id: int, folder: str, status: JobStatus, *, retries: int = 0, run: str = "run-1"
) -> JobView:
    priority = {f.name: f.priority for f in IMMICH_FOLDERS}[folder]
    return JobView(id, run, folder, status, retries, priority)


def test_no_previous_run_plans_a_new_run_in_priority_order() -> None:
    shuffled = [DEFAULT[2], DEFAULT[0], DEFAULT[3], DEFAULT[1]]
    plan = plan_run([], shuffled, max_retries=3, new_run_id="run-new")
    assert plan == RunPlan("run-new", (), DEFAULT)
    assert [f.name for f in plan.new_folders] == ["backups", "library", "upload", "profile"]
    assert plan.is_resume is False


def test_a_completed_run_is_followed_by_a_new_run() -> None:
    latest = [job(1, "backups", C), job(2, "library", C), job(3, "upload", C)]
    plan = plan_run(latest, DEFAULT, 3, "run-2")
    assert plan.run_id == "run-2"
    assert plan.resume_job_ids == ()
    assert plan.new_folders == DEFAULT
    assert not plan.is_resume


def test_an_interrupted_run_is_resumed_not_restarted() -> None:
    latest = [
        job(10, "backups", C),
        job(11, "library", N),
        job(12, "upload", P),
        job(13, "profile", P),
    ]
    plan = plan_run(latest, DEFAULT, 3, "run-2")
    assert plan == RunPlan("run-1", (11, 12, 13), ())
    assert plan.is_resume


def test_resumed_jobs_run_in_priority_order_then_id() -> None:
    latest = [
        job(5, "profile", P),
        job(9, "library", F, retries=1),
        job(3, "upload", N),
        job(8, "backups", N),
        job(7, "library", P),
    ]
    plan = plan_run(latest, DEFAULT, 3, "new")
    assert plan.resume_job_ids == (8, 7, 9, 3, 5)


def test_failed_job_with_retries_left_is_resumed() -> None:
    latest = [job(1, "backups", C), job(2, "library", F, retries=2)]
    assert plan_run(latest, DEFAULT, 3, "new") == RunPlan("run-1", (2,), ())


def test_failed_job_with_retries_exhausted_leads_to_a_new_run() -> None:
    latest = [job(1, "backups", C), job(2, "library", F, retries=3), job(3, "upload", C)]
    plan = plan_run(latest, DEFAULT, 3, "run-2")
    assert plan == RunPlan("run-2", (), DEFAULT)


def test_exhausted_failures_are_not_redone_while_other_work_resumes() -> None:
    latest = [job(1, "backups", F, retries=3), job(2, "library", N), job(3, "upload", P)]
    plan = plan_run(latest, DEFAULT, 3, "new")
    assert plan.resume_job_ids == (2, 3)
    assert plan.run_id == "run-1"


def test_max_retries_zero_never_resumes_failures() -> None:
    latest = [job(1, "library", F, retries=0)]
    assert plan_run(latest, DEFAULT, 0, "new").run_id == "new"


def test_running_jobs_are_not_resumed_by_planning() -> None:
    """RUNNING jobs are settled (INTERRUPTED or refused) before planning."""
    latest = [job(1, "library", R), job(2, "upload", C)]
    assert plan_run(latest, DEFAULT, 3, "new") == RunPlan("new", (), DEFAULT)


def test_new_run_covers_generated_folders_when_opted_in() -> None:
    plan = plan_run([job(1, "library", C)], ALL, 3, "new")
    assert [f.name for f in plan.new_folders] == list(ALL_NAMES)


def test_plan_accepts_any_iterable() -> None:
    latest = (j for j in [job(4, "upload", N)])
    assert plan_run(latest, DEFAULT, 3, "new").resume_job_ids == (4,)


def test_folder_records_are_frozen() -> None:
    folder = ImmichFolder("x", 9, False, "why")
    with pytest.raises(AttributeError):
        folder.priority = 1  # type: ignore[misc]  # frozen: assigning is what must fail


# --- extra folders (#16.3) and people thumbnails (#16.4) ---------------------------------------

EXTRAS = parse_extra_paths("family=/mnt/photos/family:/srv/scans")


def test_extra_folders_come_after_immichs_and_the_people_thumbnails_last() -> None:
    # last: the people thumbnails' read of the dump doubles as the proof's, all else done
    folders = run_folders(selected_folders(False), EXTRAS, people_thumbnails=True)
    assert [f.name for f in folders] == [
        "backups",
        "library",
        "upload",
        "profile",
        "extra/family",
        "extra/scans",
        "thumbs",
    ]
    assert [f.priority for f in folders] == sorted({f.priority for f in folders})
    assert "/mnt/photos/family" in folders[-3].why
    assert folders[-1] is PEOPLE_THUMBNAILS


def test_no_second_thumbs_job_when_thumbs_is_backed_up_in_full() -> None:
    folders = run_folders(selected_folders(True), (), people_thumbnails=True)
    assert [f.name for f in folders] == [f.name for f in selected_folders(True)]
    assert run_folders(selected_folders(False), (), people_thumbnails=False) == selected_folders(
        False
    )


def test_is_people_thumbnails_only_without_generated_folders() -> None:
    assert is_people_thumbnails("thumbs", include_generated=False)
    assert not is_people_thumbnails("thumbs", include_generated=True)
    assert not is_people_thumbnails("library", include_generated=False)


def test_folder_sources() -> None:
    assert folder_source("/immich/", "library", EXTRAS) == "/immich/library"
    assert folder_source("/immich", "extra/family", EXTRAS) == "/mnt/photos/family"
    assert folder_source("/immich", "extra/scans", EXTRAS) == "/srv/scans"
    assert folder_source("/immich", "extra/gone", EXTRAS) is None  # no longer listed


def _extra_facts(missing: tuple[str, ...] = ()) -> dict[str, FolderFacts]:
    return {
        e.folder: FolderFacts(e.folder, e.host not in missing, False, e.host not in missing)
        for e in EXTRAS
    }


def test_a_missing_extra_folder_is_refused_in_one_line() -> None:
    check_extra_sources(EXTRAS, _extra_facts())
    with pytest.raises(SourceRefused) as info:
        check_extra_sources(EXTRAS, _extra_facts(missing=("/srv/scans",)))
    message = str(info.value)
    assert message == (
        "refusing to back up: /srv/scans (BACKUP_EXTRA_PATHS) is missing or not a folder: "
        "mount it, or take it out of BACKUP_EXTRA_PATHS"
    )
    with pytest.raises(SourceRefused, match=r"/mnt/photos/family, /srv/scans .* are missing"):
        check_extra_sources(EXTRAS, _extra_facts(missing=("/srv/scans", "/mnt/photos/family")))
