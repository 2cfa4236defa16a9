"""Hostile file names through the real CLI, the real rclone and a local destination (#18,
point 8): Unicode twins (NFC and NFD `café.jpg`, and two such folders) and a name that is not
UTF-8 (`b"bad\\xff.jpg"`). Before the fix rclone kept one twin of each pair with a NOTICE only,
and the run, verify and restore said all was well; the undecodable name was backed up but
`restore --deleted` skipped it silently and `--list-deleted` showed U+FFFD."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import unicodedata
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.immich_tree import TreeStats
from tests.support import plain_rclone
from tests.support.cli import photos_sync
from tests.support.daemon import DaemonPool, daemon_pool, setup_local

pytestmark = pytest.mark.timeout(180)

NFC = unicodedata.normalize("NFC", "café.jpg")
NFD = unicodedata.normalize("NFD", "café.jpg")
FOLDER_NFC = unicodedata.normalize("NFC", "Été")
FOLDER_NFD = unicodedata.normalize("NFD", "Été")
BAD = b"bad\xff.jpg"
BAD_SHOWN = "library/names/bad\\xff.jpg"


def ok(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = photos_sync(*args, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    return result


def names_tree(root: Path) -> Path:
    """library/names/ with both twins pairs and the undecodable name; distinct contents."""
    names = root / "library" / "names"
    names.mkdir()
    (names / NFC).write_bytes(b"the NFC cafe")
    (names / NFD).write_bytes(b"the NFD cafe, longer")
    (names / FOLDER_NFC).mkdir()
    (names / FOLDER_NFC / "a.jpg").write_bytes(b"in the NFC folder")
    (names / FOLDER_NFD).mkdir()
    (names / FOLDER_NFD / "a.jpg").write_bytes(b"in the NFD folder, longer")
    with open(os.path.join(os.fsencode(names), BAD), "wb") as handle:
        handle.write(b"a name that is not UTF-8")
    return names


def tree_bytes(root: Path) -> dict[bytes, bytes]:
    """Every file below `root` by its exact relative path bytes -> content."""
    top = os.fsencode(root)
    found = {}
    for directory, _, files in os.walk(top):
        for name in files:
            path = os.path.join(directory, name)
            with open(path, "rb") as handle:
                found[os.path.relpath(path, top)] = handle.read()
    return found


def crypt_env(dest: Path, isolated_env: dict[str, str]) -> dict[str, str]:
    keyfile = Path(isolated_env["PHOTOS_SYNC_DATA_DIR"]) / "secrets" / "nas.json"
    return plain_rclone.crypt_env(dest, keyfile)


def test_twins_and_undecodable_names_are_backed_up_named_verified_and_restored(
    immich: tuple[Path, TreeStats], tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    root, _ = immich
    names = names_tree(root)
    expected = tree_bytes(names)
    assert len(expected) == 5
    dest = setup_local(tmp_path)

    run = ok("backup")
    out = run.stdout
    # every hazardous name is named, and the summary says so
    assert f"file name: {BAD_SHOWN} — backed up; the name is not valid UTF-8" in out
    for twin, spelled in ((NFC, "'caf\\xe9.jpg' (NFC)"), (NFD, "'cafe\\u0301.jpg' (NFD)")):
        assert f"file name: library/names/{twin} — backed up; this name, {spelled}, differs" in out
    for twin in (FOLDER_NFC, FOLDER_NFD):
        assert f"file name: library/names/{twin}/ — backed up" in out
    assert re.search(
        r"^4/4 folders backed up to nas: .* sent; 5 file names need attention \(listed above\)$",
        out,
        re.M,
    ), out
    log = (Path(isolated_env["PHOTOS_SYNC_DATA_DIR"]) / "backup.log").read_text()
    logged = [line for line in log.splitlines() if "event='file_name'" in line]
    assert len(logged) == 5
    assert any("library/names/bad\\\\xff.jpg" in line for line in logged)

    # both twins of each pair and the exact bytes are in the backup (checked with plain rclone)
    env = crypt_env(dest, isolated_env)
    listed = subprocess.run(
        [plain_rclone.rclone_binary(), "lsf", "-R", "--files-only", "check:library/names"],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    assert sorted(listed.stdout.splitlines()) == sorted(expected)

    # --json carries the same list
    document = json.loads(ok("backup", "--json").stdout)
    assert document["ok"] is True
    found = sorted((n["kind"], n["path"], n["backed_up"]) for n in document["file_names"])
    assert found == sorted(
        [
            ("not-utf8", BAD_SHOWN, True),
            ("unicode-twin", f"library/names/{FOLDER_NFD}", True),
            ("unicode-twin", f"library/names/{NFD}", True),
            ("unicode-twin", f"library/names/{FOLDER_NFC}", True),
            ("unicode-twin", f"library/names/{NFC}", True),
        ]
    )

    # verify compares both twins and the raw name (before: one twin was silently not compared)
    checked = json.loads(ok("verify", "--json").stdout)
    assert checked["ok"] is True
    backed_up = sum(
        len(files)
        for folder in ("backups", "library", "upload", "profile")
        for _, _, files in os.walk(os.fsencode(root / folder))
    )
    assert checked["figures"]["matched"] == backed_up

    # restoring the folder gives back every name byte for byte
    target = tmp_path / "restored"
    ok("restore", "--to", str(target), "--path", "library/names")
    assert tree_bytes(target / "library" / "names") == expected


def test_deleted_twins_and_undecodable_names_come_back_from_the_archive(
    immich: tuple[Path, TreeStats], tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    root, _ = immich
    names = names_tree(root)
    before = tree_bytes(names)
    setup_local(tmp_path)
    ok("backup")
    between = datetime.now(UTC)
    time.sleep(1.1)  # the next run gets its own archive folder
    os.unlink(os.path.join(os.fsencode(names), BAD))
    (names / NFC).unlink()
    (names / FOLDER_NFD / "a.jpg").unlink()
    (names / FOLDER_NFD).rmdir()
    ok("backup")
    gone = {
        BAD: before[BAD],
        NFC.encode(): before[NFC.encode()],
        f"{FOLDER_NFD}/a.jpg".encode(): before[f"{FOLDER_NFD}/a.jpg".encode()],
    }

    listing = ok("restore", "--list-deleted", "--path", "library/names").stdout
    assert f"{BAD_SHOWN}  (name not valid UTF-8: \\xNN is a raw byte)" in listing
    assert "\ufffd" not in listing
    assert "(another name looks the same" not in listing  # the NFD café was not deleted
    rows = json.loads(ok("restore", "--list-deleted", "--json").stdout)["archived"]
    assert sorted((r["path"], r["utf8"]) for r in rows) == sorted(
        [
            (BAD_SHOWN, False),
            (f"library/names/{NFC}", True),
            (f"library/names/{FOLDER_NFD}/a.jpg", True),
        ]
    )

    # every deleted file of the folder, exact names and contents (before: the raw name skipped)
    target = tmp_path / "deleted"
    restored = ok("restore", "--to", str(target), "--deleted", "--path", "library/names")
    assert "restored 3 files" in restored.stdout
    assert tree_bytes(target / "library" / "names") == gone

    # one file named as --list-deleted shows it, and by its exact bytes
    for spelling in (BAD_SHOWN, os.fsdecode(b"library/names/" + BAD)):
        target = tmp_path / f"one-{len(spelling)}"
        ok("restore", "--to", str(target), "--deleted", "--path", spelling)
        assert tree_bytes(target) == {b"library/names/" + BAD: before[BAD]}

    # the folder as it was between the two runs
    target = tmp_path / "as-of"
    ok("restore", "--to", str(target), "--as-of", between.isoformat(), "--path", "library/names")
    assert tree_bytes(target / "library" / "names") == before


def _normalising_rclone(tmp_path: Path) -> str:
    """An RCLONE_BINARY that normalises names again, as an older or differently built rclone
    would: it drops one twin of each pair."""
    wrapper = tmp_path / "rclone-normalising"
    wrapper.write_text(
        f'#!/bin/sh\nexec {plain_rclone.rclone_binary()} "$@" --local-unicode-normalization\n'
    )
    wrapper.chmod(0o755)
    return str(wrapper)


def test_a_file_rclone_still_drops_is_named_and_fails_the_run(
    immich: tuple[Path, TreeStats], tmp_path: Path
) -> None:
    """With an rclone that normalises names it drops one twin again. The run must say so
    (rclone's own notices are the backstop) and not exit 0."""
    root, _ = immich
    names_tree(root)
    setup_local(tmp_path)
    env = {"RCLONE_BINARY": _normalising_rclone(tmp_path)}
    run = photos_sync("backup", "--json", env=env)
    assert run.returncode == 1, run.stdout + run.stderr
    document = json.loads(run.stdout)
    assert document["ok"] is False
    lost = {n["path"] for n in document["file_names"] if not n["backed_up"]}
    assert lost == {
        f"library/names/{NFC}",
        f"library/names/{NFD}",
        f"library/names/{FOLDER_NFC}",
        f"library/names/{FOLDER_NFD}",
    }
    human = photos_sync("backup", env=env)
    assert human.returncode == 1
    assert f"file name: library/names/{NFC} — NOT backed up; rclone kept only one" in human.stdout
    assert "5 file names need attention (listed above), 4 of them NOT backed up" in human.stdout


def test_rclone_settings_in_the_environment_cannot_change_what_a_backup_does(
    immich: tuple[Path, TreeStats], tmp_path: Path
) -> None:
    """rclone obeys RCLONE_<FLAG> variables: RCLONE_DRY_RUN=true in a user's shell used to
    turn every backup into a no-op that reported success, RCLONE_LOCAL_UNICODE_NORMALIZATION
    dropped twins. photos-sync passes rclone none of them."""
    root, _ = immich
    names_tree(root)
    dest = setup_local(tmp_path)
    hostile = {
        "RCLONE_DRY_RUN": "true",
        "RCLONE_LOCAL_UNICODE_NORMALIZATION": "true",
        "RCLONE_EXCLUDE": "*.jpg",
        "RCLONE_MAX_DELETE": "0",
    }
    run = photos_sync("backup", "--json", env=hostile)
    assert run.returncode == 0, run.stdout + run.stderr
    document = json.loads(run.stdout)
    assert not [n for n in document["file_names"] if not n["backed_up"]]
    library = next(j for j in document["jobs"] if j["folder"] == "library")
    assert library["files_transferred"] > 0
    assert any(p.is_file() for p in Path(dest).rglob("*") if p.stat().st_size > 100)


def test_names_holding_brackets_are_printed_as_they_are(
    immich: tuple[Path, TreeStats], tmp_path: Path
) -> None:
    """rich read "[red]" in a name as markup (the text vanished) and "[/x]" as a broken tag
    (MarkupError traceback instead of the one-line error)."""
    root, _ = immich
    folder = root / "library" / "brackets"
    folder.mkdir()
    for form in ("NFC", "NFD"):
        (folder / unicodedata.normalize(form, "[red]é.jpg")).write_bytes(form.encode())
    setup_local(tmp_path)
    run = ok("backup")
    assert f"file name: library/brackets/{unicodedata.normalize('NFC', '[red]é.jpg')}" in run.stdout

    refused = photos_sync("restore", "--to", str(tmp_path / "r"), "--path", "library/[/x]")
    assert refused.returncode == 1
    assert "Traceback" not in refused.stderr
    assert refused.stderr.strip() == "error: library/[/x] is not in the backup of 'nas'"


def test_a_name_too_long_for_the_disk_once_encrypted_is_named(
    immich: tuple[Path, TreeStats], tmp_path: Path
) -> None:
    """rclone crypt makes a 144-byte name 256 characters: the local disk refuses it and the
    job used to fail with an encrypted path only. The run names the plain file, and the rest
    of the folder still goes through (a source problem: no retry can help)."""
    root, _ = immich
    folder = root / "library" / "long"
    folder.mkdir()
    (folder / ("y" * 139 + ".jpg")).write_bytes(b"143 bytes: fits")
    (folder / ("x" * 140 + ".jpg")).write_bytes(b"144 bytes: too long")
    setup_local(tmp_path)
    run = photos_sync("backup", env={"BACKUP_MAX_RETRIES": "0"})
    assert run.returncode == 1
    assert (
        f"file name: library/long/{'x' * 140}.jpg — NOT backed up; the name is 144 bytes; "
        "encrypted it would be 256 characters" in run.stdout
    )
    assert "y" * 139 not in run.stdout  # 143 bytes fit
    assert "4/4 folders backed up" in run.stdout
    status = photos_sync("backup", "--status")
    assert f"library/long/{'x' * 140}.jpg" in status.stdout


@pytest.fixture
def daemons() -> Iterator[DaemonPool]:
    with daemon_pool() as pool:
        yield pool


def test_the_daemon_run_names_them_too(
    daemons: DaemonPool, immich: tuple[Path, TreeStats], tmp_path: Path
) -> None:
    root, _ = immich
    names_tree(root)
    setup_local(tmp_path)
    daemons.start()
    run = ok("backup")
    assert "in the photos-sync daemon" in run.stdout
    assert f"file name: {BAD_SHOWN} — backed up" in run.stdout
    assert re.search(
        r"^4/4 folders backed up to nas: .* sent; 5 file names need attention \(listed above\)$",
        run.stdout,
        re.M,
    ), run.stdout
    document = json.loads(ok("backup", "--json").stdout)
    assert len(document["file_names"]) == 5
