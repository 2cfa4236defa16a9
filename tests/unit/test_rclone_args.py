"""core.rclone_args: argv built argument by argument, remotes only in the environment."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from photos_sync.core.rclone_args import (
    ARCHIVE_FOLDER,
    BASE_REMOTE,
    CRYPT_REMOTE,
    DESTINATION_MARKER,
    EXACT_NAMES,
    RemoteSpec,
    SyncOptions,
    archive_path,
    b2_lifecycle_argv,
    check_argv,
    copy_argv,
    crypt_path,
    crypt_remote,
    listed_copy_argv,
    logging_flags,
    remote_env,
    simple_argv,
    sync_argv,
)

RCLONE = "/opt/bin/rclone"
SRC = "/immich/library"
DST = "pscrypt:library"
ARCHIVE = "pscrypt:.deleted/20250101T000000Z/library"

#: The argv with default options, written out in full.
BASE_ARGV = (
    RCLONE,
    "sync",
    SRC,
    DST,
    "--backup-dir",
    ARCHIVE,
    "--no-unicode-normalization",
    "--use-json-log",
    "--verbose",
    "--stats",
    "60s",
    "--stats-log-level",
    "NOTICE",
    "--retries",
    "2",
    "--low-level-retries",
    "10",
)


def argv_for(**options: Any) -> tuple[str, ...]:
    return sync_argv(RCLONE, SRC, DST, ARCHIVE, SyncOptions(**options))


def flag_value(argv: tuple[str, ...], flag: str) -> str:
    """The argument right after `flag`, which must occur exactly once."""
    assert argv.count(flag) == 1, f"{flag} occurs {argv.count(flag)} times in {argv}"
    return argv[argv.index(flag) + 1]


# --- constants --------------------------------------------------------------------------------


def test_names() -> None:
    assert BASE_REMOTE == "psbase"
    assert CRYPT_REMOTE == "pscrypt"
    assert ARCHIVE_FOLDER == ".deleted"
    assert DESTINATION_MARKER == ".photos-sync-destination"


# --- sync_argv --------------------------------------------------------------------------------


def test_default_sync_argv_in_full() -> None:
    assert argv_for() == BASE_ARGV


def test_positional_arguments_come_first() -> None:
    argv = argv_for()
    assert argv[0] == RCLONE
    assert argv[1] == "sync"
    assert argv[2] == SRC
    assert argv[3] == DST


def test_backup_dir_receives_the_archive_path() -> None:
    argv = argv_for()
    assert argv[4] == "--backup-dir"
    assert argv[5] == ARCHIVE


def test_logging_flags_each_with_its_value() -> None:
    argv = argv_for(stats_interval=5)
    assert "--use-json-log" in argv
    assert "--verbose" in argv
    assert flag_value(argv, "--stats") == "5s"
    assert flag_value(argv, "--stats-log-level") == "NOTICE"


@pytest.mark.parametrize(
    ("interval", "expected"),
    [(60, "60s"), (1, "1s"), (60.0, "60s"), (0.5, "500ms"), (1.5, "1500ms"), (0.25, "250ms")],
)
def test_stats_interval_format(interval: float, expected: str) -> None:
    assert logging_flags(interval) == (
        "--use-json-log",
        "--verbose",
        "--stats",
        expected,
        "--stats-log-level",
        "NOTICE",
    )
    assert flag_value(argv_for(stats_interval=interval), "--stats") == expected


def test_rclone_repeats_a_pass_once_then_retrying_is_photos_syncs() -> None:
    argv = argv_for()
    assert flag_value(argv, "--retries") == "2"
    assert flag_value(argv, "--low-level-retries") == "10"


def test_dry_run_flag() -> None:
    assert "--dry-run" not in argv_for()
    argv = argv_for(dry_run=True)
    assert argv == (*BASE_ARGV, "--dry-run")


def test_bwlimit_flag_and_value() -> None:
    assert "--bwlimit" not in argv_for()
    assert "--bwlimit" not in argv_for(bwlimit="")
    timetable = "08:00,512k 12:00,10M 13:00,off"
    argv = argv_for(bwlimit=timetable)
    assert argv == (*BASE_ARGV, "--bwlimit", timetable)  # one argument, spaces and all


def test_transfers_and_checkers() -> None:
    assert "--transfers" not in argv_for()
    assert "--checkers" not in argv_for()
    argv = argv_for(transfers=4, checkers=16)
    assert argv == (*BASE_ARGV, "--transfers", "4", "--checkers", "16")


@pytest.mark.parametrize(
    ("max_delete", "expected"), [(None, None), (0, None), (1, "1"), (1000, "1000")]
)
def test_max_delete(max_delete: int | None, expected: str | None) -> None:
    argv = argv_for(max_delete=max_delete)
    if expected is None:
        assert "--max-delete" not in argv
        assert argv == BASE_ARGV
    else:
        assert argv == (*BASE_ARGV, "--max-delete", expected)


def test_fast_list() -> None:
    assert "--fast-list" not in argv_for()
    assert argv_for(fast_list=True) == (*BASE_ARGV, "--fast-list")


def test_extra_flags_go_last() -> None:
    argv = argv_for(extra_flags=("--b2-hard-delete", "--s3-chunk-size", "64M"), fast_list=True)
    assert argv[-3:] == ("--b2-hard-delete", "--s3-chunk-size", "64M")
    assert argv[-4] == "--fast-list"


def test_every_option_at_once_in_order() -> None:
    argv = argv_for(
        stats_interval=2,
        dry_run=True,
        bwlimit="10M:1M",
        transfers=8,
        checkers=32,
        max_delete=50,
        fast_list=True,
        extra_flags=("--x-flag",),
    )
    assert argv == (
        RCLONE,
        "sync",
        SRC,
        DST,
        "--backup-dir",
        ARCHIVE,
        "--no-unicode-normalization",
        "--use-json-log",
        "--verbose",
        "--stats",
        "2s",
        "--stats-log-level",
        "NOTICE",
        "--retries",
        "2",
        "--low-level-retries",
        "10",
        "--dry-run",
        "--bwlimit",
        "10M:1M",
        "--transfers",
        "8",
        "--checkers",
        "32",
        "--max-delete",
        "50",
        "--fast-list",
        "--x-flag",
    )
    assert all(isinstance(a, str) for a in argv)


def test_sync_argv_is_accepted_by_the_real_rclone(rclone: str, tmp_path: Path) -> None:
    """Every flag we build exists in the bundled rclone and takes the value we give it."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.jpg").write_bytes(b"x" * 10)
    dst = tmp_path / "dst"
    argv = sync_argv(
        rclone,
        str(src),
        str(dst / "library"),
        str(dst / ".deleted" / "run" / "library"),
        SyncOptions(
            stats_interval=0.5,
            dry_run=True,
            bwlimit="08:00,512k 12:00,10M 13:00,off",
            transfers=2,
            checkers=2,
            max_delete=10,
            fast_list=True,
        ),
    )
    env = {**os.environ, "RCLONE_CONFIG": ""}
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert '"level":"notice"' in result.stderr  # JSON log lines
    assert not dst.exists()  # --dry-run


def test_every_name_matching_command_compares_names_byte_for_byte() -> None:
    """Without it rclone matches names after NFC normalisation and drops one of two Unicode
    twins from a sync, a restore or a check, with only a NOTICE (#18)."""
    assert EXACT_NAMES == "--no-unicode-normalization"
    argvs = [
        argv_for(),
        copy_argv(RCLONE, "pscrypt:library", "/restore", stats_interval=1, overwrite=False),
        copy_argv(
            RCLONE, "pscrypt:", "/r", stats_interval=1, overwrite=True, files_from="/tmp/list"
        ),
        check_argv(RCLONE, "/immich/library", "pscrypt:library", download=False),
        check_argv(RCLONE, "/immich/library", "pscrypt:library", download=True, files_from="/l"),
    ]
    for argv in argvs:
        assert argv.count(EXACT_NAMES) == 1, argv


def test_exact_names_flag_exists_in_the_bundled_rclone(rclone: str, tmp_path: Path) -> None:
    """rclone 1.75 keeps both twins with the flag (an unknown flag would fail the run)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "caf\u00e9.jpg").write_bytes(b"nfc")
    (src / "cafe\u0301.jpg").write_bytes(b"nfd")
    dst = tmp_path / "dst"
    argv = copy_argv(rclone, str(src), str(dst), stats_interval=1, overwrite=False)
    env = {**os.environ, "RCLONE_CONFIG": ""}
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert sorted(p.read_bytes() for p in dst.iterdir()) == [b"nfc", b"nfd"]
    assert "Duplicate object" not in result.stderr


# --- other argv -------------------------------------------------------------------------------


def test_simple_argv() -> None:
    assert simple_argv(RCLONE, "lsjson", "pscrypt:", "--max-depth", "1") == (
        RCLONE,
        "lsjson",
        "pscrypt:",
        "--max-depth",
        "1",
        "--use-json-log",
        "--retries",
        "1",
    )
    assert simple_argv(RCLONE, "mkdir") == (RCLONE, "mkdir", "--use-json-log", "--retries", "1")


def test_b2_lifecycle_argv_reads_the_bucket_rules_and_gives_up_quickly() -> None:
    argv = b2_lifecycle_argv(RCLONE, "my-immich")
    assert argv[:4] == (RCLONE, "backend", "lifecycle", f"{BASE_REMOTE}:my-immich")
    assert argv[4] == "--json"
    assert argv[5:7] == ("--low-level-retries", "1")
    assert argv[7:9] == ("--contimeout", "15s")
    assert argv[9:11] == ("--timeout", "60s")
    assert argv[11:] == ("--use-json-log", "--retries", "1")
    assert not any(arg.startswith("-o") or "=" in arg for arg in argv)  # reads, never sets


def test_listed_copy_argv_copies_only_the_list_and_archives_what_it_replaces() -> None:
    argv = listed_copy_argv(
        RCLONE,
        "/immich/thumbs",
        "pscrypt:thumbs",
        "pscrypt:.deleted/R/thumbs",
        "/data/list.txt",
        SyncOptions(stats_interval=5, bwlimit="1M", transfers=3, max_delete=10, fast_list=True),
    )
    assert argv[:4] == (RCLONE, "copy", "/immich/thumbs", "pscrypt:thumbs")
    joined = " ".join(argv)
    assert "--files-from-raw /data/list.txt" in joined
    assert "--backup-dir pscrypt:.deleted/R/thumbs" in joined
    assert "--no-traverse" in argv and EXACT_NAMES in argv
    assert "--bwlimit 1M" in joined and "--transfers 3" in joined
    # a copy deletes nothing, and never lists the folder
    assert "--max-delete" not in argv and "--fast-list" not in argv and "sync" not in argv


def test_listed_copy_argv_is_accepted_by_the_real_rclone(rclone: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    for name in ("a/listed.jpeg", "other.webp"):
        (src / name).write_bytes(b"x")
    listed = tmp_path / "list.txt"
    listed.write_bytes(b"a/listed.jpeg\n")
    dst = tmp_path / "dst"
    argv = listed_copy_argv(
        rclone,
        str(src),
        str(dst / "thumbs"),
        str(dst / ".deleted" / "run" / "thumbs"),
        str(listed),
        SyncOptions(stats_interval=0.5, transfers=2, checkers=2, copy_links=True),
    )
    env = {**os.environ, "RCLONE_CONFIG": ""}
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*") if p.is_file()) == [
        "thumbs/a/listed.jpeg"
    ]


def test_b2_lifecycle_argv_is_accepted_by_the_real_rclone(rclone: str) -> None:
    """No B2 here: pointed at a closed loopback port, rclone gets as far as authorizing."""
    env = {
        **os.environ,
        **remote_env([RemoteSpec(BASE_REMOTE, "b2", {"account": "id", "key": "key"})]),
        "RCLONE_CONFIG_PSBASE_ENDPOINT": "http://127.0.0.1:9",
    }
    result = subprocess.run(
        [rclone, *b2_lifecycle_argv(rclone, "my-immich")[1:]],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode not in (0, 2), result.stderr
    assert "failed to authorize account" in result.stderr
    assert "unknown flag" not in result.stderr


# --- paths ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        ((), "pscrypt:"),
        (("library",), "pscrypt:library"),
        (("/library/",), "pscrypt:library"),
        (("library", "admin/2024"), "pscrypt:library/admin/2024"),
        (("", "library", "/"), "pscrypt:library"),
        ((DESTINATION_MARKER,), "pscrypt:.photos-sync-destination"),
    ],
)
def test_crypt_path(parts: tuple[str, ...], expected: str) -> None:
    assert crypt_path(*parts) == expected


def test_archive_path() -> None:
    assert archive_path("20250101T000000Z", "library") == (
        "pscrypt:.deleted/20250101T000000Z/library"
    )
    assert archive_path("2025-06-30T23-59-59", "encoded-video") == (
        "pscrypt:.deleted/2025-06-30T23-59-59/encoded-video"
    )


# --- remotes in the environment ---------------------------------------------------------------


def test_crypt_remote_options() -> None:
    spec = crypt_remote("psbase:bucket/immich", "OBSCURED-PW", "OBSCURED-SALT")
    assert spec.name == "pscrypt"
    assert spec.type == "crypt"
    assert dict(spec.options) == {
        "remote": "psbase:bucket/immich",
        "password": "OBSCURED-PW",
        "filename_encryption": "standard",
        "directory_name_encryption": "true",
        "password2": "OBSCURED-SALT",
    }


@pytest.mark.parametrize("salt", [None, ""])
def test_crypt_remote_without_salt_has_no_password2(salt: str | None) -> None:
    spec = crypt_remote("/mnt/nas/immich", "PW", salt)
    assert "password2" not in spec.options
    assert spec.options["remote"] == "/mnt/nas/immich"


def test_remote_env_keys() -> None:
    base = RemoteSpec(
        "psbase",
        "s3",
        {"provider": "Other", "access_key_id": "AKID", "secret_access_key": "SECRET-KEY-123"},
    )
    crypt = crypt_remote("psbase:bucket/path", "OBS-PW", "OBS-SALT")
    assert remote_env([base, crypt]) == {
        "RCLONE_CONFIG": "",
        "RCLONE_CONFIG_PSBASE_TYPE": "s3",
        "RCLONE_CONFIG_PSBASE_PROVIDER": "Other",
        "RCLONE_CONFIG_PSBASE_ACCESS_KEY_ID": "AKID",
        "RCLONE_CONFIG_PSBASE_SECRET_ACCESS_KEY": "SECRET-KEY-123",
        "RCLONE_CONFIG_PSCRYPT_TYPE": "crypt",
        "RCLONE_CONFIG_PSCRYPT_REMOTE": "psbase:bucket/path",
        "RCLONE_CONFIG_PSCRYPT_PASSWORD": "OBS-PW",
        "RCLONE_CONFIG_PSCRYPT_FILENAME_ENCRYPTION": "standard",
        "RCLONE_CONFIG_PSCRYPT_DIRECTORY_NAME_ENCRYPTION": "true",
        "RCLONE_CONFIG_PSCRYPT_PASSWORD2": "OBS-SALT",
    }


def test_remote_env_with_no_remotes_still_blanks_the_config_file() -> None:
    assert remote_env([]) == {"RCLONE_CONFIG": ""}


def test_remote_env_upper_cases_mixed_case_names() -> None:
    env = remote_env([RemoteSpec("MyB2", "b2", {"Account": "id"})])
    assert env == {
        "RCLONE_CONFIG": "",
        "RCLONE_CONFIG_MYB2_TYPE": "b2",
        "RCLONE_CONFIG_MYB2_ACCOUNT": "id",
    }


def test_no_secret_ever_appears_in_any_argv() -> None:
    secrets = ["b2-application-key-XYZ", "obscured-password-ABC", "obscured-salt-DEF", "acct-42"]
    base = RemoteSpec("psbase", "b2", {"account": secrets[3], "key": secrets[0]})
    crypt = crypt_remote("psbase:bucket/immich", secrets[1], secrets[2])
    env = remote_env([base, crypt])
    assert set(secrets) <= set(env.values())  # the secrets do reach rclone, via env

    argvs = [
        sync_argv(
            RCLONE,
            "/immich/library",
            crypt_path("library"),
            archive_path("stamp", "library"),
            SyncOptions(dry_run=True, bwlimit="10M", transfers=4, checkers=8, max_delete=5),
        ),
        simple_argv(RCLONE, "lsjson", crypt_path(), "--max-depth", "1"),
        simple_argv(RCLONE, "rcat", crypt_path(DESTINATION_MARKER)),
        b2_lifecycle_argv(RCLONE, "bucket"),
    ]
    for argv in argvs:
        joined = "\0".join(argv)
        for secret in secrets:
            assert secret not in joined
        assert not any(arg.startswith(("--config", "--b2-key", "--crypt-password")) for arg in argv)


def test_env_configured_remote_works_with_the_real_rclone(rclone: str, tmp_path: Path) -> None:
    """RCLONE_CONFIG_<NAME>_<KEY> is really how rclone picks the remote up."""
    store = tmp_path / "store"
    store.mkdir()
    env = {
        **os.environ,
        **remote_env([RemoteSpec("psbase", "local", {}), RemoteSpec("psalias", "alias", {})]),
        "RCLONE_CONFIG_PSALIAS_REMOTE": f"psbase:{store}",
    }
    result = subprocess.run(
        simple_argv(rclone, "mkdir", "psalias:made-by-env"),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert (store / "made-by-env").is_dir()
