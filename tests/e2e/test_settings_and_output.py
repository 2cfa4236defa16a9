"""Issue #13 (5, 6) through the real CLI: settings checked where they are used, `.env` problems
and typos named, and output that fits 80 columns on a terminal and stays whole in a pipe."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from photos_sync.core.states import JobStatus
from photos_sync.storage.store import Store
from tests.immich_tree import TreeStats
from tests.support.cli import photos_sync
from tests.support.daemon import daemon_pool, setup_local

pytestmark = pytest.mark.timeout(120)

#: rich's mark of a cell it had to cut.
ELLIPSIS = "…"
FOLDERS = ("backups/", "library/", "upload/", "profile/")


def ok(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = photos_sync(*args, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result


def stderr_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# -- settings are checked where they are used ----------------------------------------------------


def test_a_bad_schedule_stops_the_daemon_not_a_restore(
    tmp_path: Path, immich: tuple[Path, TreeStats]
) -> None:
    root, _ = immich
    setup_local(tmp_path)
    ok("backup")
    bad = {"BACKUP_SCHEDULE": "daily@25:00"}
    target = tmp_path / "restored"
    restored = ok("restore", "--from", "nas", "--to", str(target), "--path", "library", env=bad)
    assert files_under(target / "library") == files_under(root / "library")
    (warning,) = stderr_lines(restored)
    assert warning.startswith("warning: BACKUP_SCHEDULE='daily@25:00' is invalid")
    assert warning.endswith("(restore does not use it)")

    daemon = photos_sync("daemon", env=bad)
    assert daemon.returncode == 2
    (line,) = stderr_lines(daemon)
    assert line.startswith("error: BACKUP_SCHEDULE='daily@25:00' is invalid: expected 'daily@")


def test_a_bad_bwlimit_does_not_stop_the_recovery_kit_but_stops_a_backup(
    tmp_path: Path, immich: tuple[Path, TreeStats]
) -> None:
    setup_local(tmp_path)
    bad = {"BACKUP_BWLIMIT": "fast"}
    kit = ok("recovery-kit", "nas", env=bad)
    assert "[pscrypt]" in kit.stdout
    assert "BACKUP_BWLIMIT='fast' is invalid" in kit.stderr
    backup = photos_sync("backup", env=bad)
    assert backup.returncode == 2
    (line,) = stderr_lines(backup)
    assert line.startswith("error: BACKUP_BWLIMIT='fast' is invalid")


@pytest.mark.parametrize(
    ("variable", "value"),
    [("BACKUP_MAX_RETRIES", "-1"), ("BACKUP_VERIFY_SCHEDULE", "sometimes")],
)
def test_status_warns_about_a_setting_it_does_not_use(variable: str, value: str) -> None:
    status = ok("backup", "--status", env={variable: value})
    (warning,) = stderr_lines(status)
    assert warning.startswith(f"warning: {variable}={value!r} is invalid")
    assert warning.endswith("(backup --status does not use it)")


def test_check_lists_a_bad_setting_and_goes_on(tmp_path: Path) -> None:
    check = photos_sync("backup", "--check", env={"BACKUP_SCHEDULE": "sometimes"})
    assert check.returncode == 1
    assert "✗ BACKUP_SCHEDULE: invalid — BACKUP_SCHEDULE='sometimes' is invalid" in check.stdout
    assert "next scheduled run: not tried (BACKUP_SCHEDULE is invalid" in check.stdout
    assert "✓ data dir" in check.stdout  # the rest was checked
    assert check.stderr == ""


# -- .env problems and typos ---------------------------------------------------------------------


def test_a_garbage_env_line_names_the_file_and_the_line(isolated_env: dict[str, str]) -> None:
    dotenv = Path.cwd() / ".env"
    dotenv.write_text("# settings\n\nBACKUP_MAX_RETRIES=2\nthis is not a setting\n")
    data_env = Path(isolated_env["PHOTOS_SYNC_DATA_DIR"]) / ".env"
    data_env.parent.mkdir(parents=True)
    data_env.write_text("BACKUP_NOTIFY_EVENTS='failure\n")
    history = ok("backup", "--history")
    assert stderr_lines(history) == [
        f"warning: {dotenv} line 4 is not NAME=value and is ignored (quote values with "
        "spaces or #, and close every quote)",
        f"warning: {data_env} line 1 is not NAME=value and is ignored (quote values with "
        "spaces or #, and close every quote)",
    ]
    assert "python-dotenv" not in history.stderr


def test_a_misspelled_setting_gets_the_closest_known_name() -> None:
    dotenv = Path.cwd() / ".env"
    dotenv.write_text("BACKUP_RETRY_DELAY=1\n\nBACKUP_MAX_DELET=5\n")
    status = ok("backup", "--status", env={"BACKUP_TRANSFRES": "4", "BACKUP_COLOUR": "red"})
    assert stderr_lines(status) == [
        "warning: unknown setting BACKUP_COLOUR in the environment (photos-sync does not read it)",
        f"warning: unknown setting BACKUP_MAX_DELET in {dotenv} line 3 (did you mean "
        "BACKUP_MAX_DELETE?)",
        "warning: unknown setting BACKUP_TRANSFRES in the environment (did you mean "
        "BACKUP_TRANSFERS?)",
    ]


def test_the_project_s_own_variables_are_known(tmp_path: Path) -> None:
    """Secrets `--setup` reads, the service's install options, notifications: no warning."""
    own = {
        "PHOTOS_SYNC_ENCRYPTION_PASSWORD": "a-long-enough-password-for-the-test",
        "PHOTOS_SYNC_ENCRYPTION_SALT": "salt-salt-salt",
        "PHOTOS_SYNC_SECRET_ACCESS_KEY": "x",
        "PHOTOS_SYNC_ACCESS_KEY_ID": "x",
        "PHOTOS_SYNC_APPLICATION_KEY": "x",
        "PHOTOS_SYNC_APPLICATION_KEY_ID": "x",
        "PHOTOS_SYNC_BUCKET_NAME": "x",
        "PHOTOS_SYNC_ENDPOINT": "http://127.0.0.1:1",
        "PHOTOS_SYNC_IMMICH_API_KEY": "x",
        "PHOTOS_SYNC_SERVICE_SCOPE": "user",
        "PHOTOS_SYNC_OP_BINARY": "/nonexistent/op",
        "PHOTOS_SYNC_SOAK": "0",
        "BACKUP_HEALTHCHECK_URL": "http://127.0.0.1:1/ping",
        "BACKUP_NOTIFY_EVENTS": "all",
        "BACKUP_METRICS_FILE": str(tmp_path / "metrics.prom"),
        "BACKUP_STALL_TIMEOUT": "60",
        "BACKUP_KEEP_DELETED_DAYS": "7",
    }
    status = ok("backup", "--status", env=own)
    assert status.stderr == ""


# -- output for people and pipes -------------------------------------------------------------------


async def _failed_runs(data_dir: Path, destination: str, error: str) -> None:
    """Two more runs of `destination` in the job table, as a crashing machine leaves them:
    one FAILED after many retries with a long error, one INTERRUPTED."""
    store = await Store.open(data_dir / "backup.db")
    try:
        found = await store.get_destination(destination)
        assert found is not None
        owner = (os.getpid(), "host", None)
        for run_id, end in (("20261118T033000Z", JobStatus.FAILED), ("20261119T033000Z", None)):
            jobs = await store.create_jobs(
                found.id, run_id, [("library", "/src/library", 1), ("upload", "/src/upload", 2)]
            )
            for job in jobs:
                await store.set_status(job.id, JobStatus.RUNNING, owner=owner)
                await store.update_job(
                    job.id, bytes_transferred=123_456_789_012, files_transferred=123_456
                )
                if end is JobStatus.FAILED:
                    for _ in range(11):
                        await store.set_status(
                            job.id, JobStatus.FAILED, error_message=error, increment_retry=True
                        )
                        await store.set_status(job.id, JobStatus.RUNNING, owner=owner)
                    await store.set_status(job.id, JobStatus.FAILED, error_message=error)
                else:
                    await store.set_status(job.id, JobStatus.INTERRUPTED, error_message=error)
    finally:
        await store.close()


async def test_history_fits_80_columns_without_cutting_times_or_results(
    tmp_path: Path, immich: tuple[Path, TreeStats], isolated_env: dict[str, str]
) -> None:
    setup_local(tmp_path, "offsite-nas-01")
    ok("backup")
    long_error = "rclone: failed to copy: " + "very/long/path/" * 20 + "photo.jpg: i/o timeout"
    await _failed_runs(Path(isolated_env["PHOTOS_SYNC_DATA_DIR"]), "offsite-nas-01", long_error)

    history = ok("backup", "--history", env={"COLUMNS": "80"})
    lines = history.stdout.splitlines()
    assert len(lines) == 4, history.stdout  # the header and three runs
    assert all(len(line.rstrip()) <= 80 for line in lines), history.stdout
    assert ELLIPSIS not in history.stdout
    rows = [row.rstrip() for row in lines[1:]]
    for row in rows:
        assert row.startswith("offsite-nas-01 "), row
        assert re.search(r" \d\d-\d\d \d\d:\d\d ", row), row  # when it started
        assert re.search(r" \d+:\d\d:\d\d ", row), row  # how long it took
    assert sorted(re.sub(r".* (?=completed|failed|interrupted)", "", row) for row in rows) == [
        "completed",
        "failed (22 retries)",  # 11 for each of the two folders
        "interrupted",
    ]
    assert "230.0 GiB" in history.stdout  # bytes of a run, for a person

    wide = ok("backup", "--history", env={"COLUMNS": "200"})
    assert "20261118T033000Z" in wide.stdout  # with room, the run stamp is there too


def test_watch_once_fits_80_columns_and_does_not_offer_ctrl_c(
    tmp_path: Path, immich: tuple[Path, TreeStats]
) -> None:
    setup_local(tmp_path)
    ok("backup")
    once = ok("backup", "--status", "--watch", "--once", env={"COLUMNS": "80"})
    assert "Ctrl-C" not in once.stdout
    assert all(len(line.rstrip()) <= 80 for line in once.stdout.splitlines()), once.stdout
    assert ELLIPSIS not in once.stdout
    for folder in FOLDERS:
        assert re.search(rf"^{folder}\s+COMPLETED\s", once.stdout, re.MULTILINE), once.stdout
    status = ok("backup", "--status", env={"COLUMNS": "80"})
    table = [line for line in status.stdout.splitlines() if line.startswith(("folder ", *FOLDERS))]
    assert len(table) == 5 and all(len(line.rstrip()) <= 80 for line in table), status.stdout
    assert ELLIPSIS not in status.stdout


def test_piped_status_keeps_a_long_path_on_one_line(
    tmp_path: Path, immich: tuple[Path, TreeStats]
) -> None:
    deep = tmp_path / ("a-rather-long-folder-name-for-the-backup-disk-" * 3)
    deep.mkdir()
    dest = deep / "immich-backup"
    assert len(str(dest)) >= 150
    ok("backup", "--setup", "local", "--name", "nas", "--path", str(dest), "--yes")
    status = ok("backup", "--status", env={"COLUMNS": "80"})
    assert any(str(dest) in line for line in status.stdout.splitlines()), status.stdout


def test_help_shows_no_type_after_flags_and_names_the_required_setting() -> None:
    import typer

    from photos_sync.cli.app import app

    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    commands = sorted(group.commands)
    assert {"backup", "restore", "verify", "daemon", "recovery-kit"} <= set(commands)
    for argv in ([], *([name] for name in commands)):
        shown = ok(*argv, "--help", env={"COLUMNS": "100"})
        assert "<bool>" not in shown.stdout, argv
        assert "--help" in shown.stdout
    backup = ok("backup", "--help", env={"COLUMNS": "100"})
    assert "BACKUP_IMMICH_PATH=/srv/immich" in backup.stdout
    assert "UPLOAD_LOCATION" in backup.stdout


def test_plurals_and_human_sizes_in_the_dry_run_and_the_summary(
    tmp_path: Path, immich: tuple[Path, TreeStats]
) -> None:
    root, _ = immich
    setup_local(tmp_path)
    ok("backup")
    (root / "library" / "new-photo.jpg").write_bytes(os.urandom(3000))
    dry = ok("backup", "--dry-run")
    # what a real run sends: the file's encrypted form (3,000 bytes + crypt's 48), not the
    # plain size
    assert "library/: would send 1 file (3.0 KiB), archive 0 files" in dry.stdout, dry.stdout
    assert "dry run: 1 file (3.0 KiB) would be sent to nas" in dry.stdout
    assert "bytes)" not in dry.stdout
    run = ok("backup")
    assert re.search(r"^4/4 folders backed up to nas: 1 file \(3\.0 KiB\) sent$", run.stdout, re.M)
    assert re.search(r"^library/: COMPLETED — 1 file, 3\.0 KiB$", run.stdout, re.M), run.stdout
    assert "backups/: COMPLETED — 0 files, 0 B" in run.stdout


def test_a_full_restore_is_called_everything(
    tmp_path: Path, immich: tuple[Path, TreeStats]
) -> None:
    setup_local(tmp_path)
    ok("backup")
    restored = ok("restore", "--from", "nas", "--to", str(tmp_path / "all"))
    assert "everything: COMPLETED" in restored.stdout, restored.stdout
    assert "everything/" not in restored.stdout


def test_a_reload_with_a_bad_setting_keeps_the_daemon_s_settings(
    isolated_env: dict[str, str],
) -> None:
    dotenv = Path(isolated_env["PHOTOS_SYNC_DATA_DIR"]) / ".env"
    dotenv.parent.mkdir(parents=True)
    dotenv.write_text("BACKUP_VERIFY_SCHEDULE=7d\n")
    with daemon_pool() as pool:
        daemon = pool.start()
        assert daemon.call("status")["daemon"]["verify_schedule"] == "every 7d"
        dotenv.write_text("BACKUP_VERIFY_SCHEDULE=sometimes\n")
        daemon.signal(signal.SIGHUP)
        deadline = time.monotonic() + 15
        while "reload_failed" not in daemon.stderr_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "BACKUP_VERIFY_SCHEDULE='sometimes' is invalid" in daemon.stderr_text()
        assert daemon.call("status")["daemon"]["verify_schedule"] == "every 7d"
