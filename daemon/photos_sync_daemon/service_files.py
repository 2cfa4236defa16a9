"""The systemd unit and launchd agent that run `photos-sync daemon`, and installing them.

`render_unit`, `render_plist`, `service_settings` and `merge_dotenv` are pure. `plan_install`
works out everything `photos-sync daemon --install` will write and run, writing nothing;
`apply_install` does it; `uninstall` removes whichever unit exists. The files in the
repository's systemd/ and launchd/ folders are `render_unit`/`render_plist` output for a
`photos-sync` in ~/.local/bin (tests keep them in step).

What the installed service's environment holds, and why:

- the unit's `Environment=` (the plist's EnvironmentVariables): PHOTOS_SYNC_DATA_DIR, always
  and resolved (the data dir's own .env cannot move it, and the installing shell's
  XDG_DATA_HOME is not the service's); PHOTOS_SYNC_OP_BINARY when an `op` was found (the
  service's PATH is not the shell's); HOME in the system unit (systemd sets it only with
  User=). `WorkingDirectory=` is the data dir, so `./.env` is the data dir's own.
- `<data dir>/.env` (0600, merged with what is there): every other BACKUP_* / PHOTOS_SYNC_*
  setting of the installing shell and its ./.env, RCLONE_BINARY, and the socket path both the
  CLI and the daemon use. Never a secret (`is_secret_variable`).
- `<data dir>/secrets/service.env` (0600): OP_SERVICE_ACCOUNT_TOKEN, when the installing shell
  has it. systemd reads it as `EnvironmentFile=`; the launchd agent sources it in /bin/sh.

A systemd *user* unit carries no option that needs a mount or user namespace: from systemd
253 on, ProtectSystem=, PrivateTmp=, ProtectKernel*= and the like make a user unit run with
PrivateUsers=, which fails to start where unprivileged user namespaces are off. It keeps the
seccomp/prctl-based restrictions, which need none. The *system* unit (root) also gets
ProtectSystem=full and the ProtectKernel*/ControlGroups options, and waits for
network-online.target.
"""

from __future__ import annotations

import os
import plistlib
import pwd
import re
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from photos_sync.core.config import KNOWN_VARIABLES, TEST_VARIABLES, Settings
from photos_sync.core.destinations import (
    DESTINATION_TYPES,
    ENCRYPTION_PASSWORD,
    ENCRYPTION_SALT,
)
from photos_sync.core.immich_rules import API_KEY_FIELD
from photos_sync.credentials.keyfile import ensure_private_dir
from photos_sync.credentials.onepassword import OP_BINARY_ENV, SERVICE_ACCOUNT_ENV
from photos_sync.storage.datadir import write_private
from photos_sync.system import execute
from photos_sync.system.service import (
    AGENT_LABEL,
    INSTALL_VARIABLES,
    LAUNCHD,
    PLIST_NAME,
    SYSTEM,
    SYSTEM_SOCKET,
    UNIT_NAME,
    USER,
    ServiceError,
    account_name,
    describe_scope,
    launchd_log_dir,
    linger_command,
    log_hint,
    service_env_path,
    service_path,
    service_scope,
    systemctl,
    unit_path,
)

__all__ = ["AGENT_LABEL", "PLIST_NAME", "UNIT_NAME"]

DATA_DIR_ENV = "PHOTOS_SYNC_DATA_DIR"
SOCKET_ENV = "PHOTOS_SYNC_SOCKET"
#: Set in the unit itself (the process environment), never in <data dir>/.env.
UNIT_VARIABLES = frozenset({DATA_DIR_ENV, OP_BINARY_ENV})
#: Where the launchd agent finds `op` and friends (launchd's own PATH is /usr/bin:/bin:...).
LAUNCHD_PATH = "/usr/local/bin:/opt/homebrew/bin:/usr/bin:/bin"

# -- what the service's settings are ---------------------------------------------------------

#: Words that mark a variable as a secret, whatever it is called.
_SECRET_WORDS = frozenset({"PASSWORD", "PASSPHRASE", "SECRET", "TOKEN", "SALT", "KEY", "KEYS"})


def _setup_variables() -> frozenset[str]:
    """PHOTOS_SYNC_<FIELD> for every field `--setup` takes from the environment: the keys and
    passwords, and the bucket/endpoint that a 1Password item may carry. All are setup input,
    none is a setting of the service."""
    fields = {ENCRYPTION_PASSWORD, ENCRYPTION_SALT, API_KEY_FIELD}
    for kind in DESTINATION_TYPES.values():
        fields.update(kind.secret_fields, kind.location_fields)
    return frozenset(f"PHOTOS_SYNC_{name.upper()}" for name in fields)


SETUP_VARIABLES = _setup_variables()


def is_secret_variable(name: str) -> bool:
    """True for setup input (PHOTOS_SYNC_ENCRYPTION_PASSWORD, …_SECRET_ACCESS_KEY,
    …_APPLICATION_KEY, …_IMMICH_API_KEY, …) and any name with a secret's word in it."""
    return name in SETUP_VARIABLES or bool(_SECRET_WORDS & set(name.upper().split("_")))


def service_settings(values: Mapping[str, str]) -> dict[str, str]:
    """The settings among `values` that go into `<data dir>/.env` for the service: every
    non-empty setting photos-sync knows (BACKUP_* / PHOTOS_SYNC_*) and RCLONE_BINARY, except
    secrets, the variables the unit sets itself, the knobs of `--install` and the test
    suite's own (unknown, misspelled names get a warning from every command instead)."""
    return {
        name: value
        for name, value in sorted(values.items())
        if ((name in KNOWN_VARIABLES and name not in TEST_VARIABLES) or name == "RCLONE_BINARY")
        and name not in UNIT_VARIABLES
        and name not in INSTALL_VARIABLES
        and not is_secret_variable(name)
        and value.strip()
    }


# -- .env text ----------------------------------------------------------------------------------

_DOTENV_PLAIN = re.compile(r"[A-Za-z0-9_./:@%+,=~-]*")
_DOTENV_ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=")


def dotenv_line(name: str, value: str) -> str:
    """`NAME=value` as python-dotenv reads it back unchanged (single quotes when needed)."""
    if "${" in value or "\n" in value:
        raise ServiceError(
            f"{name}'s value holds {'${' if '${' in value else 'a line break'}, which a .env "
            "file cannot keep as it is: put it in <data dir>/.env by hand"
        )
    if _DOTENV_PLAIN.fullmatch(value):
        return f"{name}={value}"
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"{name}='{escaped}'"


def merge_dotenv(existing: str, changes: Mapping[str, str], header: str) -> str:
    """`existing` .env text with each of `changes` set: a variable already there is replaced
    where it stands (later duplicates dropped), new ones are appended under `header`;
    comments and other lines are kept."""
    lines = existing.splitlines()
    done: set[str] = set()
    merged = []
    for line in lines:
        match = _DOTENV_ASSIGNMENT.match(line)
        name = match.group(1) if match else None
        if name is None or name not in changes:
            merged.append(line)
        elif name not in done:
            merged.append(dotenv_line(name, changes[name]))
            done.add(name)
    new = [dotenv_line(name, value) for name, value in changes.items() if name not in done]
    if new:
        if merged and merged[-1].strip():
            merged.append("")
        merged.append(header)
        merged.extend(new)
    return "\n".join(merged) + "\n"


# -- the unit and the plist ---------------------------------------------------------------------


def _quote_systemd(value: str) -> str:
    if value and all(c.isalnum() or c in "/._-+:@%=," for c in value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def escape_specifiers(text: str) -> str:
    """A literal path or value for a unit file: `%` starts a systemd specifier (%h, %u)."""
    return text.replace("%", "%%")


#: Restrictions that need no namespace: safe in a user unit on any kernel.
_PLAIN_HARDENING = (
    "NoNewPrivileges=yes",
    "RestrictSUIDSGID=yes",
    "RestrictRealtime=yes",
    "LockPersonality=yes",
    "SystemCallArchitectures=native",
)
#: Restrictions built on mount namespaces: a system unit only (see the module docstring).
#: No PrivateTmp=: the Quick start's demo tree and backup folder live in /tmp, and the
#: service must see the same folders as the shell that installed it.
NAMESPACE_HARDENING = (
    "ProtectSystem=full",
    "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes",
    "ProtectControlGroups=yes",
)


def render_unit(
    executable: str,
    data_dir: str,
    *,
    system: bool = False,
    environment: Mapping[str, str] | None = None,
    environment_file: str | None = None,
) -> str:
    """A systemd unit (Type=notify) running `<executable> daemon`: a user unit, or with
    `system` a system unit for root.

    `executable`, `data_dir` and `environment_file` are written as given, so they may use
    specifiers such as %h (escape literal paths with `escape_specifiers`); `environment`
    values are literal.
    """
    env_lines = _environment_lines(data_dir, environment or {}, environment_file)
    if system:
        unit_section = "After=network-online.target\nWants=network-online.target\n"
        extra = "RuntimeDirectory=photos-sync\nRuntimeDirectoryMode=0700\n"
        hardening: tuple[str, ...] = (*_PLAIN_HARDENING, *NAMESPACE_HARDENING)
        wanted_by = "multi-user.target"
    else:
        # A user manager cannot order itself after the system's network-online.target; the
        # daemon waits out a missing network by itself (retries).
        unit_section = ""
        extra = ""
        hardening = _PLAIN_HARDENING
        wanted_by = "default.target"
    hardening_lines = "".join(f"{line}\n" for line in hardening)
    return f"""\
[Unit]
Description=photos-sync: encrypted off-site backup of an Immich server
{unit_section}
[Service]
Type=notify
NotifyAccess=main
ExecStart={_quote_systemd(executable)} daemon
ExecReload=/bin/kill -HUP $MAINPID
WorkingDirectory={data_dir}
{env_lines}{extra}Restart=on-failure
RestartSec=30
# SIGTERM goes to the daemon only: it stops rclone itself and records where the job stood.
KillMode=mixed
TimeoutStopSec=30
WatchdogSec=120
UMask=0077
{hardening_lines}
[Install]
WantedBy={wanted_by}
"""


def _environment_lines(
    data_dir: str, environment: Mapping[str, str], environment_file: str | None
) -> str:
    """The unit's Environment= lines (the data dir first) and its EnvironmentFile=."""
    lines = f"Environment={_quote_systemd(f'{DATA_DIR_ENV}={data_dir}')}\n"
    for key, value in sorted(environment.items()):
        if key == DATA_DIR_ENV:
            continue
        lines += f"Environment={_quote_systemd(f'{key}={escape_specifiers(value)}')}\n"
    if environment_file:
        lines += (
            "# OP_SERVICE_ACCOUNT_TOKEN for 1Password (0600; `photos-sync daemon --install` "
            "writes it)\n"
            f"EnvironmentFile={environment_file}\n"
        )
    return lines


def render_plist(
    executable: str,
    log_dir: str,
    data_dir: str,
    environment: Mapping[str, str] | None = None,
    environment_file: str | None = None,
) -> bytes:
    """A launchd agent running `<executable> daemon` at login, restarted when it fails.

    launchd has no EnvironmentFile: with `environment_file`, /bin/sh exports what the file
    sets (`set -a`) and execs the daemon; the paths are passed as arguments, never quoted
    into the script.
    """
    if environment_file:
        program = [
            "/bin/sh",
            "-c",
            'set -a && . "$0" && set +a && exec "$1" daemon',
            environment_file,
            executable,
        ]
    else:
        program = [executable, "daemon"]
    env = {DATA_DIR_ENV: data_dir, **dict(environment or {})}
    document: dict[str, object] = {
        "Label": AGENT_LABEL,
        "ProgramArguments": program,
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": 30,
        "ExitTimeOut": 30,
        "ProcessType": "Background",
        "WorkingDirectory": data_dir,
        "StandardOutPath": f"{log_dir}/daemon.out.log",
        "StandardErrorPath": f"{log_dir}/daemon.err.log",
        "Umask": 0o077,
        "EnvironmentVariables": dict(sorted(env.items())),
    }
    return plistlib.dumps(document, sort_keys=False)


def default_executable() -> str:
    """The `photos-sync` script of this installation."""
    beside = Path(sys.executable).parent / "photos-sync"
    if beside.is_file():
        return str(beside)
    found = shutil.which("photos-sync")
    return found or str(Path(sys.argv[0]).resolve())


# -- planning and installing --------------------------------------------------------------------

_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_\-.=+/]+")
DOTENV_HEADER = "# Settings of the installed service (written by `photos-sync daemon --install`)"


@dataclass(frozen=True)
class InstallPlan:
    """Everything `--install` writes and runs; `describe` says it in words."""

    scope: str  # service.USER | SYSTEM | LAUNCHD
    path: Path  # the unit or the plist
    content: bytes
    data_dir: Path
    dotenv_path: Path
    #: Settings written into <data dir>/.env (only those that change it).
    dotenv_changes: Mapping[str, str]
    #: The EnvironmentFile= the service reads (None: the service has no token file).
    service_env: Path | None
    #: OP_SERVICE_ACCOUNT_TOKEN to write into `service_env` now (None: leave it as it is).
    token: str | None = field(repr=False)
    commands: tuple[tuple[str, ...], ...]
    #: Linux user units: the user whose lingering keeps the service up without a login.
    linger_user: str | None
    log_hint: str

    def describe(self) -> list[str]:
        lines = []
        if self.dotenv_changes:
            lines.append(f"settings for the service, into {self.dotenv_path} (0600):")
            lines += [f"  {dotenv_line(k, v)}" for k, v in self.dotenv_changes.items()]
        else:
            lines.append(f"{self.dotenv_path} already holds the settings the service needs")
        if self.token is not None:
            lines.append(
                f"{SERVICE_ACCOUNT_ENV} (1Password service account; not shown) into "
                f"{self.service_env} (0600), read by the service"
            )
        lines.append(f"{describe_scope(self.scope)}: {self.path}")
        steps = [*self.commands]
        if self.linger_user:
            steps.append(linger_command(self.linger_user))
        if steps:
            lines.append("then: " + "; ".join(" ".join(argv) for argv in steps))
        return lines


def _op_binary(environ: Mapping[str, str]) -> str | None:
    wanted = environ.get(OP_BINARY_ENV, "").strip() or "op"
    found = shutil.which(wanted, path=environ.get("PATH"))
    return os.path.abspath(found) if found else None


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except (OSError, UnicodeDecodeError) as exc:
        raise ServiceError(f"cannot read {path} ({exc}): fix or move it, then try again") from None


def plan_install(
    settings: Settings,
    *,
    environ: Mapping[str, str] | None = None,
    executable: str | None = None,
    platform: str = sys.platform,
    euid: int | None = None,
) -> InstallPlan:
    """What `--install` writes and runs for `settings` (loaded from the installing shell's
    environment and .env files) and `environ` (that shell's environment). Writes nothing.
    ServiceError when it cannot work (no BACKUP_IMMICH_PATH, unknown platform, a bad token).
    """
    environ = dict(os.environ if environ is None else environ)
    if settings.immich_path is None:
        raise ServiceError(
            "BACKUP_IMMICH_PATH is not set, so the service would have nothing to back up: "
            "export it (Immich's UPLOAD_LOCATION) or put it in .env, then run "
            "`photos-sync daemon --install` again"
        )
    scope = service_scope(environ, platform, euid)
    data_dir = settings.data_dir.expanduser().absolute()
    dotenv_path = data_dir / ".env"
    wanted = _service_dotenv(settings, scope)
    current = _dotenv_values(dotenv_path)
    changes = {k: v for k, v in sorted(wanted.items()) if current.get(k) != v}
    for name, value in changes.items():
        dotenv_line(name, value)  # refuses what a .env file cannot hold, before anything
    token = _service_account_token(environ)
    env_file = service_env_path(data_dir)
    service_env = env_file if token is not None or env_file.is_file() else None
    definition = _service_definition(
        scope, executable or default_executable(), data_dir, service_env, environ, euid
    )
    return InstallPlan(
        scope=scope,
        path=definition.path,
        content=definition.content,
        data_dir=data_dir,
        dotenv_path=dotenv_path,
        dotenv_changes=changes,
        service_env=service_env,
        token=token,
        commands=definition.commands,
        linger_user=definition.linger_user,
        log_hint=log_hint(scope, environ),
    )


def _service_dotenv(settings: Settings, scope: str) -> dict[str, str]:
    """The settings the service needs in <data dir>/.env (`settings.immich_path` is set)."""
    assert settings.immich_path is not None
    wanted = service_settings(settings.extra)
    if settings.rclone_binary:
        wanted["RCLONE_BINARY"] = settings.rclone_binary
    wanted["BACKUP_IMMICH_PATH"] = str(settings.immich_path.expanduser().absolute())
    # The CLI and the daemon must agree on the socket, whatever their $XDG_RUNTIME_DIR: the
    # one this shell uses (root's runtime dir lives only as long as a login: /run/photos-sync).
    explicit = bool(settings.extra.get(SOCKET_ENV, "").strip())
    socket = SYSTEM_SOCKET if scope == SYSTEM and not explicit else settings.socket_path
    wanted[SOCKET_ENV] = str(socket.expanduser().absolute())
    return wanted


def _service_account_token(environ: Mapping[str, str]) -> str | None:
    """OP_SERVICE_ACCOUNT_TOKEN of the installing shell, if set; ServiceError if it cannot be
    a token (it goes into an EnvironmentFile= line as it is)."""
    token = environ.get(SERVICE_ACCOUNT_ENV, "").strip() or None
    if token is not None and not _TOKEN_CHARS.fullmatch(token):
        raise ServiceError(
            f"{SERVICE_ACCOUNT_ENV} holds characters a 1Password service account token never "
            "has (a space or a quote?): copy the token again and run `photos-sync daemon "
            "--install` again"
        )
    return token


@dataclass(frozen=True)
class _ServiceDefinition:
    path: Path  # the unit or the plist
    content: bytes
    commands: tuple[tuple[str, ...], ...]  # what loads and (re)starts it
    linger_user: str | None


def _service_definition(
    scope: str,
    executable: str,
    data_dir: Path,
    service_env: Path | None,
    environ: Mapping[str, str],
    euid: int | None,
) -> _ServiceDefinition:
    """The launchd plist or the systemd unit for `scope`, and the commands that start it."""
    unit_env: dict[str, str] = {}
    op_binary = _op_binary(environ)
    if op_binary:
        unit_env[OP_BINARY_ENV] = op_binary
    path = service_path(scope, environ)
    if scope == LAUNCHD:
        unit_env["PATH"] = LAUNCHD_PATH
        plist = render_plist(
            executable,
            str(launchd_log_dir(environ)),
            str(data_dir),
            unit_env,
            str(service_env) if service_env else None,
        )
        domain = f"gui/{os.getuid()}"
        load = (
            ("launchctl", "bootout", f"{domain}/{AGENT_LABEL}"),
            ("launchctl", "bootstrap", domain, str(path)),
        )
        return _ServiceDefinition(path, plist, load, None)
    if scope == SYSTEM:
        unit_env["HOME"] = pwd.getpwuid(os.geteuid() if euid is None else euid).pw_dir
    unit = render_unit(
        escape_specifiers(executable).replace("$", "$$"),  # ExecStart= expands $VAR
        escape_specifiers(str(data_dir)),
        system=scope == SYSTEM,
        environment=unit_env,
        environment_file=escape_specifiers(str(service_env)) if service_env else None,
    ).encode()
    # restart, not `enable --now`: a running daemon must pick up the new settings.
    start = (
        systemctl(scope, "daemon-reload"),
        systemctl(scope, "enable", UNIT_NAME),
        systemctl(scope, "restart", UNIT_NAME),
    )
    return _ServiceDefinition(path, unit, start, account_name() if scope == USER else None)


def _dotenv_values(path: Path) -> dict[str, str]:
    from dotenv import dotenv_values

    if not path.is_file():
        return {}
    try:
        return {k: v for k, v in dotenv_values(path).items() if v is not None}
    except (OSError, UnicodeDecodeError) as exc:
        raise ServiceError(f"cannot read {path} ({exc}): fix or move it, then try again") from None


CommandRunner = Callable[[Sequence[str]], execute.Completed]


def _run(argv: Sequence[str]) -> execute.Completed:
    return execute.run_short(argv)


def _failure(argv: Sequence[str], result: execute.Completed) -> str:
    why = " ".join(result.stderr.decode("utf-8", "replace").split())[:200]
    return f"`{' '.join(argv)}` failed (exit {result.returncode}{': ' + why if why else ''})"


@dataclass(frozen=True, slots=True)
class Installed:
    path: Path
    commands: tuple[tuple[str, ...], ...]  # run (or to run) to enable/disable it
    ran: bool
    #: Linux user units: lingering is on (True), could not be turned on (False), or was not
    #: tried (None: --no-enable, or not a user unit).
    lingering: bool | None = None
    linger_problem: str = ""


def apply_install(
    plan: InstallPlan, *, enable: bool = True, run: CommandRunner = _run
) -> Installed:
    """Write the settings, the token file and the unit/plist; then, with `enable`, enable and
    (re)start the service and turn on lingering. ServiceError if a required command fails
    (what was written stays: the message says what to run)."""
    try:
        plan.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if plan.dotenv_changes:
            text = merge_dotenv(_read_text(plan.dotenv_path), plan.dotenv_changes, DOTENV_HEADER)
            write_private(plan.dotenv_path, text.encode())
        if plan.token is not None and plan.service_env is not None:
            ensure_private_dir(plan.service_env.parent)
            line = f"{SERVICE_ACCOUNT_ENV}={plan.token}\n"
            write_private(plan.service_env, line.encode())
        plan.path.parent.mkdir(parents=True, exist_ok=True)
        write_private(plan.path, plan.content, 0o644)
    except PermissionError as exc:
        raise ServiceError(
            f"cannot write {exc.filename}: permission denied (a system unit needs root)"
        ) from None
    except OSError as exc:
        raise ServiceError(f"cannot write {exc.filename or plan.path}: {exc.strerror}") from None
    if not enable:
        return Installed(plan.path, plan.commands, False)
    for index, argv in enumerate(plan.commands):
        result = run(argv)
        # launchd: `bootout` of an agent that is not loaded fails, and that is fine.
        if result.returncode != 0 and not (plan.scope == LAUNCHD and index == 0):
            raise ServiceError(
                f"{_failure(argv, result)}; {plan.path} is written: run it again once the "
                "service manager answers"
            )
    if plan.linger_user is None:
        return Installed(plan.path, plan.commands, True)
    lingering, problem = _enable_linger(plan.linger_user, run)
    return Installed(plan.path, plan.commands, True, lingering, problem)


def _enable_linger(user: str, run: CommandRunner) -> tuple[bool, str]:
    """Lingering on for `user` (already, or now); else False and loginctl's answer."""
    shown = run(("loginctl", "show-user", user, "--property=Linger", "--value"))
    if shown.returncode == 0 and shown.stdout.decode(errors="replace").strip() == "yes":
        return True, ""
    argv = linger_command(user)
    result = run(argv)
    if result.returncode == 0:
        return True, ""
    return False, _failure(argv, result)


@dataclass(frozen=True, slots=True)
class Removed:
    paths: tuple[Path, ...]  # what was removed
    commands: tuple[tuple[str, ...], ...]  # run (or to run)
    ran: bool


def uninstall(
    *,
    data_dir: Path,
    environ: Mapping[str, str] | None = None,
    platform: str = sys.platform,
    disable: bool = True,
    run: CommandRunner = _run,
) -> Removed:
    """Stop, disable and remove whichever unit exists (user and/or system; the launchd agent
    on macOS), and the service's token file. The data dir's .env stays (the CLI reads it)."""
    environ = dict(os.environ if environ is None else environ)
    service_scope(environ, platform)  # refuses unsupported platforms
    if platform == "darwin":
        found = [(LAUNCHD, service_path(LAUNCHD, environ))]
    else:
        found = [(scope, unit_path(scope, environ)) for scope in (USER, SYSTEM)]
    existing = [(scope, path) for scope, path in found if path.exists()]
    removed: list[Path] = []
    commands: list[tuple[str, ...]] = []
    for scope, path in existing:
        if scope == LAUNCHD:
            stop: list[tuple[str, ...]] = [
                ("launchctl", "bootout", f"gui/{os.getuid()}/{AGENT_LABEL}")
            ]
            after: list[tuple[str, ...]] = []
        else:
            stop = [systemctl(scope, "disable", "--now", UNIT_NAME)]
            after = [systemctl(scope, "daemon-reload")]
        commands += stop + after
        if disable:
            for argv in stop:
                run(argv)  # stopping what is not running is fine
        try:
            path.unlink()
        except PermissionError:
            raise ServiceError(
                f"cannot remove {path}: permission denied: run `sudo photos-sync daemon "
                "--uninstall`"
            ) from None
        removed.append(path)
        if disable:
            for argv in after:
                run(argv)
    token_file = service_env_path(data_dir)
    if token_file.exists():
        token_file.unlink()
        removed.append(token_file)
    return Removed(tuple(removed), tuple(commands), disable)


# -- the closing summary ---------------------------------------------------------------------


def render_summary(
    plan: InstallPlan,
    done: Installed,
    settings: Settings,
    destinations: Sequence[tuple[str, str]],
    next_runs: Mapping[str, datetime],
    now: datetime,
) -> list[str]:
    """What `--install` says at the end: what is backed up, to where, when the next run is,
    how to read the logs, and anything left to do. `destinations` are (name, where) pairs;
    `next_runs` comes from photos_sync.system.service.upcoming_runs."""
    from photos_sync.core.planning import selected_folders

    folders = ", ".join(f"{f.name}/" for f in selected_folders(settings.include_generated))
    state = "enabled and started" if done.ran else "written, not enabled (--no-enable)"
    lines = [f"photos-sync service: {describe_scope(plan.scope)} {plan.path}, {state}"]
    lines.append(f"  backs up: {settings.immich_path} ({folders})")
    if destinations:
        lines.append(
            "  to:       " + "; ".join(f"{name} ({where})" for name, where in destinations)
        )
    else:
        lines.append(
            "  to:       no destination yet: add one with `photos-sync backup --setup "
            "local|b2|s3`; the service backs up to each one it finds"
        )
    if settings.schedule is None:
        lines.append(
            "  when:     never by itself (BACKUP_SCHEDULE=off): backups start only on request"
        )
    elif next_runs:
        name, due = min(next_runs.items(), key=lambda item: item[1])
        moment = "now (a run is due)" if due <= now else due.astimezone().strftime("%Y-%m-%d %H:%M")
        lines.append(f"  when:     {settings.schedule.describe()}; next run {moment} ({name})")
    else:
        lines.append(f"  when:     {settings.schedule.describe()}, once a destination exists")
    lines.append(f"  logs:     {plan.log_hint} (the last run also in {settings.log_path})")
    if not done.ran:
        lines.append("  to start it, run:")
        lines += [f"    {' '.join(argv)}" for argv in plan.commands]
        if plan.linger_user:
            lines.append(f"    sudo {' '.join(linger_command(plan.linger_user))}")
    elif plan.linger_user and done.lingering:
        lines.append("  lingering is on: the service keeps running after logout and starts at boot")
    elif plan.linger_user:
        lines.append(
            f"  REQUIRED: run `sudo {' '.join(linger_command(plan.linger_user))}`: without "
            "lingering the service stops when you log out and does not start at boot "
            f"({done.linger_problem})"
        )
    return lines
