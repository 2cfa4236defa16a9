"""Tools for breaking things on purpose: a restartable S3 server, an rclone recorder, a power
cut, and the checks every fault ends with (plain cryptcheck, PRAGMA integrity_check).

Everything is real: the daemon is the installed `photos-sync daemon`, rclone is the real
binary, the S3 server is `rclone serve s3` on loopback and the DB is the daemon's SQLite file.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import rclone_binary
from tests.support import plain_rclone
from tests.support.cli import photos_sync
from tests.support.daemon import DaemonProcess, children_of
from tests.support.s3server import _answers, free_port, serve_s3_argv

BUCKET = "immich-backup"
BACKED_UP = ("backups", "library", "upload", "profile")


# -- a restartable S3 server ----------------------------------------------------------------


class S3Service:
    """`rclone serve s3 ROOT` on one fixed loopback port that survives stop/start cycles.

    `start(keys=...)` with other keys is how credentials get revoked.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / BUCKET).mkdir(exist_ok=True)
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.access_key_id = "rel" + secrets.token_hex(6)
        self.secret_access_key = secrets.token_hex(20)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, keys: tuple[str, str] | None = None, timeout: float = 15.0) -> None:
        assert self.proc is None, "already running"
        key_id, secret = keys or (self.access_key_id, self.secret_access_key)
        deadline = time.monotonic() + timeout
        while True:
            self.proc = subprocess.Popen(
                serve_s3_argv(self.root, self.port, key_id, secret),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            # Readiness: the port answers HTTP (bounded; rclone binds within milliseconds).
            while time.monotonic() < deadline and self.proc.poll() is None:
                if _answers(self.endpoint):
                    self.starts += 1
                    return
                time.sleep(0.05)
            if time.monotonic() >= deadline:
                self.stop()
                raise RuntimeError(f"rclone serve s3 did not come back on {self.endpoint}")
            # it exited (the port still in TIME_WAIT or taken): try again until the deadline
            self.proc.wait()
            self.proc = None
            time.sleep(0.1)

    def stop(self) -> None:
        """Storage outage: the server goes away at once (SIGKILL, like a pulled cable)."""
        if self.proc is None:
            return
        self.proc.kill()
        self.proc.wait(10)
        self.proc = None

    def rclone_env(self, remote: str = "s3") -> dict[str, str]:
        prefix = f"RCLONE_CONFIG_{remote.upper()}_"
        return {
            prefix + "TYPE": "s3",
            prefix + "PROVIDER": "Other",
            prefix + "ENDPOINT": self.endpoint,
            prefix + "ACCESS_KEY_ID": self.access_key_id,
            prefix + "SECRET_ACCESS_KEY": self.secret_access_key,
            prefix + "ENV_AUTH": "false",
        }


def setup_s3(service: S3Service, name: str = "cloud") -> None:
    """Create an S3 destination through the CLI (keys from PHOTOS_SYNC_* variables)."""
    result = photos_sync(
        "backup",
        "--setup",
        "s3",
        "--name",
        name,
        "--bucket",
        BUCKET,
        "--endpoint",
        service.endpoint,
        "--secrets",
        "file",
        "--yes",
        env={
            "PHOTOS_SYNC_ACCESS_KEY_ID": service.access_key_id,
            "PHOTOS_SYNC_SECRET_ACCESS_KEY": service.secret_access_key,
        },
    )
    assert result.returncode == 0, result.stderr


def crypt_env_s3(service: S3Service, keyfile: Path) -> dict[str, str]:
    """Plain rclone's `check:` = crypt over the bucket, built only from the key file."""
    saved = json.loads(keyfile.read_text())
    env = dict(os.environ)
    env = {k: v for k, v in env.items() if not k.startswith("RCLONE_")}
    env.update(service.rclone_env("s3"))
    env.update(
        {
            "RCLONE_CONFIG": "",
            "RCLONE_CONFIG_CHECK_TYPE": "crypt",
            "RCLONE_CONFIG_CHECK_REMOTE": f"s3:{BUCKET}",
            "RCLONE_CONFIG_CHECK_PASSWORD": plain_rclone.obscure(saved["encryption_password"]),
            "RCLONE_CONFIG_CHECK_FILENAME_ENCRYPTION": "standard",
            "RCLONE_CONFIG_CHECK_DIRECTORY_NAME_ENCRYPTION": "true",
        }
    )
    if saved.get("encryption_salt"):
        env["RCLONE_CONFIG_CHECK_PASSWORD2"] = plain_rclone.obscure(saved["encryption_salt"])
    return env


def assert_cryptcheck_clean(source: Path, env: dict[str, str], folders: tuple[str, ...]) -> None:
    for folder in folders:
        check = plain_rclone.cryptcheck(source / folder, f"check:{folder}", env)
        assert check.returncode == 0, f"{folder}: {check.stderr[-2000:]}"
        assert "0 differences found" in check.stderr, check.stderr[-2000:]


def integrity_ok(db_path: Path) -> str:
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def jobs(db_path: Path) -> list[dict[str, Any]]:
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM backup_jobs ORDER BY id")]


# -- an rclone that records what it did -----------------------------------------------------

_WRAPPER = """#!/bin/bash
echo "$$ $*" >> '{calls}'
exec '{real}' "$@" 2> >(exec tee -a '{logs}/'$$'.log' >&2)
"""


@dataclass
class RcloneRecorder:
    """RCLONE_BINARY for the daemon: the real rclone, each call's argv and stderr kept.

    Argv holds no secrets by design; the JSON log lines hold object names and sizes.
    """

    folder: Path
    binary: Path = field(init=False)
    calls_file: Path = field(init=False)
    logs: Path = field(init=False)

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.logs = self.folder / "logs"
        self.logs.mkdir(exist_ok=True)
        self.calls_file = self.folder / "calls.txt"
        self.calls_file.touch()
        self.binary = self.folder / "rclone"
        self.binary.write_text(
            _WRAPPER.format(calls=self.calls_file, real=rclone_binary(), logs=self.logs)
        )
        self.binary.chmod(0o755)

    def calls(self) -> list[tuple[int, list[str]]]:
        out = []
        for line in self.calls_file.read_text().splitlines():
            pid, _, rest = line.partition(" ")
            out.append((int(pid), rest.split()))
        return out

    def syncs(self) -> list[tuple[int, list[str]]]:
        return [(pid, argv) for pid, argv in self.calls() if argv[:1] == ["sync"]]

    def copied(self, pid: int) -> Counter[str]:
        """Objects that the rclone call `pid` reported as fully copied."""
        found: Counter[str] = Counter()
        path = self.logs / f"{pid}.log"
        if not path.exists():
            return found
        for line in path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict) and str(record.get("msg", "")).startswith("Copied"):
                    found[str(record.get("object"))] += 1
        return found

    def sync_folder(self, argv: list[str]) -> str:
        return argv[1].rstrip("/").rsplit("/", 1)[-1]


# -- power cuts -----------------------------------------------------------------------------


def power_cut(daemon: DaemonProcess) -> list[int]:
    """SIGKILL the daemon and every process under it (rclone, its helpers) at once."""
    victims = children_of(daemon.pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(daemon.pid, signal.SIGKILL)
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    daemon.wait(10)
    return victims


class DurableImages:
    """What a power cut leaves of the DB: each file as it was at its last fsync.

    A SIGKILL alone loses nothing (the page cache survives it), so it cannot show what a real
    power cut does to writes that were never synced. Processes started with `env()` preload
    `durable_images.c`, which copies backup.db and backup.db-wal aside at each fsync/fdatasync
    of theirs; `power_cut` kills the daemon and puts those copies back, deleting a WAL that was
    never synced and the -shm (which SQLite rebuilds). That is the worst case the disk allows:
    none of the un-synced writes reached it.
    """

    def __init__(self, library: Path, folder: Path, db: Path) -> None:
        self.library = library
        self.folder = folder
        self.db = db
        folder.mkdir(parents=True, exist_ok=True)

    def env(self) -> dict[str, str]:
        return {
            "LD_PRELOAD": str(self.library),
            "DURABLE_WATCH": str(self.db),
            "DURABLE_DIR": str(self.folder),
        }

    def _files(self) -> tuple[Path, Path]:
        return self.db, Path(f"{self.db}-wal")

    def power_cut(self, daemon: DaemonProcess) -> None:
        """SIGKILL the daemon and its children, then lose every write not yet synced."""
        power_cut(daemon)
        for path in self._files():
            image = self.folder / path.name
            if image.exists():
                path.write_bytes(image.read_bytes())
            else:
                path.unlink(missing_ok=True)
        Path(f"{self.db}-shm").unlink(missing_ok=True)

    def settle(self) -> None:
        """After the test itself opened the DB (its close checkpoints and syncs): the files
        as they are now are what the disk holds."""
        for path in self._files():
            image = self.folder / path.name
            if path.exists():
                image.write_bytes(path.read_bytes())
            else:
                image.unlink(missing_ok=True)


def build_durable_images(out: Path) -> Path | None:
    """Compile durable_images.c into `out`; None where there is no C compiler or no Linux."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None or not sys.platform.startswith("linux"):
        return None
    source = Path(__file__).with_name("durable_images.c")
    made = subprocess.run(
        [compiler, "-shared", "-fPIC", "-O2", "-o", str(out), str(source), "-ldl"],
        capture_output=True,
        text=True,
    )
    return out if made.returncode == 0 else None


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_until(predicate: Any, timeout: float, step: float = 0.05) -> bool:
    """Bounded wait for a condition that has no event to wait on (fd counts, /proc)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


TRACEBACK = re.compile(r"Traceback \(most recent call last\)")
