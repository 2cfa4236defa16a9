"""Safety guards under attack (#18): a guard no rerun undoes, a vanished destination never
reported as a success, a resumed job that reads the current source, a full disk not retried.

Real rclone, real SQLite, a generated Immich tree; the mount tests mount a real tmpfs (root
only, skipped elsewhere) and unmount it lazily in the middle of a run, as `umount -l` does to
a NAS share.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from photos_sync.core.config import Settings
from photos_sync.core.events import RunEvent, RunRequest
from photos_sync.core.states import JobStatus, Refusal
from photos_sync.engine.runner import Runner
from photos_sync.engine.setup import key_file_path, setup_local
from photos_sync.storage.settings_io import load_settings
from photos_sync.storage.store import Store
from tests.immich_tree import TreeStats, make_immich_tree
from tests.support import plain_rclone
from tests.support.destinations import clone_in_process


async def _setup(settings: Settings, dest: Path, name: str = "nas") -> Store:
    if clone_in_process(settings, dest, name):  # a copy of one real setup: the same
        return await Store.open(settings.db_path)
    store = await Store.open(settings.db_path)
    await setup_local(settings, store, name=name, path=dest)
    return store


def _media(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != ".immich")


def _archived(dest: Path, settings: Settings) -> list[str]:
    """Plain paths of every file in the backup's archive (.deleted/<run>/<folder>/...)."""
    env = plain_rclone.crypt_env(dest, key_file_path(settings, "nas"))
    listed = plain_rclone.run(["lsf", "-R", "--files-only", "check:.deleted"], env)
    return [line for line in listed.stdout.splitlines() if line.strip()]


def _backed_up(dest: Path, settings: Settings, folder: str) -> set[str]:
    env = plain_rclone.crypt_env(dest, key_file_path(settings, "nas"))
    listed = plain_rclone.run(["lsf", "-R", "--files-only", f"check:{folder}"], env)
    return {line for line in listed.stdout.splitlines() if line and line != ".immich"}


def _mount_tmpfs(point: Path, size: str) -> Iterator[Path]:
    point.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({made.stderr.strip()}): run as root to test")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


@pytest.fixture
def mounted(tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB tmpfs at tmp_path/mnt (root only), unmounted (lazily) at the end."""
    yield from _mount_tmpfs(tmp_path / "mnt", "64m")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 6 MiB tmpfs at tmp_path/small (root only): a destination disk that fills up."""
    yield from _mount_tmpfs(tmp_path / "small", "6m")


# -- 1. BACKUP_MAX_DELETE: refused whole, every run, until --force or the source is back --------


async def test_max_delete_refusal_archives_nothing_and_holds_across_reruns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "immich"
    make_immich_tree(root, library_files=24, upload_files=4, scale=0.05, seed=3, thumbs=False)
    monkeypatch.setenv("BACKUP_IMMICH_PATH", str(root))
    monkeypatch.setenv("BACKUP_MAX_DELETE", "3")
    settings = load_settings()
    dest = tmp_path / "dest"
    store = await _setup(settings, dest)
    assert (await Runner(settings, store).run(RunRequest())).ok
    destination = await store.get_destination("nas")
    assert destination is not None
    last_complete = destination.last_backup_at

    # 8 deletions against a limit of 3: rclone's own --max-delete would archive 3 per run,
    # so the third plain rerun used to pass with the whole lot archived
    deleted = _media(root / "library")[:8]
    saved = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in deleted}
    for path in deleted:
        path.unlink()
    for attempt in range(3):
        # a fresh Runner each time: a rerun, a daemon restart, the next scheduled run
        result = await Runner(settings, store).run(RunRequest())
        library = next(j for j in result.jobs if j.folder == "library")
        assert not result.ok
        assert library.status is JobStatus.FAILED, attempt
        assert library.refused == Refusal.MAX_DELETE
        assert "8 files of library/ were deleted" in (library.error_message or "")
        assert "--force" in (library.error_message or "")
        assert library.files_archived == 0
        assert _archived(dest, settings) == [], f"archived on run {attempt + 1}"
        # the other folders are still backed up
        assert all(j.status is JobStatus.COMPLETED for j in result.jobs if j is not library)
    destination = await store.get_destination("nas")
    assert destination is not None and destination.last_backup_at == last_complete
    assert len(_backed_up(dest, settings, "library")) == 24

    # the source comes back: no --force needed
    for path, (data, mtime) in saved.items():
        path.write_bytes(data)
        os.utime(path, ns=(mtime, mtime))
    assert (await Runner(settings, store).run(RunRequest())).ok
    for path in deleted:
        path.unlink()
    # --force lifts the guard for one run: all 8 go to the archive together
    forced = await Runner(settings, store).run(RunRequest(force=True))
    assert forced.ok
    assert len([p for p in _archived(dest, settings) if "/library/" in f"/{p}"]) == 8
    await store.close()


async def test_dry_run_names_the_refusal_a_real_run_would_meet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "immich"
    make_immich_tree(root, library_files=12, upload_files=2, scale=0.05, seed=5, thumbs=False)
    monkeypatch.setenv("BACKUP_IMMICH_PATH", str(root))
    monkeypatch.setenv("BACKUP_MAX_DELETE", "2")
    settings = load_settings()
    store = await _setup(settings, tmp_path / "dest")
    assert (await Runner(settings, store).run(RunRequest())).ok
    for path in _media(root / "library")[:5]:
        path.unlink()
    result = await Runner(settings, store).run(RunRequest(dry_run=True))
    library = next(f for f in result.dry_run_folders if f.folder == "library")
    assert library.refused is not None and "5 files of library/" in library.refused
    assert not result.ok
    assert _archived(tmp_path / "dest", settings) == []
    await store.close()


# -- 2. a destination that vanishes mid-run is never a success --------------------------------


async def test_destination_replaced_between_folders_fails_the_rest_of_the_run(
    immich: tuple[Path, TreeStats], tmp_path: Path, settings: Settings
) -> None:
    """The disk goes away after backups/ and an empty folder stands in its place (what an
    unmounted mount point looks like): no later folder may count as backed up."""
    dest = tmp_path / "dest"
    store = await _setup(settings, dest)

    def sink(event: RunEvent) -> None:
        if event.kind == "job_finished" and event.data["folder"] == "backups":
            dest.rename(tmp_path / "unmounted-disk")
            dest.mkdir()

    result = await Runner(settings, store, sink=sink).run(RunRequest())
    assert not result.ok
    by_folder = {j.folder: j for j in result.jobs}
    assert by_folder["backups"].status is JobStatus.COMPLETED
    for folder in ("library", "upload", "profile"):
        assert by_folder[folder].status is JobStatus.FAILED
        assert "destination disappeared" in (by_folder[folder].error_message or "")
    assert list(dest.iterdir()) == []  # nothing written onto the empty mount point
    destination = await store.get_destination("nas")
    assert destination is not None and destination.last_backup_at is None
    await store.close()


async def test_a_local_destination_is_looked_for_between_folders_without_starting_rclone(
    immich: tuple[Path, TreeStats],
    tmp_path: Path,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The marker of a local destination is looked at on the disk, under the encrypted name
    the first listing of the backup's root showed: one listing per run, not one per folder
    (and the test above shows a replaced disk is still caught that way)."""
    from photos_sync.system import execute

    dest = tmp_path / "dest"
    store = await _setup(settings, dest)
    started: list[tuple[str, ...]] = []
    real_run = execute.run_captured

    async def recorded(argv: tuple[str, ...], *args: object, **kwargs: object) -> object:
        started.append(tuple(argv))
        return await real_run(argv, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(execute, "run_captured", recorded)
    result = await Runner(settings, store).run(RunRequest(full=True))
    assert result.ok and len(result.jobs) == 4
    root_listings = [a for a in started if "lsjson" in a and "--max-depth" in a]
    assert len(root_listings) == 1, started
    await store.close()


async def test_lazy_unmount_during_a_sync_stops_it_and_is_not_a_success(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mounted: Path
) -> None:
    root = tmp_path / "immich"
    make_immich_tree(root, library_files=30, upload_files=4, scale=0.5, seed=11, thumbs=False)
    monkeypatch.setenv("BACKUP_IMMICH_PATH", str(root))
    monkeypatch.setenv("BACKUP_BWLIMIT", "2M")
    monkeypatch.setenv("BACKUP_TRANSFERS", "1")
    settings = load_settings()
    dest = mounted / "backup"
    store = await _setup(settings, dest)
    assert await store.get_destination("nas") is not None
    unmounted = asyncio.Event()

    def sink(event: RunEvent) -> None:
        if (
            event.kind == "job_progress"
            and event.data["folder"] == "library"
            and event.data["files_done"] >= 2
            and not unmounted.is_set()
        ):
            unmounted.set()
            subprocess.run(["umount", "-l", str(mounted)], check=True)

    runner = Runner(settings, store, sink=sink, live_interval=0.5)
    result = await asyncio.wait_for(runner.run(RunRequest()), 120)
    assert unmounted.is_set()
    assert not result.ok
    library = next(j for j in result.jobs if j.folder == "library")
    assert library.status is JobStatus.FAILED
    assert "destination disappeared" in (library.error_message or "")
    later = [j for j in result.jobs if j.folder in ("upload", "profile")]
    assert later and all(j.status is JobStatus.FAILED for j in later)
    destination = await store.get_destination("nas")
    assert destination is not None and destination.last_backup_at is None
    # rclone was stopped within about a second: at most a few files landed on the root
    # file system under the mount point, not the rest of the library (~15 MB at 2 MB/s)
    written = sum(p.stat().st_size for p in mounted.rglob("*") if p.is_file())
    assert written < 6 * 1024 * 1024
    await store.close()


# -- 3. a resumed job reads the current source, checked by the same guards ---------------------


async def test_resumed_job_syncs_the_current_source_not_the_stored_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path_a = tmp_path / "immich-a"
    make_immich_tree(path_a, library_files=6, upload_files=6, scale=0.05, seed=2, thumbs=False)
    monkeypatch.setenv("BACKUP_IMMICH_PATH", str(path_a))
    settings = load_settings()
    dest = tmp_path / "dest"
    store = await _setup(settings, dest)
    assert (await Runner(settings, store).run(RunRequest())).ok
    uploads = _backed_up(dest, settings, "upload")
    assert len(uploads) > 0

    # an interrupted run that began on A (its jobs point at A's folders)
    destination = await store.get_destination("nas")
    assert destination is not None
    jobs = await store.create_jobs(
        destination.id,
        "20990101T000000Z",
        [(name, str(path_a / name), prio) for prio, name in enumerate(("upload", "profile"))],
    )
    for job in jobs:
        await store.mark_interrupted(job.id, "the process running it stopped")
    # the owner moves the library to B and empties A's upload/ (keeping the marker)
    path_b = tmp_path / "immich-b"
    shutil.copytree(path_a, path_b)
    for media in _media(path_a / "upload"):
        media.unlink()
    monkeypatch.setenv("BACKUP_IMMICH_PATH", str(path_b))
    settings = load_settings()
    events: list[RunEvent] = []
    result = await Runner(settings, store, sink=events.append).run(RunRequest())
    assert result.ok and result.resumed
    assert all(j.source_path.startswith(str(path_b)) for j in result.jobs)
    assert _backed_up(dest, settings, "upload") == uploads
    assert _archived(dest, settings) == []
    assert any("resuming from the current source" in e.data.get("text", "") for e in events)
    await store.close()


# -- 9. a full disk is not retried, and the run stops there ------------------------------------


async def test_disk_full_fails_once_without_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_disk: Path
) -> None:
    root = tmp_path / "immich"
    make_immich_tree(root, library_files=12, upload_files=4, scale=0.3, seed=13, thumbs=False)
    size = sum(p.stat().st_size for p in _media(root / "library"))
    assert size > 8 * 1024 * 1024, "the library must not fit on the 6 MiB disk"
    monkeypatch.setenv("BACKUP_IMMICH_PATH", str(root))
    monkeypatch.setenv("BACKUP_MAX_RETRIES", "3")
    settings = load_settings()
    store = await _setup(settings, small_disk / "backup")
    events: list[RunEvent] = []
    result = await Runner(settings, store, sink=events.append).run(RunRequest())
    by_folder = {j.folder: j for j in result.jobs}
    library = by_folder["library"]
    assert library.status is JobStatus.FAILED
    assert library.retry_count == 0
    assert "disk is full" in (library.error_message or "")
    assert not any("retry" in e.data.get("text", "") for e in events if e.kind == "message")
    assert by_folder["upload"].status is JobStatus.FAILED
    assert "not attempted" in (by_folder["upload"].error_message or "")
    await store.close()


# -- the records these write are what --status shows ------------------------------------------


async def test_status_json_carries_the_refusal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from photos_sync.reporting.status import status_document

    root = tmp_path / "immich"
    make_immich_tree(root, library_files=10, upload_files=2, scale=0.05, seed=9, thumbs=False)
    monkeypatch.setenv("BACKUP_IMMICH_PATH", str(root))
    monkeypatch.setenv("BACKUP_MAX_DELETE", "1")
    settings = load_settings()
    store = await _setup(settings, tmp_path / "dest")
    assert (await Runner(settings, store).run(RunRequest())).ok
    for path in _media(root / "library")[:3]:
        path.unlink()
    assert not (await Runner(settings, store).run(RunRequest())).ok
    destinations = await store.list_destinations()
    jobs = await store.latest_run_jobs(destinations[0].id)
    document = json.loads(json.dumps(status_document(destinations, {destinations[0].id: jobs}, {})))
    library = next(j for j in document["jobs"] if j["folder"] == "library")
    assert library["status"] == "FAILED"
    assert library["refused"] == "max_delete"
    assert "BACKUP_MAX_DELETE=1" in library["error_message"]
    await store.close()
