"""storage.manifest_reader: `--status` reads a real manifest file read-only, never creates one."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from photos_sync.core.manifest import FileState
from photos_sync.core.records import utcnow
from photos_sync.storage.manifest_db import ManifestDB, ManifestError, manifest_path
from photos_sync.storage.manifest_reader import read_manifest_facts


def test_no_manifest_is_none_and_nothing_is_created(tmp_path: Path) -> None:
    path = manifest_path(tmp_path / "data", 1)
    assert read_manifest_facts(path) is None
    assert not (tmp_path / "data").exists()


def test_the_facts_are_the_manifest_s_own_and_the_file_is_not_written(tmp_path: Path) -> None:
    path = manifest_path(tmp_path, 7)
    manifest = ManifestDB(path)
    try:
        manifest.replace_folder(
            "library", [FileState(b"a.jpg", 1, 1), FileState(b"b.jpg", 2, 2)], "r1"
        )
        manifest.replace_folder("upload", [FileState(b"c.jpg", 3, 3)], "r1")
        manifest.begin_folder("upload", "r2")
        manifest.set_identity("local||/nas|")
        manifest.mark_reconciled(utcnow())
        manifest.mark_copied("r1")
        expected = manifest.state()
    finally:
        manifest.close()
    before = path.read_bytes()
    facts = read_manifest_facts(path)
    assert facts is not None
    assert facts.files == 3
    assert facts.state == expected
    assert dict(facts.state.unfinished) == {"upload": "r2"}
    assert path.read_bytes() == before


def test_a_run_writing_meanwhile_does_not_stop_the_read(tmp_path: Path) -> None:
    path = manifest_path(tmp_path, 1)
    manifest = ManifestDB(path)
    manifest.replace_folder("library", [FileState(b"a.jpg", 1, 1)], "r1")
    # a write transaction left open, as a run rewriting a folder's entries holds one
    writer = sqlite3.connect(path, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("DELETE FROM files")
        facts = read_manifest_facts(path)
        assert facts is not None and facts.files == 1  # the last committed state
        writer.execute("ROLLBACK")
    finally:
        writer.close()
        manifest.close()


def test_an_unreadable_manifest_is_a_manifest_error(tmp_path: Path) -> None:
    path = manifest_path(tmp_path, 1)
    path.parent.mkdir()
    path.write_bytes(b"not a database, " * 512)
    with pytest.raises(ManifestError, match="manifest "):
        read_manifest_facts(path)


def test_the_count_follows_every_write(tmp_path: Path) -> None:
    """The count is kept between reads (`--status --watch` asks every second) and taken again
    after each write, whether it is still in the WAL or checkpointed into the file."""
    path = manifest_path(tmp_path, 1)
    manifest = ManifestDB(path)  # stays open: its writes stay in the WAL
    try:
        manifest.replace_folder("library", [FileState(b"a.jpg", 1, 1)], "r1")
        for files in (2, 3, 4):
            assert (facts := read_manifest_facts(path)) is not None
            assert facts.files == files - 1
            assert (facts := read_manifest_facts(path)) is not None  # the kept count
            assert facts.files == files - 1
            states = [FileState(f"{n}.jpg".encode(), n, n) for n in range(files)]
            manifest.replace_folder("library", states, f"r{files}")
    finally:
        manifest.close()  # the last connection: the WAL goes into the file
    assert (facts := read_manifest_facts(path)) is not None
    assert facts.files == 4
