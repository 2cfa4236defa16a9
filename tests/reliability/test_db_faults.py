"""Fault 4: the disk where the DB lives fills up (a small tmpfs the test mounts), and the DB
file is corrupted. Each must end in one clear line (no traceback), a DB that passes
`PRAGMA integrity_check`, and a next run that completes once the cause is gone.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.immich_tree import TreeStats
from tests.reliability.harness import TRACEBACK, integrity_ok, jobs
from tests.support.cli import PHOTOS_SYNC, photos_sync
from tests.support.daemon import setup_local

pytestmark = pytest.mark.reliability


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs mounted for this test (root only; skipped where mount is not allowed)."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command: cannot create a small disk for the DB")
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m,mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({made.stderr.strip()}): run as root to test")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _fill(folder: Path) -> Path:
    """Write a filler file until the disk says ENOSPC (bounded by the disk's size)."""
    filler = folder / "filler"
    with contextlib.suppress(OSError), filler.open("wb", buffering=0) as handle:
        for _ in range(10_000):
            handle.write(b"\0" * 4096)
    return filler


def _one_clear_line(stderr: str, *needles: str) -> None:
    assert not TRACEBACK.search(stderr), stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    for needle in needles:
        assert needle in lines[0].lower(), stderr


def test_disk_full_where_the_db_lives(
    small_disk: Path,
    tmp_path: Path,
    immich: tuple[Path, TreeStats],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data_dir = small_disk / "data"
    monkeypatch.setenv("PHOTOS_SYNC_DATA_DIR", str(data_dir))
    setup_local(tmp_path)
    first = photos_sync("backup")
    assert first.returncode == 0, first.stderr
    (immich[0] / "library" / "new.jpg").write_bytes(b"x" * 50_000)
    filler = _fill(small_disk)
    full = photos_sync("backup")
    assert full.returncode == 1, full.stdout + full.stderr
    _one_clear_line(full.stderr, "no space")
    filler.unlink()
    assert integrity_ok(data_dir / "backup.db") == "ok"
    # space is back: the next run completes, and leaves nothing RUNNING
    again = photos_sync("backup")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "RUNNING" not in {j["status"] for j in jobs(data_dir / "backup.db")}
    status = photos_sync("backup", "--status", "--json")
    assert status.returncode == 0, status.stderr


def _corrupt_header(db: Path) -> None:
    data = bytearray(db.read_bytes())
    data[0:100] = b"\x5a" * 100
    db.write_bytes(bytes(data))


def _corrupt_pages(db: Path) -> None:
    data = bytearray(db.read_bytes())
    page = 4096
    for start in range(page, len(data), page):  # every page but the first
        data[start + 8 : start + 200] = b"\xa5" * 192
    db.write_bytes(bytes(data))


def _truncate(db: Path) -> None:
    data = db.read_bytes()
    db.write_bytes(data[: 4096 + 1000])


DAMAGES = {"header": _corrupt_header, "pages": _corrupt_pages, "truncated": _truncate}


def test_corrupted_db_gives_one_line_saying_what_to_do(
    tmp_path: Path,
    immich: tuple[Path, TreeStats],
    isolated_env: dict[str, str],
) -> None:
    data_dir = Path(isolated_env["PHOTOS_SYNC_DATA_DIR"])
    dest = setup_local(tmp_path)
    first = photos_sync("backup")
    assert first.returncode == 0, first.stderr
    db = data_dir / "backup.db"
    # fold the WAL into the file first, so the damage lands in the real pages
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    good = db.read_bytes()
    for name, damage in DAMAGES.items():
        db.write_bytes(good)
        damage(db)
        for args in (("backup", "--status"), ("backup",)):
            result = photos_sync(*args)
            assert result.returncode == 1, (name, args, result.stdout, result.stderr)
            _one_clear_line(result.stderr, "damaged", "move it aside", "--setup")
        for suffix in ("-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
    daemon = subprocess.run([PHOTOS_SYNC, "daemon"], capture_output=True, text=True, timeout=30)
    assert daemon.returncode == 1
    _one_clear_line(_errors_only(daemon.stderr), "damaged")
    # doing what the message says works: move it aside, set up again, back up
    db.rename(db.with_suffix(".db.broken"))
    setup = photos_sync("backup", "--setup", "local", "--name", "nas", "--path", str(dest), "--yes")
    assert setup.returncode == 0, setup.stderr
    again = photos_sync("backup")
    assert again.returncode == 0, again.stderr


def _errors_only(stderr: str) -> str:
    """The daemon logs to stderr too; keep its `error:` lines (and any traceback)."""
    keep = [
        line
        for line in stderr.splitlines()
        if line.startswith("error:") or TRACEBACK.search(line) or line.startswith("  File")
    ]
    return "\n".join(keep)
