"""Fault 4: the disk where the DB lives fills up (a small tmpfs the test mounts), the DB
file is corrupted (its header, every page, the end, or a few pages in the middle of years of
history), or read-only. Each must end in one clear line (no traceback, exit 1) from every
command — the daemon refuses to start — and leave nothing that breaks the next run, which
completes once the cause is gone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.immich_tree import TreeStats
from tests.reliability.harness import TRACEBACK, integrity_ok, jobs
from tests.support.cli import PHOTOS_SYNC, photos_sync
from tests.support.daemon import setup_local
from tests.support.db_history import damage_middle, grow_history

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


def test_damage_in_the_middle_of_a_long_history(
    tmp_path: Path,
    immich: tuple[Path, TreeStats],
    isolated_env: dict[str, str],
) -> None:
    """Ten years of daily runs, 16 pages overwritten half-way: `--status` reads only the
    newest run, so only a check of the whole file finds the damage (#18)."""
    data_dir = Path(isolated_env["PHOTOS_SYNC_DATA_DIR"])
    setup_local(tmp_path)
    first = photos_sync("backup")
    assert first.returncode == 0, first.stderr
    pages = grow_history(data_dir / "backup.db", 3650)
    hit = damage_middle(data_dir / "backup.db")
    print(f"{pages} pages, damaged {hit.start}-{hit.stop - 1}")
    for args in (("backup", "--status"), ("backup", "--status", "--json"), ("backup",)):
        result = photos_sync(*args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        _one_clear_line(result.stderr, "damaged", "malformed", "move it aside", "--setup")
    daemon = subprocess.run([PHOTOS_SYNC, "daemon"], capture_output=True, text=True, timeout=30)
    assert daemon.returncode == 1, daemon.stderr
    _one_clear_line(_errors_only(daemon.stderr), "damaged")
    assert "daemon_ready" not in daemon.stderr


def _without_dac_override() -> list[str]:
    """argv prefix that makes file modes bind the command: as root, drop the capabilities
    that override them (root would otherwise write a 0444 file); nothing for other users."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None or not sys.platform.startswith("linux"):
        pytest.skip("running as root without setpriv: cannot make a file read-only to us")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def _bound(*args: str) -> subprocess.CompletedProcess[str]:
    """`photos-sync ARGS` with file modes binding it (see _without_dac_override)."""
    return subprocess.run(
        [*_without_dac_override(), PHOTOS_SYNC, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_read_only_db_every_command_one_line_nothing_left_behind(
    tmp_path: Path,
    immich: tuple[Path, TreeStats],
    isolated_env: dict[str, str],
) -> None:
    data_dir = Path(isolated_env["PHOTOS_SYNC_DATA_DIR"])
    setup_local(tmp_path)
    first = _bound("backup")
    assert first.returncode == 0, first.stderr
    db = data_dir / "backup.db"
    db.chmod(0o444)
    for args in (("backup", "--status"), ("backup",), ("daemon",)):
        result = _bound(*args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        errors = _errors_only(result.stderr) if args == ("daemon",) else result.stderr
        _one_clear_line(errors, "read-only", f"chmod 600 {db}")
        assert "daemon_ready" not in result.stderr
        # nothing that would stop a writer later: SQLite was not let near the file
        assert sorted(p.name for p in data_dir.glob("backup.db*")) == ["backup.db"], args
    db.chmod(0o600)
    (immich[0] / "library" / "new.jpg").write_bytes(b"x" * 50_000)
    again = _bound("backup")
    assert again.returncode == 0, again.stderr
    assert integrity_ok(db) == "ok"


def test_what_a_read_only_status_used_to_leave_does_not_break_backups(
    tmp_path: Path,
    immich: tuple[Path, TreeStats],
    isolated_env: dict[str, str],
) -> None:
    """Before #18 a `--status` on a 0444 backup.db made -wal and -shm 0444 (SQLite copies
    the DB's mode), and every backup failed afterwards, even with backup.db writable."""
    data_dir = Path(isolated_env["PHOTOS_SYNC_DATA_DIR"])
    setup_local(tmp_path)
    assert _bound("backup").returncode == 0
    db = data_dir / "backup.db"
    db.chmod(0o444)
    reader = (
        "import sqlite3, sys; sqlite3.connect(sys.argv[1]).execute('SELECT 1 FROM backup_jobs')"
    )
    old_status = subprocess.run(
        [*_without_dac_override(), sys.executable, "-c", reader, str(db)], capture_output=True
    )
    assert old_status.returncode == 0, old_status.stderr
    left = {p.name: stat.S_IMODE(p.stat().st_mode) for p in data_dir.glob("backup.db-*")}
    assert left == {"backup.db-wal": 0o444, "backup.db-shm": 0o444}
    db.chmod(0o600)
    (immich[0] / "library" / "new.jpg").write_bytes(b"x" * 50_000)
    again = _bound("backup")
    assert again.returncode == 0, again.stdout + again.stderr
    status = _bound("backup", "--status")
    assert status.returncode == 0, status.stderr
    assert integrity_ok(db) == "ok"
