"""#18 point 5: the data dir is 0700 and every file photos-sync writes there 0600, whatever the
umask and with XDG_RUNTIME_DIR set (the socket then lives elsewhere, so nothing else
tightens the data dir). Folders photos-sync did not create keep their modes; one that other
users can write to is refused. Real CLI and daemon subprocesses, real rclone.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.immich_tree import TreeStats
from tests.support.cli import PHOTOS_SYNC, photos_sync
from tests.support.daemon import DaemonPool, daemon_pool, setup_local
from tests.support.fake_immich import serve_immich

pytestmark = pytest.mark.timeout(120)

KEY = "zq7Kx2immichApiKey9f3LmN0pQrStUvWxYz12345"
SLOW = {"BACKUP_BWLIMIT": "150k"}


@pytest.fixture
def open_umask() -> Iterator[None]:
    """umask 000 for the test and the processes it starts: whatever ends up private, photos-sync
    made private itself."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def daemons() -> Iterator[DaemonPool]:
    with daemon_pool() as pool:
        yield pool


def _modes(root: Path) -> dict[str, int]:
    """Mode of the folder and of everything under it, by relative path ("." for itself)."""
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def _one_line(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def test_every_file_in_the_data_dir_is_private_whatever_the_umask(
    daemons: DaemonPool,
    tmp_path: Path,
    immich: tuple[Path, TreeStats],
    isolated_env: dict[str, str],
    open_umask: None,
) -> None:
    assert isolated_env["XDG_RUNTIME_DIR"]  # the case of the report: the socket is elsewhere
    data_dir = Path(isolated_env["PHOTOS_SYNC_DATA_DIR"])
    dest = setup_local(tmp_path)  # creates the data dir
    with serve_immich(immich[0] / "backups", KEY, dump_delay=0.1) as fake:
        stored = photos_sync(
            "backup",
            "--setup-immich",
            "--yes",
            env={"BACKUP_IMMICH_URL": fake.url + "/api", "PHOTOS_SYNC_IMMICH_API_KEY": KEY},
        )
        assert stored.returncode == 0, stored.stderr
        run = photos_sync(
            "backup",
            env={"BACKUP_IMMICH_URL": fake.url + "/api", "BACKUP_IMMICH_POLL_INTERVAL": "0.05"},
        )
    assert run.returncode == 0, run.stderr
    (immich[0] / "library" / "new.jpg").write_bytes(os.urandom(300_000))
    daemon = daemons.start(SLOW)
    started = daemon.call("start", {"destination": "nas"})["run"]
    daemon.wait_progress(run=started["id"])
    during = _modes(data_dir)  # the daemon holds the DB open: -wal and -shm exist
    daemon.wait_run_end(started["id"])
    expected = {
        "backup.db",
        "backup.db-wal",
        "backup.db-shm",
        "backup.log",
        "daemon.lock",
        "immich-dump.json",
        "locks/destination-1.lock",
        "secrets/nas.json",
        "secrets/immich.json",
    }
    assert expected <= set(during), sorted(during)
    for name, mode in {**_modes(data_dir), **during}.items():
        is_dir = name in (".", "locks", "secrets", "manifests")
        assert mode == (0o700 if is_dir else 0o600), f"{name}: {mode:04o}"
    # rclone still writes with the user's umask (000 here), not photos-sync's private one
    backed_up = [p for p in dest.rglob("*") if p.is_file()]
    assert backed_up and {stat.S_IMODE(p.stat().st_mode) for p in backed_up} == {0o666}


def test_a_data_dir_the_user_made_keeps_its_mode(
    tmp_path: Path, immich: tuple[Path, TreeStats], isolated_env: dict[str, str], open_umask: None
) -> None:
    data_dir = Path(isolated_env["PHOTOS_SYNC_DATA_DIR"])
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)
    setup_local(tmp_path)
    assert photos_sync("backup").returncode == 0
    modes = _modes(data_dir)
    assert modes.pop(".") == 0o755  # not photos-sync's to change
    for name, mode in modes.items():
        is_dir = name in ("locks", "secrets", "manifests")
        assert mode == (0o700 if is_dir else 0o600), f"{name}: {mode:04o}"


@pytest.mark.parametrize("mode", [0o777, 0o1777, 0o775])
def test_a_data_dir_other_users_can_write_is_refused(
    tmp_path: Path, immich: tuple[Path, TreeStats], isolated_env: dict[str, str], mode: int
) -> None:
    data_dir = Path(isolated_env["PHOTOS_SYNC_DATA_DIR"])
    data_dir.mkdir()
    data_dir.chmod(mode)
    if mode & stat.S_IWGRP and not mode & stat.S_IWOTH:
        # group-writable is refused only when the group is not the owner's own private group
        if os.geteuid() != 0:
            pytest.skip("changing a folder's group to a shared one needs root")
        os.chown(data_dir, -1, 100)  # "users" on Debian: a group others belong to
    commands = [
        photos_sync("backup", "--status"),
        photos_sync(
            "backup", "--setup", "local", "--name", "nas", "--path", str(tmp_path), "--yes"
        ),
        photos_sync("backup"),
        subprocess.run([PHOTOS_SYNC, "daemon"], capture_output=True, text=True, timeout=30),
    ]
    for result in commands:
        _one_line(result, "can be written by other users", f"chmod 700 {data_dir}")
    assert stat.S_IMODE(data_dir.stat().st_mode) == mode  # refused, not changed
    assert list(data_dir.iterdir()) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="XDG_DATA_HOME is Linux's")
def test_the_default_data_dir_is_private_and_an_old_one_is_tightened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, open_umask: None
) -> None:
    monkeypatch.delenv("PHOTOS_SYNC_DATA_DIR")
    fresh = tmp_path / "fresh-xdg-data"
    monkeypatch.setenv("XDG_DATA_HOME", str(fresh))
    assert photos_sync("backup", "--status").returncode == 0
    assert _modes(fresh) == {".": 0o700, "photos-sync": 0o700, "photos-sync/backup.db": 0o600}
    # as versions before #18 left it: 0755 and 0644
    old = tmp_path / "old-xdg-data"
    shutil.copytree(fresh, old)
    for path, mode in (
        (old, 0o755),
        (old / "photos-sync", 0o755),
        (old / "photos-sync" / "backup.db", 0o644),
    ):
        path.chmod(mode)
    monkeypatch.setenv("XDG_DATA_HOME", str(old))
    assert photos_sync("backup", "--status").returncode == 0
    # photos-sync's own folder is tightened; the parent is not its folder
    assert _modes(old) == {".": 0o755, "photos-sync": 0o700, "photos-sync/backup.db": 0o600}
