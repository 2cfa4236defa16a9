"""`photos-sync` with Immich's API (#9), as a user runs it: real subprocesses, real rclone, and
a real HTTP server on loopback speaking Immich's endpoints."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from tests.immich_tree import TreeStats
from tests.support import plain_rclone
from tests.support.cli import photos_sync
from tests.support.destinations import clone_local
from tests.support.fake_immich import closed_port_url, serve_immich

KEY = "zq7Kx2immichApiKey9f3LmN0pQrStUvWxYz12345"
FAST = {"BACKUP_IMMICH_POLL_INTERVAL": "0.05", "BACKUP_IMMICH_DUMP_TIMEOUT": "10"}


def _setup(dest: Path, **env: str) -> None:
    """Destination `nas` (a copy of one real setup when that is the same thing)."""
    if clone_local(dest, "nas", env):
        return
    result = photos_sync(
        "backup", "--setup", "local", "--name", "nas", "--path", str(dest), "--yes", env=env
    )
    assert result.returncode == 0, result.stderr


def _status(**env: str) -> dict[str, Any]:
    result = photos_sync("backup", "--status", "--json", env=env)
    assert result.returncode == 0, result.stderr
    status: dict[str, Any] = json.loads(result.stdout)
    return status


def test_run_refreshes_the_dump_and_the_key_never_leaks(
    immich: tuple[Path, TreeStats], tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    root, _ = immich
    data_dir = Path(isolated_env["PHOTOS_SYNC_DATA_DIR"])
    argv_log = tmp_path / "argv.log"
    wrapper = tmp_path / "rclone-spy"
    wrapper.write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$*" >> {argv_log}\nexec {plain_rclone.rclone_binary()} "$@"\n'
    )
    wrapper.chmod(0o755)
    dest = tmp_path / "dest"
    setup_env = {"RCLONE_BINARY": str(wrapper), "PHOTOS_SYNC_IMMICH_API_KEY": KEY}
    _setup(dest, **setup_env)
    keyfile = data_dir / "secrets" / "immich.json"
    assert json.loads(keyfile.read_text()) == {"immich_api_key": KEY}
    assert oct(keyfile.stat().st_mode & 0o777) == "0o600"

    with serve_immich(root / "backups", KEY, dump_delay=0.3, grow_steps=2) as fake:
        env = {"RCLONE_BINARY": str(wrapper), "BACKUP_IMMICH_URL": fake.url + "/api", **FAST}
        run = photos_sync("backup", env=env)
        assert run.returncode == 0, run.stderr
        check = photos_sync("backup", "--check", env=env)
        assert check.returncode == 0, check.stdout
        json_run = photos_sync("backup", "--json", env=env)
    assert json_run.returncode == 0, json_run.stderr
    assert "immich: new database dump immich-db-backup-" in run.stdout
    assert "4/4 folders backed up to nas" in run.stdout
    assert len(fake.written) == 2
    assert json.loads(json_run.stdout)["immich"]["dump"]["name"] == fake.written[1].name
    api_line = next(line for line in check.stdout.splitlines() if "Immich API" in line)
    assert api_line.startswith("✓") and "admin@example.com" in api_line and "v2.3.1" in api_line
    assert "✓ Immich DB dump: immich-db-backup-" in check.stdout

    env_check = plain_rclone.crypt_env(dest, data_dir / "secrets" / "nas.json")
    listing = plain_rclone.run(["lsf", "check:backups"], env_check).stdout.split()
    assert fake.written[0].name in listing and fake.written[1].name in listing

    status = _status()
    assert status["immich"]["last_request"]["fresh"] is True
    assert status["immich"]["dumps"]["newest"]["name"] == fake.written[1].name
    assert status["immich"]["warning"] is None
    human = photos_sync("backup", "--status")
    assert f"Immich DB dump: {fake.written[1].name}" in human.stdout

    # the key: never in an argv, the log, the DB, the output, or the state file
    calls = argv_log.read_text()
    assert "sync" in calls
    db_bytes = b"".join(p.read_bytes() for p in data_dir.glob("backup.db*"))
    texts = [
        calls,
        (data_dir / "backup.log").read_text(),
        run.stdout,
        run.stderr,
        check.stdout,
        json_run.stdout,
        human.stdout,
        json.dumps(status),
        (data_dir / "immich-dump.json").read_text(),
    ]
    for text in texts:
        assert KEY not in text
    assert KEY.encode() not in db_bytes


def test_wrong_key_is_a_clear_error_and_immich_down_a_warning(
    immich: tuple[Path, TreeStats], tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    root, _ = immich
    data_dir = Path(isolated_env["PHOTOS_SYNC_DATA_DIR"])
    _setup(tmp_path / "dest", PHOTOS_SYNC_IMMICH_API_KEY="wrong-key-abcdefgh")
    keyfile = data_dir / "secrets" / "immich.json"
    with serve_immich(root / "backups", KEY) as fake:
        env = {"BACKUP_IMMICH_URL": fake.url, **FAST}
        check = photos_sync("backup", "--check", env=env)
        run = photos_sync("backup", env=env)
    assert check.returncode == 1
    line = next(line for line in check.stdout.splitlines() if "Immich API" in line)
    assert line.startswith("✗") and f"immich_api_key of key file {keyfile}" in line
    assert run.returncode == 1
    assert "4/4 folders backed up to nas" in run.stdout  # the files still went
    error = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "Immich rejected the API key" in error[0]
    assert f"immich_api_key of key file {keyfile}" in error[0]
    for text in (check.stdout, run.stdout, run.stderr):
        assert "wrong-key-abcdefgh" not in text
    assert fake.written == []

    down = photos_sync("backup", env={"BACKUP_IMMICH_URL": closed_port_url(), **FAST})
    assert down.returncode == 0, down.stderr
    assert "warning: Immich at" in down.stderr and "not reachable" in down.stderr
    assert "going on with the newest existing dump" in down.stdout
    warning = _status()["immich"]["warning"]
    assert warning.startswith("last run: Immich at") and "not reachable" in warning


def test_dump_age_warnings_at_the_thresholds(
    immich: tuple[Path, TreeStats], tmp_path: Path
) -> None:
    root, _ = immich
    _setup(tmp_path / "dest")
    dumps = sorted((root / "backups").glob("immich-db-backup-*.sql.gz"))
    now = time.time()

    def age(hours_newest: float) -> None:
        os.utime(dumps[0], (now, now - (hours_newest + 24) * 3600))
        os.utime(dumps[1], (now, now - hours_newest * 3600))

    age(35)
    fresh = _status()["immich"]
    assert fresh["warning"] is None and fresh["dumps"]["newest"]["age_hours"] == 35.0
    age(37)
    old = _status()["immich"]
    assert "is 37 h old (more than 36 h)" in old["warning"]
    human = photos_sync("backup", "--status")
    assert "warning: the newest Immich database dump" in human.stdout
    check = photos_sync("backup", "--check")
    line = next(line for line in check.stdout.splitlines() if "Immich DB dump" in line)
    assert line.startswith("! Immich DB dump: ") and "more than 36 h" in line  # a warning
    assert check.returncode == 0  # a warning, not a failed prerequisite
    # a tiny newest dump (a failed one) next to a normal previous one
    age(1)
    dumps[1].write_bytes(b"\x1f\x8b" + b"x" * 10)
    os.utime(dumps[1], (now, now - 3600))
    assert "less than 50% of the previous one" in _status()["immich"]["warning"]
    for dump in dumps:
        dump.unlink()
    assert "no Immich database dump" in _status()["immich"]["warning"]


def test_setup_immich_tests_and_stores_the_key(
    immich: tuple[Path, TreeStats], tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    root, _ = immich
    keyfile = Path(isolated_env["PHOTOS_SYNC_DATA_DIR"]) / "secrets" / "immich.json"
    with serve_immich(root / "backups", KEY) as fake:
        env = {"BACKUP_IMMICH_URL": fake.url}
        wrong = photos_sync(
            "backup", "--setup-immich", env={**env, "PHOTOS_SYNC_IMMICH_API_KEY": "nope-nope-nope"}
        )
        right = photos_sync(
            "backup", "--setup-immich", env={**env, "PHOTOS_SYNC_IMMICH_API_KEY": KEY}
        )
    assert wrong.returncode == 1 and "rejected the API key" in wrong.stderr
    assert "nothing was saved" in wrong.stderr and "nope-nope-nope" not in wrong.stderr
    assert right.returncode == 0, right.stderr
    assert f"stored in {keyfile}" in right.stdout
    assert json.loads(keyfile.read_text()) == {"immich_api_key": KEY}
    no_url = photos_sync("backup", "--setup-immich")
    assert no_url.returncode == 2 and "BACKUP_IMMICH_URL" in no_url.stderr


def test_setup_immich_names_the_permission_the_key_lacks(
    immich: tuple[Path, TreeStats], isolated_env: dict[str, str]
) -> None:
    """A key with only job.create: --setup-immich asks GET /api/users/me (user.read), and the
    message says user.read is missing instead of blaming job.create."""
    root, _ = immich
    keyfile = Path(isolated_env["PHOTOS_SYNC_DATA_DIR"]) / "secrets" / "immich.json"
    with serve_immich(root / "backups", KEY, permissions=("job.create",)) as fake:
        refused = photos_sync(
            "backup",
            "--setup-immich",
            env={"BACKUP_IMMICH_URL": fake.url, "PHOTOS_SYNC_IMMICH_API_KEY": KEY},
        )
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "lacks the user.read permission" in lines[0], refused.stderr
    assert "nothing was saved" in lines[0] and KEY not in refused.stderr
    assert not keyfile.exists()
    assert ("GET", "/api/users/me", True) in fake.requests
