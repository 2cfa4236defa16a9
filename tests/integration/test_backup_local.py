"""The core engine end to end, in-process: real rclone, real SQLite, a generated Immich tree."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest

from photos_sync.core.config import Settings
from photos_sync.core.events import RunEvent, RunRefused, RunRequest
from photos_sync.core.states import JobStatus
from photos_sync.engine.runner import Runner
from photos_sync.engine.setup import key_file_path, setup_local
from photos_sync.storage.settings_io import load_settings
from photos_sync.storage.store import Store
from tests.immich_tree import TreeStats, make_immich_tree
from tests.support import plain_rclone
from tests.support.destinations import clone_in_process

DEFAULT_FOLDERS = ("backups", "library", "upload", "profile")


async def _setup(settings: Settings, dest: Path, name: str = "nas") -> Store:
    if clone_in_process(settings, dest, name):  # a copy of one real setup: the same
        return await Store.open(settings.db_path)
    store = await Store.open(settings.db_path)
    await setup_local(settings, store, name=name, path=dest)
    return store


def _all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _media(root: Path) -> list[Path]:
    """Files below `root` except Immich's .immich markers."""
    return [p for p in _all_files(root) if p.name != ".immich"]


async def test_full_backup_is_encrypted_and_verifies_with_plain_rclone(
    immich: tuple[Path, TreeStats], tmp_path: Path, settings: Settings
) -> None:
    root, _ = immich
    dest = tmp_path / "dest"
    store = await _setup(settings, dest)
    events: list[RunEvent] = []
    result = await Runner(settings, store, sink=events.append).run(RunRequest())
    assert result.ok
    assert [j.folder for j in result.jobs] == list(DEFAULT_FOLDERS)
    assert all(j.status is JobStatus.COMPLETED and j.completed_at for j in result.jobs)
    destination = await store.get_destination("nas")
    assert destination is not None and destination.last_backup_at is not None

    env = plain_rclone.crypt_env(dest, key_file_path(settings, "nas"))
    for folder in DEFAULT_FOLDERS:
        check = plain_rclone.cryptcheck(root / folder, f"check:{folder}", env)
        assert check.returncode == 0, check.stderr
        assert "0 differences found" in check.stderr
    # generated folders are not backed up by default; the manifest's copy is (#15)
    listing = plain_rclone.run(["lsf", "check:"], env)
    assert sorted(listing.stdout.split()) == sorted(
        [f"{f}/" for f in DEFAULT_FOLDERS] + [".photos-sync-destination", ".photos-sync/"]
    )
    # files counted per job match the tree (plus the .immich marker)
    library = next(j for j in result.jobs if j.folder == "library")
    assert library.files_transferred == len(_all_files(root / "library"))
    assert library.bytes_confirmed == sum(p.stat().st_size for p in _all_files(root / "library"))
    kinds = {e.kind for e in events}
    assert {"run_started", "job_started", "job_finished", "run_finished"} <= kinds
    await store.close()


async def test_no_plaintext_name_or_content_at_destination(
    immich: tuple[Path, TreeStats], tmp_path: Path, settings: Settings
) -> None:
    root, _ = immich
    dest = tmp_path / "dest"
    store = await _setup(settings, dest)
    assert (await Runner(settings, store).run(RunRequest())).ok
    plain_names = {p.name for p in root.rglob("*")} | {"library", "upload", "backups", "profile"}
    for path in dest.rglob("*"):
        assert path.name not in plain_names, path
        assert ".jpg" not in path.name and ".immich" not in path.name
    sample = next(p for p in _all_files(root / "library") if p.stat().st_size > 64)
    needle = sample.read_bytes()[:64]
    assert all(needle not in p.read_bytes() for p in _all_files(dest))
    await store.close()


async def test_generated_folders_only_when_opted_in(
    immich: tuple[Path, TreeStats], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BACKUP_INCLUDE_GENERATED", "true")
    settings = load_settings()
    store = await _setup(settings, tmp_path / "dest")
    result = await Runner(settings, store).run(RunRequest())
    assert [j.folder for j in result.jobs] == [*DEFAULT_FOLDERS, "thumbs", "encoded-video"]
    await store.close()


async def test_rerun_without_changes_moves_nothing(
    immich: tuple[Path, TreeStats], tmp_path: Path, settings: Settings
) -> None:
    store = await _setup(settings, tmp_path / "dest")
    runner = Runner(settings, store)
    assert (await runner.run(RunRequest())).ok
    second = await runner.run(RunRequest())
    assert second.ok and not second.resumed
    assert all(j.bytes_transferred == 0 and j.files_transferred == 0 for j in second.jobs)
    await store.close()


async def test_deleted_and_replaced_files_are_kept_in_the_archive(
    immich: tuple[Path, TreeStats], tmp_path: Path, settings: Settings
) -> None:
    root, _ = immich
    dest = tmp_path / "dest"
    store = await _setup(settings, dest)
    runner = Runner(settings, store)
    assert (await runner.run(RunRequest())).ok
    victim = _media(root / "upload")[0]
    victim_bytes = victim.read_bytes()
    victim.unlink()
    replaced = _media(root / "library")[0]
    old_content = replaced.read_bytes()
    replaced.write_bytes(os.urandom(len(old_content) + 10))
    second = await runner.run(RunRequest())
    assert second.ok
    env = plain_rclone.crypt_env(dest, key_file_path(settings, "nas"))
    archived = plain_rclone.run(["lsf", "-R", "--files-only", "check:.deleted"], env)
    lines = archived.stdout.split()
    rel_victim = victim.relative_to(root).as_posix()
    rel_replaced = replaced.relative_to(root).as_posix()
    assert any(line.endswith(rel_victim) for line in lines), lines
    assert any(line.endswith(rel_replaced) for line in lines), lines
    stamp = next(line for line in lines if line.endswith(rel_victim)).split("/")[0]
    cat = subprocess.run(
        [plain_rclone.rclone_binary(), "cat", f"check:.deleted/{stamp}/{rel_victim}"],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert cat.returncode == 0 and cat.stdout == victim_bytes
    cat_old = subprocess.run(
        [plain_rclone.rclone_binary(), "cat", f"check:.deleted/{stamp}/{rel_replaced}"],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert cat_old.stdout == old_content
    # and the live copy is the new content
    assert plain_rclone.cryptcheck(root / "library", "check:library", env).returncode == 0
    await store.close()


async def test_dry_run_writes_nothing(
    immich: tuple[Path, TreeStats], tmp_path: Path, settings: Settings
) -> None:
    dest = tmp_path / "dest"
    store = await _setup(settings, dest)
    before = {p: p.stat().st_mtime_ns for p in dest.rglob("*")}
    result = await Runner(settings, store).run(RunRequest(dry_run=True))
    assert result.ok and result.dry_run
    assert {p: p.stat().st_mtime_ns for p in dest.rglob("*")} == before
    library = next(f for f in result.dry_run_folders if f.folder == "library")
    assert library.files == len(_all_files(immich[0] / "library"))
    assert library.bytes > 0
    destination = await store.get_destination("nas")
    assert destination is not None
    assert await store.latest_run_jobs(destination.id) == []
    await store.close()


async def test_missing_marker_refused_and_destination_untouched(
    immich: tuple[Path, TreeStats], tmp_path: Path, settings: Settings
) -> None:
    root, _ = immich
    dest = tmp_path / "dest"
    store = await _setup(settings, dest)
    assert (await Runner(settings, store).run(RunRequest())).ok
    snapshot = {p: p.stat().st_mtime_ns for p in dest.rglob("*")}
    (root / "library" / ".immich").unlink()
    with pytest.raises(RunRefused, match=r"library/.*\.immich"):
        await Runner(settings, store).run(RunRequest())
    assert {p: p.stat().st_mtime_ns for p in dest.rglob("*")} == snapshot
    await store.close()


async def test_unmounted_volume_refused(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty_mountpoint = tmp_path / "mnt"
    empty_mountpoint.mkdir()
    monkeypatch.setenv("BACKUP_IMMICH_PATH", str(empty_mountpoint))
    settings = load_settings()
    store = await _setup(settings, tmp_path / "dest")
    with pytest.raises(RunRefused, match="none of Immich's folders"):
        await Runner(settings, store).run(RunRequest())
    await store.close()


async def test_emptied_source_folder_refused_unless_forced(
    immich: tuple[Path, TreeStats], tmp_path: Path, settings: Settings
) -> None:
    root, _ = immich
    dest = tmp_path / "dest"
    store = await _setup(settings, dest)
    assert (await Runner(settings, store).run(RunRequest())).ok
    for path in _all_files(root / "upload"):
        if path.name != ".immich":
            path.unlink()
    snapshot = {p: p.stat().st_mtime_ns for p in dest.rglob("*")}
    with pytest.raises(RunRefused, match=r"upload/: it is empty at the source"):
        await Runner(settings, store).run(RunRequest())
    assert {p: p.stat().st_mtime_ns for p in dest.rglob("*")} == snapshot
    forced = await Runner(settings, store).run(RunRequest(force=True))
    assert forced.ok  # with --force the files move to the archive, not away
    env = plain_rclone.crypt_env(dest, key_file_path(settings, "nas"))
    archived = plain_rclone.run(["lsf", "-R", "--files-only", "check:.deleted"], env)
    assert len([x for x in archived.stdout.split() if "/upload/" in x]) >= 12
    await store.close()


async def test_max_delete_guard_stops_a_mass_deletion(
    immich: tuple[Path, TreeStats], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _ = immich
    monkeypatch.setenv("BACKUP_MAX_DELETE", "2")
    monkeypatch.setenv("BACKUP_MAX_RETRIES", "0")
    settings = load_settings()
    store = await _setup(settings, tmp_path / "dest")
    assert (await Runner(settings, store).run(RunRequest())).ok
    for path in _media(root / "library")[:5]:
        path.unlink()
    result = await Runner(settings, store).run(RunRequest())
    library = next(j for j in result.jobs if j.folder == "library")
    assert library.status is JobStatus.FAILED
    assert "BACKUP_MAX_DELETE" in (library.error_message or "")
    await store.close()


async def test_destination_folder_vanished_is_refused(
    immich: tuple[Path, TreeStats], tmp_path: Path, settings: Settings
) -> None:
    dest = tmp_path / "dest"
    store = await _setup(settings, dest)
    dest.rename(tmp_path / "elsewhere")
    with pytest.raises(RunRefused, match="does not exist; is the disk mounted"):
        await Runner(settings, store).run(RunRequest())
    assert not dest.exists()  # never recreated behind the user's back
    await store.close()


async def test_empty_mountpoint_at_destination_is_refused(
    immich: tuple[Path, TreeStats], tmp_path: Path, settings: Settings
) -> None:
    dest = tmp_path / "dest"
    store = await _setup(settings, dest)
    dest.rename(tmp_path / "unmounted-disk")
    dest.mkdir()  # what an unmounted NAS mountpoint looks like
    with pytest.raises(RunRefused, match="no photos-sync backup found"):
        await Runner(settings, store).run(RunRequest())
    assert list(dest.iterdir()) == []
    await store.close()


async def test_killed_rclone_is_retried_in_the_same_run_and_sends_only_the_remainder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rclone killed from outside (the OOM killer's SIGKILL) is retried at once within the
    run, and the retry sends only what the killed attempt had not finished."""
    root = tmp_path / "immich"
    make_immich_tree(root, library_files=16, upload_files=2, scale=0.25, seed=7, thumbs=False)
    monkeypatch.setenv("BACKUP_IMMICH_PATH", str(root))
    monkeypatch.setenv("BACKUP_BWLIMIT", "8M")
    monkeypatch.setenv("BACKUP_TRANSFERS", "2")
    settings = load_settings()
    dest = tmp_path / "dest"
    store = await _setup(settings, dest)
    runner: Runner
    env = plain_rclone.crypt_env(dest, key_file_path(settings, "nas"))
    library_files = {
        p.relative_to(root / "library").as_posix(): p.stat().st_size
        for p in _all_files(root / "library")
    }
    killed = asyncio.Event()

    def sink(event: RunEvent) -> None:
        if (
            event.kind == "job_progress"
            and event.data["folder"] == "library"
            and event.data["files_done"] >= 5
            and not killed.is_set()
        ):
            assert runner.rclone_pid is not None
            os.killpg(runner.rclone_pid, signal.SIGKILL)
            killed.set()

    runner = Runner(settings, store, sink=sink, live_interval=0.5)
    first = await runner.run(RunRequest())
    assert killed.is_set()
    library = next(j for j in first.jobs if j.folder == "library")
    assert first.ok, library.error_message
    assert library.status is JobStatus.COMPLETED
    assert library.retry_count == 1  # one retry, in the same run
    # every file counted once: what the killed attempt finished plus the remainder, nothing
    # sent twice (rclone skips what is complete) and nothing missed
    assert library.files_transferred == len(library_files)
    assert library.bytes_confirmed == sum(library_files.values())
    assert plain_rclone.cryptcheck(root / "library", "check:library", env).returncode == 0
    await store.close()


async def test_retryable_failures_retry_with_backoff_then_fail(
    immich: tuple[Path, TreeStats], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = plain_rclone.rclone_binary()
    counter = tmp_path / "attempts"
    wrapper = tmp_path / "flaky-rclone"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = sync ]; then echo x >> {counter}; '
        'echo \'{"level":"error","msg":"connection reset by peer"}\' >&2; exit 5; fi\n'
        f'exec {real} "$@"\n'
    )
    wrapper.chmod(0o755)
    monkeypatch.setenv("BACKUP_MAX_RETRIES", "2")
    settings = load_settings()
    store = await _setup(settings, tmp_path / "dest")
    monkeypatch.setenv("RCLONE_BINARY", str(wrapper))
    settings = load_settings()
    result = await Runner(settings, store).run(RunRequest())
    assert not result.ok
    # every folder: 1 attempt + 2 retries
    assert len(counter.read_text().split()) == 3 * len(DEFAULT_FOLDERS)
    for job in result.jobs:
        assert job.status is JobStatus.FAILED
        assert job.retry_count == 2
        assert "connection reset by peer" in (job.error_message or "")
    # the exhausted run is not resumed: the next run starts fresh jobs
    monkeypatch.delenv("RCLONE_BINARY")
    third = await Runner(load_settings(), store).run(RunRequest())
    assert third.ok and not third.resumed and third.run_id != result.run_id
    await store.close()


async def test_orphaned_running_job_is_interrupted_and_resumed(
    immich: tuple[Path, TreeStats], tmp_path: Path, settings: Settings
) -> None:
    store = await _setup(settings, tmp_path / "dest")
    destination = await store.get_destination("nas")
    assert destination is not None
    jobs = await store.create_jobs(
        destination.id, "20200101T000000Z", [("library", str(immich[0] / "library"), 2)]
    )
    dead = subprocess.Popen(["true"])
    dead.wait()
    await store.set_status(jobs[0].id, JobStatus.RUNNING, owner=(dead.pid, _host(), None))
    result = await Runner(settings, store).run(RunRequest())
    assert result.ok and result.resumed and result.run_id == "20200101T000000Z"
    assert [j.folder for j in result.jobs] == ["library"]
    await store.close()


async def test_stale_job_with_live_owner_refused_unless_forced(
    immich: tuple[Path, TreeStats], tmp_path: Path, settings: Settings
) -> None:
    store = await _setup(settings, tmp_path / "dest")
    destination = await store.get_destination("nas")
    assert destination is not None
    jobs = await store.create_jobs(
        destination.id, "20200101T000000Z", [("library", str(immich[0] / "library"), 2)]
    )
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        await store.set_status(jobs[0].id, JobStatus.RUNNING, owner=(sleeper.pid, _host(), None))
        conn = sqlite3.connect(settings.db_path)
        conn.execute("UPDATE backup_jobs SET last_update = '2020-01-01T00:00:00+00:00'")
        conn.commit()
        conn.close()
        # the live owner holds no lock in this test, so emulate it holding the lock
        from photos_sync.engine.destination import destination_lock

        with destination_lock(settings.data_dir, destination.id) as got:
            assert got
            with pytest.raises(RunRefused, match="may be hung"):
                await Runner(settings, store).run(RunRequest())
            forced = await Runner(settings, store).run(RunRequest(force=True))
        assert forced.ok
    finally:
        sleeper.kill()
    await store.close()


def _host() -> str:
    import socket

    return socket.gethostname()


async def test_runs_within_one_second_get_distinct_ids(
    immich: tuple[Path, TreeStats], tmp_path: Path, settings: Settings
) -> None:
    from photos_sync.core.records import utcnow
    from photos_sync.engine.runner import _next_run_id

    now = utcnow()
    first = _next_run_id(None, now)
    assert _next_run_id(first, now) > first  # same second: one second later
    assert _next_run_id("20991231T235959Z", now) == "21000101T000000Z"
    store = await _setup(settings, tmp_path / "dest")
    runner = Runner(settings, store)
    runs = [await runner.run(RunRequest()) for _ in range(3)]  # well within a few seconds
    assert all(r.ok for r in runs)
    assert len({r.run_id for r in runs}) == 3
    assert all(len(r.jobs) == len(DEFAULT_FOLDERS) for r in runs)
    await store.close()
