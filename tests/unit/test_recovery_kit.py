"""photos_sync.reporting.recovery_kit: the rclone.conf text it prints really restores a backup.

A crypt backup is made with the real rclone over a local folder, configured only through
RCLONE_CONFIG_* variables (as photos-sync does); the kit's conf is then used with plain
`rclone --config FILE` and must list and decrypt that backup.
"""

from __future__ import annotations

import configparser
import os
import shlex
import subprocess
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import pytest

from photos_sync.core.rclone_args import (
    ARCHIVE_FOLDER,
    CRYPT_REMOTE,
    DESTINATION_MARKER,
    RemoteSpec,
    crypt_remote,
    remote_env,
)
from photos_sync.reporting.recovery_kit import rclone_conf, recovery_kit
from tests.conftest import rclone_binary

PASSWORD = "correct horse battery staple"
SALT = "pepper-and-salt-2024"
PHOTO = b"\xff\xd8\xff\xe0 not really a jpeg " * 100


def clean_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """A minimal environment: no inherited rclone settings, a private HOME."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}
    env.update(extra or {})
    return env


def run(argv: list[str], env: dict[str, str], stdin: bytes | None = None) -> bytes:
    result = subprocess.run(argv, input=stdin, capture_output=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


def obscure(rclone: str, secret: str, env: dict[str, str]) -> str:
    """`echo secret | rclone obscure -`: the secret goes through stdin, never argv."""
    return run([rclone, "obscure", "-"], env, stdin=f"{secret}\n".encode()).decode().strip()


@dataclass
class Backup:
    rclone: str
    store: Path
    home: Path
    crypt: RemoteSpec
    obscured_password: str
    obscured_salt: str


@pytest.fixture(scope="module")
def backup(tmp_path_factory: pytest.TempPathFactory) -> Backup:
    """A crypt backup on a local folder, written through env-configured remotes."""
    rclone = rclone_binary()
    root = tmp_path_factory.mktemp("kit")
    home = root / "home"
    home.mkdir()
    store = root / "store"
    store.mkdir()
    env = clean_env(home)
    obscured_password = obscure(rclone, PASSWORD, env)
    obscured_salt = obscure(rclone, SALT, env)
    crypt = crypt_remote(str(store), obscured_password, obscured_salt)
    write_env = clean_env(home, remote_env([crypt]))
    run([rclone, "rcat", f"{CRYPT_REMOTE}:library/admin/IMG_0001.jpg"], write_env, PHOTO)
    for form in ("NFC", "NFD"):  # Unicode twins: plain `rclone copy` restores only one (#18)
        twin = unicodedata.normalize(form, "café.jpg")
        run([rclone, "rcat", f"{CRYPT_REMOTE}:library/admin/{twin}"], write_env, form.encode())
    crypt_names = [p.name for p in store.rglob("*") if p.parent.parent.parent == store]
    assert len(crypt_names) == 3  # both twins really are stored (rcat does not normalise)
    run([rclone, "rcat", f"{CRYPT_REMOTE}:{DESTINATION_MARKER}"], write_env, b"{}")
    run([rclone, "rcat", f"{CRYPT_REMOTE}:{ARCHIVE_FOLDER}/run1/library/old.jpg"], write_env, b"o")
    return Backup(rclone, store, home, crypt, obscured_password, obscured_salt)


def test_backup_is_really_encrypted(backup: Backup) -> None:
    names = [p.name for p in backup.store.rglob("*")]
    assert len(names) == 10  # 5 files and 5 folders
    for plain in ("library", "admin", "IMG_0001.jpg", DESTINATION_MARKER, ARCHIVE_FOLDER):
        assert plain not in names
    assert all(PHOTO not in p.read_bytes() for p in backup.store.rglob("*") if p.is_file())


def test_obscured_values_are_not_the_plain_secrets(backup: Backup) -> None:
    assert backup.obscured_password not in ("", PASSWORD)
    assert backup.obscured_salt not in ("", SALT)


def test_rclone_conf_is_ini(backup: Backup) -> None:
    base = RemoteSpec("psbase", "b2", {"account": "0012ab", "key": "K001secret"})
    text = rclone_conf([base, backup.crypt])
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    assert parser.sections() == ["psbase", "pscrypt"]
    assert dict(parser["psbase"]) == {"type": "b2", "account": "0012ab", "key": "K001secret"}
    assert dict(parser["pscrypt"]) == {
        "type": "crypt",
        "remote": str(backup.store),
        "password": backup.obscured_password,
        "filename_encryption": "standard",
        "directory_name_encryption": "true",
        "password2": backup.obscured_salt,
    }
    assert text.endswith("\n")
    assert "\n\n[pscrypt]\n" in text


def test_rclone_conf_exact_text() -> None:
    spec = RemoteSpec("pscrypt", "crypt", {"remote": "/x", "password": "OBS"})
    assert rclone_conf([spec]) == "[pscrypt]\ntype = crypt\nremote = /x\npassword = OBS\n"


def kit_text(backup: Backup, remotes: list[RemoteSpec] | None = None) -> str:
    return recovery_kit("nas", f"local: {backup.store}", remotes or [backup.crypt], PASSWORD, SALT)


def test_kit_contents(backup: Backup) -> None:
    kit = kit_text(backup)
    assert kit.startswith(
        f'# photos-sync recovery kit for destination "nas" (local: {backup.store})'
    )
    assert f"# encryption password : {PASSWORD}\n" in kit
    assert f"# encryption salt     : {SALT}\n" in kit
    assert "rclone --config rclone.conf lsd pscrypt:" in kit
    assert kit.endswith(rclone_conf([backup.crypt]))


def test_kit_without_salt_says_so() -> None:
    spec = crypt_remote("/x", "OBS", None)
    kit = recovery_kit("n", "d", [spec], "pw", None)
    assert "# encryption salt     : (none: rclone's default salt)\n" in kit
    assert "password2" not in kit


def test_whole_kit_parses_as_ini(backup: Backup) -> None:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(kit_text(backup))
    assert parser.sections() == ["pscrypt"]


def lsd(backup: Backup, conf: Path) -> str:
    env = clean_env(backup.home)
    return run([backup.rclone, "--config", str(conf), "lsd", f"{CRYPT_REMOTE}:"], env).decode()


def test_printed_conf_lists_and_decrypts_the_backup(backup: Backup, tmp_path: Path) -> None:
    conf = tmp_path / "rclone.conf"
    conf.write_text(kit_text(backup))  # the kit as printed, comments and all
    listing = lsd(backup, conf)
    assert sorted(line.split()[-1] for line in listing.splitlines()) == [".deleted", "library"]

    env = clean_env(backup.home)
    photo = run(
        [backup.rclone, "--config", str(conf), "cat", f"{CRYPT_REMOTE}:library/admin/IMG_0001.jpg"],
        env,
    )
    assert photo == PHOTO


def test_conf_with_a_base_remote_works_too(backup: Backup, tmp_path: Path) -> None:
    """Cloud kits hold two sections: the storage remote and the crypt over it."""
    base = RemoteSpec("psbase", "local", {})
    crypt = crypt_remote(f"psbase:{backup.store}", backup.obscured_password, backup.obscured_salt)
    conf = tmp_path / "rclone.conf"
    conf.write_text(rclone_conf([base, crypt]))
    assert "library" in lsd(backup, conf).split()


def test_restore_command_from_the_kit_restores_without_the_archive(
    backup: Backup, tmp_path: Path
) -> None:
    kit = kit_text(backup)
    conf = tmp_path / "rclone.conf"
    conf.write_text(kit)
    lines = kit.splitlines()
    start = next(i for i, line in enumerate(lines) if "rclone --config rclone.conf copy" in line)
    parts = [lines[start].lstrip("# ")]
    while parts[-1].endswith("\\"):  # a command continued on the next line
        parts[-1] = parts[-1].rstrip("\\")
        parts.append(lines[start + len(parts)].lstrip("#"))
    command = "".join(parts)
    restore = tmp_path / "restore"
    argv = shlex.split(command.replace("/path/to/restore", str(restore)))
    assert argv[:4] == ["rclone", "--config", "rclone.conf", "copy"]
    argv[0] = backup.rclone
    argv[2] = str(conf)
    argv.remove("--progress")
    run(argv, clean_env(backup.home))
    restored = sorted(str(p.relative_to(restore)) for p in restore.rglob("*") if p.is_file())
    twins = sorted(f"library/admin/{unicodedata.normalize(f, 'café.jpg')}" for f in ("NFC", "NFD"))
    assert restored == sorted(["library/admin/IMG_0001.jpg", *twins])
    assert (restore / "library" / "admin" / "IMG_0001.jpg").read_bytes() == PHOTO
    admin = restore / "library" / "admin"
    for form in ("NFC", "NFD"):
        assert (admin / unicodedata.normalize(form, "café.jpg")).read_bytes() == form.encode()


def test_a_wrong_password_does_not_decrypt(backup: Backup, tmp_path: Path) -> None:
    """The check above can fail: a kit with another password sees no folder names."""
    wrong = obscure(backup.rclone, "not the password", clean_env(backup.home))
    crypt = crypt_remote(str(backup.store), wrong, backup.obscured_salt)
    conf = tmp_path / "rclone.conf"
    conf.write_text(rclone_conf([crypt]))
    result = subprocess.run(
        [backup.rclone, "--config", str(conf), "lsd", f"{CRYPT_REMOTE}:"],
        capture_output=True,
        env=clean_env(backup.home),
        timeout=60,
    )
    assert b"library" not in result.stdout
