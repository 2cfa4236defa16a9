"""The installed service: `daemon --install/--uninstall` through the real CLI (systemctl and
loginctl are recording stand-ins: systemd does not run here), `backup --check`'s service
lines, and a REAL daemon started with exactly the environment its unit gives it. Also the
data dir lock, peer credentials and shutdown by trigger."""

from __future__ import annotations

import asyncio
import json
import os
import plistlib
import shlex
import signal
import socket as socketlib
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from photos_sync_daemon import service_files
from photos_sync_daemon.app import Daemon, ShutdownTrigger
from photos_sync_daemon.lock import AlreadyRunning, DataDirLock
from photos_sync_daemon.peercred import peer_uid

from photos_sync.cli.daemon_client import connect
from photos_sync.core.units import from_iso
from photos_sync.storage.settings_io import load_settings
from photos_sync.system import execute
from photos_sync.system.service import account_name
from tests.immich_tree import TreeStats
from tests.support.cli import PHOTOS_SYNC, photos_sync
from tests.support.daemon import daemon_pool, db_jobs, setup_local
from tests.support.op_double import OpDouble, op_double  # noqa: F401
from tests.support.service_manager import ServiceManager, service_manager  # noqa: F401

pytestmark = pytest.mark.timeout(90)

UNIT = "photos-sync.service"
SECRET_VALUES = {
    "PHOTOS_SYNC_ENCRYPTION_PASSWORD": "never-in-the-env-file-1",
    "PHOTOS_SYNC_SECRET_ACCESS_KEY": "never-in-the-env-file-2",
    "PHOTOS_SYNC_APPLICATION_KEY": "never-in-the-env-file-3",
    "PHOTOS_SYNC_IMMICH_API_KEY": "never-in-the-env-file-4",
}


def user_unit(env: dict[str, str]) -> Path:
    return Path(env["HOME"]) / ".config" / "systemd" / "user" / UNIT


def system_unit(env: dict[str, str]) -> Path:
    return Path(env["PHOTOS_SYNC_SYSTEM_UNIT_DIR"]) / UNIT


def data_dir(env: dict[str, str]) -> Path:
    return Path(env["PHOTOS_SYNC_DATA_DIR"])


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- reading a unit as systemd does --------------------------------------------------------------


def _unescape(word: str) -> str:
    """Specifiers: the installed unit uses none but the escaped `%%`."""
    return word.replace("%%", "%")


def read_environment_file(path: Path) -> dict[str, str]:
    """An EnvironmentFile= as systemd reads it: KEY=VALUE lines; `#`/`;` comments; blanks
    around key and value dropped; one pair of enclosing quotes removed."""
    values = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        quote = value[:1]
        if len(value) >= 2 and quote in ("'", '"') and value.endswith(quote):
            value = value[1:-1]
            if quote == '"':
                value = value.replace('\\"', '"').replace("\\\\", "\\")
        values[key.strip()] = value
    return values


@dataclass
class ServiceEnvironment:
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    unit_env: dict[str, str]
    environment_files: list[Path]


def service_environment(unit_text: str, home: str) -> ServiceEnvironment:
    """What systemd gives ExecStart= of `unit_text`: HOME and a minimal PATH (as the user
    manager does), then Environment=, then EnvironmentFile= (later wins); the cwd is
    WorkingDirectory=."""
    argv: list[str] = []
    unit_env: dict[str, str] = {}
    files: list[Path] = []
    cwd = Path(home)
    for line in unit_text.splitlines():
        if line.startswith(("#", "[")) or "=" not in line:
            continue
        key, value = line.split("=", 1)
        if key == "ExecStart":
            argv = [_unescape(w).replace("$$", "$") for w in shlex.split(value)]
        elif key == "Environment":
            for word in shlex.split(value):
                name, _, assigned = word.partition("=")
                unit_env[name] = _unescape(assigned)
        elif key == "EnvironmentFile":
            optional = value.startswith("-")
            path = Path(_unescape(value.lstrip("-")))
            if path.exists() or not optional:
                files.append(path)
        elif key == "WorkingDirectory":
            cwd = Path(_unescape(value.lstrip("-")))
    env = {"HOME": home, "PATH": "/usr/bin:/bin", **unit_env}
    for path in files:
        env.update(read_environment_file(path))  # a missing file fails, as in systemd
    return ServiceEnvironment(argv, env, cwd, unit_env, files)


def dotenv(path: Path) -> dict[str, str]:
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path).items() if v is not None}


# -- the installed service, for real ----------------------------------------------------------


def test_installed_service_knows_immich_and_the_schedule(
    tmp_path: Path,
    immich: tuple[Path, TreeStats],
    service_manager: ServiceManager,  # noqa: F811
    isolated_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """README's Quick start, then `daemon --install`, and nothing else: the daemon started
    with exactly its unit's environment finds Immich and the socket in <data dir>/.env, shows
    the default schedule's next run within 24 h, backs up, and runs a schedule set later."""
    monkeypatch.delenv("BACKUP_SCHEDULE")  # the default, daily at 03:30
    # The socket comes from $XDG_RUNTIME_DIR here, which the service's environment lacks.
    monkeypatch.delenv("PHOTOS_SYNC_SOCKET")
    monkeypatch.setenv("PHOTOS_SYNC_SERVICE_SCOPE", "user")
    socket_path = Path(isolated_env["XDG_RUNTIME_DIR"]) / "photos-sync" / "daemon.sock"
    dest = setup_local(tmp_path, "demo")

    installed = photos_sync("daemon", "--install", "--yes")
    assert installed.returncode == 0, installed.stderr
    service = service_environment(user_unit(isolated_env).read_text(), isolated_env["HOME"])
    assert service.argv == [PHOTOS_SYNC, "daemon"]
    assert service.cwd == data_dir(isolated_env)
    assert "BACKUP_IMMICH_PATH" not in service.env  # it is in the data dir's .env
    settings = dotenv(data_dir(isolated_env) / ".env")
    assert settings["BACKUP_IMMICH_PATH"] == str(immich[0])
    assert settings["PHOTOS_SYNC_SOCKET"] == str(socket_path)

    with daemon_pool() as pool:
        daemon = pool.start(
            service.env,
            inherit_env=False,
            argv=service.argv,
            cwd=service.cwd,
            socket_path=socket_path,
        )
        environ = Path(f"/proc/{daemon.pid}/environ").read_bytes().split(b"\0")
        assert not any(v.startswith(b"BACKUP_IMMICH_PATH=") for v in environ)

        status = json.loads(photos_sync("backup", "--status", "--json").stdout)
        assert status["daemon"]["pid"] == daemon.pid
        assert status["daemon"]["schedule"] == "daily at 03:30"
        due = from_iso(status["daemon"]["next_run"]["demo"])
        assert due is not None
        ahead = (due - datetime.now().astimezone()).total_seconds()
        assert 0 < ahead <= 24 * 3600
        assert due.astimezone().strftime("%H:%M") == "03:30"

        run = photos_sync("backup")  # handed to the service's daemon
        assert run.returncode == 0, run.stderr
        assert "running in the photos-sync daemon" in run.stdout
        assert "4/4 folders backed up to demo" in run.stdout
        assert {j["status"] for j in db_jobs(data_dir(isolated_env))} == {"COMPLETED"}
        assert any(dest.iterdir())

        # A schedule chosen later: install again (settings merged), restart the service.
        again = photos_sync("daemon", "--install", "--yes", env={"BACKUP_SCHEDULE": "2s"})
        assert again.returncode == 0, again.stderr
        assert "  BACKUP_SCHEDULE=2s" in again.stdout
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
        service = service_environment(user_unit(isolated_env).read_text(), isolated_env["HOME"])
        daemon = pool.start(
            service.env,
            inherit_env=False,
            argv=service.argv,
            cwd=service.cwd,
            socket_path=socket_path,
        )
        assert daemon.call("status")["daemon"]["schedule"] == "every 2s"
        end = daemon.wait_run_end(wait=True)
        assert end["ok"] is True, end
        assert end["run"]["reason"] == "schedule"
    assert dotenv(data_dir(isolated_env) / ".env")["BACKUP_IMMICH_PATH"] == str(immich[0])


def test_installed_service_gets_the_1password_token_from_its_environment_file(
    tmp_path: Path,
    immich: tuple[Path, TreeStats],
    service_manager: ServiceManager,  # noqa: F811
    op_double: OpDouble,  # noqa: F811
    isolated_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """OP_SERVICE_ACCOUNT_TOKEN of the installing shell goes to a 0600 EnvironmentFile=; the
    service reads its 1Password item with it; a revoked token is one clear line."""
    token = "ops_eyJzaWduSW5BZGRyZXNzIjoibXkuMXBhc3N3b3JkLmNvbSJ9-service"
    op_double.set_service_token(token)
    monkeypatch.setenv("OP_SERVICE_ACCOUNT_TOKEN", token)
    monkeypatch.setenv("PHOTOS_SYNC_SERVICE_SCOPE", "user")
    dest = tmp_path / "nas"
    dest.mkdir()
    setup = photos_sync(
        "backup", "--setup", "local", "--name", "nas", "--path", str(dest),
        "--secrets", "op", "--vault", "Servers", "--item", "NAS keys", "--yes",
    )  # fmt: skip
    assert setup.returncode == 0, setup.stderr
    installed = photos_sync("daemon", "--install", "--yes")
    assert installed.returncode == 0, installed.stderr
    assert token not in installed.stdout + installed.stderr
    assert "OP_SERVICE_ACCOUNT_TOKEN (1Password service account; not shown)" in installed.stdout

    service = service_environment(user_unit(isolated_env).read_text(), isolated_env["HOME"])
    token_file = data_dir(isolated_env) / "secrets" / "service.env"
    assert service.environment_files == [token_file]
    assert mode(token_file) == 0o600
    assert mode(token_file.parent) == 0o700
    assert service.env["OP_SERVICE_ACCOUNT_TOKEN"] == token
    assert "OP_SERVICE_ACCOUNT_TOKEN" not in service.unit_env  # never in the unit itself
    assert token not in (data_dir(isolated_env) / ".env").read_text()
    # The service's PATH has no `op`: the unit names the one the installing shell found.
    assert service.unit_env["PHOTOS_SYNC_OP_BINARY"] == str(op_double.bin_dir / "op")

    # The double keeps its state in a file (the real op keeps its own under HOME).
    env = {**service.env, "OP_DOUBLE_STATE": os.environ["OP_DOUBLE_STATE"]}
    with daemon_pool() as pool:
        daemon = pool.start(
            env,
            inherit_env=False,
            argv=service.argv,
            cwd=service.cwd,
            socket_path=Path(isolated_env["PHOTOS_SYNC_SOCKET"]),
        )
        run = photos_sync("backup", env={"OP_SERVICE_ACCOUNT_TOKEN": ""})
        assert run.returncode == 0, run.stderr
        assert "4/4 folders backed up to nas" in run.stdout
        calls = op_double.calls()
        assert calls[-1]["argv"][:2] == ["item", "get"]

        state = op_double.state()
        state["service_account_revoked"] = True
        op_double.save(state)
        refused = photos_sync("backup", env={"OP_SERVICE_ACCOUNT_TOKEN": ""})
        assert refused.returncode == 1
        lines = refused.stderr.strip().splitlines()
        assert lines == [
            "error: 1Password rejected the service account token in OP_SERVICE_ACCOUNT_TOKEN "
            "((401) Unauthorized: You aren't authorized to perform this action.): it is "
            "revoked, expired or mistyped; create a new token and update the variable (for "
            "the installed service: `OP_SERVICE_ACCOUNT_TOKEN=… photos-sync daemon --install`)"
        ], refused.stderr
        assert daemon.proc.poll() is None


async def test_a_revoked_token_is_recognised_as_signed_out(
    op_double: OpDouble,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from photos_sync.credentials.onepassword import OnePassword, OpNotSignedIn

    op_double.set_service_token("ops_revoked-token")
    monkeypatch.setenv("OP_SERVICE_ACCOUNT_TOKEN", "ops_revoked-token")
    state = op_double.state()
    state["service_account_revoked"] = True
    op_double.save(state)
    op = OnePassword.find()
    for attempt in (op.account(), op.get_item("NAS keys", "Servers")):
        with pytest.raises(OpNotSignedIn, match=r"^1Password rejected the service account token"):
            await attempt


# -- `daemon --install` ------------------------------------------------------------------------


def test_install_refuses_without_an_immich_path(
    service_manager: ServiceManager,  # noqa: F811
    isolated_env: dict[str, str],
) -> None:
    result = photos_sync("daemon", "--install", "--yes", env={"PHOTOS_SYNC_SERVICE_SCOPE": "user"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: BACKUP_IMMICH_PATH is not set, so the service would have nothing to back up: "
        "export it (Immich's UPLOAD_LOCATION) or put it in .env, then run `photos-sync daemon "
        "--install` again"
    ]
    assert not user_unit(isolated_env).exists()
    assert not (data_dir(isolated_env) / ".env").exists()
    assert service_manager.calls() == []
    status = photos_sync("backup", "--status")
    assert (
        "daemon: not running (backups run in the foreground; `photos-sync daemon --install` "
        "runs them on BACKUP_SCHEDULE)"
    ) in status.stdout


def test_user_install_writes_settings_unit_and_lingering(
    tmp_path: Path,
    immich: tuple[Path, TreeStats],
    service_manager: ServiceManager,  # noqa: F811
    isolated_env: dict[str, str],
) -> None:
    setup_local(tmp_path, "nas")
    folder = data_dir(isolated_env)
    (folder / ".env").write_text("# my notes\nBACKUP_STATS_INTERVAL=30\nBACKUP_MAX_DELETE=5\n")
    (folder / ".env").chmod(0o644)
    Path(".env").write_text("BACKUP_MAX_DELETE=50\n")  # ./.env of the installing shell
    env = {
        "PHOTOS_SYNC_SERVICE_SCOPE": "user",
        "BACKUP_BWLIMIT": "08:00,2M 23:00,off",
        **SECRET_VALUES,
    }
    result = photos_sync("daemon", "--install", "--yes", env=env)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    user = account_name()

    text = (folder / ".env").read_text()
    assert mode(folder / ".env") == 0o600
    for secret in SECRET_VALUES.values():
        assert secret not in text + out
    assert text.startswith("# my notes\nBACKUP_STATS_INTERVAL=30\nBACKUP_MAX_DELETE=50\n")
    assert dotenv(folder / ".env") == {
        "BACKUP_STATS_INTERVAL": "30",
        "BACKUP_MAX_DELETE": "50",
        "BACKUP_BWLIMIT": "08:00,2M 23:00,off",
        "BACKUP_IMMICH_PATH": str(immich[0]),
        "BACKUP_RETRY_DELAY": "0.2",
        "BACKUP_SCHEDULE": "off",
        "PHOTOS_SYNC_SOCKET": isolated_env["PHOTOS_SYNC_SOCKET"],
    }
    # what it wrote is shown before it is written
    assert f"settings for the service, into {folder / '.env'} (0600):" in out
    assert "  BACKUP_BWLIMIT='08:00,2M 23:00,off'" in out
    assert "  BACKUP_STATS_INTERVAL" not in out  # unchanged: not a change
    assert f"systemd user unit: {user_unit(isolated_env)}" in out

    assert service_manager.calls() == [
        ["systemctl", "--user", "daemon-reload"],
        ["systemctl", "--user", "enable", UNIT],
        ["systemctl", "--user", "restart", UNIT],
        ["loginctl", "show-user", user, "--property=Linger", "--value"],
        ["loginctl", "enable-linger", user],
    ]
    summary = out[out.index("photos-sync service:") :].splitlines()
    assert summary[0] == (
        f"photos-sync service: systemd user unit {user_unit(isolated_env)}, enabled and started"
    )
    assert summary[1] == f"  backs up: {immich[0]} (backups/, library/, upload/, profile/)"
    assert summary[2].startswith("  to:       nas (local folder ")
    assert summary[3] == (
        "  when:     never by itself (BACKUP_SCHEDULE=off): backups start only on request"
    )
    assert summary[4].startswith("  logs:     journalctl --user -u photos-sync (")
    assert summary[5] == (
        "  lingering is on: the service keeps running after logout and starts at boot"
    )
    assert not (folder / "secrets" / "service.env").exists()  # no token, no token file


def test_user_install_names_the_linger_command_when_it_is_refused(
    immich: tuple[Path, TreeStats],
    service_manager: ServiceManager,  # noqa: F811
    isolated_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("BACKUP_SCHEDULE")
    user = account_name()
    service_manager.answer(
        "loginctl show-user", code=1, stderr="User is not logged in or lingering"
    )
    service_manager.answer(
        "loginctl enable-linger", code=1, stderr="Could not enable linger: Access denied"
    )
    result = photos_sync("daemon", "--install", "--yes", env={"PHOTOS_SYNC_SERVICE_SCOPE": "user"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "  when:     daily at 03:30, once a destination exists" in lines
    assert (
        f"  REQUIRED: run `sudo loginctl enable-linger {user}`: without lingering the service "
        "stops when you log out and does not start at boot (`loginctl enable-linger "
        f"{user}` failed (exit 1: Could not enable linger: Access denied))"
    ) in lines
    assert "  to:       no destination yet: add one with `photos-sync backup --setup " in (
        result.stdout
    )


def test_install_without_enabling_prints_the_commands(
    immich: tuple[Path, TreeStats],
    service_manager: ServiceManager,  # noqa: F811
    isolated_env: dict[str, str],
) -> None:
    result = photos_sync(
        "daemon", "--install", "--yes", "--no-enable", env={"PHOTOS_SYNC_SERVICE_SCOPE": "user"}
    )
    assert result.returncode == 0, result.stderr
    assert user_unit(isolated_env).exists()
    assert service_manager.calls() == []
    tail = result.stdout[result.stdout.index("  to start it, run:") :].splitlines()
    assert tail[1:] == [
        "    systemctl --user daemon-reload",
        f"    systemctl --user enable {UNIT}",
        f"    systemctl --user restart {UNIT}",
        f"    sudo loginctl enable-linger {account_name()}",
    ]
    assert "written, not enabled (--no-enable)" in result.stdout


def test_root_install_writes_a_system_unit(
    immich: tuple[Path, TreeStats],
    service_manager: ServiceManager,  # noqa: F811
    isolated_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PHOTOS_SYNC_SOCKET")  # root's service listens in /run/photos-sync
    result = photos_sync(
        "daemon", "--install", "--yes", env={"PHOTOS_SYNC_SERVICE_SCOPE": "system"}
    )
    assert result.returncode == 0, result.stderr
    unit = system_unit(isolated_env).read_text().splitlines()
    assert "After=network-online.target" in unit
    assert "Wants=network-online.target" in unit
    assert "ProtectSystem=full" in unit
    assert "WantedBy=multi-user.target" in unit
    assert not user_unit(isolated_env).exists()
    assert dotenv(data_dir(isolated_env) / ".env")["PHOTOS_SYNC_SOCKET"] == (
        "/run/photos-sync/daemon.sock"
    )
    assert service_manager.calls() == [
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", UNIT],
        ["systemctl", "restart", UNIT],
    ]
    assert "  logs:     journalctl -u photos-sync (" in result.stdout
    assert "linger" not in result.stdout


def test_install_reports_a_failing_service_manager(
    immich: tuple[Path, TreeStats],
    service_manager: ServiceManager,  # noqa: F811
    isolated_env: dict[str, str],
) -> None:
    service_manager.answer(
        "systemctl --user enable", code=1, stderr="Failed to connect to bus: No medium found"
    )
    result = photos_sync("daemon", "--install", "--yes", env={"PHOTOS_SYNC_SERVICE_SCOPE": "user"})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: `systemctl --user enable photos-sync.service` failed (exit 1: Failed to "
        f"connect to bus: No medium found); {user_unit(isolated_env)} is written: run it "
        "again once the service manager answers"
    ]
    assert "Traceback" not in result.stderr


def test_uninstall_removes_whichever_unit_exists(
    immich: tuple[Path, TreeStats],
    service_manager: ServiceManager,  # noqa: F811
    isolated_env: dict[str, str],
) -> None:
    for scope in ("user", "system"):
        result = photos_sync(
            "daemon", "--install", "--yes", env={
                "PHOTOS_SYNC_SERVICE_SCOPE": scope, "OP_SERVICE_ACCOUNT_TOKEN": "ops_x"
            },
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
    token_file = data_dir(isolated_env) / "secrets" / "service.env"
    assert user_unit(isolated_env).exists() and system_unit(isolated_env).exists()
    service_manager.clear()
    removed = photos_sync("daemon", "--uninstall")
    assert removed.returncode == 0, removed.stderr
    assert not user_unit(isolated_env).exists()
    assert not system_unit(isolated_env).exists()
    assert not token_file.exists()
    assert (data_dir(isolated_env) / ".env").exists()
    assert service_manager.calls() == [
        ["systemctl", "--user", "disable", "--now", UNIT],
        ["systemctl", "--user", "daemon-reload"],
        ["systemctl", "disable", "--now", UNIT],
        ["systemctl", "daemon-reload"],
    ]
    assert f"removed {user_unit(isolated_env)}" in removed.stdout
    assert f"removed {token_file}" in removed.stdout
    again = photos_sync("daemon", "--uninstall")
    assert again.returncode == 0
    assert "no photos-sync service is installed: nothing to remove" in again.stdout
    usage = photos_sync("daemon", "--install", "--uninstall")
    assert usage.returncode == 2
    usage = photos_sync("daemon", "--yes")
    assert usage.returncode == 2
    assert "--no-enable and --yes go with --install or --uninstall" in usage.stderr


def test_install_asks_first_at_a_terminal(
    immich: tuple[Path, TreeStats],
    service_manager: ServiceManager,  # noqa: F811
    isolated_env: dict[str, str],
) -> None:
    env = {"PHOTOS_SYNC_SERVICE_SCOPE": "user"}
    unattended = photos_sync("daemon", "--install", env=env)
    assert unattended.returncode == 2
    assert "add --yes to install unattended" in unattended.stderr

    declined = PtySession(["daemon", "--install"], env)
    declined.expect("Write these and start the service? [Y/n]:")
    assert "  BACKUP_IMMICH_PATH=" in declined.output
    declined.send("n")
    assert declined.finish() == 1
    assert "nothing was written" in declined.output
    assert not user_unit(isolated_env).exists()
    assert not (data_dir(isolated_env) / ".env").exists()
    assert service_manager.calls() == []

    accepted = PtySession(["daemon", "--install"], env)
    accepted.expect("Write these and start the service? [Y/n]:")
    accepted.send("y")
    assert accepted.finish() == 0, accepted.output
    assert user_unit(isolated_env).exists()
    assert "photos-sync service: systemd user unit" in accepted.output


class PtySession:
    """`photos-sync ARGS` on a pseudo-terminal: wait for text, type a line."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        import pty
        import subprocess

        self.master, slave = pty.openpty()
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

    def _read(self, timeout: float) -> bool:
        import select

        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return False
        try:
            data = os.read(self.master, 65536)
        except OSError:
            data = b""
        self.output += data.decode("utf-8", "replace").replace("\r", "")
        return bool(data)

    def expect(self, text: str, timeout: float = 30) -> None:
        import time

        deadline = time.monotonic() + timeout
        while text not in self.output:
            if time.monotonic() > deadline:
                raise AssertionError(f"did not see {text!r}:\n{self.output}")
            if not self._read(0.2) and self.proc.poll() is not None:
                raise AssertionError(f"exited before {text!r}:\n{self.output}")

    def send(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\r")

    def finish(self, timeout: float = 60) -> int:
        import time

        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._read(0.2)
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        while self._read(0.1):
            pass
        os.close(self.master)
        return self.proc.wait()


# -- `backup --check` ----------------------------------------------------------------------------


def test_check_shows_the_service_state(
    tmp_path: Path,
    immich: tuple[Path, TreeStats],
    service_manager: ServiceManager,  # noqa: F811
    isolated_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PHOTOS_SYNC_SERVICE_SCOPE", "user")
    monkeypatch.delenv("BACKUP_SCHEDULE")
    setup_local(tmp_path, "nas")

    def service_checks() -> dict[str, dict[str, object]]:
        result = photos_sync("backup", "--check", "--json")
        assert result.returncode == 0, result.stdout + result.stderr  # all optional
        checks = json.loads(result.stdout)["checks"]
        return {c["name"]: c for c in checks if c["name"] in NAMES}

    NAMES = {"service", "service enabled", "service running", "lingering", "next scheduled run"}
    before = service_checks()
    assert set(before) == {"service", "next scheduled run"}
    assert before["service"]["status"] == "skip"  # cron users need no service
    assert before["service"]["required"] is False
    assert "`photos-sync daemon --install` backs up by itself" in str(before["service"]["detail"])
    assert service_manager.calls() == []  # nothing installed: nothing to ask

    assert photos_sync("daemon", "--install", "--yes").returncode == 0
    user = account_name()
    service_manager.answer("systemctl --user is-enabled", stdout="enabled\n")
    service_manager.answer("systemctl --user is-active", stdout="active\n")
    service_manager.answer("loginctl show-user", stdout="no\n")
    service_manager.clear()
    after = service_checks()
    assert after["service"]["status"] == "ok"
    assert after["service"]["detail"] == f"systemd user unit {user_unit(isolated_env)}"
    assert (after["service enabled"]["status"], after["service enabled"]["detail"]) == (
        "ok",
        "enabled",
    )
    assert (after["service running"]["status"], after["service running"]["detail"]) == (
        "ok",
        "running",
    )
    assert after["lingering"]["status"] == "fail"
    assert after["lingering"]["hint"] == f"run `sudo loginctl enable-linger {user}`"
    next_run = str(after["next scheduled run"]["detail"])
    assert next_run.startswith("nas ") and next_run.endswith(" 03:30 (daily at 03:30)")
    assert service_manager.calls() == [
        ["systemctl", "--user", "is-enabled", UNIT],
        ["systemctl", "--user", "is-active", UNIT],
        ["loginctl", "show-user", user, "--property=Linger", "--value"],
    ]

    service_manager.answer("systemctl --user is-active", code=3, stdout="failed\n")
    lines = photos_sync("backup", "--check").stdout.splitlines()
    assert "! service running: not running — start it, or read why it stopped in its log " in (
        "\n".join(lines)
    )
    assert (
        f"! lingering: off (the service stops at logout and does not start at boot) — run "
        f"`sudo loginctl enable-linger {user}`"
    ) in lines


def test_data_dir_lock_names_the_holder(tmp_path: Path) -> None:
    first = DataDirLock(tmp_path)
    first.acquire()
    try:
        with pytest.raises(AlreadyRunning) as caught:
            DataDirLock(tmp_path).acquire()
        assert caught.value.pid == os.getpid()
    finally:
        first.release()
    again = DataDirLock(tmp_path)
    again.acquire()
    again.release()


def test_peer_uid_is_ours() -> None:
    left, right = socketlib.socketpair(socketlib.AF_UNIX, socketlib.SOCK_STREAM)
    with left, right:
        assert peer_uid(left) == os.getuid()


async def test_shutdown_through_the_injectable_trigger(isolated_env: dict[str, str]) -> None:
    settings = load_settings()
    trigger = ShutdownTrigger()
    daemon = Daemon(settings, trigger=trigger)
    served = asyncio.create_task(daemon.serve(handle_signals=False))
    ready = asyncio.create_task(daemon.ready.wait())
    await asyncio.wait({served, ready}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    assert daemon.ready.is_set(), served
    client = await connect(settings.socket_path)
    assert client is not None
    assert (await client.call("ping"))["pid"] == os.getpid()
    trigger.set("test")
    assert await asyncio.wait_for(served, 10) == 0
    await client.close()
    assert not settings.socket_path.exists()
    assert await connect(settings.socket_path, timeout=0.5) is None


async def test_next_run_is_known_as_soon_as_the_daemon_is_ready(
    tmp_path: Path,
    isolated_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The schedule's first look happens before READY=1: a `status` right after start-up
    (what `--install` is followed by) already carries `next_run`."""
    monkeypatch.delenv("BACKUP_SCHEDULE")
    setup_local(tmp_path, "nas")
    trigger = ShutdownTrigger()
    daemon = Daemon(load_settings(), trigger=trigger)
    served = asyncio.create_task(daemon.serve(handle_signals=False))
    ready = asyncio.create_task(daemon.ready.wait())
    await asyncio.wait({served, ready}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
    assert daemon.ready.is_set(), served
    try:
        assert set(daemon.scheduler.next_runs()) == {"nas"}
    finally:
        trigger.set("test")
        assert await asyncio.wait_for(served, 20) == 0


def test_macos_install_writes_and_bootstraps_the_launchd_agent(
    immich: tuple[Path, TreeStats],
    isolated_env: dict[str, str],
) -> None:
    """The launchd branch, in-process (launchctl exists only on macOS): a recording runner
    stands in for it; a failing `bootout` (agent not loaded yet) is fine."""
    home = Path(isolated_env["HOME"])
    environ = {**os.environ, "OP_SERVICE_ACCOUNT_TOKEN": "ops_mac-token"}
    plan = service_files.plan_install(
        load_settings(), environ=environ, executable="/opt/ps/photos-sync", platform="darwin"
    )
    ran: list[tuple[str, ...]] = []

    def launchctl(argv: Sequence[str]) -> execute.Completed:
        ran.append(tuple(argv))
        return execute.Completed(5 if "bootout" in ran[-1] else 0, b"", b"not loaded")

    done = service_files.apply_install(plan, run=launchctl)
    agent = home / "Library" / "LaunchAgents" / "com.photos-sync.daemon.plist"
    assert done.path == agent and done.ran
    assert [argv[:2] for argv in ran] == [("launchctl", "bootout"), ("launchctl", "bootstrap")]
    assert ran[1][-1] == str(agent)
    data = plistlib.loads(agent.read_bytes())
    token_file = data_dir(isolated_env) / "secrets" / "service.env"
    assert data["ProgramArguments"][0] == "/bin/sh"
    assert data["ProgramArguments"][-2:] == [str(token_file), "/opt/ps/photos-sync"]
    assert data["EnvironmentVariables"]["PHOTOS_SYNC_DATA_DIR"] == str(data_dir(isolated_env))
    assert data["StandardErrorPath"] == str(home / "Library/Logs/photos-sync/daemon.err.log")
    assert data["RunAtLoad"] is True
    assert token_file.read_text() == "OP_SERVICE_ACCOUNT_TOKEN=ops_mac-token\n"
    assert plan.log_hint == f"tail -f {home / 'Library/Logs/photos-sync/daemon.err.log'}"
