"""`photos-sync restore --album/--person/--user/--taken` and `restore --immich` as a user runs
them: the real CLI (in the foreground and through the daemon), the real rclone, a local
destination holding a backup of an Immich tree whose dumps describe it."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.immich_tree import DUMP_V2_5, ImmichDb, TreeStats, make_immich_tree
from tests.support import plain_rclone
from tests.support.cli import photos_sync
from tests.support.daemon import DaemonPool, daemon_pool, setup_local

pytestmark = pytest.mark.timeout(180)


def ok(*args: str) -> subprocess.CompletedProcess[str]:
    result = photos_sync(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def refused(code: int, *args: str) -> str:
    """The one line a refused command prints on stderr (no traceback)."""
    result = photos_sync(*args)
    assert result.returncode == code, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def files_of(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def family_files(db: ImmichDb) -> set[str]:
    (album,) = [a for a in db.albums if a.name == "Family"]
    files = set()
    for asset_id in album.asset_ids:
        asset = db.asset(asset_id)
        files |= {asset.original} | ({asset.sidecar} if asset.sidecar else set())
    return files


@pytest.fixture
def backed_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_env: dict[str, str]
) -> tuple[Path, TreeStats, Path]:
    """A local destination `nas` holding a backup of an Immich v2.5 tree."""
    root = tmp_path / "immich"
    stats = make_immich_tree(root, sql_dump=DUMP_V2_5)
    monkeypatch.setenv("BACKUP_IMMICH_PATH", str(root))
    dest = setup_local(tmp_path)
    ok("backup")
    return root, stats, dest


def crypt_env(dest: Path, isolated_env: dict[str, str]) -> dict[str, str]:
    keyfile = Path(isolated_env["PHOTOS_SYNC_DATA_DIR"]) / "secrets" / "nas.json"
    return plain_rclone.crypt_env(dest, keyfile)


def test_restore_an_album_and_the_usage_errors(
    backed_up: tuple[Path, TreeStats, Path], tmp_path: Path
) -> None:
    _root, stats, _dest = backed_up
    assert stats.db is not None
    expected = family_files(stats.db)
    target = tmp_path / "family"
    result = ok("restore", "--from", "nas", "--to", str(target), "--album", "Family")
    assert files_of(target) == expected
    lines = result.stdout.splitlines()
    newest = stats.dump_names[-1]
    assert f'album "Family": 2 assets, {len(expected)} files in the database dump {newest}' in lines
    assert f"restored {len(expected)} files" in result.stdout

    document = json.loads(
        ok(
            "restore", "--to", str(tmp_path / "dry"), "--album", "Family", "--dry-run", "--json"
        ).stdout
    )
    assert document["ok"] is True and document["files"] == len(expected)
    assert document["selection"]["files"] == len(expected)
    assert document["selection"]["dump"] == newest
    assert not (tmp_path / "dry").exists()

    line = refused(2, "restore", "--to", str(tmp_path / "x"), "--album", "holidays")
    assert line.startswith('error: no album "holidays" in the database dump; close matches: ')
    assert '"Holidays of User 0"' in line
    line = refused(2, "restore", "--to", str(tmp_path / "x"), "--taken", "2019-13")
    assert "use e.g. 2019, 2019-06 or 2019-06-12" in line
    line = refused(2, "restore", "--to", str(tmp_path / "x"), "--immich", "--album", "Family")
    assert "cannot be combined" in line
    line = refused(2, "restore", "--to", str(tmp_path / "x"), "--immich", "--path", "library")
    assert "cannot be combined with --path" in line
    line = refused(2, "restore", "--to", str(tmp_path / "x"), "--deleted", "--person", "Anna")
    assert "cannot be combined with --deleted" in line
    assert not (tmp_path / "x").exists()


def test_restore_immich_prints_the_check_and_the_next_steps(
    backed_up: tuple[Path, TreeStats, Path], tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    _root, stats, dest = backed_up
    assert stats.db is not None
    target = tmp_path / "immich-restored"
    result = ok("restore", "--to", str(target), "--immich")
    newest = stats.dump_names[-1]
    out = result.stdout
    assert f"database dump: backups/{newest} (Immich 2.5.6, pg_dump)" in out
    assert (
        "Immich's .immich markers are in library, upload, profile, thumbs, encoded-video, backups"
    ) in out
    assert "files the database references: " in out and ", 0 missing, " in out
    assert "next steps:" in out
    assert f"UPLOAD_LOCATION={target}" in out
    assert '"Restore from backup"' in out
    assert '"Generate Thumbnails" for All' in out  # thumbs/ is not backed up by default
    for folder in ("library", "upload", "profile", "thumbs", "encoded-video", "backups"):
        assert (target / folder / ".immich").is_file()
    assert (target / "backups" / newest).is_file()
    # what photos-sync made there itself is as open as the files rclone restored (the user's
    # umask), not private like its data dir: Immich may run as another user
    umask = os.umask(0o022)
    os.umask(umask)
    for made in (target, target / "thumbs", target / "backups"):
        assert made.stat().st_mode & 0o777 == 0o777 & ~umask, made
    marker = target / "thumbs" / ".immich"
    assert marker.stat().st_mode & 0o777 == 0o666 & ~umask
    assert marker.read_text().isdigit()  # as Immich writes it: the time in milliseconds

    line = refused(2, "restore", "--to", str(target), "--immich")
    assert "is not empty: restore --immich builds a fresh UPLOAD_LOCATION" in line

    # an original lost from the backup: named, exit 1
    lost = next(a.original for a in stats.db.assets if a.original.startswith("upload/"))
    env = crypt_env(dest, isolated_env)
    encrypted = plain_rclone.run(["cryptdecode", "--reverse", "check:", lost], env)
    (dest / encrypted.stdout.split("\t")[-1].strip()).unlink()
    again = photos_sync("restore", "--to", str(tmp_path / "again"), "--immich")
    assert again.returncode == 1, again.stdout + again.stderr
    assert "1 file the database needs is not in " in again.stderr
    assert f"(e.g. {lost} (original))" in again.stderr
    assert ", 1 missing, " in again.stdout


def test_a_truncated_dump_is_one_line_and_exit_1(
    backed_up: tuple[Path, TreeStats, Path], tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    root, stats, dest = backed_up
    newest = stats.dump_names[-1]
    text = gzip.decompress((root / "backups" / newest).read_bytes())
    cut = text[: text.rindex(b"--\n-- PostgreSQL database dump complete")]
    subprocess.run(
        [plain_rclone.rclone_binary(), "rcat", f"check:backups/{newest}"],
        input=gzip.compress(cut),
        env=crypt_env(dest, isolated_env),
        check=True,
        timeout=60,
    )
    line = refused(1, "restore", "--to", str(tmp_path / "x"), "--user", "user0@example.com")
    assert f"the database dump {newest} is unusable: the dump is truncated" in line
    assert "--as-of" in line
    assert not (tmp_path / "x").exists()


@pytest.fixture
def daemons() -> Iterator[DaemonPool]:
    with daemon_pool() as pool:
        yield pool


def test_restore_by_meaning_through_the_daemon(
    backed_up: tuple[Path, TreeStats, Path], tmp_path: Path, daemons: DaemonPool
) -> None:
    _root, stats, _dest = backed_up
    assert stats.db is not None
    daemons.start()
    target = tmp_path / "family"
    result = ok("restore", "--to", str(target), "--album", "Family")
    assert "in the photos-sync daemon" in result.stdout
    assert files_of(target) == family_files(stats.db)
    assert 'album "Family": 2 assets' in result.stdout
    line = refused(2, "restore", "--to", str(tmp_path / "x"), "--person", "Nobody At All")
    assert 'no person "Nobody At All" in the database dump' in line
