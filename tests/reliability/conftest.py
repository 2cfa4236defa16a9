"""Fixtures of the fault-injection suite, and the soak switch.

Tests marked `soak` (the long part: more power cuts, longer outages) are skipped unless
PHOTOS_SYNC_SOAK=1, so the README's plain `pytest -q` runs only the CI part:

    PHOTOS_SYNC_SOAK=1 .venv/bin/pytest -q -m soak tests/reliability      # the soak only
    PHOTOS_SYNC_SOAK=1 .venv/bin/pytest -q tests/reliability              # everything
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.immich_tree import TreeStats, make_immich_tree
from tests.reliability.harness import RcloneRecorder, S3Service
from tests.support.daemon import DaemonPool, daemon_pool

SOAK = os.environ.get("PHOTOS_SYNC_SOAK") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if SOAK:
        return
    skip = pytest.mark.skip(reason="soak test: set PHOTOS_SYNC_SOAK=1 to run it")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def daemons() -> Iterator[DaemonPool]:
    with daemon_pool() as pool:
        yield pool


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[S3Service]:
    service = S3Service(tmp_path / "s3")
    service.start()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
def recorder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RcloneRecorder:
    rec = RcloneRecorder(tmp_path / "rclone-rec")
    monkeypatch.setenv("RCLONE_BINARY", str(rec.binary))
    return rec


@pytest.fixture
def big_immich(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, TreeStats]:
    """A multi-folder Immich tree of a few MB: slow enough under a bwlimit to act mid-run."""
    root = tmp_path / "immich"
    stats = make_immich_tree(root, scale=0.05, library_files=14, upload_files=10, thumbs=False)
    monkeypatch.setenv("BACKUP_IMMICH_PATH", str(root))
    return root, stats
