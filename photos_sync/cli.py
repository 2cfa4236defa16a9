"""The `photos-sync` command line (typer). Thin: parses options, calls the library, renders.

Exit codes: 0 success, 1 failure, 2 usage error. Errors are one line on stderr, never a
traceback.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console

from photos_sync import __version__, execute
from photos_sync.config import ConfigError, Settings
from photos_sync.destinations import DestinationError
from photos_sync.keyfile import SecretsError
from photos_sync.logs import configure_logging
from photos_sync.render import LiveView
from photos_sync.runner import Runner, RunRefused, RunRequest, UsageProblem, summarise
from photos_sync.settings_io import load_settings
from photos_sync.store import Store, StoreError

T = TypeVar("T")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

app = typer.Typer(
    name="photos-sync",
    help=(
        "Encrypted, resumable off-site backups of an Immich server (B2, S3, or a local/NAS "
        "folder), built on rclone.\n\n"
        "Quick start:\n\n"
        "  photos-sync backup --setup local --name nas --path /mnt/nas/immich-backup --yes\n\n"
        "  BACKUP_IMMICH_PATH=/srv/immich photos-sync backup\n\n"
        "  photos-sync backup --status"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

stdout = Console()
stderr = Console(stderr=True)


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    """Print one line to stderr and exit with `code`."""
    stderr.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


_KNOWN_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,
    StoreError,
    RunRefused,
    DestinationError,
    SecretsError,
    execute.RcloneNotFound,
)


def run_async(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine; SIGTERM and SIGINT cancel it (so jobs are saved as INTERRUPTED),
    and known errors become one line and an exit code."""

    async def main() -> T:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        return await make()

    try:
        return asyncio.run(main())
    except asyncio.CancelledError:
        fail("interrupted: progress is saved; run the same command again to resume")
    except UsageProblem as exc:
        fail(str(exc), EXIT_USAGE)
    except _KNOWN_ERRORS as exc:
        fail(str(exc))
    except PermissionError as exc:
        fail(f"permission denied: {exc.filename}: check the owner and mode of that path")
    except OSError as exc:
        if exc.errno == 28:
            fail(f"no space left on device ({exc.filename or 'data dir'}): free some space")
        raise


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)


async def open_store(settings: Settings) -> Store:
    return await Store.open(settings.db_path)


async def with_store(settings: Settings, body: Callable[[Store], Awaitable[T]]) -> T:
    store = await open_store(settings)
    try:
        return await body(store)
    finally:
        await store.close()


@app.callback(invoke_without_command=True)
def root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        stdout.print(f"photos-sync {__version__}")
        raise typer.Exit(EXIT_OK)


SETUP_TYPES = ("local",)


@app.command(
    epilog=(
        "Examples:\n\n"
        "  photos-sync backup                       back up to the only destination\n\n"
        "  photos-sync backup --to nas --dry-run    show what would be sent\n\n"
        "  photos-sync backup --status --json       state of every job, for scripts\n\n"
        "  photos-sync backup --setup local --name nas --path /mnt/nas/immich-backup --yes\n\n"
        "  photos-sync backup --reset --to nas --yes"
    )
)
def backup(
    to: Annotated[
        str | None, typer.Option("--to", help="Destination name (optional with one).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would move; write nothing.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Take over a stale job; lift the BACKUP_MAX_DELETE and empty-source guards.",
        ),
    ] = False,
    status: Annotated[bool, typer.Option("--status", help="Show destinations and jobs.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    reset: Annotated[
        bool, typer.Option("--reset", help="Clear job state (not the backup).")
    ] = False,
    setup: Annotated[
        str | None,
        typer.Option("--setup", metavar="TYPE", help="Create or update a destination: local."),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Destination name, with --setup.")
    ] = None,
    path: Annotated[Path | None, typer.Option("--path", help="Folder, with --setup local.")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Answer yes; no prompts.")] = False,
) -> None:
    """Back up Immich's folders (DB dumps first) to an encrypted destination."""
    modes = [m for m, on in (("--status", status), ("--reset", reset), ("--setup", setup)) if on]
    if len(modes) > 1:
        fail(f"{' and '.join(modes)} cannot be combined", EXIT_USAGE)
    settings = settings_or_exit()
    if status:
        _status(settings, json_output)
    elif reset:
        _reset(settings, to, yes)
    elif setup is not None:
        _setup(settings, setup, name, path, yes, json_output)
    else:
        _run(settings, to, dry_run, force, json_output)


def _run(settings: Settings, to: str | None, dry_run: bool, force: bool, json_output: bool) -> None:
    configure_logging(settings.log_path)
    view = LiveView(stdout, quiet=json_output)

    async def body(store: Store) -> Any:
        runner = Runner(settings, store, sink=view, live_interval=1.0 if view.interactive else None)
        with view:
            return await runner.run(RunRequest(to, dry_run, force))

    result = run_async(lambda: with_store(settings, body))
    if json_output:
        from photos_sync.render import dumps

        stdout.print_json(dumps(result.as_dict()))
    else:
        stdout.print(summarise(result), highlight=False)
    if not result.ok:
        for job in result.jobs:
            if job.error_message and job.status.value != "COMPLETED":
                stderr.print(f"[red]{job.folder}/:[/red] {job.error_message}", highlight=False)
        raise typer.Exit(EXIT_FAILURE)


def _status(settings: Settings, json_output: bool) -> None:
    from photos_sync.render import dumps, print_status
    from photos_sync.status import gather_status

    document = run_async(lambda: with_store(settings, lambda s: gather_status(settings, s)))
    if json_output:
        sys.stdout.write(dumps(document) + "\n")
    else:
        print_status(stdout, document)


def _reset(settings: Settings, to: str | None, yes: bool) -> None:
    async def body(store: Store) -> int:
        destination_id = None
        if to is not None:
            destination = await store.get_destination(to)
            if destination is None:
                raise UsageProblem(f"unknown destination {to!r}")
            destination_id = destination.id
            running = await store.active_job(destination_id)
        else:
            running = await store.active_job()
        if running is not None:
            raise RunRefused(
                f"a job is RUNNING (pid {running.owner_pid}); stop the backup before --reset"
            )
        return await store.reset(destination_id)

    what = f"the job history of {to!r}" if to else "the job history of every destination"
    if not yes:
        if not sys.stdin.isatty():
            fail("--reset asks for confirmation: add --yes to run it unattended", EXIT_USAGE)
        typer.confirm(f"Clear {what}? The backed-up files are not touched.", abort=True)
    removed = run_async(lambda: with_store(settings, body))
    stdout.print(f"cleared {removed} jobs ({what}); the backup itself is untouched")


def _setup(
    settings: Settings, kind: str, name: str | None, path: Path | None, yes: bool, json_output: bool
) -> None:
    from photos_sync.setup import SetupError, setup_local

    if kind not in SETUP_TYPES:
        fail(
            f"--setup {kind!r} is not a known type: use one of {', '.join(SETUP_TYPES)}", EXIT_USAGE
        )
    if not name:
        if yes or not sys.stdin.isatty():
            fail("--setup needs --name NAME", EXIT_USAGE)
        name = typer.prompt("Destination name", default="local")
    if path is None:
        if yes or not sys.stdin.isatty():
            fail("--setup local needs --path DIR", EXIT_USAGE)
        path = Path(typer.prompt("Backup folder (local or NAS mount)"))
    configure_logging(settings.log_path)

    def step(text: str) -> None:
        if not json_output:
            stdout.print(f"• {text}", highlight=False)

    async def body(store: Store) -> Any:
        existing = await store.get_destination(name)
        if existing is not None and not yes:
            if not sys.stdin.isatty():
                fail(f"destination {name!r} exists: add --yes to update it", EXIT_USAGE)
            typer.confirm(f"Destination {name!r} exists. Update it?", abort=True)
        try:
            return await setup_local(settings, store, name=name, path=path, step=step)
        except SetupError as exc:
            raise RunRefused(str(exc)) from None

    destination = run_async(lambda: with_store(settings, body))
    if json_output:
        from photos_sync.render import dumps

        sys.stdout.write(dumps(destination.as_dict()) + "\n")
        return
    stdout.print(
        f"[green]✓[/green] destination {destination.name!r} ready at {destination.remote_path}",
        highlight=False,
    )
    stdout.print(
        f"[yellow]Keep the encryption keys safe:[/yellow] without them the backup cannot be "
        f"read. Print them with `photos-sync recovery-kit {destination.name}` and store the "
        "text in a password manager.",
        highlight=False,
    )


@app.command("recovery-kit", epilog="Example:\n\n  photos-sync recovery-kit nas > kit.txt")
def recovery_kit_command(
    name: Annotated[str, typer.Argument(help="Destination name.")],
) -> None:
    """Print rclone.conf text and plain rclone commands that restore without photos-sync.

    The output is SECRET: it holds the encryption password.
    """
    from photos_sync.destinations import (
        ENCRYPTION_PASSWORD,
        ENCRYPTION_SALT,
        build_remotes,
        destination_type,
    )
    from photos_sync.recovery_kit import recovery_kit
    from photos_sync.secrets_io import load_secrets

    settings = settings_or_exit()

    async def body(store: Store) -> str:
        destination = await store.get_destination(name)
        if destination is None:
            names = ", ".join(d.name for d in await store.list_destinations()) or "none"
            raise UsageProblem(f"unknown destination {name!r}: known destinations are {names}")
        secrets = await load_secrets(destination)
        binary = execute.find_rclone(settings.rclone_binary)
        password = secrets[ENCRYPTION_PASSWORD]
        salt = secrets.get(ENCRYPTION_SALT)
        remotes = build_remotes(
            destination,
            secrets,
            await execute.obscure(binary, password),
            await execute.obscure(binary, salt) if salt else None,
        )
        return recovery_kit(
            destination.name,
            destination_type(destination.type).describe(destination),
            remotes,
            password,
            salt,
        )

    text = run_async(lambda: with_store(settings, body))
    if sys.stdout.isatty():
        stderr.print("[yellow]SECRET: this text decrypts your backup; store it safely.[/yellow]")
    sys.stdout.write(text)


def main() -> None:
    """Entry point: typer app with usage errors mapped to exit code 2."""
    try:
        app(standalone_mode=True)
    except KeyboardInterrupt:
        stderr.print("interrupted")
        sys.exit(EXIT_FAILURE)
