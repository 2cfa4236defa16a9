"""A power cut in the middle of an incremental run (#15): SIGKILL the daemon and its rclone
while it uploads the new files, start a fresh daemon, and check that the run finishes by
itself, the folder whose manifest entries were being changed is reconciled (never trusted),
plain `rclone cryptcheck` is clean, the deleted files are in the archive, and the next run
is incremental again with nothing to send."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from tests.immich_tree import TreeStats
from tests.reliability.harness import (
    BACKED_UP,
    S3Service,
    assert_cryptcheck_clean,
    crypt_env_s3,
    integrity_ok,
    power_cut,
    setup_s3,
)
from tests.reliability.test_power_cut import SLOW, _cut_at
from tests.support import plain_rclone
from tests.support.daemon import DaemonPool

pytestmark = pytest.mark.reliability


def _change_the_tree(root: Path) -> list[str]:
    """New photos in upload/ (enough to cut mid-upload under the bandwidth limit), two
    deleted originals and one renamed; returns the deleted paths."""
    for n in range(12):
        path = root / "upload" / "5a1e" / f"{n:02d}" / f"new-{n:02d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(150_000))
    library = sorted(p for p in (root / "library").rglob("*.jpg"))
    deleted = [p.relative_to(root).as_posix() for p in library[:2]]
    for path in library[:2]:
        path.unlink()
    target = root / "library" / "admin" / "2001" / "01" / "renamed.jpg"
    target.parent.mkdir(parents=True, exist_ok=True)
    os.rename(library[2], target)
    return deleted


def test_a_power_cut_during_an_incremental_upload_loses_nothing(
    daemons: DaemonPool,
    s3: S3Service,
    big_immich: tuple[Path, TreeStats],
    isolated_env: dict[str, str],
) -> None:
    root = big_immich[0]
    data_dir = Path(isolated_env["PHOTOS_SYNC_DATA_DIR"])
    db_path = data_dir / "backup.db"
    setup_s3(s3)
    daemon = daemons.start()
    daemon.call("start", {"destination": "cloud"})
    first = daemon.wait_run_end()
    assert first["ok"], first
    power_cut(daemon)
    deleted = _change_the_tree(root)

    daemon = daemons.start(SLOW)
    daemon.call("start", {"destination": "cloud"})
    hit = _cut_at(daemon, "mid-file", db_path, random.Random(0))
    assert hit is not None and "upload/" in hit, hit
    assert integrity_ok(db_path) == "ok"

    final = daemons.start()  # resumes the cut run by itself
    end = final.wait_run_end()
    assert end["ok"] and end["run"]["reason"] == "resume", end
    modes = end["result"]["folder_modes"]
    assert modes["upload"].startswith("full sync: the last run stopped"), modes
    env = crypt_env_s3(s3, data_dir / "secrets" / "cloud.json")
    assert_cryptcheck_clean(root, env, BACKED_UP)
    archive = plain_rclone.run(["lsf", "-R", "--files-only", "check:.deleted"], env)
    for path in deleted:
        assert any(line.endswith(path) for line in archive.stdout.splitlines()), path

    final.call("start", {"destination": "cloud"})
    last = final.wait_run_end()
    assert last["ok"], last
    assert set(last["result"]["folder_modes"].values()) == {"incremental"}, last["result"]
    assert sum(j["files_transferred"] for j in last["result"]["jobs"]) == 0
