"""`photos-sync verify` as a user runs it, with the real CLI, rclone and a local destination:
what changed at the source since the last backup is not a failure, a damaged object is, and
an unreadable source folder neither stops the later folders nor the JSON document."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.immich_tree import TreeStats, make_immich_tree
from tests.support import plain_rclone
from tests.support.cli import PHOTOS_SYNC, photos_sync
from tests.support.daemon import setup_local

pytestmark = pytest.mark.timeout(180)


def ok(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = photos_sync(*args, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def files_of(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def encrypted_file(dest: Path, keyfile: Path, plain: str) -> Path:
    """The file at the local destination that holds `plain` (a path below the Immich root)."""
    env = plain_rclone.crypt_env(dest, keyfile)
    decoded = plain_rclone.run(["cryptdecode", "--reverse", "check:", plain], env)
    assert decoded.returncode == 0, decoded.stderr
    return dest / decoded.stdout.split("\t")[-1].strip()


def damage(path: Path) -> None:
    """Overwrite bytes in the middle of an encrypted file, as bit rot or a bad disk would."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])
    path.write_bytes(bytes(data))


def test_changes_since_the_backup_are_newer_and_a_damaged_object_fails(
    tmp_path: Path, immich: tuple[Path, TreeStats], isolated_env: dict[str, str]
) -> None:
    root, _ = immich
    dest = setup_local(tmp_path)
    ok("backup")
    keyfile = Path(isolated_env["PHOTOS_SYNC_DATA_DIR"]) / "secrets" / "nas.json"
    old_photo = "library/" + files_of(root / "library")[1]

    # after the backup: a photo uploaded, the nightly dump written (as Immich does: .tmp,
    # then renamed) and the oldest one rotated away, the marker rewritten by a restart
    new_photo = root / "library" / "user0" / "2026" / "11" / "IMG_99999.jpg"
    new_photo.parent.mkdir(parents=True)
    new_photo.write_bytes(os.urandom(3000))
    dumps = sorted((root / "backups").glob("immich-db-backup-*.sql.gz"))
    fresh = root / "backups" / "immich-db-backup-20261130T020000-v2.3.1-pg14.19.sql.gz"
    fresh.with_suffix(".tmp").write_bytes(os.urandom(5000))
    fresh.with_suffix(".tmp").rename(fresh)
    dumps[0].unlink()
    (root / "library" / ".immich").write_text("1764468000000")

    result = photos_sync("verify")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 missing, 0 differ, 0 unreadable; 4 newer than the backup" in result.stdout
    assert "added at the source): library/user0/2026/11/IMG_99999.jpg" in result.stdout
    assert f"added at the source): backups/{fresh.name}" in result.stdout
    assert f"deleted at the source): backups/{dumps[0].name}" in result.stdout
    assert "rewritten at each start): library/.immich" in result.stdout
    assert result.stderr == ""

    report = json.loads(ok("verify", "--json").stdout)
    assert report["ok"] is True and report["error"] is None
    assert {(e["path"], e["change"]) for e in report["newer"]} == {
        ("library/user0/2026/11/IMG_99999.jpg", "added"),
        (f"backups/{fresh.name}", "added"),
        (f"backups/{dumps[0].name}", "deleted"),
        ("library/.immich", "marker"),
    }
    assert report["missing"] == report["differ"] == report["unchecked"] == []
    assert report["figures"]["newer"] == 4
    assert set(report["backups"]) == {"backups", "library", "upload", "profile"}
    assert all(report["backups"].values())

    # a damaged object in the backup, of a photo nobody touched: a true mismatch
    damage(encrypted_file(dest, keyfile, old_photo))
    result = photos_sync("verify")
    assert result.returncode == 1
    assert f"differs: {old_photo}" in result.stderr
    assert "4 newer than the backup" in result.stdout
    status = json.loads(ok("backup", "--status", "--json").stdout)
    assert status["destinations"][0]["last_verify"]["ok"] is False
    assert status["destinations"][0]["last_verify"]["differ"] == 1


# -- an unreadable source folder -----------------------------------------------------------------


def _other_user() -> tuple[int, int] | None:
    """(uid, gid) to run as so that file modes apply (root reads everything), or None when
    the tests already run as an ordinary user."""
    if os.geteuid() != 0:
        return None
    nobody = pwd.getpwnam("nobody")
    return nobody.pw_uid, nobody.pw_gid


@pytest.fixture
def reachable_dir() -> Iterator[Path]:
    """A folder another user can reach (pytest's tmp_path is private to its owner)."""
    base = Path(tempfile.mkdtemp(prefix="photos-sync-verify-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        for path in [base, *base.rglob("*")]:
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)


def test_an_unreadable_source_folder_does_not_stop_the_later_folders(
    reachable_dir: Path,
) -> None:
    as_user = _other_user()
    if as_user is not None and shutil.which("setpriv") is None:
        pytest.skip("running as root needs setpriv (util-linux) to check as another user")
    base = reachable_dir
    root = base / "immich"
    make_immich_tree(root, thumbs=False)
    for name in ("home", "dest"):
        (base / name).mkdir()
    # everything belongs to the user photos-sync runs as (before the backup: a chown changes
    # every file's ctime, which verify reads as "changed since the backup")
    if as_user is not None:
        for path in [base, *base.rglob("*")]:
            os.chown(path, *as_user, follow_symlinks=False)
    prefix = (
        []
        if as_user is None
        else ["setpriv", f"--reuid={as_user[0]}", f"--regid={as_user[1]}", "--clear-groups"]
    )
    env = {
        **os.environ,
        "HOME": str(base / "home"),
        "PHOTOS_SYNC_DATA_DIR": str(base / "data"),
        "PHOTOS_SYNC_SOCKET": str(base / "run" / "daemon.sock"),
        "XDG_RUNTIME_DIR": str(base / "xdg"),
        "BACKUP_IMMICH_PATH": str(root),
        "COLUMNS": "200",
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*prefix, PHOTOS_SYNC, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=base,
        )

    dest = base / "dest"
    for args in (
        ("backup", "--setup", "local", "--name", "nas", "--path", str(dest), "--yes"),
        ("backup",),
    ):
        done = run(*args)
        assert done.returncode == 0, done.stdout + done.stderr
    keyfile = base / "data" / "secrets" / "nas.json"

    # library/: a new folder nobody may read (rclone cryptcheck exits 6 on it: the verify
    # used to stop here); upload/: a backed-up folder that became unreadable; profile/, the
    # last folder: a damaged object that only a verify that carries on can find
    locked_new = root / "library" / "user9"
    locked_new.mkdir()
    (locked_new / "IMG_1.jpg").write_bytes(os.urandom(2000))
    if as_user is not None:
        for path in (locked_new, locked_new / "IMG_1.jpg"):
            os.chown(path, *as_user)
    user_dir = sorted(p for p in (root / "upload").iterdir() if p.is_dir())[0]
    in_locked = len(files_of(user_dir))
    profile_photo = "profile/" + files_of(root / "profile")[-1]
    damage(encrypted_file(dest, keyfile, profile_photo))
    locked_new.chmod(0)
    user_dir.chmod(0)

    as_json = run("verify", "--json")
    assert as_json.returncode == 1, as_json.stderr
    report = json.loads(as_json.stdout)  # one whole document
    assert report["ok"] is False and report["error"] is None
    assert report["folders"] == ["backups", "library", "upload", "profile"]
    errors = {e["path"]: e["error"] for e in report["errors"]}
    assert set(errors) == {"library/user9/", f"upload/{user_dir.name}/"}
    assert "source folder cannot be read (permission denied)" in errors["library/user9/"]
    assert (
        f"{in_locked} files below it in the backup not checked"
        in errors[f"upload/{user_dir.name}/"]
    )
    assert report["differ"] == [profile_photo]  # the folder after them was checked
    assert report["newer"] == []  # the locked folder's files are not "deleted at the source"
    assert report["missing"] == []

    human = run("verify")
    assert human.returncode == 1
    assert "not checked: library/user9/: the source folder cannot be read" in human.stderr
    assert f"differs: {profile_photo}" in human.stderr
    assert "Traceback" not in human.stderr


def test_verify_json_is_a_whole_document_when_verify_cannot_run(
    tmp_path: Path, immich: tuple[Path, TreeStats]
) -> None:
    setup_local(tmp_path)
    for args, code, words in (
        (("--to", "nowhere"), 2, "nowhere"),
        (("--sample", "150"), 2, "percentage"),
    ):
        result = photos_sync("verify", "--json", *args)
        assert result.returncode == code, result.stderr
        report = json.loads(result.stdout)
        assert report["ok"] is False and words in report["error"]
        assert report["missing"] == report["newer"] == report["errors"] == []
        assert words in result.stderr
    unset = photos_sync("verify", "--json", env={"BACKUP_IMMICH_PATH": ""})
    assert unset.returncode != 0
    assert "BACKUP_IMMICH_PATH" in json.loads(unset.stdout)["error"]
    shutil.rmtree(tmp_path / "dest-nas")
    result = photos_sync("verify", "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert "does not exist" in report["error"] and report["destination"] is None
