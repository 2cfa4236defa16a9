"""The suite's copied setups (tests/support/destinations.py) are what a real setup leaves."""

from __future__ import annotations

import json
import re
import sqlite3
import stat
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tests.immich_tree import TreeStats
from tests.support import plain_rclone
from tests.support.cli import photos_sync
from tests.support.destinations import COPIES, clone_local

STAMP = re.compile(r"\d{4}-\d\d-\d\dT[0-9:.]+(Z|\+00:00)")


def _files(root: Path) -> dict[str, int]:
    """Relative path -> permission bits of everything under `root` (and root itself)."""
    return {
        str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in [root, *root.rglob("*")]
    }


def _destinations(data_dir: Path, dest: Path) -> list[dict[str, Any]]:
    with closing(sqlite3.connect(data_dir / "backup.db")) as conn:
        conn.row_factory = sqlite3.Row
        rows = [dict(r) for r in conn.execute("SELECT * FROM backup_destinations ORDER BY id")]
    for row in rows:
        row["created_at"] = "<stamp>"
        row["remote_path"] = row["remote_path"].replace(str(dest.parent), "<tmp>")
        row["secrets_ref"] = row["secrets_ref"].replace(str(data_dir), "<data>")
    return rows


def _log(data_dir: Path, dest: Path) -> list[str]:
    text = (data_dir / "backup.log").read_text()
    text = text.replace(str(data_dir), "<data>").replace(str(dest.parent), "<tmp>")
    return STAMP.sub("<stamp>", text).splitlines()


@pytest.mark.skipif(not COPIES, reason="TESTS_REAL_SETUP=1: copies are off")
def test_a_copied_setup_matches_a_real_one_and_backs_up(
    immich: tuple[Path, TreeStats], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_data, copy_data = tmp_path / "real" / "data", tmp_path / "copy" / "data"
    real_dest, copy_dest = tmp_path / "real" / "dest", tmp_path / "copy" / "dest"
    for folder in (real_dest, copy_dest):
        folder.mkdir(parents=True)

    monkeypatch.setenv("PHOTOS_SYNC_DATA_DIR", str(real_data))
    for name, folder in (("nas", real_dest), ("usb", real_dest.with_name("dest-usb"))):
        folder.mkdir(exist_ok=True)
        setup = photos_sync(
            "backup", "--setup", "local", "--name", name, "--path", str(folder), "--yes"
        )
        assert setup.returncode == 0, setup.stderr

    monkeypatch.setenv("PHOTOS_SYNC_DATA_DIR", str(copy_data))
    assert clone_local(copy_dest, "nas")
    copy_dest.with_name("dest-usb").mkdir()
    assert clone_local(copy_dest.with_name("dest-usb"), "usb")

    assert _files(copy_data) == _files(real_data)
    for folder in (copy_dest, copy_dest.with_name("dest-usb")):
        real = real_dest.with_name(folder.name)
        assert len(_files(folder)) == len(_files(real)) == 2  # the folder and its marker
        assert _files(folder)["."] == _files(real)["."]
    assert _destinations(copy_data, copy_dest) == _destinations(real_data, real_dest)
    assert _log(copy_data, copy_dest) == _log(real_data, real_dest)
    for name in ("nas", "usb"):
        keys = json.loads((copy_data / "secrets" / f"{name}.json").read_text())
        assert (
            keys.keys() == json.loads((real_data / "secrets" / f"{name}.json").read_text()).keys()
        )

    # The copy is a working destination: a backup goes to the test's folder, readable with
    # the test's key file; a copy that kept the template's paths would write elsewhere.
    run = photos_sync("backup", "--to", "nas")
    assert run.returncode == 0, run.stderr
    env = plain_rclone.crypt_env(copy_dest, copy_data / "secrets" / "nas.json")
    marker = plain_rclone.run(["cat", "check:.photos-sync-destination"], env)
    assert json.loads(marker.stdout)["name"] == "nas"
    listing = plain_rclone.run(["lsf", "check:"], env).stdout.split()
    assert "library/" in listing
    status = json.loads(photos_sync("backup", "--status", "--json").stdout)
    assert [d["name"] for d in status["destinations"]] == ["nas", "usb"]
    assert status["destinations"][0]["last_backup_at"]


def test_a_setup_shaped_by_the_test_is_not_copied(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    (Path.cwd() / ".env").write_text("BACKUP_TRANSFERS=2\n")
    assert not clone_local(dest)
    (Path.cwd() / ".env").unlink()
    spy = tmp_path / "rclone-spy"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RCLONE_BINARY", str(spy))
        assert not clone_local(dest)
    assert not any(dest.iterdir())
    assert not (tmp_path / "data").exists()
