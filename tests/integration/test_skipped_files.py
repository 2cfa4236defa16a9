"""Nothing skipped in silence (#13): every file under a backed-up folder is either sent or
named, with the reason, in the run's events, the job record, backup.log and the summary.
Source problems (unreadable files and folders, symlinks, names too long for the
destination) are not retried, and the rest of the folder goes through.

Real rclone and a generated Immich tree. The unreadable cases run rclone without the
capabilities that let root read anything (setpriv), as a non-root owner's rclone would be.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from photos_sync.core.config import Settings
from photos_sync.core.events import RunEvent, RunRequest
from photos_sync.core.states import JobStatus
from photos_sync.engine.runner import Runner, summarise
from photos_sync.engine.setup import key_file_path, setup_local
from photos_sync.storage.settings_io import load_settings
from photos_sync.storage.store import Store
from tests.conftest import rclone_binary
from tests.immich_tree import TreeStats, make_immich_tree
from tests.support import plain_rclone
from tests.support.destinations import clone_in_process


async def _setup(settings: Settings, dest: Path) -> Store:
    if clone_in_process(settings, dest, "nas"):  # a copy of one real setup: the same
        return await Store.open(settings.db_path)
    store = await Store.open(settings.db_path)
    await setup_local(settings, store, name="nas", path=dest)
    return store


def _backed_up(dest: Path, settings: Settings, folder: str) -> set[str]:
    env = plain_rclone.crypt_env(dest, key_file_path(settings, "nas"))
    listed = plain_rclone.run(["lsf", "-R", "--files-only", f"check:{folder}"], env)
    return {line for line in listed.stdout.splitlines() if line and line != ".immich"}


def _tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "immich"
    make_immich_tree(root, library_files=6, upload_files=2, scale=0.02, seed=4, thumbs=False)
    monkeypatch.setenv("BACKUP_IMMICH_PATH", str(root))
    return root


def _skips(job_detail: str) -> dict[str, str]:
    return {d["path"]: d["reason"] for d in json.loads(job_detail)}


async def test_symlinks_are_named_not_skipped_in_silence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _tree(tmp_path, monkeypatch)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "e.jpg").write_bytes(os.urandom(2000))
    (root / "library" / "user9").symlink_to(elsewhere)
    (root / "library" / "linked.jpg").symlink_to(elsewhere / "e.jpg")
    settings = load_settings()
    dest = tmp_path / "dest"
    store = await _setup(settings, dest)
    events: list[RunEvent] = []
    result = await Runner(settings, store, sink=events.append).run(RunRequest())

    # every folder completed, but the backup is not whole: the run is not ok (exit 1)
    assert not result.ok
    assert all(j.status is JobStatus.COMPLETED for j in result.jobs)
    library = next(j for j in result.jobs if j.folder == "library")
    assert library.files_skipped == 2
    assert _skips(library.skipped_detail) == {
        "library/user9": "symlink",
        "library/linked.jpg": "symlink",
    }
    messages = [e.data["text"] for e in events if e.kind == "message"]
    assert any("2 files not backed up" in m and "library/user9" in m for m in messages)
    assert "BACKUP_FOLLOW_SYMLINKS" in json.dumps(library.as_dict())
    assert "WARNING: 2 files were not backed up" in summarise(result)
    assert result.as_dict()["files_skipped"] == 2
    # and the real files of library/ are all there
    expected = {
        p.relative_to(root / "library").as_posix()
        for p in (root / "library").rglob("*")
        if p.is_file() and not p.is_symlink() and p.name != ".immich"
    }
    assert _backed_up(dest, settings, "library") == expected
    await store.close()


async def test_follow_symlinks_backs_up_their_targets_and_guards_against_loops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _tree(tmp_path, monkeypatch)
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "2020").mkdir(parents=True)
    (elsewhere / "2020" / "e.jpg").write_bytes(os.urandom(2000))
    (root / "library" / "user9").symlink_to(elsewhere)
    (elsewhere / "back").symlink_to(elsewhere)  # a loop, reached through user9
    (root / "library" / "up").symlink_to(root / "library")  # a loop inside the tree
    monkeypatch.setenv("BACKUP_FOLLOW_SYMLINKS", "true")
    settings = load_settings()
    dest = tmp_path / "dest"
    store = await _setup(settings, dest)
    events: list[RunEvent] = []
    result = await Runner(settings, store, sink=events.append).run(RunRequest())

    assert result.ok  # a loop only leads back to files backed up through their own path
    library = next(j for j in result.jobs if j.folder == "library")
    assert library.files_skipped == 0
    said = [e.data["text"] for e in events if e.kind == "message"]
    for loop in ("library/user9/back", "library/up"):
        assert any(t.startswith(f"{loop}: a symbolic link that leads back") for t in said), said
    sent = _backed_up(dest, settings, "library")
    assert "user9/2020/e.jpg" in sent
    assert not any(p.startswith(("up/", "user9/back/")) for p in sent)
    await store.close()


def _rclone_without_read_override(tmp_path: Path) -> str:
    """An RCLONE_BINARY that runs the real rclone without CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH: mode 000 then stops it as it stops any non-root user."""
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv to take away root's power to read anything")
    drop = "-dac_override,-dac_read_search"
    probe = subprocess.run(
        [setpriv, f"--inh-caps={drop}", f"--bounding-set={drop}", "true"], capture_output=True
    )
    if probe.returncode != 0:
        pytest.skip(f"setpriv cannot drop capabilities here: {probe.stderr!r}")
    wrapper = tmp_path / "rclone-unprivileged"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'exec {setpriv} --inh-caps={drop} --bounding-set={drop} {rclone_binary()} "$@"\n'
    )
    wrapper.chmod(0o755)
    return str(wrapper)


async def test_unreadable_files_and_folders_are_named_and_not_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _tree(tmp_path, monkeypatch)
    monkeypatch.setenv("RCLONE_BINARY", _rclone_without_read_override(tmp_path))
    monkeypatch.setenv("BACKUP_MAX_RETRIES", "3")
    unreadable = root / "library" / "user0" / "secret.jpg"
    unreadable.parent.mkdir(parents=True, exist_ok=True)
    unreadable.write_bytes(os.urandom(3000))
    locked = root / "library" / "locked"
    locked.mkdir()
    (locked / "inside.jpg").write_bytes(os.urandom(3000))
    settings = load_settings()
    dest = tmp_path / "dest"
    store = await _setup(settings, dest)
    unreadable.chmod(0)
    locked.chmod(0)
    events: list[RunEvent] = []
    try:
        result = await Runner(settings, store, sink=events.append).run(RunRequest())
    finally:
        unreadable.chmod(0o644)
        locked.chmod(0o755)

    library = next(j for j in result.jobs if j.folder == "library")
    assert library.status is JobStatus.COMPLETED
    assert library.retry_count == 0
    assert not any("retry" in e.data.get("text", "") for e in events if e.kind == "message")
    assert _skips(library.skipped_detail) == {
        "library/user0/secret.jpg": "unreadable",
        "library/locked": "unreadable",
    }
    detail = json.loads(library.skipped_detail)
    assert all("read access" in d["advice"] for d in detail)
    assert not result.ok
    sent = _backed_up(dest, settings, "library")
    assert "user0/secret.jpg" not in sent
    readable = {
        p.relative_to(root / "library").as_posix()
        for p in (root / "library").rglob("*")
        if p.is_file() and p.name != ".immich" and "locked" not in p.parts and p != unreadable
    }
    assert readable <= sent
    await store.close()


async def test_a_name_too_long_for_the_destination_is_named_in_plain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _tree(tmp_path, monkeypatch)
    long_name = "IMG_" + "x" * 176 + ".jpg"  # fine here, too long once encrypted (~300)
    (root / "upload" / long_name).write_bytes(os.urandom(1000))
    settings = load_settings()
    dest = tmp_path / "dest"
    store = await _setup(settings, dest)
    result = await Runner(settings, store).run(RunRequest())

    upload = next(j for j in result.jobs if j.folder == "upload")
    assert upload.status is JobStatus.COMPLETED
    assert upload.retry_count == 0
    assert _skips(upload.skipped_detail) == {f"upload/{long_name}": "name_too_long"}
    assert "rename" in json.loads(upload.skipped_detail)[0]["advice"]
    assert len(_backed_up(dest, settings, "upload")) >= 2
    await store.close()


def test_cli_names_skipped_files_in_output_status_json_and_log(
    immich: tuple[Path, TreeStats], tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    """As a person sees it: the run's output, `--status`, `--status --json` and backup.log."""
    from tests.support.cli import photos_sync

    root, _ = immich
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "e.jpg").write_bytes(os.urandom(500))
    (root / "library" / "user9").symlink_to(elsewhere)
    dest = tmp_path / "dest"
    setup = photos_sync("backup", "--setup", "local", "--name", "nas", "--path", str(dest), "--yes")
    assert setup.returncode == 0, setup.stderr
    run = photos_sync("backup")
    assert run.returncode == 1, run.stderr  # a file not backed up: not a clean success
    assert "library/user9" in run.stdout + run.stderr
    assert "1 file was not backed up" in run.stdout
    status = photos_sync("backup", "--status")
    assert "WARNING library/: 1 file not backed up (symlink): library/user9" in status.stdout
    assert "BACKUP_FOLLOW_SYMLINKS" in status.stdout
    document = json.loads(photos_sync("backup", "--status", "--json").stdout)
    library = next(j for j in document["jobs"] if j["folder"] == "library")
    assert library["files_skipped"] == 1
    assert library["skipped_detail"][0]["path"] == "library/user9"
    log = (Path(isolated_env["PHOTOS_SYNC_DATA_DIR"]) / "backup.log").read_text()
    assert "file_skipped" in log and "library/user9" in log
