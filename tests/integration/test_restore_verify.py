"""Restore, verify and the archive, in-process: real rclone, real SQLite, a generated Immich tree,
a local folder or a real S3 server (`rclone serve s3` on loopback) as destination."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from photos_sync.core.archive import parse_stamp
from photos_sync.core.config import Settings
from photos_sync.core.events import RestoreRequest, RunRefused, RunRequest
from photos_sync.core.states import JobStatus
from photos_sync.engine.destination import DestinationContext
from photos_sync.engine.restore import Restorer, RestoreResult, archive_listing
from photos_sync.engine.runner import Runner
from photos_sync.engine.setup import SetupRequest, key_file_path, setup_destination, setup_local
from photos_sync.engine.verify import verify
from photos_sync.reporting.status import gather_status
from photos_sync.storage.settings_io import load_settings
from photos_sync.storage.store import RestoreAndVerifyStore, Store
from tests.immich_tree import TreeStats
from tests.support import plain_rclone
from tests.support.destinations import clone_in_process
from tests.support.s3server import S3Server, serve_s3

FOLDERS = ("backups", "library", "upload", "profile")


# -- helpers -----------------------------------------------------------------------------------


def snapshot(root: Path, into: Path) -> Path:
    """A copy of the backed-up folders of an Immich tree (what a restore must give back)."""
    into.mkdir(parents=True)
    for folder in FOLDERS:
        shutil.copytree(root / folder, into / folder)
    return into


def assert_same_tree(expected: Path, actual: Path) -> None:
    """`diff -r`: same names, same bytes, nothing more and nothing less."""
    result = subprocess.run(
        ["diff", "-r", str(expected), str(actual)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def assert_same_files(expected: Path, actual: Path) -> None:
    """Same files with the same bytes (empty folders aside: rclone copies files)."""
    assert files_of(actual) == files_of(expected)
    for name in files_of(expected):
        assert (actual / name).read_bytes() == (expected / name).read_bytes(), name


def files_of(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def some_media(root: Path, folder: str = "library") -> list[str]:
    """Plain paths (below the Immich root) of the media files of `folder`."""
    return [f"{folder}/{p}" for p in files_of(root / folder) if not p.endswith(".immich")]


async def local_backup(settings: Settings, dest: Path, name: str = "nas") -> Store:
    copied = clone_in_process(settings, dest, name)  # a copy of one real setup: the same
    store = await Store.open(settings.db_path)
    if not copied:
        await setup_local(settings, store, name=name, path=dest)
    result = await Runner(settings, store).run(RunRequest())
    assert result.ok
    return store


def crypt_env(settings: Settings, dest: Path) -> dict[str, str]:
    return plain_rclone.crypt_env(dest, key_file_path(settings, "nas"))


def encrypted_path(env: dict[str, str], plain: str) -> str:
    """The encrypted relative path of a plain path, as plain rclone computes it."""
    result = plain_rclone.run(["cryptdecode", "--reverse", "check:", plain], env)
    assert result.returncode == 0, result.stderr
    return result.stdout.split("\t")[-1].strip()


async def restore(store: Store, settings: Settings, **kw: Any) -> RestoreResult:
    request = RestoreRequest(**kw)
    return await Restorer(DestinationContext(settings, store)).run(request)


async def s3_setup(settings: Settings, server: S3Server) -> Store:
    store = await Store.open(settings.db_path)
    request = SetupRequest(
        kind="s3",
        name="cloud",
        bucket="immich-backup",
        endpoint=server.endpoint,
        secrets="file",
        env={
            **os.environ,
            "PHOTOS_SYNC_ACCESS_KEY_ID": server.access_key_id,
            "PHOTOS_SYNC_SECRET_ACCESS_KEY": server.secret_access_key,
        },
    )
    await setup_destination(settings, store, request)
    return store


@pytest.fixture
def s3_no_hashes(tmp_path: Path) -> Iterator[S3Server]:
    """An S3 server that keeps no hash of its objects (`--etag-hash ''`): every object is
    like a B2 large file or an S3 multipart upload, which `rclone cryptcheck` cannot check."""
    with serve_s3(tmp_path / "s3", extra_args=("--etag-hash", "")) as server:
        yield server


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[S3Server]:
    with serve_s3(tmp_path / "s3") as server:
        yield server


# -- restore -----------------------------------------------------------------------------------


async def test_backup_delete_source_restore_is_byte_identical_local(
    immich: tuple[Path, TreeStats], tmp_path: Path, settings: Settings
) -> None:
    root, _ = immich
    expected = snapshot(root, tmp_path / "expected")
    store = await local_backup(settings, tmp_path / "dest")
    try:
        shutil.rmtree(root)
        target = tmp_path / "restored"
        result = await restore(store, settings, destination=None, target=target)
        assert result.ok, result.error
        assert_same_tree(expected, target)  # no archive, no marker, nothing else
        job = result.job
        assert job is not None
        assert job.status is JobStatus.COMPLETED and job.completed_at
        assert job.files_transferred == len(files_of(expected))
        assert job.bytes_transferred == sum(
            p.stat().st_size for p in expected.rglob("*") if p.is_file()
        )
    finally:
        await store.close()


async def test_backup_delete_source_restore_is_byte_identical_s3(
    immich: tuple[Path, TreeStats], tmp_path: Path, s3: S3Server, settings: Settings
) -> None:
    root, _ = immich
    expected = snapshot(root, tmp_path / "expected")
    store = await s3_setup(settings, s3)
    try:
        assert (await Runner(settings, store).run(RunRequest())).ok
        shutil.rmtree(root)
        target = tmp_path / "restored"
        result = await restore(store, settings, destination="cloud", target=target)
        assert result.ok, result.error
        assert_same_tree(expected, target)
    finally:
        await store.close()


async def test_restore_one_file_and_one_folder(
    immich: tuple[Path, TreeStats], tmp_path: Path, settings: Settings
) -> None:
    root, _ = immich
    store = await local_backup(settings, tmp_path / "dest")
    try:
        one = some_media(root)[0]
        target = tmp_path / "one-file"
        result = await restore(store, settings, destination="nas", target=target, path=one)
        assert result.ok
        assert files_of(target) == [one]
        assert (target / one).read_bytes() == (root / one).read_bytes()

        folder = one.rsplit("/", 2)[0]  # library/<user>/<year>
        target = tmp_path / "one-folder"
        result = await restore(
            store, settings, destination="nas", target=target, path=f"/{folder}/"
        )
        assert result.ok
        assert_same_tree(root / folder, target / folder)
        assert [p.name for p in target.iterdir()] == ["library"]

        with pytest.raises(RunRefused, match="not in the backup"):
            await restore(store, settings, destination="nas", target=target, path="library/nope")
        with pytest.raises(RunRefused, match=r"\.\."):
            await restore(store, settings, destination="nas", target=target, path="library/../x")
    finally:
        await store.close()


async def test_restore_never_overwrites_without_the_flag(
    immich: tuple[Path, TreeStats], tmp_path: Path, settings: Settings
) -> None:
    root, _ = immich
    store = await local_backup(settings, tmp_path / "dest")
    try:
        one, other = some_media(root)[:2]
        target = tmp_path / "restored"
        (target / one).parent.mkdir(parents=True)
        (target / one).write_bytes(b"the user's own file")
        result = await restore(store, settings, destination="nas", target=target, path="library")
        assert result.ok
        assert (target / one).read_bytes() == b"the user's own file"
        assert (target / other).read_bytes() == (root / other).read_bytes()

        result = await restore(
            store, settings, destination="nas", target=target, path="library", overwrite=True
        )
        assert result.ok
        assert (target / one).read_bytes() == (root / one).read_bytes()
        assert_same_tree(root / "library", target / "library")
    finally:
        await store.close()


async def test_interrupted_restore_resumes_without_rewriting(
    immich: tuple[Path, TreeStats], tmp_path: Path, settings: Settings
) -> None:
    root, _ = immich
    expected = snapshot(root, tmp_path / "expected")
    store = await local_backup(settings, tmp_path / "dest")
    target = tmp_path / "restored"
    try:
        slow = dataclasses.replace(settings, bwlimit="150k")
        task = asyncio.create_task(
            Restorer(DestinationContext(slow, store)).run(RestoreRequest(None, target))
        )
        first: dict[str, tuple[int, int]] = {}
        for _ in range(200):
            await asyncio.sleep(0.05)
            done = (
                [p for p in files_of(target) if not p.endswith(".partial")]
                if target.exists()
                else []
            )
            if len(done) >= 3:
                break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        jobs = RestoreAndVerifyStore(store)
        (job,) = await jobs._restores("1 = 1", ())
        assert job.status is JobStatus.INTERRUPTED
        first = {
            p: ((target / p).stat().st_ino, (target / p).stat().st_mtime_ns)
            for p in files_of(target)
            if not p.endswith(".partial")
        }
        assert 3 <= len(first) < len(files_of(expected)), "the restore was not cut mid-way"

        result = await Restorer(DestinationContext(settings, store)).run(
            RestoreRequest(None, target)
        )
        assert result.ok, result.error
        assert result.job is not None and result.job.id == job.id
        assert result.job.status is JobStatus.COMPLETED
        assert result.files == len(files_of(expected)) - len(first)
        assert_same_tree(expected, target)  # no .partial leftovers either
        for path, (inode, mtime) in first.items():
            stat = (target / path).stat()
            assert (stat.st_ino, stat.st_mtime_ns) == (inode, mtime), f"{path} was rewritten"
    finally:
        await store.close()


async def test_restore_dry_run_writes_nothing_and_records_no_job(
    immich: tuple[Path, TreeStats], tmp_path: Path, settings: Settings
) -> None:
    store = await local_backup(settings, tmp_path / "dest")
    try:
        target = tmp_path / "restored"
        result = await restore(store, settings, destination="nas", target=target, dry_run=True)
        assert result.ok and result.job is None
        assert result.files > 0
        assert not target.exists()
        assert await RestoreAndVerifyStore(store)._restores("1 = 1", ()) == []
    finally:
        await store.close()


# -- the archive -------------------------------------------------------------------------------


async def test_deleted_file_comes_back_from_the_archive(
    immich: tuple[Path, TreeStats], tmp_path: Path, settings: Settings
) -> None:
    root, _ = immich
    gone, changed = some_media(root)[:2]
    original_gone = (root / gone).read_bytes()
    original_changed = (root / changed).read_bytes()
    store = await local_backup(settings, tmp_path / "dest")
    try:
        between = datetime.now(UTC)
        await asyncio.sleep(1.1)  # the next run gets its own stamp (one per second)
        (root / gone).unlink()
        (root / changed).write_bytes(b"edited after the first backup")
        second = await Runner(settings, store).run(RunRequest())
        assert second.ok
        destinations = DestinationContext(settings, store)

        listed = await archive_listing(destinations, "nas", "library")
        assert {r["path"] for r in listed} == {gone, changed}
        assert all(r["run"] == second.run_id for r in listed)
        assert await archive_listing(destinations, "nas", "upload") == []

        target = tmp_path / "deleted"
        result = await restore(
            store, settings, destination="nas", target=target, mode="deleted", path=gone
        )
        assert result.ok
        assert files_of(target) == [gone]
        assert (target / gone).read_bytes() == original_gone

        # the whole library as it was between the two runs
        target = tmp_path / "as-of"
        result = await restore(
            store,
            settings,
            destination="nas",
            target=target,
            mode="as-of",
            moment=between,
            path="library",
        )
        assert result.ok
        assert (target / gone).read_bytes() == original_gone
        assert (target / changed).read_bytes() == original_changed
        expected = set(some_media(root)) | {gone, "library/.immich"}
        assert set(files_of(target)) == expected

        # as of now: the live state (the deleted file is not there, the edit is)
        target = tmp_path / "as-of-now"
        result = await restore(
            store,
            settings,
            destination="nas",
            target=target,
            mode="as-of",
            moment=datetime.now(UTC),
            path="library",
        )
        assert result.ok
        assert_same_files(root / "library", target / "library")

        with pytest.raises(RunRefused, match="holds nothing"):
            await restore(
                store,
                settings,
                destination="nas",
                target=tmp_path / "x",
                mode="deleted",
                path="upload",
            )
        with pytest.raises(RunRefused, match="nothing under"):
            await restore(
                store,
                settings,
                destination="nas",
                target=tmp_path / "x",
                mode="as-of",
                moment=datetime(2000, 1, 1, tzinfo=UTC),
                path="library",
            )
    finally:
        await store.close()


def _plant_archive_run(env: dict[str, str], stamp: str) -> None:
    result = subprocess.run(
        [plain_rclone.rclone_binary(), "rcat", f"check:.deleted/{stamp}/library/old.jpg"],
        input=b"old",
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def _archive_runs(env: dict[str, str]) -> list[str]:
    listed = plain_rclone.run(["lsf", "--dirs-only", "check:.deleted"], env)
    return sorted(line.rstrip("/") for line in listed.stdout.split())


async def test_retention_prunes_only_runs_older_than_the_limit(
    immich: tuple[Path, TreeStats], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BACKUP_KEEP_DELETED_DAYS", "30")
    settings = load_settings()
    dest = tmp_path / "dest"
    copied = clone_in_process(settings, dest)
    store = await Store.open(settings.db_path)
    if not copied:
        await setup_local(settings, store, name="nas", path=dest)
    try:
        env = crypt_env(settings, dest)
        now = datetime.now(UTC)

        def stamp(days: float) -> str:
            return (now - timedelta(days=days)).strftime("%Y%m%dT%H%M%SZ")

        old, older, recent, edge = stamp(31), stamp(400), stamp(10), stamp(29.9)
        for s in (old, older, recent, edge):
            _plant_archive_run(env, s)

        dry = await Runner(settings, store).run(RunRequest(dry_run=True))
        assert sorted(dry.pruned) == sorted([old, older])
        assert _archive_runs(env) == sorted([old, older, recent, edge])  # nothing removed

        real = await Runner(settings, store).run(RunRequest())
        assert real.ok and sorted(real.pruned) == sorted([old, older])
        assert _archive_runs(env) == sorted([recent, edge])
    finally:
        await store.close()


# -- verify ------------------------------------------------------------------------------------


async def test_verify_clean_then_flipped_missing_and_extra(
    immich: tuple[Path, TreeStats], tmp_path: Path, settings: Settings
) -> None:
    root, _ = immich
    dest = tmp_path / "dest"
    store = await local_backup(settings, dest)
    try:
        destinations = DestinationContext(settings, store)
        report = await verify(destinations, None)
        assert report.ok, report.as_dict()
        assert report.downloaded == []  # a local destination has hashes for everything
        assert len(report.outcome.matched) == sum(len(files_of(root / f)) for f in FOLDERS)

        env = crypt_env(settings, dest)
        flipped, lost = some_media(root)[:2]
        encrypted = dest / encrypted_path(env, flipped)
        data = bytearray(encrypted.read_bytes())
        data[len(data) // 2] ^= 0x01
        encrypted.write_bytes(bytes(data))
        (dest / encrypted_path(env, lost)).unlink()
        put = subprocess.run(
            [plain_rclone.rclone_binary(), "rcat", "check:upload/stray.jpg"],
            input=b"not in the source",
            env=env,
            capture_output=True,
            timeout=60,
        )
        assert put.returncode == 0

        report = await verify(destinations, "nas")
        assert not report.ok
        assert report.outcome.differ == [flipped]
        assert report.outcome.missing == [lost]
        assert report.outcome.extra == ["upload/stray.jpg"]

        status = await gather_status(settings, store)
        last = status["destinations"][0]["last_verify"]
        assert last["ok"] is False and last["differ"] == 1
        assert last["missing"] == 1 and last["extra"] == 1
        assert last["finished_at"] and last["mode"] == "sample 1%"
    finally:
        await store.close()


async def test_verify_is_refused_while_a_backup_runs(
    immich: tuple[Path, TreeStats], tmp_path: Path, settings: Settings
) -> None:
    from photos_sync.engine.destination import destination_lock

    copied = clone_in_process(settings, tmp_path / "dest")
    store = await Store.open(settings.db_path)
    if not copied:
        await setup_local(settings, store, name="nas", path=tmp_path / "dest")
    try:
        destination = await store.get_destination("nas")
        assert destination is not None
        with destination_lock(settings.data_dir, destination.id) as locked:
            assert locked
            with pytest.raises(RunRefused, match="running"):
                await verify(DestinationContext(settings, store), "nas")
    finally:
        await store.close()


async def test_objects_without_hashes_are_downloaded_and_compared(
    immich: tuple[Path, TreeStats], tmp_path: Path, s3_no_hashes: S3Server, settings: Settings
) -> None:
    root, _ = immich
    store = await s3_setup(settings, s3_no_hashes)
    try:
        runner = Runner(settings, store)
        assert (await runner.run(RunRequest())).ok
        every = sorted(f"{f}/{p}" for f in FOLDERS for p in files_of(root / f))

        # plain cryptcheck calls all of them "matching" without checking a single hash
        env = dict(os.environ)
        env.update(s3_no_hashes.rclone_env("s3"))
        bare = plain_rclone.run(["lsjson", "-R", "--files-only", "--hash", "s3:immich-backup"], env)
        assert bare.returncode == 0 and not any(e.get("Hashes") for e in json.loads(bare.stdout))

        # default: every small file without a hash is downloaded
        report = await verify(runner.destinations, "cloud")
        assert report.ok, report.as_dict()
        assert sorted(report.downloaded) == every
        assert report.left_unverified == []

        # with a tiny "small file" limit, only a sample of the (now "large") files is fetched
        report = await verify(runner.destinations, "cloud", sample_percent=10, seed=1, small_file=1)
        assert report.ok
        assert 0 < len(report.downloaded) < len(every)
        assert sorted(report.downloaded + report.left_unverified) == every
        assert len(report.outcome.matched) == len(report.downloaded)

        # damage one stored object: only a content comparison can notice; --full downloads
        # every file without a hash, large or small
        # (a backed-up file's object: not the manifest's copy in .photos-sync/, which verify
        # leaves to the next run)
        bucket = s3_no_hashes.root / "immich-backup"
        meta = bucket / encrypted_path(
            plain_rclone.crypt_env(bucket, key_file_path(settings, "cloud")), ".photos-sync"
        )
        assert meta.is_dir()
        stored = sorted(
            p
            for p in bucket.rglob("*")
            if p.is_file() and p.stat().st_size > 1000 and meta not in p.parents
        )
        data = bytearray(stored[0].read_bytes())
        data[-20] ^= 0x01
        stored[0].write_bytes(bytes(data))
        report = await verify(runner.destinations, "cloud", full=True, small_file=1)
        assert not report.ok
        assert sorted(report.downloaded) == every and report.left_unverified == []
        problems = report.outcome.differ + report.outcome.unchecked
        assert len(problems) == 1 and problems[0] in every
        last = (await gather_status(settings, store))["destinations"][0]["last_verify"]
        assert last["ok"] is False and last["mode"] == "full"
    finally:
        await store.close()


def test_stamp_of_a_run_parses() -> None:
    assert parse_stamp("20261125T030000Z") == datetime(2026, 11, 25, 3, tzinfo=UTC)
