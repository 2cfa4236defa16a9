"""#16.3 and #16.4 end to end, in-process, real rclone: folders outside UPLOAD_LOCATION
(BACKUP_EXTRA_PATHS) and the people thumbnails the Immich dump names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from photos_sync.core.config import Settings
from photos_sync.core.events import RestoreRequest, RunEvent, RunRefused, RunRequest
from photos_sync.core.states import JobStatus
from photos_sync.engine.destination import DestinationContext
from photos_sync.engine.restore import Restorer
from photos_sync.engine.runner import Runner
from photos_sync.engine.setup import key_file_path, setup_local
from photos_sync.storage.settings_io import load_settings
from photos_sync.storage.store import Store
from tests.immich_tree import DUMP_V2_5, TreeStats, cut_gzip_stream, make_immich_tree
from tests.support import plain_rclone
from tests.support.destinations import clone_in_process


async def _setup(settings: Settings, dest: Path) -> Store:
    if clone_in_process(settings, dest, "nas"):
        return await Store.open(settings.db_path)
    store = await Store.open(settings.db_path)
    await setup_local(settings, store, name="nas", path=dest)
    return store


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _listing(dest: Path, settings: Settings, remote_path: str) -> list[str]:
    """The files below `remote_path` in the backup, decrypted names, sorted ([] if none)."""
    env = plain_rclone.crypt_env(dest, key_file_path(settings, "nas"))
    listed = plain_rclone.run(["lsf", "-R", "--files-only", f"check:{remote_path}"], env)
    return sorted(listed.stdout.split("\n")[:-1]) if listed.returncode == 0 else []


def _snapshot(dest: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in dest.rglob("*")}


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, TreeStats]:
    """An Immich tree with real dumps whose external library (three originals) lies in a
    folder outside it, and that folder set as BACKUP_EXTRA_PATHS (as `family`)."""
    root = tmp_path / "immich"
    family = tmp_path / "nas-share" / "family"
    stats = make_immich_tree(root, sql_dump=DUMP_V2_5, external_root=family)
    (family / "scans" / "Été 1987 #2.tif").parent.mkdir(parents=True)
    (family / "scans" / "Été 1987 #2.tif").write_bytes(os.urandom(3000))
    monkeypatch.setenv("BACKUP_IMMICH_PATH", str(root))
    monkeypatch.setenv("BACKUP_EXTRA_PATHS", f"family={family}")
    return root, family, stats


# -- extra folders (#16.3) ----------------------------------------------------------------------


async def test_extra_folders_are_backed_up_archived_and_restored(
    tree: tuple[Path, Path, TreeStats], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, family, stats = tree
    assert stats.db is not None and len(stats.db.external_originals()) == 3
    scans = tmp_path / "scans"
    scans.mkdir()
    (scans / "a.tif").write_bytes(os.urandom(2000))
    monkeypatch.setenv("BACKUP_EXTRA_PATHS", f"family={family}:{scans}")
    settings = load_settings()
    dest = tmp_path / "dest"
    store = await _setup(settings, dest)
    runner = Runner(settings, store)

    first = await runner.run(RunRequest())
    assert first.ok
    assert [j.folder for j in first.jobs][-3:] == ["extra/family", "extra/scans", "thumbs"]
    assert first.folder_modes["extra/family"] == "full sync: first backup with a manifest"
    env = plain_rclone.crypt_env(dest, key_file_path(settings, "nas"))
    for source, folder in ((family, "extra/family"), (scans, "extra/scans")):
        check = plain_rclone.cryptcheck(source, f"check:{folder}", env)
        assert check.returncode == 0, check.stderr
        assert "0 differences found" in check.stderr

    # the second run (incremental for Immich's folders) archives what the source lost
    gone = family / "2020" / "DSC_0000.JPG"
    gone_bytes = gone.read_bytes()
    gone.unlink()
    replaced = family / "2020" / "DSC_0001.JPG"
    replaced.write_bytes(os.urandom(5000))
    second = await runner.run(RunRequest())
    assert second.folder_modes["extra/family"] == "incremental"  # walked like Immich's (#15)
    # the database still references the deleted photo: the consistency proof names it (#16.2)
    assert second.consistency is not None
    assert second.consistency["missing_paths"] == ["extra/family/2020/DSC_0000.JPG"]
    assert all(j.status is JobStatus.COMPLETED for j in second.jobs)
    archived = _listing(dest, settings, f".deleted/{second.run_id}")
    assert "extra/family/2020/DSC_0000.JPG" in archived
    assert "extra/family/2020/DSC_0001.JPG" in archived

    # restore: the live folder as it is now, and the deleted file from the archive
    target = tmp_path / "restored"
    restorer = Restorer(DestinationContext(settings, store))
    restored = await restorer.run(RestoreRequest(None, target, path="extra/family"))
    assert restored.ok, restored
    assert _files(target / "extra" / "family") == _files(family)
    back = tmp_path / "deleted"
    await restorer.run(RestoreRequest(None, back, path="extra/family", mode="deleted"))
    assert (back / "extra" / "family" / "2020" / "DSC_0000.JPG").read_bytes() == gone_bytes
    await store.close()


async def test_a_missing_or_emptied_extra_folder_is_refused_unless_forced(
    tree: tuple[Path, Path, TreeStats], tmp_path: Path, settings: Settings
) -> None:
    _, family, _ = tree
    dest = tmp_path / "dest"
    store = await _setup(settings, dest)
    runner = Runner(settings, store)
    assert (await runner.run(RunRequest())).ok
    before = _snapshot(dest)

    # unmounted: the folder is not there at all (no marker to tell, so never synced)
    family.rename(tmp_path / "unmounted")
    for request in (RunRequest(), RunRequest(force=True)):
        with pytest.raises(RunRefused) as info:
            await runner.run(request)
        assert str(info.value) == (
            f"refusing to back up: {family} (BACKUP_EXTRA_PATHS) is missing or not a folder: "
            "mount it, or take it out of BACKUP_EXTRA_PATHS"
        )

    # an empty mount point: refused whether the run is incremental or a full sync
    family.mkdir()
    for request in (RunRequest(), RunRequest(full=True)):
        with pytest.raises(RunRefused, match=r"extra/family/: it is empty at the source"):
            await runner.run(request)
    assert _snapshot(dest) == before  # nothing written, nothing archived

    forced = await runner.run(RunRequest(force=True))
    assert all(j.status is JobStatus.COMPLETED for j in forced.jobs)
    assert forced.consistency is not None and forced.consistency["missing"] == 3
    # the files go to the archive, not away
    archived = _listing(dest, settings, f".deleted/{forced.run_id}/extra/family")
    assert len(archived) == 4
    assert _listing(dest, settings, "extra/family") == []
    await store.close()


async def test_a_malformed_extra_paths_value_stops_the_run_in_one_line(
    tree: tuple[Path, Path, TreeStats], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _, _ = tree
    monkeypatch.setenv("BACKUP_EXTRA_PATHS", f"{root}/library")
    settings = load_settings()
    from photos_sync.core.config import RUN_SETTINGS, ConfigError

    with pytest.raises(ConfigError) as info:
        settings.require(RUN_SETTINGS)
    assert str(info.value) == (
        f"BACKUP_EXTRA_PATHS='{root}/library' is invalid: {root}/library overlaps "
        f"BACKUP_IMMICH_PATH ({root}), which is backed up already: list only folders outside it"
    )


# -- people thumbnails (#16.4) ------------------------------------------------------------------


def _people_thumbnails(stats: TreeStats) -> list[str]:
    assert stats.db is not None
    return sorted(p.thumbnail.removeprefix("thumbs/") for p in stats.db.people)


async def test_people_thumbnails_are_backed_up_and_no_other_thumbnail(
    tree: tuple[Path, Path, TreeStats], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _, stats = tree
    monkeypatch.delenv("BACKUP_EXTRA_PATHS")
    settings = load_settings()
    dest = tmp_path / "dest"
    store = await _setup(settings, dest)
    people = _people_thumbnails(stats)
    others = [p for p in _files(root / "thumbs") if p not in people and p != ".immich"]
    assert len(people) >= 4 and len(others) >= 10

    preview = await Runner(settings, store).run(RunRequest(dry_run=True))
    thumbs_preview = next(f for f in preview.dry_run_folders if f.folder == "thumbs")
    assert thumbs_preview.files == len(people)
    assert preview.folder_modes["thumbs"] == "full sync: people thumbnails only"

    result = await Runner(settings, store).run(RunRequest())
    assert result.ok
    assert [j.folder for j in result.jobs] == ["backups", "library", "upload", "profile", "thumbs"]
    thumbs_job = next(j for j in result.jobs if j.folder == "thumbs")
    assert thumbs_job.status is JobStatus.COMPLETED
    assert thumbs_job.files_transferred == len(people)
    assert _listing(dest, settings, "thumbs") == people  # every person's, nothing else

    # turned on later, thumbs/ goes through the manifest: it sends the other thumbnails,
    # which it could not if the people's copy had been recorded as the whole folder
    monkeypatch.setenv("BACKUP_INCLUDE_GENERATED", "true")
    full = load_settings()
    later = await Runner(full, store).run(RunRequest())
    assert later.ok and later.folder_modes["thumbs"] == "incremental"
    env = plain_rclone.crypt_env(dest, key_file_path(settings, "nas"))
    check = plain_rclone.cryptcheck(root / "thumbs", "check:thumbs", env)
    assert check.returncode == 0, check.stderr
    await store.close()


async def test_people_thumbnails_replaced_are_archived_and_lost_ones_kept(
    tree: tuple[Path, Path, TreeStats], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _, stats = tree
    monkeypatch.delenv("BACKUP_EXTRA_PATHS")
    settings = load_settings()
    dest = tmp_path / "dest"
    store = await _setup(settings, dest)
    runner = Runner(settings, store)
    assert (await runner.run(RunRequest())).ok
    people = _people_thumbnails(stats)
    replaced, lost = people[0], people[1]
    (root / "thumbs" / replaced).write_bytes(os.urandom(1234))
    (root / "thumbs" / lost).unlink()

    events: list[RunEvent] = []
    second = await Runner(settings, store, sink=events.append).run(RunRequest())
    assert second.ok
    thumbs_job = next(j for j in second.jobs if j.folder == "thumbs")
    assert thumbs_job.files_transferred == 1
    assert _listing(dest, settings, f".deleted/{second.run_id}/thumbs") == [replaced]
    assert _listing(dest, settings, "thumbs") == people  # the lost one stays in the backup
    texts = [e.data.get("text", "") for e in events]
    assert any(
        t.startswith("thumbs/: 1 people thumbnail that immich-db-backup-") and f"thumbs/{lost}" in t
        for t in texts
    ), texts
    await store.close()


async def test_a_truncated_dump_backs_up_no_people_thumbnails_and_says_so(
    tree: tuple[Path, Path, TreeStats], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _, stats = tree
    monkeypatch.delenv("BACKUP_EXTRA_PATHS")
    cut_gzip_stream(root / "backups" / stats.dump_names[-1])
    settings = load_settings()
    dest = tmp_path / "dest"
    store = await _setup(settings, dest)
    events: list[RunEvent] = []
    result = await Runner(settings, store, sink=events.append).run(RunRequest())
    thumbs_job = next(j for j in result.jobs if j.folder == "thumbs")
    assert thumbs_job.status is JobStatus.COMPLETED and thumbs_job.files_transferred == 0
    assert _listing(dest, settings, "thumbs") == []
    texts = [e.data.get("text", "") for e in events]
    assert any(
        t.startswith(
            f"thumbs/: people thumbnails not backed up: the dump {stats.dump_names[-1]} is "
            "truncated: its gzip stream ends before the end-of-stream marker"
        )
        for t in texts
    ), texts
    await store.close()
