"""The systemd user unit and the launchd agent that start `photos-sync daemon`, and installing them.

`render_unit` and `render_plist` are pure; the files in the repository's systemd/ and launchd/
folders are their output for a `photos-sync` in ~/.local/bin (tests keep them in step).
`install`/`uninstall` write or remove the file for this platform and, unless told not to,
enable or disable it with systemctl --user / launchctl.
"""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

UNIT_NAME = "photos-sync.service"
AGENT_LABEL = "com.photos-sync.daemon"
PLIST_NAME = f"{AGENT_LABEL}.plist"

#: Variables copied into the service's environment when they are set at install time.
FORWARDED_VARIABLES = ("PHOTOS_SYNC_DATA_DIR", "PHOTOS_SYNC_SOCKET", "RCLONE_BINARY")


def _quote_systemd(value: str) -> str:
    if value and all(c.isalnum() or c in "/._-+:@%=," for c in value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def render_unit(executable: str, environment: Mapping[str, str] | None = None) -> str:
    """A systemd user unit (Type=notify) running `<executable> daemon`.

    `executable` is written as given, so it may use specifiers such as %h.
    """
    env_lines = "".join(
        f"Environment={_quote_systemd(f'{key}={value}'.replace('%', '%%'))}\n"
        for key, value in sorted((environment or {}).items())
    )
    return f"""\
[Unit]
Description=photos-sync: encrypted off-site backup of an Immich server
After=network-online.target

[Service]
Type=notify
NotifyAccess=main
ExecStart={_quote_systemd(executable)} daemon
ExecReload=/bin/kill -HUP $MAINPID
{env_lines}Restart=on-failure
RestartSec=30
# SIGTERM goes to the daemon only: it stops rclone itself and records where the job stood.
KillMode=mixed
TimeoutStopSec=30
WatchdogSec=120
UMask=0077
NoNewPrivileges=yes
PrivateTmp=yes
ProtectSystem=full
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
LockPersonality=yes

[Install]
WantedBy=default.target
"""


def render_plist(
    executable: str, log_dir: str, environment: Mapping[str, str] | None = None
) -> bytes:
    """A launchd agent running `<executable> daemon` at login, restarted when it fails."""
    document: dict[str, object] = {
        "Label": AGENT_LABEL,
        "ProgramArguments": [executable, "daemon"],
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": 30,
        "ExitTimeOut": 30,
        "ProcessType": "Background",
        "StandardOutPath": f"{log_dir}/daemon.out.log",
        "StandardErrorPath": f"{log_dir}/daemon.err.log",
        "Umask": 0o077,
    }
    if environment:
        document["EnvironmentVariables"] = dict(sorted(environment.items()))
    return plistlib.dumps(document, sort_keys=False)


def default_executable() -> str:
    """The `photos-sync` script of this installation."""
    beside = Path(sys.executable).parent / "photos-sync"
    if beside.is_file():
        return str(beside)
    found = shutil.which("photos-sync")
    return found or str(Path(sys.argv[0]).resolve())


def service_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """What the service needs from the installing shell: the paths that are set explicitly."""
    env = {k: str(Path(environ[k]).expanduser()) for k in FORWARDED_VARIABLES if environ.get(k)}
    if sys.platform == "darwin":
        env["PATH"] = "/usr/local/bin:/opt/homebrew/bin:/usr/bin:/bin"
    return env


@dataclass(frozen=True, slots=True)
class Installed:
    path: Path
    commands: tuple[tuple[str, ...], ...]  # run (or to run) to enable/disable it
    ran: bool


CommandRunner = Callable[[Sequence[str]], int]


def _run(argv: Sequence[str]) -> int:
    try:
        return subprocess.run(list(argv), check=False, capture_output=True).returncode
    except OSError:
        return 127


def _home(environ: Mapping[str, str]) -> Path:
    return Path(environ.get("HOME") or Path.home())


def unit_path(environ: Mapping[str, str]) -> Path:
    config = environ.get("XDG_CONFIG_HOME") or str(_home(environ) / ".config")
    return Path(config) / "systemd" / "user" / UNIT_NAME


def plist_path(environ: Mapping[str, str]) -> Path:
    return _home(environ) / "Library" / "LaunchAgents" / PLIST_NAME


def install(
    *,
    executable: str | None = None,
    environ: Mapping[str, str] | None = None,
    platform: str = sys.platform,
    enable: bool = True,
    run: CommandRunner = _run,
) -> Installed:
    """Write the unit (Linux) or agent (macOS) and enable it; OSError if a command fails."""
    environ = dict(os.environ if environ is None else environ)
    executable = executable or default_executable()
    env = service_environment(environ)
    if platform == "darwin":
        path = plist_path(environ)
        log_dir = _home(environ) / "Library" / "Logs" / "photos-sync"
        log_dir.mkdir(parents=True, exist_ok=True)
        content = render_plist(executable, str(log_dir), env)
        domain = f"gui/{os.getuid()}"
        commands: tuple[tuple[str, ...], ...] = (
            ("launchctl", "bootout", f"{domain}/{AGENT_LABEL}"),
            ("launchctl", "bootstrap", domain, str(path)),
        )
        must_succeed = {1}
    elif platform.startswith("linux"):
        path = unit_path(environ)
        content = render_unit(executable.replace("%", "%%"), env).encode()
        commands = (
            ("systemctl", "--user", "daemon-reload"),
            ("systemctl", "--user", "enable", "--now", UNIT_NAME),
        )
        must_succeed = {0, 1}
    else:
        raise OSError(f"no service manager support for {platform}: run `photos-sync daemon`")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(content)
    tmp.replace(path)
    if enable:
        for index, argv in enumerate(commands):
            code = run(argv)
            if code != 0 and index in must_succeed:
                raise OSError(f"`{' '.join(argv)}` failed (exit {code}); {path} is written")
    return Installed(path, commands, enable)


def uninstall(
    *,
    environ: Mapping[str, str] | None = None,
    platform: str = sys.platform,
    disable: bool = True,
    run: CommandRunner = _run,
) -> Installed:
    """Disable and remove the unit/agent (a missing file is fine)."""
    environ = dict(os.environ if environ is None else environ)
    if platform == "darwin":
        path = plist_path(environ)
        commands: tuple[tuple[str, ...], ...] = (
            ("launchctl", "bootout", f"gui/{os.getuid()}/{AGENT_LABEL}"),
        )
    elif platform.startswith("linux"):
        path = unit_path(environ)
        commands = (
            ("systemctl", "--user", "disable", "--now", UNIT_NAME),
            ("systemctl", "--user", "daemon-reload"),
        )
    else:
        raise OSError(f"no service manager support for {platform}")
    if disable:
        for argv in commands[:1]:
            run(argv)  # failing to stop something not running is fine
    path.unlink(missing_ok=True)
    if disable:
        for argv in commands[1:]:
            run(argv)
    return Installed(path, commands, disable)
