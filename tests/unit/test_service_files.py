"""The service's files, rendered (pure): systemd user and system units, the launchd plist,
which settings go to <data dir>/.env, and .env merging."""

from __future__ import annotations

import io
import os
import plistlib
import subprocess
from pathlib import Path

import pytest
from dotenv import dotenv_values
from photos_sync_daemon import service_files

from photos_sync.system.service import (
    LAUNCHD,
    SYSTEM,
    USER,
    ServiceError,
    service_scope,
)

EXE = "/opt/ps/bin/photos-sync"
DATA = "/home/anna/.local/share/photos-sync"

#: Options that need a mount or user namespace: since systemd 253 any of them in a user unit
#: turns on PrivateUsers=, which fails where unprivileged user namespaces are off.
NAMESPACE_OPTIONS = (
    "PrivateTmp",
    "PrivateDevices",
    "PrivateNetwork",
    "PrivateIPC",
    "PrivateMounts",
    "PrivateUsers",
    "ProtectSystem",
    "ProtectHome",
    "ProtectKernelTunables",
    "ProtectKernelModules",
    "ProtectKernelLogs",
    "ProtectControlGroups",
    "ProtectClock",
    "ProtectHostname",
    "ProtectProc",
    "ProcSubset",
    "ReadOnlyPaths",
    "ReadWritePaths",
    "InaccessiblePaths",
    "TemporaryFileSystem",
    "BindPaths",
    "BindReadOnlyPaths",
    "RootDirectory",
    "MountAPIVFS",
)


def options(unit: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in unit.splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


# -- units ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [False, True])
def test_user_unit_needs_no_user_namespace(token: bool) -> None:
    unit = service_files.render_unit(
        EXE,
        DATA,
        environment={"PHOTOS_SYNC_OP_BINARY": "/usr/bin/op"},
        environment_file=f"{DATA}/secrets/service.env" if token else None,
    )
    found = options(unit)
    assert not set(NAMESPACE_OPTIONS) & set(found), unit
    assert found["NoNewPrivileges"] == ["yes"]
    assert found["RestrictSUIDSGID"] == ["yes"]
    assert found["Type"] == ["notify"]
    assert found["ExecStart"] == [f"{EXE} daemon"]
    assert found["WorkingDirectory"] == [DATA]
    assert found["Environment"] == [
        f"PHOTOS_SYNC_DATA_DIR={DATA}",
        "PHOTOS_SYNC_OP_BINARY=/usr/bin/op",
    ]
    assert found["WantedBy"] == ["default.target"]
    # a user manager cannot wait for the system's network-online.target
    assert "After" not in found and "Wants" not in found
    assert "User" not in found
    if token:
        assert found["EnvironmentFile"] == [f"{DATA}/secrets/service.env"]
    else:
        assert "EnvironmentFile" not in found


@pytest.mark.parametrize("token", [False, True])
def test_system_unit_for_root(token: bool) -> None:
    unit = service_files.render_unit(
        EXE,
        "/root/.local/share/photos-sync",
        system=True,
        environment={"HOME": "/root"},
        environment_file="/root/.local/share/photos-sync/secrets/service.env" if token else None,
    )
    found = options(unit)
    assert found["After"] == ["network-online.target"]
    assert found["Wants"] == ["network-online.target"]
    for line in service_files.NAMESPACE_HARDENING:
        key, value = line.split("=")
        assert found[key] == [value]
    assert "ProtectHome" not in found  # the data dir is in /root, Immich often in /home
    assert "PrivateTmp" not in found  # the Quick start's folders are in /tmp
    assert found["NoNewPrivileges"] == ["yes"]
    assert found["WantedBy"] == ["multi-user.target"]
    assert found["RuntimeDirectory"] == ["photos-sync"]
    assert "Environment=HOME=/root" in unit.splitlines()
    assert "User" not in found
    assert ("EnvironmentFile" in found) is token


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    if not any(
        os.access(os.path.join(d, "systemd-analyze"), os.X_OK)
        for d in os.environ.get("PATH", "").split(os.pathsep)
    ):
        pytest.skip("systemd-analyze is not installed")
    runtime = tmp_path / "xdg-run"
    runtime.mkdir()
    env = dict(os.environ, XDG_RUNTIME_DIR=str(runtime))
    for system in (False, True):
        path = tmp_path / ("system" if system else "user") / "photos-sync.service"
        path.parent.mkdir()
        path.write_text(
            service_files.render_unit(
                "/usr/bin/true",
                service_files.escape_specifiers("/data dir/with%percent"),
                system=system,
                environment={"X": 'a "quoted" value with spaces'},
                environment_file="/data dir/secrets/service.env",
            )
        )
        argv = ["systemd-analyze", *([] if system else ["--user"]), "verify", str(path)]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
        if "Failed to initialize manager" in result.stderr:
            pytest.skip(f"systemd-analyze cannot run here: {result.stderr.strip()}")
        assert result.returncode == 0, result.stderr
        assert result.stderr == "", result.stderr


# -- the launchd agent -------------------------------------------------------------------------


def test_plist_without_token() -> None:
    data = plistlib.loads(
        service_files.render_plist(EXE, "/logs", "/d d", {"PATH": service_files.LAUNCHD_PATH})
    )
    assert data["ProgramArguments"] == [EXE, "daemon"]
    assert data["RunAtLoad"] is True
    assert data["KeepAlive"] == {"SuccessfulExit": False}
    assert data["WorkingDirectory"] == "/d d"
    assert data["StandardErrorPath"] == "/logs/daemon.err.log"
    assert data["StandardOutPath"] == "/logs/daemon.out.log"
    assert data["EnvironmentVariables"] == {
        "PATH": service_files.LAUNCHD_PATH,
        "PHOTOS_SYNC_DATA_DIR": "/d d",
    }


def test_plist_with_token_sources_the_token_file(tmp_path: Path) -> None:
    """launchd has no EnvironmentFile=: the agent's /bin/sh exports the 0600 file's variables
    and execs the daemon. Run that exact command line (a stand-in prints what it got)."""
    folder = tmp_path / 'it\'s a "dir" $HOME'
    folder.mkdir()
    token_file = folder / "service.env"
    token_file.write_text("OP_SERVICE_ACCOUNT_TOKEN=ops_eyJzaWduSW5BZGRyZXNz-_=\n")
    stand_in = folder / "photos sync"
    stand_in.write_text('#!/bin/sh\nprintf "%s|%s" "$OP_SERVICE_ACCOUNT_TOKEN" "$1"\n')
    stand_in.chmod(0o755)
    data = plistlib.loads(
        service_files.render_plist(str(stand_in), "/logs", "/d", {}, str(token_file))
    )
    program = data["ProgramArguments"]
    assert program[0] == "/bin/sh"
    result = subprocess.run(
        program, env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ops_eyJzaWduSW5BZGRyZXNz-_=|daemon"


def test_repository_files_match_what_install_writes() -> None:
    root = Path(__file__).resolve().parents[2]
    assert (root / "systemd" / "user" / "photos-sync.service").read_text() == (
        service_files.render_unit("%h/.local/bin/photos-sync", "%h/.local/share/photos-sync")
    )
    assert (root / "systemd" / "system" / "photos-sync.service").read_text() == (
        service_files.render_unit(
            "/usr/local/bin/photos-sync",
            "/root/.local/share/photos-sync",
            system=True,
            environment={"HOME": "/root"},
        )
    )
    assert (root / "launchd" / service_files.PLIST_NAME).read_bytes() == (
        service_files.render_plist(
            "/usr/local/bin/photos-sync",
            "/Users/you/Library/Logs/photos-sync",
            "/Users/you/Library/Application Support/photos-sync",
            {"PATH": service_files.LAUNCHD_PATH},
        )
    )


# -- scope ---------------------------------------------------------------------------------------


def test_scope_follows_the_user_and_the_platform() -> None:
    assert service_scope({}, "linux", euid=1000) == USER
    assert service_scope({}, "linux", euid=0) == SYSTEM
    assert service_scope({}, "darwin", euid=0) == LAUNCHD
    assert service_scope({"PHOTOS_SYNC_SERVICE_SCOPE": "user"}, "linux", euid=0) == USER
    assert service_scope({"PHOTOS_SYNC_SERVICE_SCOPE": "system"}, "linux", euid=1000) == SYSTEM
    with pytest.raises(ServiceError, match="PHOTOS_SYNC_SERVICE_SCOPE='both' is invalid"):
        service_scope({"PHOTOS_SYNC_SERVICE_SCOPE": "both"}, "linux", euid=0)
    with pytest.raises(ServiceError, match="no service manager support for win32"):
        service_scope({}, "win32", euid=0)


# -- the service's settings ----------------------------------------------------------------------

SECRETS = {
    "PHOTOS_SYNC_ENCRYPTION_PASSWORD": "pw-123456789012",
    "PHOTOS_SYNC_ENCRYPTION_SALT": "salt-value",
    "PHOTOS_SYNC_SECRET_ACCESS_KEY": "s3-secret",
    "PHOTOS_SYNC_ACCESS_KEY_ID": "AKIA-id",
    "PHOTOS_SYNC_APPLICATION_KEY": "b2-secret",
    "PHOTOS_SYNC_APPLICATION_KEY_ID": "b2-id",
    "PHOTOS_SYNC_IMMICH_API_KEY": "immich-key",
    "PHOTOS_SYNC_BUCKET_NAME": "bucket-from-setup",
    "PHOTOS_SYNC_ENDPOINT": "https://setup.example",
    "PHOTOS_SYNC_WEBHOOK_TOKEN": "anything-named-token",
    "BACKUP_SMTP_PASSWORD": "anything-named-password",
}


def test_service_settings_keep_settings_and_never_secrets() -> None:
    values = {
        **SECRETS,
        "BACKUP_IMMICH_PATH": "/srv/immich",
        "BACKUP_SCHEDULE": "daily@04:00",
        "BACKUP_HEALTHCHECK_URL": "https://hc-ping.com/uuid",
        "BACKUP_EMPTY": "  ",
        "PHOTOS_SYNC_SOCKET": "/run/user/1000/photos-sync/daemon.sock",
        "PHOTOS_SYNC_DATA_DIR": "/data",  # the unit sets it
        "PHOTOS_SYNC_OP_BINARY": "/usr/bin/op",  # the unit sets it
        "PHOTOS_SYNC_SERVICE_SCOPE": "user",  # a knob of --install
        "PHOTOS_SYNC_SYSTEM_UNIT_DIR": "/etc/systemd/system",
        "RCLONE_BINARY": "/opt/rclone",
        "HOME": "/home/anna",
    }
    assert service_files.service_settings(values) == {
        "BACKUP_HEALTHCHECK_URL": "https://hc-ping.com/uuid",
        "BACKUP_IMMICH_PATH": "/srv/immich",
        "BACKUP_SCHEDULE": "daily@04:00",
        "PHOTOS_SYNC_SOCKET": "/run/user/1000/photos-sync/daemon.sock",
        "RCLONE_BINARY": "/opt/rclone",
    }
    for name in SECRETS:
        assert service_files.is_secret_variable(name), name


# -- .env text -------------------------------------------------------------------------------


def test_merge_keeps_what_is_there_and_replaces_in_place() -> None:
    existing = (
        "# my notes\n"
        "BACKUP_STATS_INTERVAL=30\n"
        "export BACKUP_SCHEDULE=6h\n"
        "BACKUP_SCHEDULE=12h\n"
        "\n"
        "BACKUP_MAX_DELETE=5\n"
    )
    merged = service_files.merge_dotenv(
        existing,
        {"BACKUP_SCHEDULE": "daily@04:00", "BACKUP_IMMICH_PATH": "/srv/immich"},
        "# header",
    )
    assert merged == (
        "# my notes\n"
        "BACKUP_STATS_INTERVAL=30\n"
        "BACKUP_SCHEDULE=daily@04:00\n"
        "\n"
        "BACKUP_MAX_DELETE=5\n"
        "\n"
        "# header\n"
        "BACKUP_IMMICH_PATH=/srv/immich\n"
    )
    assert dotenv_values(stream=io.StringIO(merged)) == {
        "BACKUP_STATS_INTERVAL": "30",
        "BACKUP_SCHEDULE": "daily@04:00",
        "BACKUP_MAX_DELETE": "5",
        "BACKUP_IMMICH_PATH": "/srv/immich",
    }


@pytest.mark.parametrize(
    "value",
    [
        "/srv/immich library",
        "it's",
        'say "hi"',
        "a # not a comment",
        "back\\slash\\",
        "$HOME stays",
        "ntfys://ntfy.sh/topic gotify://host/AbC",
        "",
    ],
)
def test_values_read_back_unchanged(value: str) -> None:
    text = service_files.merge_dotenv("", {"BACKUP_X": value}, "# h")
    assert dotenv_values(stream=io.StringIO(text), interpolate=True)["BACKUP_X"] == value


def test_values_a_dotenv_file_would_expand_are_refused() -> None:
    with pytest.raises(ServiceError, match=r"BACKUP_X's value holds \$\{"):
        service_files.dotenv_line("BACKUP_X", "${HOME}/immich")
