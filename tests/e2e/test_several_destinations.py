"""Several destinations (#12 3): a plain `backup` and `verify` cover each, with one Immich dump;
`--remove`; `--to` for `--status`, `--history` and `--watch`. Real subprocesses, real rclone,
real SQLite, a real daemon, and a real HTTP server speaking Immich's API on loopback."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import select
import shutil
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from photos_sync.core import rpc
from tests.immich_tree import TreeStats
from tests.support import plain_rclone
from tests.support.cli import PHOTOS_SYNC, photos_sync
from tests.support.daemon import DaemonPool, RpcFailure, daemon_pool, db_jobs, setup_local
from tests.support.fake_immich import FakeImmich, serve_immich

pytestmark = pytest.mark.timeout(180)

KEY = "multiDestImmichKey0123456789abcdefghijkl"
FAST = {"BACKUP_IMMICH_POLL_INTERVAL": "0.05", "BACKUP_IMMICH_DUMP_TIMEOUT": "20"}
FOLDERS = 4  # backups, library, upload, profile


@pytest.fixture
def daemons() -> Iterator[DaemonPool]:
    with daemon_pool() as pool:
        yield pool


@pytest.fixture
def two(
    tmp_path: Path, immich: tuple[Path, TreeStats], monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, Path]:
    """Destinations `nas` and `usb` (local folders, key files), with the Immich API key kept
    in secrets/immich.json."""
    monkeypatch.setenv("PHOTOS_SYNC_IMMICH_API_KEY", KEY)
    nas = setup_local(tmp_path, "nas")
    usb = setup_local(tmp_path, "usb")
    monkeypatch.delenv("PHOTOS_SYNC_IMMICH_API_KEY")
    return nas, usb


def dump_requests(fake: FakeImmich) -> list[tuple[str, str, bool]]:
    return [r for r in fake.requests if r[1].startswith("/api/jobs")]


def backed_up_dumps(dest: Path, data_dir: Path, name: str) -> list[str]:
    env = plain_rclone.crypt_env(dest, data_dir / "secrets" / f"{name}.json")
    return plain_rclone.run(["lsf", "check:backups"], env).stdout.split()


def db_rows(data_dir: Path, sql: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(data_dir / "backup.db")) as conn:
        return list(conn.execute(sql))


# -- backup ------------------------------------------------------------------------------------


def test_plain_backup_goes_to_each_destination_with_one_immich_dump(
    two: tuple[Path, Path], immich: tuple[Path, TreeStats], isolated_env: dict[str, str]
) -> None:
    nas, usb = two
    root, _ = immich
    data_dir = Path(isolated_env["PHOTOS_SYNC_DATA_DIR"])
    with serve_immich(root / "backups", KEY, dump_delay=0.2) as fake:
        run = photos_sync("backup", env={"BACKUP_IMMICH_URL": fake.url, **FAST})
    assert run.returncode == 0, run.stderr
    assert f"{FOLDERS}/{FOLDERS} folders backed up to nas" in run.stdout
    assert f"{FOLDERS}/{FOLDERS} folders backed up to usb" in run.stdout
    assert len(dump_requests(fake)) == 1 and len(fake.written) == 1, fake.requests
    assert "immich: sending the fresh database dump requested for nas" in run.stdout
    fresh = fake.written[0].name
    assert fresh in backed_up_dumps(nas, data_dir, "nas")
    assert fresh in backed_up_dumps(usb, data_dir, "usb")


def test_one_destination_failing_leaves_the_other_backed_up(
    two: tuple[Path, Path], isolated_env: dict[str, str]
) -> None:
    nas, _ = two
    shutil.rmtree(nas)  # the disk is gone
    human = photos_sync("backup")
    assert human.returncode == 1
    assert f"{FOLDERS}/{FOLDERS} folders backed up to usb" in human.stdout
    assert "nas: not backed up: destination 'nas':" in human.stderr
    assert "does not exist" in human.stderr
    assert "1 of 2 destinations failed: nas" in human.stderr
    assert "Traceback" not in human.stderr

    scripted = photos_sync("backup", "--json")
    assert scripted.returncode == 1
    document = json.loads(scripted.stdout)
    assert document["ok"] is False
    by_name = {d["destination"]: d for d in document["destinations"]}
    assert set(by_name) == {"nas", "usb"}
    assert by_name["nas"]["ok"] is False and "does not exist" in by_name["nas"]["error"]
    assert by_name["usb"]["ok"] is True
    assert {j["status"] for j in by_name["usb"]["jobs"]} == {"COMPLETED"}
    jobs = db_jobs(isolated_env["PHOTOS_SYNC_DATA_DIR"])
    assert jobs and {j["status"] for j in jobs} == {"COMPLETED"}  # none was made for nas


def test_the_daemon_schedule_and_a_plain_backup_through_it_cover_both_with_one_dump(
    daemons: DaemonPool,
    two: tuple[Path, Path],
    immich: tuple[Path, TreeStats],
    isolated_env: dict[str, str],
) -> None:
    nas, usb = two
    root, _ = immich
    data_dir = Path(isolated_env["PHOTOS_SYNC_DATA_DIR"])
    with serve_immich(root / "backups", KEY, dump_delay=0.2) as fake:
        env = {"BACKUP_IMMICH_URL": fake.url, **FAST}
        # Nothing ran yet, so the schedule is due at once for both; a long interval keeps it
        # from firing again while the test looks.
        daemon = daemons.start({**env, "BACKUP_SCHEDULE": "1h"})
        ends = [daemon.wait_run_end(run=1, wait=False), daemon.wait_run_end(run=2, wait=False)]
        assert [e["run"]["destination"] for e in ends] == ["nas", "usb"]
        for end in ends:
            assert end["ok"] is True, end
            assert end["run"]["reason"] == "schedule"
        assert len(dump_requests(fake)) == 1 and len(fake.written) == 1, fake.requests
        scheduled_dump = fake.written[0].name
        assert ends[1]["result"]["immich"]["dump"]["name"] == scheduled_dump
        # timed together: the next runs of both fall at the same moment
        next_run = daemon.call("status")["daemon"]["next_run"]
        assert set(next_run) == {"nas", "usb"} and next_run["nas"] == next_run["usb"]

        # `photos-sync backup` with no --to, handed to the daemon: a run each, one more dump
        through = photos_sync("backup", "--json", env=env)
        assert through.returncode == 0, through.stderr
        document = json.loads(through.stdout)
        assert document["ok"] is True
        assert [d["destination"] for d in document["destinations"]] == ["nas", "usb"]
        assert len(dump_requests(fake)) == 2 and len(fake.written) == 2, fake.requests
        detached = photos_sync("backup", "--detach", env=env)
        assert detached.returncode == 0, detached.stderr
        assert "backup to nas started in the daemon (run 5)" in detached.stdout
        assert "backup to usb queued in the daemon (run 6)" in detached.stdout
        assert daemon.wait_run_end(run=6, wait=False)["ok"] is True
        assert len(dump_requests(fake)) == 3, fake.requests
        unknown = photos_sync("backup", "--to", "nope", env=env)
    assert unknown.returncode == 2
    assert "unknown destination 'nope': known destinations are nas, usb" in unknown.stderr
    for dest, name in ((nas, "nas"), (usb, "usb")):
        assert {w.name for w in fake.written} <= set(backed_up_dumps(dest, data_dir, name))


# -- verify ------------------------------------------------------------------------------------


def test_verify_covers_each_destination(two: tuple[Path, Path]) -> None:
    _, usb = two
    assert photos_sync("backup").returncode == 0
    both = photos_sync("verify", "--json")
    assert both.returncode == 0, both.stderr
    document = json.loads(both.stdout)
    assert document["ok"] is True
    assert [r["destination"] for r in document["destinations"]] == ["nas", "usb"]
    assert all(r["figures"]["matched"] > 0 for r in document["destinations"])

    shutil.rmtree(usb)
    human = photos_sync("verify")
    assert human.returncode == 1
    assert "nas: " in human.stdout and "files match, 0 missing" in human.stdout
    assert "usb: not verified: destination 'usb':" in human.stderr
    assert "1 of 2 destinations failed to verify: usb" in human.stderr
    one = photos_sync("verify", "--to", "nas")
    assert one.returncode == 0, one.stderr


# -- --to for status, history, watch; unknown names -------------------------------------------


def test_status_history_and_watch_honour_to(two: tuple[Path, Path]) -> None:
    assert photos_sync("backup").returncode == 0
    status = json.loads(photos_sync("backup", "--status", "--json", "--to", "nas").stdout)
    assert [d["name"] for d in status["destinations"]] == ["nas"]
    assert status["jobs"] and {j["destination"] for j in status["jobs"]} == {"nas"}
    everything = json.loads(photos_sync("backup", "--status", "--json").stdout)
    assert [d["name"] for d in everything["destinations"]] == ["nas", "usb"]
    human = photos_sync("backup", "--status", "--to", "usb")
    assert human.returncode == 0 and "usb" in human.stdout and "nas" not in human.stdout

    history = photos_sync("backup", "--history", "--json", "--to", "usb")
    assert history.returncode == 0, history.stderr
    assert [r["destination"] for r in json.loads(history.stdout)["runs"]] == ["usb"]

    watch = photos_sync("backup", "--status", "--watch", "--once", "--to", "nas")
    assert watch.returncode == 0, watch.stderr
    assert "nas" in watch.stdout and "usb" not in watch.stdout

    for argv in (
        ("backup", "--status", "--to", "nope"),
        ("backup", "--status", "--json", "--to", "nope"),
        ("backup", "--history", "--to", "nope"),
        ("backup", "--status", "--watch", "--once", "--to", "nope"),
        ("backup", "--to", "nope"),
        ("backup", "--reset", "--to", "nope", "--yes"),
        ("backup", "--remove", "nope", "--yes"),
        ("verify", "--to", "nope"),
    ):
        result = photos_sync(*argv)
        assert result.returncode == 2, (argv, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, (argv, result.stderr)
        assert "unknown destination 'nope': known destinations are nas, usb" in lines[0], argv


# -- --remove ----------------------------------------------------------------------------------


class Terminal:
    """`photos-sync ARGS` on a real pseudo-terminal: read the screen, type answers."""

    def __init__(self, *args: str) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: the real CLI on a terminal
            env = dict(os.environ, COLUMNS="200", LINES="40", TERM="dumb")
            os.execve(PHOTOS_SYNC, [PHOTOS_SYNC, *args], env)
        self.screen = ""

    def expect(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.screen:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{text!r} never appeared; the screen:\n{self.screen}"
            ready, _, _ = select.select([self.fd], [], [], remaining)
            if ready:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:
                    chunk = b""
                assert chunk, f"{text!r} never appeared; the screen:\n{self.screen}"
                self.screen += chunk.decode("utf-8", "replace").replace("\r\n", "\n")

    def type(self, answer: str) -> None:
        os.write(self.fd, answer.encode() + b"\r")

    def wait(self, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while True:
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                break
            ready, _, _ = select.select([self.fd], [], [], max(0.0, deadline - time.monotonic()))
            if ready:
                with contextlib.suppress(OSError):
                    self.screen += os.read(self.fd, 65536).decode("utf-8", "replace")
            elif time.monotonic() >= deadline:
                os.kill(self.pid, signal.SIGKILL)
                raise AssertionError(f"the CLI did not end; the screen:\n{self.screen}")
        os.close(self.fd)
        return os.waitstatus_to_exitcode(status)


def test_remove_asks_twice_at_a_terminal_and_leaves_the_backup(
    two: tuple[Path, Path], isolated_env: dict[str, str]
) -> None:
    nas, usb = two
    data_dir = Path(isolated_env["PHOTOS_SYNC_DATA_DIR"])
    assert photos_sync("backup").returncode == 0
    assert photos_sync("verify", "--to", "nas").returncode == 0
    nas_id = db_rows(data_dir, "SELECT id FROM backup_destinations WHERE name = 'nas'")[0][0]
    usb_id = db_rows(data_dir, "SELECT id FROM backup_destinations WHERE name = 'usb'")[0][0]
    manifests = data_dir / "manifests"
    assert (manifests / f"{nas_id}.sqlite").exists() and (manifests / f"{usb_id}.sqlite").exists()
    backed_up = sorted(p.relative_to(nas) for p in nas.rglob("*"))
    nas_key, usb_key = data_dir / "secrets" / "nas.json", data_dir / "secrets" / "usb.json"

    # "no" to the first question: nothing happens
    declined = Terminal("backup", "--remove", "nas")
    declined.expect("Remove destination 'nas'?")
    declined.type("n")
    assert declined.wait() == 1
    assert "nothing was removed" in declined.screen
    assert db_rows(data_dir, "SELECT name FROM backup_destinations ORDER BY name") == [
        ("nas",),
        ("usb",),
    ]

    # yes, then no to deleting the key file
    terminal = Terminal("backup", "--remove", "nas")
    terminal.expect(f"Untouched: the backed-up files in local folder {nas}")
    terminal.expect("Remove destination 'nas'?")
    terminal.type("y")
    terminal.expect(f"Also delete the key file {nas_key}?")
    assert "recovery-kit nas" in terminal.screen
    terminal.type("n")
    assert terminal.wait() == 0, terminal.screen
    assert "removed destination 'nas', its job history" in terminal.screen
    assert f"kept the key file {nas_key}" in terminal.screen
    assert nas_key.exists()
    assert sorted(p.relative_to(nas) for p in nas.rglob("*")) == backed_up  # data untouched
    assert db_rows(data_dir, "SELECT name FROM backup_destinations") == [("usb",)]
    # its manifest goes (a destination set up later may get its id), the other one's stays
    assert sorted(p.name for p in manifests.iterdir()) == [f"{usb_id}.sqlite"]
    for table in ("backup_jobs", "verify_runs", "restore_jobs"):  # ON DELETE CASCADE
        sql = f"SELECT count(*) FROM {table} WHERE destination_id = {nas_id}"
        assert db_rows(data_dir, sql) == [(0,)], table
    assert photos_sync("backup", "--history", "--to", "nas").returncode == 2

    # yes and yes: the key file goes too
    both = Terminal("backup", "--remove", "usb")
    both.expect("Remove destination 'usb'?")
    both.type("y")
    both.expect(f"Also delete the key file {usb_key}?")
    both.type("y")
    assert both.wait() == 0, both.screen
    assert f"deleted the key file {usb_key}" in both.screen
    assert not usb_key.exists() and any(usb.iterdir())
    assert db_rows(data_dir, "SELECT count(*) FROM backup_destinations") == [(0,)]


def test_remove_with_yes_keeps_the_key_file_unless_told(
    tmp_path: Path, two: tuple[Path, Path], isolated_env: dict[str, str]
) -> None:
    data_dir = Path(isolated_env["PHOTOS_SYNC_DATA_DIR"])
    asks = photos_sync("backup", "--remove", "nas")  # no terminal, no --yes
    assert asks.returncode == 2 and "add --yes" in asks.stderr
    assert photos_sync("backup", "--delete-key-file").returncode == 2

    kept = photos_sync("backup", "--remove", "nas", "--yes")
    assert kept.returncode == 0, kept.stderr
    assert "removed destination 'nas'" in kept.stdout and "untouched" in kept.stdout
    assert (data_dir / "secrets" / "nas.json").exists()
    assert "kept the key file" in kept.stdout

    gone = photos_sync("backup", "--remove", "usb", "--yes", "--delete-key-file")
    assert gone.returncode == 0, gone.stderr
    assert not (data_dir / "secrets" / "usb.json").exists()
    again = photos_sync("backup", "--remove", "usb", "--yes")
    assert again.returncode == 2
    assert "unknown destination 'usb': none is set up yet" in again.stderr


def test_remove_is_refused_while_a_backup_uses_the_destination(
    daemons: DaemonPool, two: tuple[Path, Path], isolated_env: dict[str, str]
) -> None:
    data_dir = Path(isolated_env["PHOTOS_SYNC_DATA_DIR"])
    nas_id = db_rows(data_dir, "SELECT id FROM backup_destinations WHERE name = 'nas'")[0][0]
    # a run in another process holds the destination's lock
    lock_path = data_dir / "locks" / f"destination-{nas_id}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        held = photos_sync("backup", "--remove", "nas", "--yes")
    assert held.returncode == 1
    assert "a backup or verify of 'nas' is running" in held.stderr
    assert len(held.stderr.strip().splitlines()) == 1

    # the daemon's own run, mid-transfer
    daemon = daemons.start({"BACKUP_BWLIMIT": "150k"})
    run = daemon.call("start", {"destination": "nas"})["run"]
    daemon.wait_progress("upload", run["id"])
    with pytest.raises(RpcFailure) as caught:
        daemon.call("remove", {"destination": "nas"})
    assert caught.value.code == rpc.BUSY and "running" in caught.value.message
    refused = photos_sync("backup", "--remove", "nas", "--yes")
    assert refused.returncode == 1 and "running" in refused.stderr
    assert daemon.call("cancel")["cancelled"] is True
    assert db_rows(data_dir, "SELECT count(*) FROM backup_destinations") == [(2,)]

    # once idle, the daemon removes it, and its schedule and status forget it
    removed = photos_sync("backup", "--remove", "nas", "--yes")
    assert removed.returncode == 0, removed.stderr
    status = daemon.call("status")
    assert [d["name"] for d in status["destinations"]] == ["usb"]
    assert {j["destination"] for j in status["jobs"]} <= {"usb"}
