"""engine.maintenance.reset_jobs: the `backup --reset` rule the CLI and the daemon share,
on a real SQLite store and real manifest files; engine.removal.delete_manifest."""

from __future__ import annotations

from pathlib import Path

import pytest

from photos_sync.core.config import Settings
from photos_sync.core.events import RunRefused, UsageProblem
from photos_sync.core.manifest import FileState
from photos_sync.core.records import utcnow
from photos_sync.core.states import JobStatus
from photos_sync.engine.maintenance import reset_jobs
from photos_sync.engine.removal import delete_manifest
from photos_sync.storage.manifest_db import ManifestDB, manifest_path
from photos_sync.storage.store import Store

OWNER = (4242, "host", None)


def _settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, socket_path=tmp_path / "daemon.sock")


def _manifest(tmp_path: Path, destination_id: int, files: int = 3) -> Path:
    """A manifest of `files` entries that a finished full sync wrote."""
    path = manifest_path(tmp_path, destination_id)
    manifest = ManifestDB(path)
    try:
        states = [FileState(f"IMG_{n}.jpg".encode(), 100 + n, n) for n in range(files)]
        manifest.replace_folder("library", states, "20260101T000000Z")
        manifest.set_identity("local||/nas|")
        manifest.mark_reconciled(utcnow())
    finally:
        manifest.close()
    return path


async def _store_with_two_destinations(tmp_path: Path) -> Store:
    store = await Store.open(tmp_path / "backup.db")
    for name in ("nas", "usb"):
        destination = await store.create_destination(
            name=name, type="local", secrets_ref=f"file:/{name}", remote_path=f"/{name}"
        )
        await store.create_jobs(
            destination.id,
            "20260101T000000Z",
            [("library", "/src/library", 1), ("upload", "/src/upload", 2)],
        )
    return store


async def test_reset_of_one_destination_leaves_the_others(tmp_path: Path) -> None:
    store = await _store_with_two_destinations(tmp_path)
    try:
        assert await reset_jobs(_settings(tmp_path), store, "nas") == 2
        nas = await store.get_destination("nas")
        usb = await store.get_destination("usb")
        assert nas is not None and usb is not None
        assert await store.all_jobs(nas.id) == []
        assert len(await store.all_jobs(usb.id)) == 2
        assert await reset_jobs(_settings(tmp_path), store, None) == 2
    finally:
        await store.close()


async def test_reset_is_refused_while_a_job_runs_and_names_its_pid(tmp_path: Path) -> None:
    store = await _store_with_two_destinations(tmp_path)
    settings = _settings(tmp_path)
    try:
        usb = await store.get_destination("usb")
        assert usb is not None
        running = (await store.all_jobs(usb.id))[0]
        await store.set_status(running.id, JobStatus.RUNNING, owner=OWNER)
        with pytest.raises(RunRefused, match=r"a job is RUNNING \(pid 4242\); stop that backup"):
            await reset_jobs(settings, store, "usb")
        with pytest.raises(RunRefused):
            await reset_jobs(settings, store, None)  # every destination: the running one included
        assert await reset_jobs(settings, store, "nas") == 2  # another destination is not blocked
        assert len(await store.all_jobs(usb.id)) == 2
    finally:
        await store.close()


async def test_an_unknown_destination_is_a_usage_problem_naming_known_ones(tmp_path: Path) -> None:
    store = await _store_with_two_destinations(tmp_path)
    try:
        with pytest.raises(UsageProblem, match="nas, usb"):
            await reset_jobs(_settings(tmp_path), store, "nope")
        assert len(await store.all_jobs()) == 4
    finally:
        await store.close()


async def test_reset_forgets_the_manifest_of_its_destination_only(tmp_path: Path) -> None:
    store = await _store_with_two_destinations(tmp_path)
    try:
        nas, usb = await store.get_destination("nas"), await store.get_destination("usb")
        assert nas is not None and usb is not None
        nas_manifest, usb_manifest = _manifest(tmp_path, nas.id), _manifest(tmp_path, usb.id)
        assert await reset_jobs(_settings(tmp_path), store, "nas") == 2
        forgotten = ManifestDB(nas_manifest)
        kept = ManifestDB(usb_manifest)
        try:
            assert forgotten.count() == 0
            assert forgotten.state().reconciled_at is None  # the next run reconciles
            assert kept.count() == 3 and kept.state().reconciled_at is not None
        finally:
            forgotten.close()
            kept.close()
    finally:
        await store.close()


async def test_reset_creates_no_manifest_and_deletes_an_unreadable_one(tmp_path: Path) -> None:
    store = await _store_with_two_destinations(tmp_path)
    try:
        nas, usb = await store.get_destination("nas"), await store.get_destination("usb")
        assert nas is not None and usb is not None
        broken = manifest_path(tmp_path, usb.id)
        broken.parent.mkdir(parents=True)
        broken.write_bytes(b"not a database, " * 512)
        assert await reset_jobs(_settings(tmp_path), store, None) == 4
        assert not manifest_path(tmp_path, nas.id).exists()  # it had none: none is made
        assert not broken.exists()
    finally:
        await store.close()


def test_removal_deletes_every_manifest_file_of_the_destination_and_no_other(
    tmp_path: Path,
) -> None:
    folder = manifest_path(tmp_path, 1).parent
    _manifest(tmp_path, 1)
    _manifest(tmp_path, 11)
    mine = [
        "1.sqlite-wal",
        "1.sqlite-shm",
        "1.sqlite.broken-2026-01-01T000000",
        "1.importing",
        "send-1-library.txt",
        "read-1-4242.tmp",
        "upload-1.gz",
        "download-1.gz",
    ]
    others = ["11.sqlite-wal", "send-11-library.txt", "upload-11.gz", "read-11-4242.tmp"]
    for name in mine + others:
        (folder / name).write_bytes(b"x")
    delete_manifest(tmp_path, 1)
    assert sorted(p.name for p in folder.iterdir()) == sorted(["11.sqlite", *others])
