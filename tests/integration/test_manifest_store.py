"""The manifest's SQLite file and the source walk (#15): real files, real SQLite."""

from __future__ import annotations

import gzip
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from photos_sync.core.manifest import FileState, Move
from photos_sync.storage.manifest_db import ManifestDB, ManifestError, import_copy
from photos_sync.system.source_scan import WalkProblems, walk_files


def make(root: Path, paths: list[str]) -> None:
    for index, path in enumerate(paths):
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"x" * index)


def test_the_walk_yields_files_in_byte_order_with_their_sizes(tmp_path: Path) -> None:
    make(tmp_path, ["a.jpg", "a/x.jpg", "a0.jpg", "b/c/d.heic", ".immich", "é.jpg"])
    problems = WalkProblems()
    walked = list(walk_files(tmp_path, problems))
    paths = [s.path for s in walked]
    assert paths == sorted(paths)
    assert set(paths) == {
        b"a.jpg",
        b"a/x.jpg",
        b"a0.jpg",
        b"b/c/d.heic",
        b".immich",
        "é.jpg".encode(),
    }
    sizes = {s.path: s.size for s in walked}
    assert sizes[b"a/x.jpg"] == 1 and sizes[b"b/c/d.heic"] == 3
    assert problems.unreadable == []


def test_the_walk_leaves_out_symlinks_and_keeps_undecodable_names(tmp_path: Path) -> None:
    make(tmp_path, ["real.jpg", "dir/in.jpg"])
    (tmp_path / "link.jpg").symlink_to(tmp_path / "real.jpg")
    (tmp_path / "dirlink").symlink_to(tmp_path / "dir")
    (tmp_path / os.fsdecode(b"bad\xff.jpg")).write_bytes(b"1")
    paths = [s.path for s in walk_files(tmp_path, WalkProblems())]
    assert paths == [b"bad\xff.jpg", b"dir/in.jpg", b"real.jpg"]


def test_an_unreadable_folder_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """(Refused by the kernel for a user; CI runs as root, who reads anything, so the
    refusal is made by the scandir the walk calls.)"""
    make(tmp_path, ["ok.jpg", "locked/x.jpg"])
    real_scandir = os.scandir

    def scandir(path: bytes | int) -> object:
        if isinstance(path, bytes) and path.endswith(b"/locked"):
            raise PermissionError(13, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr("photos_sync.system.source_scan.os.scandir", scandir)
    problems = WalkProblems()
    assert [s.path for s in walk_files(tmp_path, problems)] == [b"ok.jpg"]
    assert problems.unreadable == [b"locked"]


def test_an_unreadable_root_is_reported(tmp_path: Path) -> None:
    problems = WalkProblems()
    assert list(walk_files(tmp_path / "absent", problems)) == []
    assert problems.unreadable == [b"."]


def test_entries_come_back_in_the_walk_order(tmp_path: Path) -> None:
    """SQLite orders BLOB paths by bytes: the same order as the walk, so the two merge."""
    make(tmp_path, ["a.jpg", "a/x.jpg", "a0.jpg", "Z.jpg", "é/1.jpg", "e/1.jpg"])
    walked = list(walk_files(tmp_path, WalkProblems()))
    db = ManifestDB(tmp_path / "m.sqlite")
    db.replace_folder("library", reversed(walked), "r1")
    assert list(db.entries("library")) == walked
    assert db.count("library") == len(walked)
    db.close()


def test_a_reconcile_commits_its_staged_walk_less_what_rclone_left_out(tmp_path: Path) -> None:
    db = ManifestDB(tmp_path / "m.sqlite")
    db.replace_folder("upload", [FileState(b"old.jpg", 1, 1)], "r0")
    db.begin_folder("upload", "r1")
    assert db.state().unfinished == {"upload": "r1"}
    db.stage("upload", [FileState(b"a.jpg", 1, 1), FileState(b"bad.jpg", 2, 2)])
    assert [s.path for s in db.entries("upload")] == [b"old.jpg"]  # not before the sync ends
    assert db.commit_staged("upload", [b"bad.jpg"], "r1") == 1
    assert [s.path for s in db.entries("upload")] == [b"a.jpg"]
    assert db.state().unfinished == {} and "upload" in db.state().folders
    db.close()


def test_an_incremental_commit_and_moves(tmp_path: Path) -> None:
    db = ManifestDB(tmp_path / "m.sqlite")
    db.replace_folder("upload", [FileState(b"gone.jpg", 1, 1), FileState(b"x.jpg", 5, 7)], "r0")
    db.apply("upload", sent=[FileState(b"new.jpg", 2, 2)], archived=[b"gone.jpg"], run="r1")
    db.apply_moves([Move("upload", b"x.jpg", "library", b"anna/x.jpg", 5, 7)], "r1")
    assert [s.path for s in db.entries("upload")] == [b"new.jpg"]
    assert list(db.entries("library")) == [FileState(b"anna/x.jpg", 5, 7)]
    assert db.has_files("library") and not db.has_files("profile")
    db.close()


def test_a_failed_write_leaves_the_entries_as_they_were(tmp_path: Path) -> None:
    db = ManifestDB(tmp_path / "m.sqlite")
    db.replace_folder("upload", [FileState(b"a.jpg", 1, 1)], "r0")

    def broken() -> object:
        yield FileState(b"b.jpg", 1, 1)
        raise OSError("disk gone")

    with pytest.raises(OSError):
        db.replace_folder("upload", broken(), "r1")  # type: ignore[arg-type]
    assert [s.path for s in db.entries("upload")] == [b"a.jpg"]
    db.close()


def test_the_copy_round_trips_and_a_broken_copy_is_refused(tmp_path: Path) -> None:
    db = ManifestDB(tmp_path / "m.sqlite")
    db.replace_folder("upload", [FileState(b"a.jpg", 1, 1)], "r0")
    db.mark_reconciled(datetime(2026, 11, 29, tzinfo=UTC))
    db.export(tmp_path / "copy.gz")
    db.close()
    target = tmp_path / "new" / "1.sqlite"
    target.parent.mkdir()
    import_copy(tmp_path / "copy.gz", target, {"copy_run": "r0"})
    adopted = ManifestDB(target)
    assert [s.path for s in adopted.entries("upload")] == [b"a.jpg"]
    assert adopted.state().copy_run == "r0" and adopted.state().reconciled_at is not None
    adopted.close()
    (tmp_path / "bad.gz").write_bytes(gzip.compress(b"not a database" * 100))
    with pytest.raises(ManifestError):
        import_copy(tmp_path / "bad.gz", tmp_path / "new" / "2.sqlite", {})
    assert not (tmp_path / "new" / "2.sqlite").exists()
