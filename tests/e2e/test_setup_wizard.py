"""The `--setup` wizard typed through a real pseudo-terminal, as a person does (prompts read
off the screen, answers typed after they appear, hidden input, Ctrl-C and Ctrl-D sent as the
terminal's own control characters), and non-interactively with --yes; `--check` and its JSON;
usage errors. Real CLI, real rclone, a real S3 server on loopback, the 1Password CLI double."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import socket
import sqlite3
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
from tests.support.s3server import S3Server, free_port, s3_server  # noqa: F401

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
CTRL_C = "\x03"  # the terminal's VINTR: the line discipline sends SIGINT
CTRL_D = "\x04"  # VEOF at the start of a line: the read returns end of input


def _own_the_terminal() -> None:
    """In the child, after setsid: make the pty its controlling terminal, as a login shell
    would, so Ctrl-C typed there reaches it as SIGINT and /dev/tty is the pty."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


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
            preexec_fn=_own_the_terminal,  # runs after setsid; one ioctl, no locks
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
        """Wait until `text` appears after what was already matched."""
        deadline = time.monotonic() + timeout
        while text not in self.output[self._seen :]:
            if time.monotonic() > deadline or (
                self.proc.poll() is not None and not select.select([self.master], [], [], 0)[0]
            ):
                raise AssertionError(f"did not see {text!r}; output so far:\n{self.output}")
            self._read(0.1)
        self._seen = self.output.index(text, self._seen) + len(text)

    def answer(self, prompt: str, line: str) -> None:
        """Wait for `prompt`, then type `line` and Enter."""
        self.expect(prompt)
        self.send(line)

    def send(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\r")

    def press(self, key: str) -> None:
        """A control key on its own (Ctrl-C, Ctrl-D): no Enter."""
        os.write(self.master, key.encode())

    def finish(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._read(0.1)
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._read(0.2)
        os.close(self.master)
        return self.proc.wait()

    def screen_after(self, text: str) -> str:
        """Everything shown after the first `text`."""
        return self.output[self.output.index(text) + len(text) :]


@pytest.fixture
def terminal() -> Iterator[list[Terminal]]:
    started: list[Terminal] = []
    yield started
    for term in started:
        if term.proc.poll() is None:
            os.killpg(term.proc.pid, signal.SIGKILL)
            term.proc.wait()


def _destination_rows(data_dir: Path) -> list[tuple[str, str]]:
    db = data_dir / "backup.db"
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        return list(conn.execute("SELECT name, secrets_ref FROM backup_destinations"))


def _saved_nothing(data_dir: Path, op: OpDouble | None) -> None:
    """No key file, no destination row, no 1Password item (and none was ever created)."""
    secrets = data_dir / "secrets"
    assert not secrets.exists() or list(secrets.iterdir()) == []
    assert _destination_rows(data_dir) == []
    if op is not None:
        assert op.all_items() == []
        assert not [c for c in op.calls() if c["argv"][:2] == ["item", "create"]]


def test_s3_wizard_with_no_options_asks_everything_in_order(
    s3_server: S3Server,  # noqa: F811
    op_double: OpDouble,  # noqa: F811
    terminal: list[Terminal],
    isolated_env: dict[str, str],
) -> None:
    """`--setup s3` and nothing else: every question in the documented order, wrong answers
    asked again with the reason, the vault chosen from the list, the keys typed hidden into
    a new 1Password item created only at the end, and a summary with the next command."""
    term = Terminal(["backup", "--setup", "s3"], {})
    terminal.append(term)
    term.expect("[1/8] checking prerequisites")
    term.answer("Destination name [s3]:", "cloud")
    term.answer("Bucket name:", "Family_Photos")
    term.expect(
        "✗ invalid bucket name 'Family_Photos': use only lowercase letters, digits, '.' and '-'"
    )
    term.answer("Bucket name:", "family-photos")
    host = s3_server.endpoint.removeprefix("http://")
    term.answer("S3 endpoint URL (empty for AWS):", host)
    term.expect(f"✗ '{host}' is not a URL: type it as https://host or http://host:port")
    term.answer("S3 endpoint URL (empty for AWS):", s3_server.endpoint)
    term.answer("Region (empty if your provider needs none):", "")
    term.answer("Folder inside the bucket (empty for the whole bucket):", "immich")
    term.answer("Keep the secrets in 1Password (op) or in a key file (file)? [op]:", "")
    term.expect("1Password CLI 2.30.0, signed in (owner@example.com)")
    term.expect("1Password vaults:")
    term.expect("1) Private (0 items)")
    term.expect("2) Servers (0 items)")
    term.answer("1Password vault [1]:", "3")
    term.expect("✗ type a number from 1 to 2, or a vault's name")
    term.answer("1Password vault [1]:", "2")
    term.expect('[2/8] looking for 1Password item "Immich Backup S3" in vault "Servers"')
    term.expect('[3/8] no item "Immich Backup S3" in vault "Servers": it is created at the end')
    term.answer("S3 access key ID:", s3_server.access_key_id)
    term.answer("S3 secret access key: ", s3_server.secret_access_key)  # space: echo is off
    term.answer("Generate a strong encryption password (recommended)? [Y/n]:", "")
    term.expect("[4/8] checking the required fields")
    term.expect(
        f"[5/8] configuring the s3 remote: S3 bucket family-photos/immich at {s3_server.endpoint}"
    )
    assert op_double.all_items() == []  # nothing saved before the checks pass
    term.answer("Bucket 'family-photos' does not exist. Create it? [Y/n]:", "y")
    term.expect("[6/8] configuring the crypt overlay")
    term.expect("[7/8] test-write through encryption")
    term.expect("[8/8] saving the destination")
    term.expect(
        'created 1Password item "Immich Backup S3" in vault "Servers" with a generated '
        "encryption password"
    )
    term.expect(
        f"✓ destination 'cloud' ready at S3 bucket family-photos/immich at {s3_server.endpoint}"
    )
    term.expect('created: bucket family-photos, 1Password item "Immich Backup S3" in vault')
    term.expect(
        'secrets: 1Password item "Immich Backup S3" in vault "Servers" (encryption password '
        "generated)"
    )
    term.expect("photos-sync recovery-kit cloud")
    term.expect("Next: BACKUP_IMMICH_PATH=/path/to/immich/upload-location photos-sync backup --to")
    assert term.finish() == 0

    fields = op_double.item_fields("Immich Backup S3", "Servers")
    assert fields["access_key_id"] == s3_server.access_key_id
    assert fields["secret_access_key"] == s3_server.secret_access_key
    assert fields["bucket_name"] == "family-photos"
    assert fields["endpoint"] == s3_server.endpoint
    assert len(fields["encryption_password"]) == 32
    assert op_double.item("Immich Backup S3", "Private") is None
    # hidden input: the secret key was never echoed; no secret went into op's argv
    assert s3_server.secret_access_key not in term.output
    assert fields["encryption_password"] not in term.output
    for call in op_double.calls():
        assert s3_server.secret_access_key not in call["cmdline"]
        assert fields["encryption_password"] not in call["cmdline"]
    data_dir = Path(isolated_env["PHOTOS_SYNC_DATA_DIR"])
    assert _destination_rows(data_dir) == [("cloud", "op:Servers/Immich Backup S3")]
    assert not (data_dir / "secrets" / "cloud.json").exists()
    assert (s3_server.root / "family-photos" / "immich").is_dir()


def test_b2_wizard_with_no_options_asks_everything_then_saves_nothing_unreachable(
    op_double: OpDouble,  # noqa: F811
    terminal: list[Terminal],
    isolated_env: dict[str, str],
) -> None:
    """`--setup b2` and nothing else. There is no B2 emulator and the tests have no network:
    rclone's own backend default RCLONE_B2_ENDPOINT points the b2 backend at a closed
    loopback port, so step 5 (bucket reachable, key accepted) fails the same way everywhere.
    Checked: every question in order, each wrong answer asked again with its reason (blank
    and reserved bucket names, short and mismatched passwords), and that the failed check
    leaves no key file, destination row or 1Password item."""
    key_id, app_key = "0012a3b4c5d6e7f0000000001", "K001abcdefghijklmnopqrstuvwxyz0123"
    term = Terminal(
        ["backup", "--setup", "b2"], {"RCLONE_B2_ENDPOINT": f"http://127.0.0.1:{free_port()}"}
    )
    terminal.append(term)
    term.answer("Destination name [b2]:", "")
    term.answer("Bucket name:", "   ")
    term.expect("✗ a bucket name is needed")
    term.answer("Bucket name:", "b2-family-photos")
    term.expect(
        "✗ invalid bucket name 'b2-family-photos': names starting with 'b2-' are reserved by "
        "Backblaze"
    )
    term.answer("Bucket name:", "Family-Photos-2024")
    term.answer("Folder inside the bucket (empty for the whole bucket):", "server1")
    term.answer("Keep the secrets in 1Password (op) or in a key file (file)? [op]:", "vault")
    term.expect("✗ answer op or file")
    term.answer("Keep the secrets in 1Password (op) or in a key file (file)? [op]:", "file")
    term.expect("[2/8] looking for the key file")
    term.expect("[3/8] gathering the keys")
    term.answer("B2 keyID:", key_id)
    term.answer("B2 applicationKey: ", app_key)
    term.answer("Generate a strong encryption password (recommended)? [Y/n]:", "n")
    term.answer("Encryption password (12 characters or more): ", "too-short")
    term.expect("✗ too short: use at least 12 characters, or let photos-sync generate one")
    term.answer("Encryption password (12 characters or more): ", "a-long-passphrase-1")
    term.answer("Encryption password (again): ", "a-long-passphrase-2")
    term.expect("✗ the two passwords differ: type it again")
    term.answer("Encryption password (12 characters or more): ", "a-long-passphrase-1")
    term.answer("Encryption password (again): ", "a-long-passphrase-1")
    term.expect("[4/8] checking the required fields")
    term.expect("[5/8] configuring the b2 remote: B2 bucket Family-Photos-2024/server1")
    term.expect(
        "error: destination 'b2': cannot reach bucket 'Family-Photos-2024': the storage service "
        "is unreachable: check the endpoint and the network"
    )
    assert term.finish() == 1
    for secret in (app_key, "a-long-passphrase-1", "a-long-passphrase-2", "too-short"):
        assert secret not in term.output
    assert "[6/8]" not in term.output and "Traceback" not in term.output
    _saved_nothing(Path(isolated_env["PHOTOS_SYNC_DATA_DIR"]), op_double)


#: The s3 wizard's questions with no options, and the answers typed (placeholders filled in).
S3_SCRIPT = [
    ("Destination name [s3]:", "cloud"),
    ("Bucket name:", "family-photos"),
    ("S3 endpoint URL (empty for AWS):", "{endpoint}"),
    ("Region (empty if your provider needs none):", ""),
    ("Folder inside the bucket (empty for the whole bucket):", ""),
    ("Keep the secrets in 1Password (op) or in a key file (file)? [op]:", ""),
    ("1Password vault [1]:", ""),
    ("S3 access key ID:", "{key_id}"),
    ("S3 secret access key: ", "{secret}"),
    ("Generate a strong encryption password (recommended)? [Y/n]:", ""),
    ("Bucket 'family-photos' does not exist. Create it? [Y/n]:", "y"),
]


# A Ctrl-C at "Bucket name:" was sometimes lost under load: the kernel handed the SIGINT to
# the DB's worker thread, and the main thread stayed in its read until Enter. The worker now
# blocks the main thread's signals (test_store.py checks its mask). The reruns stay until
# whole-suite runs show no rerun here: other helper threads (executor, child watcher) have not
# been ruled out.
@pytest.mark.flaky(reruns=2)
@pytest.mark.parametrize(
    ("stop_at", "key"),
    [
        ("Destination name [s3]:", CTRL_C),
        ("Bucket name:", CTRL_C),
        ("1Password vault [1]:", CTRL_C),
        ("S3 secret access key: ", CTRL_C),
        ("Bucket 'family-photos' does not exist. Create it? [Y/n]:", CTRL_C),
        ("Folder inside the bucket (empty for the whole bucket):", CTRL_D),
    ],
    ids=[
        "ctrl-c-name",
        "ctrl-c-bucket",
        "ctrl-c-vault",
        "ctrl-c-hidden-key",
        "ctrl-c-last",
        "ctrl-d-folder",
    ],
)
def test_ctrl_c_or_eof_at_any_question_ends_at_once_and_saves_nothing(
    stop_at: str,
    key: str,
    s3_server: S3Server,  # noqa: F811
    op_double: OpDouble,  # noqa: F811
    terminal: list[Terminal],
    isolated_env: dict[str, str],
) -> None:
    values = {
        "endpoint": s3_server.endpoint,
        "key_id": s3_server.access_key_id,
        "secret": s3_server.secret_access_key,
    }
    term = Terminal(["backup", "--setup", "s3"], {})
    terminal.append(term)
    for prompt, line in S3_SCRIPT:
        if prompt == stop_at:
            term.expect(prompt)
            term.press(key)
            break
        term.answer(prompt, line.format(**values))
    started = time.monotonic()
    term.expect("setup interrupted: nothing was saved", timeout=10)
    assert term.finish() == 130
    assert time.monotonic() - started < 10
    after = term.screen_after(stop_at)
    assert "error:" not in after and "Traceback" not in after and "[8/8]" not in after
    _saved_nothing(Path(isolated_env["PHOTOS_SYNC_DATA_DIR"]), op_double)
    assert not (s3_server.root / "family-photos").exists()


def test_s3_without_an_endpoint_is_aws_and_needs_a_region(
    op_double: OpDouble,  # noqa: F811
    terminal: list[Terminal],
    isolated_env: dict[str, str],
) -> None:
    """An empty endpoint means AWS, whose region is asked with us-east-1 offered (checked
    only up to there: AWS is not reachable from the tests; Ctrl-D ends it)."""
    term = Terminal(["backup", "--setup", "s3", "--name", "aws", "--bucket", "family-photos"], {})
    terminal.append(term)
    term.answer("S3 endpoint URL (empty for AWS):", "")
    term.answer("AWS region [us-east-1]:", "EU Central")
    term.expect("✗ invalid region 'EU Central': lowercase letters, digits and '-', e.g.")
    term.answer("AWS region [us-east-1]:", "eu-central-1")
    term.expect("Folder inside the bucket (empty for the whole bucket):")
    term.press(CTRL_D)
    term.expect("setup interrupted: nothing was saved")
    assert term.finish() == 130
    _saved_nothing(Path(isolated_env["PHOTOS_SYNC_DATA_DIR"]), op_double)


def test_ctrl_c_while_the_bucket_is_checked_stops_rclone_and_saves_nothing(
    terminal: list[Terminal],
    isolated_env: dict[str, str],
) -> None:
    """Ctrl-C outside a question (rclone is waiting on a storage service that never answers):
    the same exit 130 and line, at once, with rclone stopped."""
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        term = Terminal(
            [
                "backup", "--setup", "s3", "--name", "cloud", "--secrets", "file",
                "--bucket", "photos", "--endpoint", endpoint, "--region", "us-east-1",
                "--path", "immich",
            ],
            {},
        )  # fmt: skip
        terminal.append(term)
        term.answer("S3 access key ID:", "AKIAEXAMPLE")
        term.answer("S3 secret access key: ", "secret-key-typed-here")
        term.answer("Generate a strong encryption password (recommended)? [Y/n]:", "")
        term.expect("[5/8] configuring the s3 remote: S3 bucket photos/immich")
        silent.settimeout(20)
        rclone, _ = silent.accept()  # rclone is connected and waiting for an answer
        with rclone:
            term.press(CTRL_C)
            started = time.monotonic()
            term.expect("setup interrupted: nothing was saved", timeout=10)
            assert term.finish() == 130
            assert time.monotonic() - started < 10
            rclone.settimeout(10)
            # rclone was stopped: its connection closes (after the request it may have sent)
            received = b""
            while chunk := rclone.recv(65536):
                received += chunk
                assert len(received) < 1 << 20, "rclone kept sending: it was not stopped"
    _saved_nothing(Path(isolated_env["PHOTOS_SYNC_DATA_DIR"]), None)
    assert "interrupted: progress is saved" not in term.output


def test_ctrl_c_while_saving_is_held_until_the_save_is_complete(
    s3_server: S3Server,  # noqa: F811
    op_double: OpDouble,  # noqa: F811
    terminal: list[Terminal],
    isolated_env: dict[str, str],
    tmp_path: Path,
) -> None:
    """Ctrl-C during step 8 (the 1Password item is being created over a slow network): the
    wizard finishes the save rather than leave an item without its destination."""
    (s3_server.root / "photos").mkdir()
    gate = tmp_path / "op-item-create"
    op_double.hold("item create", gate)
    term = Terminal(
        [
            "backup", "--setup", "s3", "--name", "cloud", "--secrets", "op", "--vault", "Servers",
            "--bucket", "photos", "--endpoint", s3_server.endpoint, "--region", "us-east-1",
            "--path", "immich",
        ],
        {},
    )  # fmt: skip
    terminal.append(term)
    term.answer("S3 access key ID:", s3_server.access_key_id)
    term.answer("S3 secret access key: ", s3_server.secret_access_key)
    term.answer("Generate a strong encryption password (recommended)? [Y/n]:", "")
    term.expect("[8/8] saving the destination")
    term.press(CTRL_C)
    term.expect("interrupted while saving: finishing the save first")
    op_double.release(gate)
    term.expect("✓ destination 'cloud' ready at S3 bucket photos/immich")
    assert term.finish() == 0
    assert op_double.item("Immich Backup S3", "Servers") is not None
    rows = _destination_rows(Path(isolated_env["PHOTOS_SYNC_DATA_DIR"]))
    assert rows == [("cloud", "op:Servers/Immich Backup S3")]


def test_local_wizard_in_a_terminal_then_the_next_command_works(
    immich: tuple[Path, TreeStats],
    terminal: list[Terminal],
    isolated_env: dict[str, str],
    tmp_path: Path,
) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder")
    dest = tmp_path / "nas" / "immich-backup"
    # no 1Password CLI: the secrets go to a key file without a question
    term = Terminal(["backup", "--setup", "local"], {"PHOTOS_SYNC_OP_BINARY": "op-not-here"})
    terminal.append(term)
    term.answer("Destination name [local]:", "nas/1")
    term.expect("✗ invalid destination name 'nas/1': use letters, digits, '-', '_' and '.'")
    term.answer("Destination name [local]:", "nas")
    term.answer("Backup folder (local disk or NAS mount):", str(a_file))
    term.expect(f"✗ {a_file} is a file, not a folder")
    term.answer("Backup folder (local disk or NAS mount):", "immich-backup")
    term.expect("✗ 'immich-backup' is not a full path: type it from /")
    term.answer("Backup folder (local disk or NAS mount):", str(dest))
    keyfile = Path(isolated_env["PHOTOS_SYNC_DATA_DIR"]) / "secrets" / "nas.json"
    term.expect(f"[2/8] looking for the key file {keyfile}")
    term.answer("Generate a strong encryption password (recommended)? [Y/n]:", "y")
    term.expect(f"[5/8] preparing the folder {dest}")
    term.expect("[8/8] saving the destination")
    term.expect(f"✓ destination 'nas' ready at local folder {dest}")
    term.expect(f"created: key file {keyfile} (mode 0600)")
    term.expect(f"secrets: key file {keyfile} (encryption password generated)")
    term.expect("Next: photos-sync backup --to nas")
    assert term.finish() == 0
    assert "Keep the secrets in" not in term.output
    assert len(json.loads(keyfile.read_text())["encryption_password"]) == 32

    run = photos_sync("backup", "--to", "nas")
    assert run.returncode == 0, run.stderr
    assert "4/4 folders backed up to nas" in run.stdout

    # again: the existing destination is offered for update, its folder is the default and
    # its encryption password is kept (not asked)
    password = json.loads(keyfile.read_text())["encryption_password"]
    again = Terminal(["backup", "--setup", "local"], {"PHOTOS_SYNC_OP_BINARY": "op-not-here"})
    terminal.append(again)
    again.answer("Destination name [local]:", "nas")
    again.answer(
        "Destination 'nas' exists. Update it? (its encryption password is kept) [Y/n]:", ""
    )
    again.answer(f"Backup folder (local disk or NAS mount) [{dest}]:", "")
    again.expect(f"✓ destination 'nas' updated at local folder {dest}")
    assert again.finish() == 0
    assert "Generate a strong encryption password" not in again.output
    assert "created:" not in again.output
    assert json.loads(keyfile.read_text())["encryption_password"] == password


def test_wizard_waits_while_an_existing_item_is_filled_in(
    s3_server: S3Server,  # noqa: F811
    op_double: OpDouble,  # noqa: F811
    terminal: list[Terminal],
) -> None:
    """An item that exists but lacks a key: the wizard says which, and checks again once the
    person has filled it in the 1Password app; the item's encryption password is kept."""
    op_double.add_item(
        "Immich Backup S3",
        {
            "access_key_id": s3_server.access_key_id,
            "encryption_password": "the-password-already-in-1password",
        },
    )
    term = Terminal(
        [
            "backup",
            "--setup",
            "s3",
            "--name",
            "cloud",
            "--secrets",
            "op",
            "--vault",
            "Private",
            "--endpoint",
            s3_server.endpoint,
            "--region",
            "us-east-1",
            "--path",
            "photos",
        ],
        {},
    )
    terminal.append(term)
    term.answer("Bucket name:", "family-photos")
    term.expect('[3/8] found 1Password item "Immich Backup S3" in vault "Private"')
    term.expect(
        '1Password item "Immich Backup S3" in vault "Private" lacks the fields secret_access_key'
    )
    term.expect("Check the item again? [Y/n]:")
    # the person pastes the key into the item in the 1Password app, then answers
    op_double.set_field("Immich Backup S3", "secret_access_key", s3_server.secret_access_key)
    term.send("y")
    term.answer("Bucket 'family-photos' does not exist. Create it? [Y/n]:", "y")
    term.expect("✓ destination 'cloud' ready at S3 bucket family-photos/photos")
    term.expect('secrets: 1Password item "Immich Backup S3" in vault "Private"')
    assert term.finish() == 0
    assert "Generate a strong encryption password" not in term.output
    assert "created: bucket family-photos\n" in term.output  # the item existed already
    fields = op_double.item_fields("Immich Backup S3")
    assert fields["encryption_password"] == "the-password-already-in-1password"
    assert len([c for c in op_double.calls() if c["argv"][:2] == ["item", "create"]]) == 0


def test_wizard_with_the_key_file_and_a_typed_password(
    s3_server: S3Server,  # noqa: F811
    terminal: list[Terminal],
    isolated_env: dict[str, str],
) -> None:
    (s3_server.root / "bucket1").mkdir()
    term = Terminal(["backup", "--setup", "s3", "--secrets", "file", "--name", "cloud"], {})
    terminal.append(term)
    term.answer("Bucket name:", "bucket1")
    term.answer("S3 endpoint URL (empty for AWS):", s3_server.endpoint)
    term.answer("Region (empty if your provider needs none):", "")
    term.answer("Folder inside the bucket (empty for the whole bucket):", "")
    term.answer("S3 access key ID:", s3_server.access_key_id)
    term.answer("S3 secret access key: ", s3_server.secret_access_key)
    term.answer("Generate a strong encryption password (recommended)? [Y/n]:", "n")
    term.answer("Encryption password (12 characters or more): ", "my-own-long-passphrase")
    term.answer("Encryption password (again): ", "my-own-long-passphrase")
    term.expect("[7/8] test-write")
    term.expect(f"✓ destination 'cloud' ready at S3 bucket bucket1 at {s3_server.endpoint}")
    term.expect("secrets: key file")
    assert term.finish() == 0
    assert "(encryption password generated)" not in term.output
    # hidden input: neither secret was echoed
    assert s3_server.secret_access_key not in term.output
    assert "my-own-long-passphrase" not in term.output
    keyfile = Path(isolated_env["PHOTOS_SYNC_DATA_DIR"]) / "secrets" / "cloud.json"
    saved = json.loads(keyfile.read_text())
    assert saved["encryption_password"] == "my-own-long-passphrase"
    assert saved["endpoint"] == s3_server.endpoint
    assert saved["bucket_name"] == "bucket1"


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
    # an unversioned bucket is a warning, not a failure: marked "!", never "✗", and counted
    assert any(
        line.startswith("! destination cloud protection: not protected: bucket immich")
        for line in lines
    ), lines
    assert not any(line.startswith("✗") for line in lines), lines
    assert lines[-1].startswith("all required checks passed; ")
    assert lines[-1].endswith(" (!) to look at")

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
