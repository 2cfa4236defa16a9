"""The `--setup` wizard driven through a pseudo-terminal (prompts answered, hidden input),
and non-interactively with --yes; `--check` and its JSON; usage errors. Real CLI, real
rclone, a real S3 server on loopback, the 1Password CLI test double."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tests.immich_tree import TreeStats
from tests.support.cli import PHOTOS_SYNC, photos_sync
from tests.support.op_double import OpDouble, op_double  # noqa: F401
from tests.support.s3server import S3Server, s3_server  # noqa: F401

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Terminal:
    """`photos-sync ARGS` on a pseudo-terminal: expect output, type answers."""

    def __init__(self, args: list[str], env: Mapping[str, str]) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
        self.proc = subprocess.Popen(
            [PHOTOS_SYNC, *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env={**os.environ, "TERM": "dumb", "NO_COLOR": "1", "COLUMNS": "200", **env},
            start_new_session=True,
        )
        os.close(slave)
        self.output = ""
        self._seen = 0

    def _read(self, timeout: float) -> None:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if ready:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                data = b""
            self.output += _ANSI.sub("", data.decode("utf-8", "replace")).replace("\r", "")

    def expect(self, text: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output[self._seen :]:
            if time.monotonic() > deadline or (
                self.proc.poll() is not None and not select.select([self.master], [], [], 0)[0]
            ):
                raise AssertionError(f"did not see {text!r}; output so far:\n{self.output}")
            self._read(0.1)
        self._seen = self.output.index(text, self._seen) + len(text)

    def send(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\r")

    def finish(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._read(0.1)
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._read(0.2)
        os.close(self.master)
        return self.proc.wait()


@pytest.fixture
def terminal() -> Iterator[list[Terminal]]:
    started: list[Terminal] = []
    yield started
    for term in started:
        if term.proc.poll() is None:
            os.killpg(term.proc.pid, signal.SIGKILL)
            term.proc.wait()


def test_wizard_in_a_terminal_with_1password(
    s3_server: S3Server,  # noqa: F811
    op_double: OpDouble,  # noqa: F811
    terminal: list[Terminal],
) -> None:
    term = Terminal(
        ["backup", "--setup", "s3", "--secrets", "op", "--endpoint", s3_server.endpoint], {}
    )
    terminal.append(term)
    term.expect("Destination name [s3]:")
    term.send("cloud")
    term.expect("[1/8] checking prerequisites")
    term.expect("1Password CLI 2.30.0, signed in (owner@example.com)")
    term.expect('[2/8] looking for 1Password item "Immich Backup S3" in vault "Private"')
    term.expect("with a generated encryption password? [Y/n]:")
    term.send("")
    term.expect('created 1Password item "Immich Backup S3" in vault "Private"')
    term.expect("lacks the fields access_key_id, secret_access_key, bucket_name")
    term.expect("Check the item again? [Y/n]:")
    # the user fills in the keys in the 1Password app, then answers
    op_double.set_field("Immich Backup S3", "access_key_id", s3_server.access_key_id)
    op_double.set_field("Immich Backup S3", "secret_access_key", s3_server.secret_access_key)
    op_double.set_field("Immich Backup S3", "bucket_name", "family-photos")
    term.send("y")
    term.expect("[5/8] configuring the s3 remote: S3 bucket family-photos")
    term.expect("Bucket 'family-photos' does not exist. Create it? [Y/n]:")
    term.send("y")
    term.expect("[7/8] test-write through encryption")
    term.expect("[8/8] saving the destination")
    term.expect("destination 'cloud' ready at S3 bucket family-photos")
    assert term.finish() == 0
    password = op_double.item_fields("Immich Backup S3")["encryption_password"]
    assert len(password) == 32
    assert password not in term.output and s3_server.secret_access_key not in term.output
    assert (s3_server.root / "family-photos").is_dir()


def test_wizard_in_a_terminal_with_hidden_input_and_the_key_file(
    s3_server: S3Server,  # noqa: F811
    terminal: list[Terminal],
    isolated_env: dict[str, str],
) -> None:
    (s3_server.root / "bucket1").mkdir()
    term = Terminal(["backup", "--setup", "s3", "--secrets", "file", "--name", "cloud"], {})
    terminal.append(term)
    term.expect("S3 endpoint URL (empty for AWS):")
    term.send(s3_server.endpoint)
    term.expect("Bucket name:")
    term.send("bucket1")
    term.expect("access key id:")
    term.send(s3_server.access_key_id)
    term.expect("secret access key: ")  # the space comes once echo is off
    term.send(s3_server.secret_access_key)
    term.expect("Generate a strong encryption password (recommended)? [Y/n]:")
    term.send("n")
    term.expect("encryption password: ")  # the space comes once echo is off
    term.send("my-own-long-passphrase")
    term.expect("encryption password (again): ")  # the space comes once echo is off
    term.send("my-own-long-passphrase")
    term.expect("[7/8] test-write")
    term.expect("destination 'cloud' ready at S3 bucket bucket1")
    assert term.finish() == 0
    # hidden input: neither secret was echoed
    assert s3_server.secret_access_key not in term.output
    assert "my-own-long-passphrase" not in term.output
    keyfile = Path(isolated_env["PHOTOS_SYNC_DATA_DIR"]) / "secrets" / "cloud.json"
    saved = json.loads(keyfile.read_text())
    assert saved["encryption_password"] == "my-own-long-passphrase"
    assert saved["endpoint"] == s3_server.endpoint


def test_scripted_setup_backup_and_check(
    immich: tuple[Path, TreeStats],
    s3_server: S3Server,  # noqa: F811
    op_double: OpDouble,  # noqa: F811
) -> None:
    keys = {
        "PHOTOS_SYNC_ACCESS_KEY_ID": s3_server.access_key_id,
        "PHOTOS_SYNC_SECRET_ACCESS_KEY": s3_server.secret_access_key,
    }
    setup = photos_sync(
        "backup",
        "--setup",
        "s3",
        "--name",
        "cloud",
        "--secrets",
        "op",
        "--item",
        "NAS keys",
        "--vault",
        "Servers",
        "--bucket",
        "immich",
        "--endpoint",
        s3_server.endpoint,
        "--yes",
        env=keys,
    )
    assert setup.returncode == 0, setup.stderr
    assert '• created 1Password item "NAS keys" in vault "Servers"' in setup.stdout
    assert op_double.item("NAS keys", "Servers") is not None

    run = photos_sync("backup", "--to", "cloud")
    assert run.returncode == 0, run.stderr
    assert "4/4 folders backed up to cloud" in run.stdout

    check = photos_sync("backup", "--check")
    assert check.returncode == 0, check.stdout + check.stderr
    lines = check.stdout.splitlines()
    assert lines[0].startswith("✓ rclone: v1.")
    assert "✓ 1Password sign-in: user owner@example.com" in lines
    assert any(line.startswith("✓ Immich folders:") for line in lines)
    assert "✓ destination cloud secrets: readable (1Password)" in lines
    assert any(line.startswith("✓ destination cloud remote: S3 bucket immich") for line in lines)

    as_json = json.loads(photos_sync("backup", "--check", "--json").stdout)
    assert as_json["ok"] is True
    assert {c["name"] for c in as_json["checks"]} >= {"rclone", "data dir", "1Password CLI"}

    # re-running setup without --yes and without a terminal: refuse, exit 2
    again = photos_sync(
        "backup",
        "--setup",
        "s3",
        "--name",
        "cloud",
        "--secrets",
        "op",
        "--item",
        "NAS keys",
        "--vault",
        "Servers",
        env=keys,
    )
    assert again.returncode == 2
    assert "destination 'cloud' exists: add --yes to update it" in again.stderr

    op_double.sign_out()
    check = photos_sync("backup", "--check")
    assert check.returncode == 1
    assert (
        "✗ 1Password sign-in: not signed in — the 1Password CLI is not signed in: run "
        "`eval $(op signin)`" in check.stdout
    )
    assert "✗ destination cloud secrets: not readable — the 1Password CLI is not signed in" in (
        check.stdout
    )
    assert check.stdout.rstrip().endswith("some required checks failed")


def test_check_reports_what_is_missing(s3_server: S3Server, tmp_path: Path) -> None:  # noqa: F811
    check = photos_sync("backup", "--check", env={"PATH": "/usr/bin:/bin"})
    assert check.returncode == 1
    out = check.stdout
    assert "– 1Password CLI: not installed (optional: only for --secrets op)" in out
    assert "✗ BACKUP_IMMICH_PATH: not set — BACKUP_IMMICH_PATH is not set" in out
    assert "✗ destinations: none set up — run `photos-sync backup --setup" in out
    data = json.loads(photos_sync("backup", "--check", "--json").stdout)
    assert data["ok"] is False
    failed = {c["name"] for c in data["checks"] if c["status"] == "fail"}
    assert failed == {"BACKUP_IMMICH_PATH", "destinations"}

    # a destination whose credentials are wrong: remote check says which
    (s3_server.root / "bkt").mkdir()
    setup = photos_sync(
        "backup",
        "--setup",
        "s3",
        "--name",
        "cloud",
        "--secrets",
        "file",
        "--bucket",
        "bkt",
        "--endpoint",
        s3_server.endpoint,
        "--yes",
        env={
            "PHOTOS_SYNC_ACCESS_KEY_ID": s3_server.access_key_id,
            "PHOTOS_SYNC_SECRET_ACCESS_KEY": s3_server.secret_access_key,
        },
    )
    assert setup.returncode == 0, setup.stderr
    keyfile = Path(os.environ["PHOTOS_SYNC_DATA_DIR"]) / "secrets" / "cloud.json"
    secrets = json.loads(keyfile.read_text())
    secrets["secret_access_key"] = "wrong-secret-key-123"
    keyfile.write_text(json.dumps(secrets))
    check = photos_sync("backup", "--check")
    assert (
        "✗ destination cloud remote: S3 bucket bkt at "
        f"{s3_server.endpoint} not reachable — the credentials were rejected: check "
        "access_key_id and secret_access_key" in check.stdout
    )
    assert "wrong-secret-key-123" not in check.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--setup", "gcs", "--name", "x"],
            "--setup 'gcs' is not a known type: use one of b2, s3, local",
        ),
        (
            ["--setup", "s3", "--name", "x", "--secrets", "vault"],
            "--secrets 'vault' is unknown: use op or file",
        ),
        (
            ["--setup", "s3", "--secrets", "file", "--yes", "--name", "x"],
            "--setup s3 needs --bucket BUCKET",
        ),
        (["--setup", "b2", "--yes"], "--setup needs --name NAME"),
        (["--setup", "b2", "--check"], "--setup and --check cannot be combined"),
    ],
)
def test_setup_usage_errors(args: list[str], message: str) -> None:
    result = photos_sync("backup", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_scripted_setup_names_missing_secrets(op_double: OpDouble) -> None:  # noqa: F811
    result = photos_sync(
        "backup",
        "--setup",
        "b2",
        "--name",
        "b2",
        "--secrets",
        "op",
        "--bucket",
        "my-bucket",
        "--yes",
    )
    assert result.returncode == 1
    assert (
        'error: 1Password item "Immich Backup B2" in vault "Private" lacks the fields '
        "application_key_id, application_key: add them" in result.stderr
    )
    result = photos_sync(
        "backup",
        "--setup",
        "b2",
        "--name",
        "b2",
        "--secrets",
        "file",
        "--bucket",
        "my-bucket",
        "--yes",
    )
    assert result.returncode == 1
    assert (
        "application_key_id is missing: set PHOTOS_SYNC_APPLICATION_KEY_ID in the environment"
        in result.stderr
    )
