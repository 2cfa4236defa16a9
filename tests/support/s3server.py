"""A real S3 server for tests: `rclone serve s3 DIR` on a free loopback port.

The `s3_server` fixture starts it with a fresh access key pair, waits until it answers, and
stops it afterwards. Buckets are the top-level folders of `S3Server.root`.
"""

from __future__ import annotations

import secrets
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import rclone_binary


@dataclass(frozen=True)
class S3Server:
    root: Path
    endpoint: str
    access_key_id: str
    secret_access_key: str
    pid: int

    def bucket(self, name: str) -> Path:
        return self.root / name

    def rclone_env(self, remote: str = "s3") -> dict[str, str]:
        """RCLONE_CONFIG_* variables defining `remote:` as plain rclone's view of the server."""
        prefix = f"RCLONE_CONFIG_{remote.upper()}_"
        return {
            prefix + "TYPE": "s3",
            prefix + "PROVIDER": "Other",
            prefix + "ENDPOINT": self.endpoint,
            prefix + "ACCESS_KEY_ID": self.access_key_id,
            prefix + "SECRET_ACCESS_KEY": self.secret_access_key,
            prefix + "ENV_AUTH": "false",
        }


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(endpoint: str) -> bool:
    try:
        urllib.request.urlopen(endpoint + "/", timeout=0.5)
    except urllib.error.HTTPError:
        return True  # 403 without credentials: it is up
    except OSError:
        return False
    return True


def serve_s3_argv(root: Path, port: int, key_id: str, secret: str, *extra_args: str) -> list[str]:
    """`rclone serve s3` on 127.0.0.1:PORT with one access key, no rclone.conf, quiet."""
    return [
        rclone_binary(),
        "serve",
        "s3",
        str(root),
        "--addr",
        f"127.0.0.1:{port}",
        "--auth-key",
        f"{key_id},{secret}",
        "--config",
        "",
        "--log-level",
        "ERROR",
        *extra_args,
    ]


@contextmanager
def serve_s3(
    root: Path, timeout: float = 15.0, extra_args: tuple[str, ...] = ()
) -> Iterator[S3Server]:
    """Run `rclone serve s3 ROOT [EXTRA_ARGS]` on 127.0.0.1 until the block ends."""
    root.mkdir(parents=True, exist_ok=True)
    key_id = "test" + secrets.token_hex(6)
    secret = secrets.token_hex(20)
    for _attempt in range(3):
        port = free_port()
        endpoint = f"http://127.0.0.1:{port}"
        proc = subprocess.Popen(
            serve_s3_argv(root, port, key_id, secret, *extra_args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            # never a pipe nobody reads: rclone logs an ERROR line per failed directory
            # removal (every S3 delete), and once 64 KiB of them fill the pipe the server
            # blocks on its log and stops answering every request
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            if _answers(endpoint):
                break
            time.sleep(0.05)
        if proc.poll() is None and _answers(endpoint):
            break
        proc.kill()
        proc.wait()
    else:
        raise RuntimeError("rclone serve s3 did not start")
    try:
        yield S3Server(root, endpoint, key_id, secret, proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def s3_server(tmp_path: Path) -> Iterator[S3Server]:
    """A running S3 server over tmp_path/s3 (an empty store: create buckets as folders)."""
    with serve_s3(tmp_path / "s3") as server:
        yield server
