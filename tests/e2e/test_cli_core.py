"""The `photos-sync` command as a user runs it: real subprocesses, real rclone, real SQLite."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.immich_tree import TreeStats
from tests.support import plain_rclone
from tests.support.cli import photos_sync
from tests.support.destinations import clone_local


def _real_setup(dest: Path, name: str = "nas", **env: str) -> subprocess.CompletedProcess[str]:
    result = photos_sync(
        "backup", "--setup", "local", "--name", name, "--path", str(dest), "--yes", env=env
    )
    assert result.returncode == 0, result.stderr
    return result


def _setup(dest: Path, name: str = "nas", **env: str) -> None:
    """A destination to start from: a copy of one real setup when that is the same thing
    (tests/support/destinations.py), else the real one."""
    if not clone_local(dest, name, env):
        _real_setup(dest, name, **env)


def _one_line_error(result: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_setup_backup_status_and_json(
    immich: tuple[Path, TreeStats], tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    dest = tmp_path / "dest"
    setup = _real_setup(dest)
    assert "recovery-kit nas" in setup.stdout
    keyfile = Path(isolated_env["PHOTOS_SYNC_DATA_DIR"]) / "secrets" / "nas.json"
    assert oct(keyfile.stat().st_mode & 0o777) == "0o600"
    assert oct(keyfile.parent.stat().st_mode & 0o777) == "0o700"

    run = photos_sync("backup")
    assert run.returncode == 0, run.stderr
    assert "4/4 folders backed up to nas" in run.stdout

    status = photos_sync("backup", "--status", "--json")
    assert status.returncode == 0, status.stderr
    document = json.loads(status.stdout)
    assert [d["name"] for d in document["destinations"]] == ["nas"]
    assert document["destinations"][0]["last_backup_at"]
    jobs = document["jobs"]
    assert [j["folder"] for j in jobs] == ["backups", "library", "upload", "profile"]
    for job in jobs:
        assert job["status"] == "COMPLETED"
        assert job["destination"] == "nas"
        assert job["percent"] == 100.0
        assert job["stale"] is False
        for key in (
            "bytes_total",
            "bytes_transferred",
            "files_total",
            "files_transferred",
            "transfer_speed",
            "started_at",
            "completed_at",
            "last_update",
            "error_message",
            "retry_count",
            "priority",
            "source_path",
        ):
            assert key in job
    human = photos_sync("backup", "--status")
    assert human.returncode == 0
    assert "nas" in human.stdout and "COMPLETED" in human.stdout and "library/" in human.stdout
    log = (Path(isolated_env["PHOTOS_SYNC_DATA_DIR"]) / "backup.log").read_text()
    assert "run_started" in log and "run_finished" in log and "job_finished" in log


def test_recovery_kit_restores_with_plain_rclone(
    immich: tuple[Path, TreeStats], tmp_path: Path
) -> None:
    root, _ = immich
    dest = tmp_path / "dest"
    _setup(dest)
    assert photos_sync("backup").returncode == 0
    kit = photos_sync("recovery-kit", "nas")
    assert kit.returncode == 0, kit.stderr
    assert "SECRET" in kit.stdout
    conf = tmp_path / "rclone.conf"
    conf.write_text(kit.stdout)  # the kit is valid rclone.conf text as a whole ('#' comments)
    restore = tmp_path / "restore"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RCLONE_")}
    result = plain_rclone.run(
        [
            "--config",
            str(conf),
            "copy",
            "pscrypt:",
            str(restore),
            "--exclude",
            "/.deleted/**",
            "--exclude",
            "/.photos-sync-destination",
        ],
        env,
    )
    assert result.returncode == 0, result.stderr
    for folder in ("backups", "library", "upload", "profile"):
        for source in (root / folder).rglob("*"):
            if source.is_file():
                copy = restore / source.relative_to(root)
                assert copy.read_bytes() == source.read_bytes()


def test_secrets_never_in_argv_log_or_db(
    immich: tuple[Path, TreeStats], tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    argv_log = tmp_path / "argv.log"
    wrapper = tmp_path / "rclone-spy"
    wrapper.write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$*" >> {argv_log}\nexec {plain_rclone.rclone_binary()} "$@"\n'
    )
    wrapper.chmod(0o755)
    password = "correct-horse-battery-staple-42"
    salt = "pepper-and-salt-and-more-salt"
    env = {
        "RCLONE_BINARY": str(wrapper),
        "PHOTOS_SYNC_ENCRYPTION_PASSWORD": password,
        "PHOTOS_SYNC_ENCRYPTION_SALT": salt,
    }
    _setup(tmp_path / "dest", **env)
    assert photos_sync("backup", env={"RCLONE_BINARY": str(wrapper)}).returncode == 0
    assert photos_sync("backup", "--dry-run", env={"RCLONE_BINARY": str(wrapper)}).returncode == 0
    obscured_forms = {plain_rclone.obscure(password)}  # (random IV: proves the shape only)
    calls = argv_log.read_text()
    # the password and salt are obscured in memory (core.obscure): no `rclone obscure` runs
    assert "sync" in calls and "obscure" not in calls
    data_dir = Path(isolated_env["PHOTOS_SYNC_DATA_DIR"])
    db_bytes = b"".join(p.read_bytes() for p in data_dir.glob("backup.db*"))
    log = (data_dir / "backup.log").read_text()
    for secret in (password, salt):
        assert secret not in calls
        assert secret.encode() not in db_bytes
        assert secret not in log
    # the obscured password rclone receives travels in the environment, never argv
    assert "pscrypt" in calls and "PASSWORD" not in calls.upper().replace("--PASSWORD-", "")
    assert all(form not in calls for form in obscured_forms)


def test_dry_run_reports_and_writes_nothing(immich: tuple[Path, TreeStats], tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    _setup(dest)
    before = sorted((p, p.stat().st_mtime_ns) for p in dest.rglob("*"))
    result = photos_sync("backup", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "library/: would send 13 files" in result.stdout
    assert "dry run:" in result.stdout
    assert sorted((p, p.stat().st_mtime_ns) for p in dest.rglob("*")) == before
    status = json.loads(photos_sync("backup", "--status", "--json").stdout)
    assert status["jobs"] == []


def _manifest_status(name: str = "nas") -> dict[str, object]:
    status = photos_sync("backup", "--status", "--json")
    assert status.returncode == 0, status.stderr
    found = [d for d in json.loads(status.stdout)["destinations"] if d["name"] == name]
    return dict(found[0]["manifest"])


def test_reset_clears_jobs_not_the_backup(immich: tuple[Path, TreeStats], tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    _setup(dest)
    assert photos_sync("backup").returncode == 0
    assert _manifest_status()["files"] == 32
    files_before = sorted(p for p in dest.rglob("*"))
    refused = photos_sync("backup", "--reset")  # no TTY, no --yes
    assert _one_line_error(refused, 2).endswith("add --yes to run it unattended")
    done = photos_sync("backup", "--reset", "--to", "nas", "--yes")
    assert done.returncode == 0, done.stderr
    assert "cleared 4 jobs" in done.stdout and "the next run is a full sync" in done.stdout
    assert json.loads(photos_sync("backup", "--status", "--json").stdout)["jobs"] == []
    # the manifest is forgotten, the backup (and the manifest's copy in it) untouched
    manifest = _manifest_status()
    assert (manifest["files"], manifest["reconciled_at"]) == (0, None)
    assert str(manifest["next_run"]).startswith("full sync: ")
    assert sorted(p for p in dest.rglob("*")) == files_before


def test_the_run_after_reset_is_a_full_sync(immich: tuple[Path, TreeStats], tmp_path: Path) -> None:
    _setup(tmp_path / "dest")
    assert photos_sync("backup").returncode == 0
    assert photos_sync("backup", "--reset", "--yes").returncode == 0
    run = photos_sync("backup", "--json")
    assert run.returncode == 0, run.stderr
    modes = json.loads(run.stdout)["folder_modes"]
    assert set(modes.values()) == {"full sync: after --reset"}, modes


def test_full_flag_and_the_summary_of_how_each_folder_went(
    immich: tuple[Path, TreeStats], tmp_path: Path
) -> None:
    root, _ = immich
    _setup(tmp_path / "dest")
    assert _manifest_status()["next_run"] == "full sync: no manifest yet"
    first = photos_sync("backup")
    assert first.returncode == 0, first.stderr
    folders = "backups/, library/, upload/, profile/"
    assert f"full sync of {folders} (first backup with a manifest)" in first.stdout
    manifest = _manifest_status()
    assert manifest["next_run"] == "incremental" and manifest["next_reconcile_at"]
    human = photos_sync("backup", "--status").stdout
    assert "manifest: 32 files, last full sync " in human and "next run: incremental" in human

    # a photo moved between folders is renamed inside the backup, and the summary says so
    photo = next(p for p in sorted((root / "library").rglob("*.jpg")) if p.is_file())
    photo.rename(root / "upload" / photo.name)
    second = photos_sync("backup")
    assert second.returncode == 0, second.stderr
    assert f"incremental: {folders}; 1 file moved inside the backup, not sent again" in (
        second.stdout
    )
    as_json = json.loads(photos_sync("backup", "--json").stdout)
    assert as_json["moved"] == 0
    assert set(as_json["folder_modes"].values()) == {"incremental"}

    forced = photos_sync("backup", "--full")
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout.rstrip().endswith(f"full sync of {folders} (--full)")
    forced_json = json.loads(photos_sync("backup", "--full", "--json").stdout)
    assert set(forced_json["folder_modes"].values()) == {"full sync: --full"}
    dry = photos_sync("backup", "--full", "--dry-run")
    assert dry.returncode == 0 and "dry run:" in dry.stdout
    misplaced = _one_line_error(photos_sync("backup", "--status", "--full"), 2)
    assert misplaced.endswith("--full goes with a backup run, not with --status")


def test_unset_immich_path_is_one_clear_line(tmp_path: Path) -> None:
    _setup(tmp_path / "dest")
    line = _one_line_error(photos_sync("backup"))
    assert "BACKUP_IMMICH_PATH is not set" in line


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("BACKUP_STATS_INTERVAL", "soon", "BACKUP_STATS_INTERVAL='soon' is invalid"),
        ("BACKUP_MAX_RETRIES", "-1", "BACKUP_MAX_RETRIES='-1' is invalid"),
        ("BACKUP_BWLIMIT", "fast please", "BACKUP_BWLIMIT='fast please' is invalid"),
        ("BACKUP_TRANSFERS", "0", "BACKUP_TRANSFERS='0' is invalid"),
        ("BACKUP_INCLUDE_GENERATED", "maybe", "expected true or false"),
    ],
)
def test_invalid_config_names_the_variable(
    immich: tuple[Path, TreeStats], variable: str, value: str, expected: str
) -> None:
    line = _one_line_error(photos_sync("backup", env={variable: value}), 2)  # a run reads all
    assert expected in line


def test_invalid_value_in_dotenv_file(immich: tuple[Path, TreeStats], tmp_path: Path) -> None:
    (Path.cwd() / ".env").write_text("BACKUP_STATS_INTERVAL=ten\n")
    line = _one_line_error(photos_sync("backup", "--status"), 2)
    assert "BACKUP_STATS_INTERVAL='ten'" in line


def test_unknown_and_ambiguous_destinations_are_usage_errors(
    immich: tuple[Path, TreeStats], tmp_path: Path
) -> None:
    assert "no destination is set up yet" in _one_line_error(photos_sync("backup"), 2)
    _setup(tmp_path / "a", "first")
    _setup(tmp_path / "b", "second")
    # a restore must name its source (a backup goes to each: tests/e2e/test_several_destinations)
    line = _one_line_error(photos_sync("restore", "--to", str(tmp_path / "r")), 2)
    assert "several destinations exist (first, second)" in line and "--from NAME" in line
    line = _one_line_error(photos_sync("backup", "--to", "third"), 2)
    assert "unknown destination 'third'" in line and "first, second" in line
    assert "unknown destination" in _one_line_error(photos_sync("recovery-kit", "third"), 2)


def test_missing_rclone_is_one_clear_line(immich: tuple[Path, TreeStats], tmp_path: Path) -> None:
    line = _one_line_error(
        photos_sync(
            "backup",
            "--setup",
            "local",
            "--name",
            "nas",
            "--path",
            str(tmp_path / "d"),
            "--yes",
            env={"RCLONE_BINARY": str(tmp_path / "no-such-rclone")},
        )
    )
    assert "RCLONE_BINARY" in line and "not an executable" in line
    assert not (tmp_path / "data" / "secrets" / "nas.json").exists()


def test_unwritable_data_dir_is_one_clear_line(
    immich: tuple[Path, TreeStats], tmp_path: Path
) -> None:
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x")
    line = _one_line_error(
        photos_sync("backup", "--status", env={"PHOTOS_SYNC_DATA_DIR": str(blocker / "data")})
    )
    assert "PHOTOS_SYNC_DATA_DIR" in line


def test_vanished_destination_is_one_clear_line(
    immich: tuple[Path, TreeStats], tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    _setup(dest)
    dest.rename(tmp_path / "moved")
    line = _one_line_error(photos_sync("backup"))
    assert "does not exist; is the disk mounted" in line
    assert not dest.exists()


def test_corrupted_db_is_one_clear_line(
    immich: tuple[Path, TreeStats], tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    data_dir = Path(isolated_env["PHOTOS_SYNC_DATA_DIR"])
    data_dir.mkdir(parents=True)
    (data_dir / "backup.db").write_bytes(os.urandom(8192))
    line = _one_line_error(photos_sync("backup", "--status"))
    assert "is damaged" in line and "move it aside" in line


def test_newer_db_is_refused(
    immich: tuple[Path, TreeStats], tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    _setup(tmp_path / "dest")
    db = Path(isolated_env["PHOTOS_SYNC_DATA_DIR"]) / "backup.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 999")
    conn.commit()
    conn.close()
    line = _one_line_error(photos_sync("backup", "--status"))
    assert "newer photos-sync" in line and "upgrade" in line


def test_setup_keeps_the_password_of_an_existing_backup(
    immich: tuple[Path, TreeStats], tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    dest = tmp_path / "dest"
    _setup(dest)
    keyfile = Path(isolated_env["PHOTOS_SYNC_DATA_DIR"]) / "secrets" / "nas.json"
    first = keyfile.read_text()
    assert photos_sync("backup").returncode == 0
    again = photos_sync(
        "backup",
        "--setup",
        "local",
        "--name",
        "nas",
        "--path",
        str(dest),
        "--yes",
        env={"PHOTOS_SYNC_ENCRYPTION_PASSWORD": "another-password-entirely"},
    )
    assert again.returncode == 0, again.stderr
    assert keyfile.read_text() == first
    assert photos_sync("backup").returncode == 0


def test_setup_refuses_a_folder_holding_other_files(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "holiday.jpg").write_bytes(b"not ours")
    line = _one_line_error(
        photos_sync("backup", "--setup", "local", "--name", "nas", "--path", str(dest), "--yes")
    )
    assert "not a photos-sync backup" in line
    assert sorted(p.name for p in dest.iterdir()) == ["holiday.jpg"]


def test_help_has_examples() -> None:
    result = photos_sync("backup", "--help")
    assert result.returncode == 0
    assert "Examples" in result.stdout and "--dry-run" in result.stdout
    assert "photos-sync backup --full" in result.stdout  # an example of the flag too
    assert photos_sync("--version").stdout.startswith("photos-sync ")
    assert photos_sync("backup", "--bogus").returncode == 2
