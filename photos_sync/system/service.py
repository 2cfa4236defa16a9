"""The installed service: where its unit (or launchd agent) lives, its state, its next run.

Used by `photos-sync daemon --install/--uninstall` (through daemon/service_files.py), by
`photos-sync backup --check`, and by the daemon's scheduler, so that the next run `--install`
and `--check` announce is the one the daemon starts.

Scopes: on Linux a non-root user gets a systemd *user* unit, root a *system* unit; on macOS a
launchd agent. Overrides, for unusual installs and for tests: PHOTOS_SYNC_SERVICE_SCOPE
(`user` or `system`) and PHOTOS_SYNC_SYSTEM_UNIT_DIR (default /etc/systemd/system); the user
unit goes to $XDG_CONFIG_HOME/systemd/user (default ~/.config/systemd/user). The service
manager's commands (systemctl, loginctl, launchctl) are looked up on PATH.
"""

from __future__ import annotations

import os
import pwd
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from photos_sync.core.records import Destination
from photos_sync.core.schedule import Schedule, group_last_runs, next_run
from photos_sync.core.units import from_iso
from photos_sync.storage.store import Store
from photos_sync.system import execute

UNIT_NAME = "photos-sync.service"
AGENT_LABEL = "com.photos-sync.daemon"
PLIST_NAME = f"{AGENT_LABEL}.plist"

USER, SYSTEM, LAUNCHD = "user", "system", "launchd"

SCOPE_ENV = "PHOTOS_SYNC_SERVICE_SCOPE"
SYSTEM_UNIT_DIR_ENV = "PHOTOS_SYNC_SYSTEM_UNIT_DIR"
DEFAULT_SYSTEM_UNIT_DIR = "/etc/systemd/system"
#: Knobs of `--install` itself: never copied into the service's settings.
INSTALL_VARIABLES = frozenset({SCOPE_ENV, SYSTEM_UNIT_DIR_ENV})
#: Where the system unit's daemon listens (RuntimeDirectory=photos-sync), unless
#: PHOTOS_SYNC_SOCKET says otherwise: root's $XDG_RUNTIME_DIR exists only during a login.
SYSTEM_SOCKET = Path("/run/photos-sync/daemon.sock")
#: Seconds a systemctl/loginctl/launchctl query may take.
QUERY_TIMEOUT = 15.0


class ServiceError(RuntimeError):
    """The service cannot be installed, removed or queried; the message says what to do."""


def service_scope(
    environ: Mapping[str, str], platform: str = sys.platform, euid: int | None = None
) -> str:
    """`user`, `system` or `launchd`: which kind of service this user on this platform gets."""
    if platform == "darwin":
        return LAUNCHD
    if not platform.startswith("linux"):
        raise ServiceError(
            f"no service manager support for {platform}: run `photos-sync daemon` under your "
            "own supervisor"
        )
    wanted = environ.get(SCOPE_ENV, "").strip().lower()
    if wanted in (USER, SYSTEM):
        return wanted
    if wanted:
        raise ServiceError(f"{SCOPE_ENV}={wanted!r} is invalid: use user or system")
    return SYSTEM if (os.geteuid() if euid is None else euid) == 0 else USER


def home(environ: Mapping[str, str]) -> Path:
    return Path(environ.get("HOME") or Path.home())


def unit_path(scope: str, environ: Mapping[str, str]) -> Path:
    if scope == SYSTEM:
        return Path(environ.get(SYSTEM_UNIT_DIR_ENV) or DEFAULT_SYSTEM_UNIT_DIR) / UNIT_NAME
    config = environ.get("XDG_CONFIG_HOME") or str(home(environ) / ".config")
    return Path(config) / "systemd" / "user" / UNIT_NAME


def plist_path(environ: Mapping[str, str]) -> Path:
    return home(environ) / "Library" / "LaunchAgents" / PLIST_NAME


def launchd_log_dir(environ: Mapping[str, str]) -> Path:
    return home(environ) / "Library" / "Logs" / "photos-sync"


def service_path(scope: str, environ: Mapping[str, str]) -> Path:
    """The unit file (systemd) or the agent's plist (launchd)."""
    return plist_path(environ) if scope == LAUNCHD else unit_path(scope, environ)


def service_env_path(data_dir: Path) -> Path:
    """The file holding OP_SERVICE_ACCOUNT_TOKEN for the service (0600, in the 0700 secrets/):
    the unit's EnvironmentFile=, or what the launchd agent sources before starting."""
    return data_dir / "secrets" / "service.env"


def describe_scope(scope: str) -> str:
    return {
        USER: "systemd user unit",
        SYSTEM: "systemd system unit",
        LAUNCHD: "launchd agent",
    }[scope]


def systemctl(scope: str, *args: str) -> tuple[str, ...]:
    return ("systemctl", "--user", *args) if scope == USER else ("systemctl", *args)


def log_hint(scope: str, environ: Mapping[str, str]) -> str:
    """The command that shows the service's log."""
    if scope == USER:
        return "journalctl --user -u photos-sync"
    if scope == SYSTEM:
        return "journalctl -u photos-sync"
    return f"tail -f {launchd_log_dir(environ) / 'daemon.err.log'}"


def account_name() -> str:
    """This process's user name (what `loginctl enable-linger` takes)."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return os.environ.get("USER") or str(os.getuid())


def linger_command(user: str) -> tuple[str, ...]:
    return ("loginctl", "enable-linger", user)


# -- the state of the installed service ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServiceState:
    """What the service manager says. None: it could not be asked (`problem` says why)."""

    scope: str
    path: Path
    installed: bool
    enabled: bool | None = None
    running: bool | None = None
    #: Linux user units only: whether the user manager runs without a login (logout, boot).
    lingering: bool | None = None
    linger_user: str | None = None
    problem: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "path": str(self.path),
            "installed": self.installed,
            "enabled": self.enabled,
            "running": self.running,
            "lingering": self.lingering,
            "problem": self.problem or None,
        }


async def _query(argv: tuple[str, ...]) -> tuple[int, str, str]:
    """Exit code, stdout (stripped) and stderr (on one line) of a short query; 127 if it
    cannot run."""
    try:
        result = await execute.run_captured(argv, execute.child_env({}), timeout=QUERY_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        return 127, "", f"{argv[0]} could not run ({exc})"
    out = result.stdout.decode("utf-8", "replace").strip()
    err = " ".join(result.stderr.decode("utf-8", "replace").split())
    return result.returncode, out, err


def _verdict(answer: str, yes: set[str], no: set[str]) -> bool | None:
    if answer in yes:
        return True
    if answer in no:
        return False
    return None


async def service_state(
    environ: Mapping[str, str], *, platform: str = sys.platform, euid: int | None = None
) -> ServiceState:
    """Installed, enabled, running and (Linux user units) lingering, as the manager says;
    the manager is asked nothing when no unit is installed."""
    scope = service_scope(environ, platform, euid)
    path = service_path(scope, environ)
    installed = path.is_file()
    if not installed:
        return ServiceState(scope, path, installed)
    if scope == LAUNCHD:
        code, out, err = await _query(("launchctl", "print", f"gui/{os.getuid()}/{AGENT_LABEL}"))
        if code == 127:
            return ServiceState(scope, path, installed, problem=err)
        loaded = code == 0  # launchctl knows the agent: it is loaded (bootstrapped)
        active = loaded and "state = running" in out
        return ServiceState(scope, path, installed, enabled=loaded, running=active)
    problems = []
    code, out, err = await _query(systemctl(scope, "is-enabled", UNIT_NAME))
    answer = out.splitlines()[0] if out else ""
    enabled = _verdict(
        answer, {"enabled", "enabled-runtime", "linked", "alias"}, {"disabled", "masked", "static"}
    )
    if enabled is None:
        problems.append(err or answer or f"systemctl exit {code}")
    code, out, err = await _query(systemctl(scope, "is-active", UNIT_NAME))
    answer = out.splitlines()[0] if out else ""
    running = _verdict(
        answer, {"active", "reloading", "activating"}, {"inactive", "failed", "deactivating"}
    )
    if running is None:
        problems.append(err or answer or f"systemctl exit {code}")
    lingering = None
    user = None
    if scope == USER:
        user = account_name()
        code, out, err = await _query(
            ("loginctl", "show-user", user, "--property=Linger", "--value")
        )
        answer = out.splitlines()[0] if out else ""
        lingering = _verdict(answer, {"yes"}, {"no"})
        if lingering is None and "not logged in or lingering" in err:
            lingering = False
        if lingering is None:
            problems.append(err or answer or f"loginctl exit {code}")
    return ServiceState(
        scope,
        path,
        installed,
        enabled,
        running,
        lingering,
        user,
        "; ".join(dict.fromkeys(problems)),
    )


# -- when the schedule next runs ---------------------------------------------------------------


async def last_recorded_run(store: Store, destination: Destination) -> datetime | None:
    """When `destination` last ran, as the DB knows it: the creation of its latest run's jobs
    or the end of its last complete backup, whichever is later; None if it never ran."""
    moments = []
    jobs = await store.latest_run_jobs(destination.id)
    created = [m for m in (from_iso(j.created_at) for j in jobs) if m is not None]
    if created:
        moments.append(min(created))
    completed = from_iso(destination.last_backup_at)
    if completed is not None:
        moments.append(completed)
    return max(moments) if moments else None


async def upcoming_runs(
    schedule: Schedule | None, store: Store, now: datetime
) -> dict[str, datetime]:
    """Destination name -> when `schedule` next backs it up (at or before `now`: at once).
    Empty when there is no schedule. `now` must be time-zone aware (local time for daily
    schedules)."""
    if schedule is None:
        return {}
    lasts = {
        destination.name: await last_recorded_run(store, destination)
        for destination in await store.list_destinations()
    }
    return {
        name: next_run(schedule, last, now)
        for name, last in group_last_runs(schedule, lasts).items()
    }
