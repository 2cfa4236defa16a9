"""systemd unit and launchd plist, `daemon --install/--uninstall`, and shutdown by trigger."""

from __future__ import annotations

import asyncio
import os
import plistlib
import shutil
import socket as socketlib
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from photos_sync_daemon import service_files
from photos_sync_daemon.app import Daemon, ShutdownTrigger
from photos_sync_daemon.lock import AlreadyRunning, DataDirLock
from photos_sync_daemon.peercred import peer_uid

from photos_sync.client import connect
from photos_sync.settings_io import load_settings
from tests.conftest import REPO_ROOT
from tests.support.cli import PHOTOS_SYNC, photos_sync

pytestmark = pytest.mark.timeout(60)


def test_repository_files_match_what_install_writes() -> None:
    unit = (REPO_ROOT / "systemd" / service_files.UNIT_NAME).read_text()
    assert unit == service_files.render_unit("%h/.local/bin/photos-sync")
    plist = (REPO_ROOT / "launchd" / service_files.PLIST_NAME).read_bytes()
    assert plist == service_files.render_plist(
        "/usr/local/bin/photos-sync", "/usr/local/var/log/photos-sync"
    )


def test_unit_has_notify_restart_and_hardening() -> None:
    unit = service_files.render_unit("/opt/ps/bin/photos-sync", {"PHOTOS_SYNC_DATA_DIR": "/d 1"})
    lines = set(unit.splitlines())
    for expected in (
        "Type=notify",
        "Restart=on-failure",
        "ExecStart=/opt/ps/bin/photos-sync daemon",
        "KillMode=mixed",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "ProtectSystem=full",
        'Environment="PHOTOS_SYNC_DATA_DIR=/d 1"',
        "WantedBy=default.target",
    ):
        assert expected in lines


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    path = tmp_path / service_files.UNIT_NAME
    path.write_text(service_files.render_unit(PHOTOS_SYNC, {"PHOTOS_SYNC_DATA_DIR": "/a b%c"}))
    runtime = tmp_path / "xdg-run"
    runtime.mkdir(exist_ok=True)
    result = subprocess.run(
        ["systemd-analyze", "--user", "verify", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        env=dict(os.environ, XDG_RUNTIME_DIR=str(runtime)),
    )
    if "Failed to initialize manager" in result.stderr:
        pytest.skip(f"systemd-analyze cannot run here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_plist_is_valid_and_complete() -> None:
    data = plistlib.loads(
        service_files.render_plist("/x/photos-sync", "/logs", {"PHOTOS_SYNC_DATA_DIR": "/d"})
    )
    assert data["Label"] == service_files.AGENT_LABEL
    assert data["ProgramArguments"] == ["/x/photos-sync", "daemon"]
    assert data["RunAtLoad"] is True
    assert data["KeepAlive"] == {"SuccessfulExit": False}
    assert data["StandardErrorPath"].startswith("/logs/")
    assert data["StandardOutPath"].startswith("/logs/")
    assert data["EnvironmentVariables"] == {"PHOTOS_SYNC_DATA_DIR": "/d"}


def test_install_and_uninstall_through_the_cli(isolated_env: dict[str, str]) -> None:
    installed = photos_sync("daemon", "--install", "--no-enable")
    assert installed.returncode == 0, installed.stderr
    unit = Path(isolated_env["HOME"]) / ".config" / "systemd" / "user" / service_files.UNIT_NAME
    text = unit.read_text()
    assert f"ExecStart={PHOTOS_SYNC} daemon" in text
    assert f"Environment=PHOTOS_SYNC_DATA_DIR={isolated_env['PHOTOS_SYNC_DATA_DIR']}" in text
    assert "systemctl --user enable --now photos-sync.service" in installed.stdout
    removed = photos_sync("daemon", "--uninstall", "--no-enable")
    assert removed.returncode == 0, removed.stderr
    assert not unit.exists()
    both = photos_sync("daemon", "--install", "--uninstall")
    assert both.returncode == 2


def test_install_enables_with_the_service_manager(tmp_path: Path) -> None:
    ran: list[Sequence[str]] = []
    env = {"HOME": str(tmp_path), "PHOTOS_SYNC_DATA_DIR": str(tmp_path / "d")}
    done = service_files.install(
        executable="/bin/ps-sync", environ=env, platform="darwin", run=lambda a: ran.append(a) or 0
    )
    assert done.path == tmp_path / "Library" / "LaunchAgents" / service_files.PLIST_NAME
    assert plistlib.loads(done.path.read_bytes())["ProgramArguments"][0] == "/bin/ps-sync"
    assert ran[-1][:2] == ("launchctl", "bootstrap")
    ran.clear()
    linux = service_files.install(
        executable="/bin/ps-sync", environ=env, platform="linux", run=lambda a: ran.append(a) or 0
    )
    assert linux.path.name == service_files.UNIT_NAME
    assert ran == list(linux.commands)
    with pytest.raises(OSError, match="failed"):
        service_files.install(environ=env, platform="linux", run=lambda a: 1)


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
