"""The `photos-sync` command line (typer). Thin: parses options, calls the library, renders.

Exit codes: 0 success, 1 failure, 2 usage error. Errors are one line on stderr, never a
traceback.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from photos_sync import __version__
from photos_sync.cli.lazy import lazy
from photos_sync.core.config import (
    DAEMON_SETTINGS,
    RUN_SETTINGS,
    STATUS_SETTINGS,
    ConfigError,
    Settings,
)
from photos_sync.core.units import plural
from photos_sync.storage.settings_io import load_settings

if TYPE_CHECKING:
    from photos_sync.cli.render import LiveView
    from photos_sync.engine.runner import Runner, RunRefused, RunRequest, UsageProblem, summarise
    from photos_sync.storage.store import Store
    from photos_sync.system import execute
    from photos_sync.system.logs import configure_logging
else:
    # Imported on first use: `photos-sync backup --status` and `--help` should not pay for
    # the runner, SQLite, structlog and rich's progress machinery (see docs/BENCHMARKS.md).
    execute = lazy("photos_sync.system.execute")
    configure_logging = lazy("photos_sync.system.logs", "configure_logging")
    LiveView = lazy("photos_sync.cli.render", "LiveView")
    Runner = lazy("photos_sync.engine.runner", "Runner")
    RunRefused = lazy("photos_sync.engine.runner", "RunRefused")
    RunRequest = lazy("photos_sync.engine.runner", "RunRequest")
    UsageProblem = lazy("photos_sync.engine.runner", "UsageProblem")
    summarise = lazy("photos_sync.engine.runner", "summarise")
    Store = lazy("photos_sync.storage.store", "Store")

T = TypeVar("T")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class _FlagsWithoutType:
    """Help that shows no `<bool>` after a flag: a flag takes no value (typer prints the
    type of every option, flags included)."""

    def get_params(self, ctx: Any) -> Any:
        params = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params


class _Command(_FlagsWithoutType, typer.core.TyperCommand):
    pass


class _Group(_FlagsWithoutType, typer.core.TyperGroup):
    pass


app = typer.Typer(
    cls=_Group,
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
# Piped (cron mail, logs): a long line stays one line, a path is never broken at column 80.
for _console in (stdout, stderr):
    _console.soft_wrap = not _console.is_terminal


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    """Print one line to stderr and exit with `code`."""
    # escaped: the message may name a file whose name holds "[...]" (rich markup)
    stderr.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _known_errors() -> tuple[type[BaseException], ...]:
    """Errors that carry a one-line message for the user (imported only when one happened)."""
    from photos_sync.core.destinations import DestinationError
    from photos_sync.credentials.keyfile import SecretsError
    from photos_sync.engine.runner import RunRefused
    from photos_sync.storage.store import StoreError
    from photos_sync.system.execute import RcloneNotFound

    return (ConfigError, StoreError, RunRefused, DestinationError, SecretsError, RcloneNotFound)


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
    except Exception as exc:
        from photos_sync.engine.runner import UsageProblem as usage_problem

        if isinstance(exc, usage_problem):
            fail(str(exc), EXIT_USAGE)
        if isinstance(exc, _known_errors()):
            fail(str(exc))
        raise
    except PermissionError as exc:
        fail(f"permission denied: {exc.filename}: check the owner and mode of that path")
    except OSError as exc:
        if exc.errno == 28:
            fail(f"no space left on device ({exc.filename or 'data dir'}): free some space")
        raise


def warn(message: str) -> None:
    """One warning line on stderr: something worth fixing that stops nothing."""
    stderr.print(f"[yellow]warning:[/yellow] {message}", highlight=False, soft_wrap=True)


def settings_or_exit(uses: Iterable[str], command: str, *, warn_unused: bool = True) -> Settings:
    """The settings for `command`, which reads the variables `uses`: exit 2 with one line
    naming each malformed one. Malformed variables it does not read (unless `warn_unused` is
    off, for `--check`, which lists them itself), unknown names and unreadable `.env` lines
    are warnings on stderr."""
    settings = load_settings()
    for notice in settings.notices:
        warn(notice)
    try:
        settings.require(uses)
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    if warn_unused:
        for problem in settings.unused_problems(uses):
            warn(f"{problem} ({command} does not use it)")
    return settings


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


SETUP_TYPES = ("b2", "s3", "local")


@app.command(
    cls=_Command,
    epilog=(
        "Examples:\n\n"
        "  BACKUP_IMMICH_PATH=/srv/immich photos-sync backup   the one required setting\n\n"
        "  photos-sync backup                       back up to each destination in turn\n\n"
        "  photos-sync backup --to nas --dry-run    show what would be sent\n\n"
        "  photos-sync backup --status --json       state of every job, for scripts\n\n"
        "  photos-sync backup --setup local --name nas --path /mnt/nas/immich-backup --yes\n\n"
        "  photos-sync backup --setup b2 --name b2 --bucket my-immich --secrets op\n\n"
        "  photos-sync backup --status --watch      live view of the daemon's run\n\n"
        "  photos-sync backup --history             past runs: duration, bytes, result\n\n"
        "  photos-sync backup --check\n\n"
        "  photos-sync backup --reset --to nas --yes"
    ),
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
    detach: Annotated[
        bool,
        typer.Option("--detach", help="Start the backup in the daemon and return at once."),
    ] = False,
    status: Annotated[bool, typer.Option("--status", help="Show destinations and jobs.")] = False,
    watch: Annotated[
        bool, typer.Option("--watch", help="With --status: a live view until Ctrl-C.")
    ] = False,
    once: Annotated[
        bool, typer.Option("--once", help="With --status --watch: draw the view once and exit.")
    ] = False,
    history: Annotated[
        bool, typer.Option("--history", help="Past runs: duration, bytes, result.")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    reset: Annotated[
        bool, typer.Option("--reset", help="Clear job state (not the backup).")
    ] = False,
    setup: Annotated[
        str | None,
        typer.Option(
            "--setup", metavar="TYPE", help="Create or update a destination: b2, s3 or local."
        ),
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Check prerequisites, one line each.")
    ] = False,
    setup_immich: Annotated[
        bool,
        typer.Option(
            "--setup-immich",
            help="Store and test the Immich API key (PHOTOS_SYNC_IMMICH_API_KEY or a prompt).",
        ),
    ] = False,
    name: Annotated[
        str | None, typer.Option("--name", help="Destination name, with --setup.")
    ] = None,
    path: Annotated[
        Path | None,
        typer.Option("--path", help="Folder (--setup local), or folder inside the bucket."),
    ] = None,
    bucket: Annotated[
        str | None, typer.Option("--bucket", help="Bucket, with --setup b2|s3.")
    ] = None,
    endpoint: Annotated[
        str | None, typer.Option("--endpoint", help="S3 endpoint URL, with --setup s3.")
    ] = None,
    region: Annotated[
        str | None, typer.Option("--region", help="S3 region, with --setup s3.")
    ] = None,
    secrets_store: Annotated[
        str | None,
        typer.Option(
            "--secrets", metavar="op|file", help="Keep keys in 1Password (op) or a key file."
        ),
    ] = None,
    item: Annotated[
        str | None, typer.Option("--item", help="1Password item title, with --secrets op.")
    ] = None,
    vault: Annotated[
        str | None,
        typer.Option(
            "--vault",
            help="1Password vault, with --secrets op (default: the only one; else asked, or "
            "the personal vault with --yes).",
        ),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Answer yes; no prompts.")] = False,
    remove: Annotated[
        str | None,
        typer.Option(
            "--remove",
            metavar="NAME",
            help="Remove a destination from photos-sync; its backed-up files stay.",
        ),
    ] = None,
    delete_key_file: Annotated[
        bool,
        typer.Option(
            "--delete-key-file",
            help="With --remove: delete its key file too (the backup becomes unreadable).",
        ),
    ] = False,
) -> None:
    """Back up Immich's folders (DB dumps first) to an encrypted destination, or to each
    destination in turn when several exist and no --to is given.

    Needs BACKUP_IMMICH_PATH: Immich's UPLOAD_LOCATION, the folder holding library/, upload/
    and backups/ (e.g. BACKUP_IMMICH_PATH=/srv/immich in the environment or in .env). Other
    settings: see README.md."""
    modes = [
        m
        for m, on in (
            ("--status", status),
            ("--history", history),
            ("--reset", reset),
            ("--setup", setup is not None),
            ("--check", check),
            ("--setup-immich", setup_immich),
            ("--remove", remove is not None),
        )
        if on
    ]
    if len(modes) > 1:
        fail(f"{' and '.join(modes)} cannot be combined", EXIT_USAGE)
    if (watch or once) and not status:
        fail("--watch and --once go with --status", EXIT_USAGE)
    if delete_key_file and remove is None:
        fail("--delete-key-file goes with --remove NAME", EXIT_USAGE)
    uses: tuple[str, ...] = RUN_SETTINGS
    if status:
        uses = STATUS_SETTINGS
    elif history or reset or check or setup is not None or remove is not None:
        uses = ()
    elif setup_immich:
        uses = ("BACKUP_IMMICH_URL", "BACKUP_IMMICH_API_TIMEOUT")
    settings = settings_or_exit(
        uses, f"backup {modes[0]}" if modes else "backup", warn_unused=not check
    )
    if status and (watch or once):
        from photos_sync.cli.watch import watch_status

        if json_output:
            fail("--watch is for people: use --status --json for scripts", EXIT_USAGE)
        if to is not None:
            _require_destination(settings, to)
        raise typer.Exit(watch_status(settings, stdout, once=once, destination=to))
    if history:
        from photos_sync.cli.watch import print_history

        if to is not None:
            _require_destination(settings, to)
        raise typer.Exit(print_history(settings, stdout, to, json_output))
    if status:
        _status(settings, json_output, to)
    elif remove is not None:
        _remove(settings, remove, yes, delete_key_file)
    elif reset:
        _reset(settings, to, yes)
    elif check:
        _check(settings, json_output)
    elif setup_immich:
        _setup_immich(settings, yes)
    elif setup is not None:
        from photos_sync.engine.setup import SetupRequest

        _setup(
            settings,
            SetupRequest(
                kind=setup,
                name=name or "",
                path=path,
                bucket=bucket,
                endpoint=endpoint,
                region=region,
                secrets=secrets_store,
                item=item,
                vault=vault,
            ),
            yes,
            json_output,
        )
    else:
        _run(settings, to, dry_run, force, json_output, detach)


def _run(
    settings: Settings,
    to: str | None,
    dry_run: bool,
    force: bool,
    json_output: bool,
    detach: bool = False,
) -> None:
    if _daemon_run(settings, to, dry_run, force, json_output, detach):
        return
    if detach:
        fail(
            "--detach needs the daemon, and none answers on "
            f"{settings.socket_path}: start it with `photos-sync daemon` (or `photos-sync daemon "
            "--install`), or drop --detach to back up in the foreground"
        )
    configure_logging(settings.log_path)
    view = LiveView(stdout, quiet=json_output)
    if to is None:
        names = run_async(lambda: with_store(settings, _destination_names))
        if len(names) > 1:
            _run_each(settings, names, dry_run, force, json_output, view)
            return

    async def body(store: Store) -> Any:
        from photos_sync.reporting import metrics
        from photos_sync.reporting.notify import Notifier

        request = RunRequest(to, dry_run, force)
        try:
            async with Notifier.from_settings(settings).watching(request, view) as sink:
                live = 1.0 if view.interactive else None
                runner = Runner(settings, store, sink=sink, live_interval=live)
                with view:
                    return await runner.run(request)
        finally:
            if not dry_run:
                await metrics.write_textfile(settings, store)

    result = run_async(lambda: with_store(settings, body))
    if json_output:
        from photos_sync.cli.render import dumps

        stdout.print_json(dumps(result.as_dict()))
    else:
        stdout.print(summarise(result), highlight=False)
    _print_immich_outcome(result.immich)
    if not result.ok:
        for job in result.jobs:
            if job.error_message and job.status.value != "COMPLETED":
                message = escape(job.error_message)  # it may name a file holding "[...]"
                line = f"[red]{job.folder}/:[/red] {message}"
                stderr.print(line, highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_FAILURE)


async def _destination_names(store: Store) -> list[str]:
    return [d.name for d in await store.list_destinations()]


def _require_destination(settings: Settings, name: str) -> None:
    """Exit 2 with the known names unless destination `name` exists."""
    from photos_sync.core.destinations import unknown_destination_message

    names = run_async(lambda: with_store(settings, _destination_names))
    if name not in names:
        fail(unknown_destination_message(name, names), EXIT_USAGE)


def _run_each(
    settings: Settings,
    names: list[str],
    dry_run: bool,
    force: bool,
    json_output: bool,
    view: LiveView,
) -> None:
    """No --to, several destinations, no daemon: back up to each in turn here, with one fresh
    Immich dump for all. A destination that is refused or fails does not stop the others."""
    from photos_sync.core.destinations import DestinationError
    from photos_sync.credentials.keyfile import SecretsError
    from photos_sync.engine.runner import RunRefused as refused
    from photos_sync.engine.runner import UsageProblem as usage_problem
    from photos_sync.immich.server import SharedDump

    async def body(store: Store) -> list[dict[str, Any]]:
        from photos_sync.reporting import metrics
        from photos_sync.reporting.notify import Notifier

        shared = SharedDump()
        outcomes: list[dict[str, Any]] = []
        try:
            with view:
                for name in names:
                    request = RunRequest(name, dry_run, force, dump=shared)
                    try:
                        async with Notifier.from_settings(settings).watching(request, view) as sink:
                            live = 1.0 if view.interactive else None
                            runner = Runner(settings, store, sink=sink, live_interval=live)
                            result = await runner.run(request)
                        outcomes.append(result.as_dict())
                    except usage_problem:
                        raise
                    except (refused, DestinationError, SecretsError) as exc:
                        outcomes.append({"destination": name, "ok": False, "error": str(exc)})
        finally:
            if not dry_run:
                await metrics.write_textfile(settings, store)
        return outcomes

    _report_each(run_async(lambda: with_store(settings, body)), json_output)


def _report_each(outcomes: list[dict[str, Any]], json_output: bool) -> None:
    """The end of a backup to several destinations: one line per destination, the errors,
    exit 1 if any failed. Each outcome is a RunResult.as_dict(), or {destination, ok: false,
    error} for one refused before it began."""
    if json_output:
        from photos_sync.cli.render import dumps

        ok = all(o.get("ok") for o in outcomes)
        sys.stdout.write(dumps({"ok": ok, "destinations": outcomes}) + "\n")
    immich_seen: list[dict[str, Any]] = []
    for outcome in outcomes:
        name = outcome["destination"]
        if "run_id" not in outcome:
            stderr.print(
                f"[red]{name}:[/red] not backed up: {outcome.get('error')}",
                highlight=False,
                soft_wrap=True,
            )
            continue
        if not json_output:
            stdout.print(_result_line(outcome), highlight=False)
        for job in outcome.get("jobs") or []:
            if job.get("error_message") and job["status"] != "COMPLETED":
                stderr.print(
                    f"[red]{name}: {job['folder']}/:[/red] {job['error_message']}",
                    highlight=False,
                )
        immich = outcome.get("immich")
        if immich and immich not in immich_seen:
            immich_seen.append(immich)
            _print_immich_outcome(immich)
    failed = [o["destination"] for o in outcomes if not o.get("ok")]
    if failed:
        stderr.print(
            f"[red]error:[/red] {len(failed)} of {len(outcomes)} destinations failed: "
            f"{', '.join(failed)}",
            highlight=False,
        )
        raise typer.Exit(EXIT_FAILURE)


def _result_line(result: dict[str, Any]) -> str:
    """`summarise` for a RunResult.as_dict()."""
    from photos_sync.engine.runner import summarise

    return summarise(result)


def _print_immich_outcome(outcome: dict[str, Any] | None) -> None:
    """After a run: say on stderr when Immich's fresh DB dump did not happen (#9)."""
    if not outcome:
        return
    if outcome.get("error"):
        stderr.print(f"[red]error:[/red] {outcome['error']}", highlight=False, soft_wrap=True)
    elif outcome.get("warning"):
        stderr.print(
            f"[yellow]warning:[/yellow] {outcome['warning']} (the newest existing dump was "
            "backed up)",
            highlight=False,
            soft_wrap=True,
        )


def _status(settings: Settings, json_output: bool, to: str | None = None) -> None:
    from photos_sync.cli.render import dumps, print_restores, print_status

    from_daemon = _daemon_call(settings, "status")
    if from_daemon is not None:
        document = from_daemon
    else:
        from photos_sync.reporting.status import gather_status

        document = run_async(lambda: with_store(settings, lambda s: gather_status(settings, s)))
    if to is not None:
        from photos_sync.core.destinations import unknown_destination_message
        from photos_sync.reporting.status import only_destination

        names = [d["name"] for d in document.get("destinations") or []]
        if to not in names:
            fail(unknown_destination_message(to, names), EXIT_USAGE)
        document = only_destination(document, to)
    if json_output:
        sys.stdout.write(dumps(document) + "\n")
    else:
        print_status(stdout, document)
        print_restores(stdout, document)
        _print_daemon_status(document.get("daemon"))


def _reset(settings: Settings, to: str | None, yes: bool) -> None:
    async def body(store: Store) -> int:
        destination_id = None
        if to is not None:
            destination = await store.get_destination(to)
            if destination is None:
                from photos_sync.core.destinations import unknown_destination_message

                known = await _destination_names(store)
                raise UsageProblem(unknown_destination_message(to, known))
            destination_id = destination.id
            running = await store.active_job(destination_id)
        else:
            running = await store.active_job()
        if running is not None:
            raise RunRefused(
                f"a job is RUNNING (pid {running.owner_pid}); stop the backup before --reset"
            )
        return await store.reset(destination_id)

    if to is not None:
        _require_destination(settings, to)
    what = f"the job history of {to!r}" if to else "the job history of every destination"
    if not yes:
        if not sys.stdin.isatty():
            fail("--reset asks for confirmation: add --yes to run it unattended", EXIT_USAGE)
        typer.confirm(f"Clear {what}? The backed-up files are not touched.", abort=True)
    from_daemon = _daemon_call(settings, "reset", {"destination": to} if to else None)
    if from_daemon is not None:
        removed = int(from_daemon["removed"])
    else:
        removed = run_async(lambda: with_store(settings, body))

    stdout.print(f"cleared {plural(removed, 'job')} ({what}); the backup itself is untouched")


EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C


def _answer(prompt: Callable[[], T], *, hidden: bool = False) -> T:
    """Run a blocking prompt so that Ctrl-C (or end of input) ends the wizard at once.

    Under asyncio, SIGINT only schedules a cancellation that runs after the prompt returns;
    Python's own handler is put back for the prompt's duration so Ctrl-C interrupts the read.
    """
    from photos_sync.engine.setup import SetupInterrupted

    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return prompt()
    except (typer.Abort, KeyboardInterrupt, EOFError):
        if not hidden:  # a hidden prompt has ended its line already
            stdout.print()
        raise SetupInterrupted from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _remove(settings: Settings, name: str, yes: bool, delete_key_file: bool) -> None:
    """`--remove NAME`: photos-sync forgets the destination; its data stays (see removal.py).

    Two separate consents: one to remove the destination (the question, or --yes), one to
    delete its key file (a second question, or --delete-key-file). With --yes alone the key
    file is kept."""
    from photos_sync.engine.removal import busy_message, plan_removal, remove_destination

    plan = run_async(lambda: with_store(settings, lambda s: plan_removal(s, name)))
    busy = busy_message(settings, plan)
    if busy is not None:
        fail(busy)
    untouched = f"the backed-up files in {plan.location}"
    if plan.op_item:
        untouched += f" and the {plan.op_item}"
    stdout.print(
        f"Removing destination {name!r} deletes its settings and job history from photos-sync. "
        f"Untouched: {untouched}.",
        highlight=False,
        soft_wrap=True,
    )
    interactive = not yes and sys.stdin.isatty()
    if not yes and not interactive:
        fail("--remove asks for confirmation: add --yes to run it unattended", EXIT_USAGE)
    key_file = plan.key_file if plan.key_file is not None and plan.key_file.exists() else None
    if interactive:
        question = f"Remove destination {name!r}?"
        if delete_key_file and key_file is not None:
            question = f"Remove destination {name!r} and delete its key file {key_file}?"
        if not typer.confirm(question, default=False):
            stderr.print("nothing was removed", highlight=False)
            raise typer.Exit(EXIT_FAILURE)
        if key_file is not None and not delete_key_file:
            delete_key_file = typer.confirm(
                f"Also delete the key file {key_file}? Without it (or a recovery kit printed "
                f"before: `photos-sync recovery-kit {name}`) the backup can never be decrypted",
                default=False,
            )
    from_daemon = _daemon_call(settings, "remove", {"destination": name})
    if from_daemon is not None:
        removed = int(from_daemon["removed_jobs"])
    else:
        removed = run_async(
            lambda: with_store(settings, lambda s: remove_destination(settings, s, name))
        )
    stdout.print(
        f"removed destination {name!r} and its job history ({removed} jobs) from photos-sync; "
        f"{untouched} are untouched",
        highlight=False,
        soft_wrap=True,
    )
    if key_file is not None and delete_key_file:
        key_file.unlink(missing_ok=True)
        stdout.print(f"deleted the key file {key_file}", highlight=False)
    elif key_file is not None:
        stdout.print(
            f"kept the key file {key_file}: without it the backup cannot be decrypted; delete "
            "it yourself once the backup is no longer needed (or use --delete-key-file)",
            highlight=False,
            soft_wrap=True,
        )
    elif delete_key_file and plan.op_item:
        stdout.print(f"no key file to delete: its keys stay in the {plan.op_item}")
    elif plan.shared_key_file is not None:
        stdout.print(
            f"kept the key file {plan.shared_key_file}: another destination uses it too",
            highlight=False,
        )


class TerminalUI:
    """The wizard's voice at a terminal: numbered steps, [Y/n] questions, hidden input."""

    interactive = True

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def step(self, number: int, text: str) -> None:
        if not self.quiet:
            stdout.print(f"[bold][{number}/8][/bold] {text}", highlight=False, soft_wrap=True)

    def info(self, text: str) -> None:
        if not self.quiet:
            stdout.print(f"      {text}", highlight=False, soft_wrap=True)

    def warn(self, text: str) -> None:
        stdout.print(f"[red]✗[/red] {text}", highlight=False, soft_wrap=True)

    def confirm(self, question: str, default: bool = True) -> bool:
        return bool(_answer(lambda: typer.confirm(question, default=default)))

    def ask(self, question: str, *, secret: bool = False, default: str | None = None) -> str:
        return str(
            _answer(
                lambda: typer.prompt(
                    question, default=default or "", show_default=bool(default), hide_input=secret
                ),
                hidden=secret,
            )
        )

    def pause(self, text: str) -> None:
        _answer(lambda: typer.prompt(text, default="", show_default=False))


def _run_setup(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """run_async for the wizard: Ctrl-C at a question or during the checks ends it with
    exit 130 and one line (nothing is saved before the last step, which finishes first)."""
    from photos_sync.engine.setup import SetupInterrupted

    async def main() -> T:
        task = asyncio.current_task()
        assert task is not None
        # SIGINT is left to asyncio.run (first Ctrl-C cancels this task) and to the prompts.
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await make()

    try:
        return asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError, SetupInterrupted):
        stderr.print("setup interrupted: nothing was saved", highlight=False)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except Exception as exc:
        from photos_sync.engine.runner import UsageProblem as usage_problem

        if isinstance(exc, usage_problem):
            fail(str(exc), EXIT_USAGE)
        if isinstance(exc, _known_errors()):
            fail(str(exc))
        if isinstance(exc, PermissionError):
            fail(f"permission denied: {exc.filename}: check the owner and mode of that path")
        if isinstance(exc, OSError) and exc.errno == 28:
            fail(f"no space left on device ({exc.filename or 'data dir'}): free some space")
        raise


def _setup(settings: Settings, request: Any, yes: bool, json_output: bool) -> None:
    from photos_sync.engine.setup import SetupError, StepUI, run_setup

    kind = request.kind
    if kind not in SETUP_TYPES:
        fail(
            f"--setup {kind!r} is not a known type: use one of {', '.join(SETUP_TYPES)}", EXIT_USAGE
        )
    if request.secrets not in (None, "op", "file"):
        fail(f"--secrets {request.secrets!r} is unknown: use op or file", EXIT_USAGE)
    interactive = not yes and sys.stdin.isatty()
    if not interactive:
        # At a terminal the wizard asks for these; a script must give them.
        if not request.name:
            fail("--setup needs --name NAME", EXIT_USAGE)
        if kind == "local" and request.path is None:
            fail("--setup local needs --path DIR", EXIT_USAGE)
        if kind != "local" and not request.bucket and request.secrets == "file":
            fail(f"--setup {kind} needs --bucket BUCKET", EXIT_USAGE)
    configure_logging(settings.log_path)

    def report(text: str) -> None:
        if not json_output:
            stdout.print(f"• {text}", highlight=False)

    ui: Any = TerminalUI(json_output) if interactive else StepUI(report, assume_yes=yes)

    async def body(store: Store) -> Any:
        if (
            request.name
            and not yes
            and not interactive
            and await store.get_destination(request.name) is not None
        ):
            raise UsageProblem(f"destination {request.name!r} exists: add --yes to update it")
        try:
            return await run_setup(settings, store, request, ui)
        except SetupError as exc:
            raise RunRefused(str(exc)) from None

    outcome = _run_setup(lambda: with_store(settings, body))
    destination = outcome.destination
    if json_output:
        from photos_sync.cli.render import dumps

        sys.stdout.write(dumps(destination.as_dict()) + "\n")
        return
    from photos_sync.core.destinations import destination_type

    where = destination_type(destination.type).describe(destination)
    stdout.print(
        f"[green]✓[/green] destination {destination.name!r} "
        f"{'updated' if outcome.updated else 'ready'} at {where}",
        highlight=False,
        soft_wrap=True,
    )
    if outcome.created:
        stdout.print(f"  created: {', '.join(outcome.created)}", highlight=False, soft_wrap=True)
    password = " (encryption password generated)" if outcome.generated_password else ""
    stdout.print(f"  secrets: {outcome.secrets_where}{password}", highlight=False, soft_wrap=True)
    stdout.print(
        f"[yellow]Keep the encryption keys safe:[/yellow] without them the backup cannot be "
        f"read. Print them with `photos-sync recovery-kit {destination.name}` and store the "
        "text in a password manager.",
        highlight=False,
    )
    next_command = outcome.next_command(settings.immich_path is not None)
    stdout.print(f"Next: {next_command}", highlight=False, soft_wrap=True)


def _setup_immich(settings: Settings, yes: bool) -> None:
    """`--setup-immich`: keep the Immich API key in secrets/immich.json (0600), test it."""
    import os

    from photos_sync.immich import server as immich

    if settings.immich_url is None:
        fail(
            "--setup-immich needs BACKUP_IMMICH_URL (e.g. http://localhost:2283) in the "
            "environment or a .env file",
            EXIT_USAGE,
        )
    key = os.environ.get("PHOTOS_SYNC_IMMICH_API_KEY", "").strip()
    if not key:
        if yes or not sys.stdin.isatty():
            fail(
                "no API key: set PHOTOS_SYNC_IMMICH_API_KEY (keys are never taken from options)",
                EXIT_USAGE,
            )
        key = str(typer.prompt("Immich API key", hide_input=True)).strip()
    configure_logging(settings.log_path)

    async def body() -> str:
        client = immich.ImmichClient(
            settings.immich_url or "",
            immich.ApiKey(key, "given to --setup-immich"),
            settings.immich_api_timeout,
        )
        try:
            user = await client.whoami()
        except immich.ImmichError as exc:
            raise RunRefused(f"{exc}; nothing was saved") from None
        if user.get("isAdmin") is False:
            raise RunRefused(
                "this API key belongs to a user who is not an admin: database backups need an "
                "admin's key; nothing was saved"
            )
        path = immich.store_api_key(settings, key)
        return f"Immich API key of {user.get('email') or user.get('name')} stored in {path}"

    stdout.print(run_async(body), highlight=False)


def _check(settings: Settings, json_output: bool) -> None:
    from photos_sync.engine.check import render_checks, run_checks

    report = run_async(lambda: with_store(settings, lambda s: run_checks(settings, s)))
    if json_output:
        from photos_sync.cli.render import dumps

        sys.stdout.write(dumps(report.as_dict()) + "\n")
    else:
        for line in render_checks(report):
            stdout.print(line, highlight=False, soft_wrap=True)
    if not report.ok:
        raise typer.Exit(EXIT_FAILURE)


@app.command(
    "recovery-kit", cls=_Command, epilog="Example:\n\n  photos-sync recovery-kit nas > kit.txt"
)
def recovery_kit_command(
    name: Annotated[str, typer.Argument(help="Destination name.")],
) -> None:
    """Print rclone.conf text and plain rclone commands that restore without photos-sync.

    The output is SECRET: it holds the encryption password.
    """
    from photos_sync.core.destinations import destination_type
    from photos_sync.engine.destination import DestinationContext
    from photos_sync.reporting.recovery_kit import recovery_kit

    settings = settings_or_exit((), "recovery-kit")

    async def body(store: Store) -> str:
        destination = await store.get_destination(name)
        if destination is None:
            names = ", ".join(d.name for d in await store.list_destinations()) or "none"
            raise UsageProblem(f"unknown destination {name!r}: known destinations are {names}")
        secrets = await DestinationContext(settings, store).rclone_secrets(destination)
        return recovery_kit(
            destination.name,
            destination_type(destination.type).describe(destination),
            secrets.remotes(destination),
            secrets.password,
            secrets.salt,
        )

    text = run_async(lambda: with_store(settings, body))
    if sys.stdout.isatty():
        stderr.print("[yellow]SECRET: this text decrypts your backup; store it safely.[/yellow]")
    sys.stdout.write(text)


# -- the daemon, and the CLI as its client -----------------------------------------------------


@app.command(
    "daemon",
    cls=_Command,
    epilog=(
        "Examples:\n\n"
        "  photos-sync daemon                 run in the foreground (what the service runs)\n\n"
        "  photos-sync daemon --install       write the service's settings and its systemd "
        "unit (Linux; a user unit, or a system unit for root) or launchd agent (macOS), "
        "enable and start it\n\n"
        "  photos-sync daemon --install --yes the same without asking\n\n"
        "  photos-sync daemon --uninstall     stop and remove it"
    ),
)
def daemon_command(
    install: Annotated[
        bool,
        typer.Option("--install", help="Write, enable and start the systemd/launchd service."),
    ] = False,
    uninstall: Annotated[
        bool, typer.Option("--uninstall", help="Stop, disable and remove the service.")
    ] = False,
    no_enable: Annotated[
        bool,
        typer.Option("--no-enable", help="With --install/--uninstall: only write/remove files."),
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="With --install: do not ask before writing.")
    ] = False,
) -> None:
    """Run the backup daemon in the foreground: it owns the job queue, resumes unfinished
    work at start-up, backs up on BACKUP_SCHEDULE (default daily at 03:30), and answers
    `photos-sync backup` over its socket. SIGTERM/SIGINT stop it cleanly (the job is saved
    INTERRUPTED); SIGHUP reloads the config."""
    if install and uninstall:
        fail("--install and --uninstall cannot be combined", EXIT_USAGE)
    if (no_enable or yes) and not (install or uninstall):
        fail("--no-enable and --yes go with --install or --uninstall", EXIT_USAGE)
    # The installed service is the daemon: it needs every setting right to start.
    settings = settings_or_exit(
        () if uninstall else DAEMON_SETTINGS, "daemon --uninstall" if uninstall else "daemon"
    )
    if install:
        _install_service(settings, enable=not no_enable, yes=yes)
        return
    if uninstall:
        _uninstall_service(settings, disable=not no_enable)
        return
    from photos_sync_daemon import app as daemon_app

    raise typer.Exit(daemon_app.main(settings))


def _install_service(settings: Settings, *, enable: bool, yes: bool) -> None:
    """`daemon --install`: show what will be written, ask, write, enable, sum up."""
    import os

    from photos_sync_daemon import service_files

    from photos_sync.system.service import ServiceError, upcoming_runs

    try:
        plan = service_files.plan_install(settings, environ=os.environ)
    except ServiceError as exc:
        fail(str(exc), EXIT_USAGE)
    for line in plan.describe():
        stdout.print(line, highlight=False, soft_wrap=True)
    if not yes:
        if not sys.stdin.isatty():
            fail("--install asks before writing: add --yes to install unattended", EXIT_USAGE)
        if not typer.confirm("Write these and start the service?", default=True):
            stderr.print("nothing was written", highlight=False)
            raise typer.Exit(EXIT_FAILURE)
    try:
        done = service_files.apply_install(plan, enable=enable)
    except ServiceError as exc:
        fail(str(exc))

    now = datetime.now().astimezone()

    async def facts(store: Store) -> tuple[list[tuple[str, str]], dict[str, datetime]]:
        from photos_sync.core.destinations import destination_type

        destinations = [
            (d.name, destination_type(d.type).describe(d)) for d in await store.list_destinations()
        ]
        return destinations, await upcoming_runs(settings.schedule, store, now)

    destinations, next_runs = run_async(lambda: with_store(settings, facts))
    for line in service_files.render_summary(plan, done, settings, destinations, next_runs, now):
        stdout.print(line, highlight=False, soft_wrap=True)


def _uninstall_service(settings: Settings, *, disable: bool) -> None:
    from photos_sync_daemon import service_files

    from photos_sync.system.service import ServiceError

    try:
        removed = service_files.uninstall(data_dir=settings.data_dir, disable=disable)
    except ServiceError as exc:
        fail(str(exc))
    if not removed.paths:
        stdout.print("no photos-sync service is installed: nothing to remove", highlight=False)
        return
    for path in removed.paths:
        stdout.print(f"removed {path}", highlight=False)
    if (settings.data_dir / ".env").is_file():
        stdout.print(
            f"kept {settings.data_dir / '.env'} (its settings serve the command line too)",
            highlight=False,
        )
    if not removed.ran and removed.commands:
        stdout.print("to stop the service, run:", highlight=False)
        for argv in removed.commands:
            stdout.print(f"  {' '.join(argv)}", highlight=False)


def _daemon_error(exc: Exception) -> NoReturn:
    from photos_sync.cli.daemon_client import DaemonError
    from photos_sync.core import rpc

    if isinstance(exc, DaemonError) and exc.code == rpc.USAGE:
        fail(str(exc), EXIT_USAGE)
    fail(f"{exc}" if isinstance(exc, DaemonError) else f"the daemon stopped answering ({exc})")


def _daemon_call(settings: Settings, method: str, params: dict[str, Any] | None = None) -> Any:
    """The daemon's answer to one request, or None when no daemon runs for the data dir
    (one that runs but does not answer is an error: exit 1)."""
    from photos_sync.cli.daemon_client import DaemonError, find_daemon

    async def body() -> tuple[bool, Any]:
        client = await find_daemon(settings.data_dir, settings.socket_path)
        if client is None:
            return False, None
        try:
            return True, await client.call(method, params)
        finally:
            await client.close()

    try:
        found, result = asyncio.run(body())
    except (DaemonError, OSError, TimeoutError) as exc:
        _daemon_error(exc)
    return result if found else None


def _print_daemon_status(daemon: Any) -> None:
    """The daemon's part of the human `--status`: pid, current run, queue, schedule."""
    if not isinstance(daemon, dict):
        stdout.print(
            "daemon: not running (backups run in the foreground; `photos-sync daemon --install` "
            "runs them on BACKUP_SCHEDULE)",
            highlight=False,
        )
        return
    run = daemon.get("run")
    doing = (
        f"backing up to {run['destination']}" + (" (dry run)" if run["dry_run"] else "")
        if run
        else "idle"
    )
    stdout.print(
        f"daemon: pid {daemon['pid']}, up {int(daemon['uptime'])} s, {doing}", highlight=False
    )
    for queued in daemon.get("queue") or []:
        stdout.print(f"  queued: backup to {queued['destination']}", highlight=False)
    schedule = daemon.get("schedule")
    if schedule:
        from photos_sync.storage.store import from_iso

        stdout.print(f"schedule: {schedule}", highlight=False)
        for name, due in sorted((daemon.get("next_run") or {}).items()):
            moment = from_iso(due)
            when = moment.astimezone().strftime("%Y-%m-%d %H:%M") if moment else due
            stdout.print(f"  next run to {name}: {when}", highlight=False)
    else:
        stdout.print(
            "schedule: off (BACKUP_SCHEDULE=off; unset, it is daily at 03:30)", highlight=False
        )
    for job in daemon.get("foreign_jobs") or []:
        stdout.print(
            f"[yellow]{job['folder']}/ is RUNNING in another process (pid {job['owner_pid']} on "
            f"{job['owner_host']}): the daemon leaves it alone[/yellow]",
            highlight=False,
        )


def _summary_of(end: dict[str, Any]) -> str:
    result = end.get("result") or {}
    destination = end["run"]["destination"]
    if end["run"].get("reason") == "restore":
        from photos_sync.core.units import human_bytes

        job = result.get("job") or {}
        verb = "would restore" if end["run"].get("dry_run") else "restored"
        line = (
            f"{verb} {plural(int(result.get('files', 0)), 'file')} "
            f"({human_bytes(result.get('bytes', 0))}) "
            f"from {destination} into {job.get('target_dir', 'the target folder')}"
        )
        if result.get("differ"):
            from photos_sync.engine.restore import differ_note

            line += "\n" + differ_note(
                int(result["differ"]),
                list(result.get("differ_paths") or []),
                str(job.get("target_dir", "the target folder")),
            )
        return line
    return summarise({"destination": destination, **result})


def _daemon_run(
    settings: Settings,
    to: str | None,
    dry_run: bool,
    force: bool,
    json_output: bool,
    detach: bool,
    restore_params: dict[str, Any] | None = None,
) -> bool:
    """Run the backup (or, with `restore_params`, a restore) in the daemon if one runs for the
    data dir; False (nothing done) if none does. A daemon that runs but does not answer is an
    error (exit 1): a foreground run beside it would race it.

    Follows the run's progress until it ends, unless `detach`. Ctrl-C stops following only:
    the daemon's run carries on.
    """
    from photos_sync.cli.daemon_client import DaemonError, find_daemon
    from photos_sync.cli.render import dumps
    from photos_sync.engine.runner import RunEvent

    view = LiveView(stdout, quiet=json_output)
    params: dict[str, Any] = {"destination": to, "dry_run": dry_run, "force": force}
    method, what = "start", "backup"
    if restore_params is not None:
        params = {"destination": to, "dry_run": dry_run, **restore_params}
        method, what = "restore", "restore"
    params = {k: v for k, v in params.items() if v}

    async def body() -> tuple[str, Any]:
        client = await find_daemon(settings.data_dir, settings.socket_path)
        if client is None:
            return "absent", None
        started: Any = None
        try:
            started = await client.call(method, params)
            if "runs" in started:  # no --to, several destinations: a run for each
                if detach:
                    return "detached_each", started
                return "ended_each", await _follow_each(client, started["runs"], view, json_output)
            run = started["run"]
            if detach:
                return "detached", started
            if not json_output:
                verb = "already running" if started["already_running"] else "running"
                if started["queued"]:
                    verb = "queued"
                stdout.print(
                    f"{what} with {run['destination']} {verb} in the photos-sync daemon; "
                    f"Ctrl-C stops watching, not the {what}",
                    highlight=False,
                )
            ack = await client.call("subscribe", {"run": run["id"]})
            if ack.get("ended") is not None:
                return "ended", ack["ended"]
            with view:
                async for note in client.notifications():
                    event = note.get("params") or {}
                    if note["method"] == "run_ended":
                        return "ended", event
                    if note["method"] == "progress":
                        view(RunEvent(event["kind"], event["destination"], event["data"]))
            return "lost", started
        except asyncio.CancelledError:
            return "left", started
        finally:
            await client.close()

    async def guarded() -> tuple[str, Any]:
        try:
            return await body()
        except DaemonError as exc:
            return "error", exc

    outcome, payload = run_async(guarded)
    if outcome == "absent":
        return False
    if outcome == "error":
        _daemon_error(payload)
    if outcome == "ended_each":
        _report_each(payload, json_output)
        return True
    if outcome == "detached_each":
        if json_output:
            sys.stdout.write(dumps(payload) + "\n")
        for entry in payload["runs"]:
            if "error" in entry:
                stderr.print(
                    f"[red]{entry['destination']}:[/red] not started: {entry['error']}",
                    highlight=False,
                )
            elif not json_output:
                run = entry["run"]
                stdout.print(
                    f"backup to {run['destination']} "
                    + (
                        "is already running"
                        if entry["already_running"]
                        else "queued"
                        if entry["queued"]
                        else "started"
                    )
                    + f" in the daemon (run {run['id']})",
                    highlight=False,
                )
        if any("error" in entry for entry in payload["runs"]):
            raise typer.Exit(EXIT_FAILURE)
        return True
    if outcome == "detached":
        if json_output:
            sys.stdout.write(dumps(payload) + "\n")
        else:
            run = payload["run"]
            stdout.print(
                f"{what} with {run['destination']} "
                + ("is already running" if payload["already_running"] else "started")
                + f" in the daemon (run {run['id']}); see `photos-sync backup --status`",
                highlight=False,
            )
        return True
    if outcome == "left":
        stderr.print(
            f"stopped watching; the daemon's {what} carries on (see `photos-sync backup "
            "--status`; cancel it by stopping the daemon)",
            highlight=False,
        )
        return True
    if outcome == "lost":
        fail(f"the daemon closed the connection before the {what} ended: see --status")
    end: dict[str, Any] = payload
    if end.get("error"):
        fail(str(end["error"]), EXIT_USAGE if end.get("error_code") == -32002 else EXIT_FAILURE)
    if end.get("cancelled"):
        fail(f"the {what} was cancelled in the daemon; progress is saved, run again to resume")
    if json_output:
        sys.stdout.write(dumps(end.get("result")) + "\n")
    else:
        stdout.print(_summary_of(end), highlight=False)
    _print_immich_outcome((end.get("result") or {}).get("immich"))
    if not end.get("ok"):
        restore_error = (end.get("result") or {}).get("error")
        if restore_error:
            stderr.print(f"[red]restore failed:[/red] {restore_error}; run it again to resume")
        skipped = (end.get("result") or {}).get("skipped") or []
        if skipped:  # each was named as it happened ("NOT restored: ...")
            stderr.print(
                f"{plural(len(skipped), 'file')} not restored (duplicate names, listed above)"
            )
        for job in (end.get("result") or {}).get("jobs") or []:
            if job.get("error_message") and job["status"] != "COMPLETED":
                line = f"[red]{job['folder']}/:[/red] {escape(job['error_message'])}"
                stderr.print(line, highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_FAILURE)
    return True


async def _follow_each(
    client: Any, entries: list[dict[str, Any]], view: LiveView, quiet: bool
) -> list[dict[str, Any]]:
    """Follow the daemon's runs of a backup to several destinations, one after the other;
    return their outcomes as `_report_each` takes them."""
    from photos_sync.cli.daemon_client import DaemonError
    from photos_sync.engine.runner import RunEvent

    outcomes: list[dict[str, Any]] = []
    with view:
        for entry in entries:
            if "error" in entry:
                outcomes.append(
                    {"destination": entry["destination"], "ok": False, "error": entry["error"]}
                )
                continue
            run = entry["run"]
            if not quiet:
                verb = "already running" if entry["already_running"] else "running"
                stdout.print(
                    f"backup to {run['destination']} {verb} in the photos-sync daemon; Ctrl-C "
                    "stops watching, not the backup",
                    highlight=False,
                )
            ack = await client.call("subscribe", {"run": run["id"]})
            end = ack.get("ended")
            if end is None and ack.get("run") is None:
                end = {"run": run, "ok": False, "error": "the daemon no longer knows this run"}
            if end is None:
                async for note in client.notifications():
                    event = note.get("params") or {}
                    if note["method"] == "run_ended":
                        end = event
                        break
                    if note["method"] == "progress":
                        view(RunEvent(event["kind"], event["destination"], event["data"]))
            if end is None:
                raise DaemonError("the daemon closed the connection before the backup ended")
            result = end.get("result") or {}
            if "run_id" in result:
                outcomes.append(result)
            else:
                error = end.get("error") or "the backup was cancelled in the daemon"
                outcomes.append({"destination": run["destination"], "ok": False, "error": error})
    return outcomes


def _parse_moment(raw: str) -> datetime:
    """--as-of: ISO date/time (local time unless it says otherwise) or a run stamp."""
    from photos_sync.core.archive import parse_stamp

    stamp = parse_stamp(raw)
    if stamp is not None:
        return stamp
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        fail(f"--as-of {raw!r} is not a time: use e.g. 2026-11-20 or 2026-11-20T14:30", EXIT_USAGE)
    return moment if moment.tzinfo else moment.astimezone()


@app.command(
    cls=_Command,
    epilog=(
        "Examples:\n\n"
        "  photos-sync restore --from nas --to /srv/immich-restore            everything\n\n"
        "  photos-sync restore --from nas --to /tmp/r --path library/anna/2024   one folder\n\n"
        "  photos-sync restore --from nas --list-deleted --path upload        the archive\n\n"
        "  photos-sync restore --from nas --to /tmp/r --deleted --path library/anna/2024/a.jpg\n\n"
        "  photos-sync restore --from nas --to /tmp/r --as-of 2026-11-01 --path library"
    ),
)
def restore(
    source: Annotated[
        str | None, typer.Option("--from", help="Destination to restore from.")
    ] = None,
    to: Annotated[Path | None, typer.Option("--to", help="Folder to restore into.")] = None,
    path: Annotated[str, typer.Option("--path", help="Folder or file below the Immich root.")] = "",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace differing files.")
    ] = False,
    deleted: Annotated[
        bool,
        typer.Option(
            "--deleted", help="Restore the newest archived copy of deleted or replaced files."
        ),
    ] = False,
    as_of_raw: Annotated[
        str | None,
        typer.Option(
            "--as-of", metavar="TIME", help="Restore files as they were at TIME (archive + live)."
        ),
    ] = None,
    list_deleted: Annotated[
        bool, typer.Option("--list-deleted", help="List what the archive holds under --path.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be restored.")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Restore files from a backup, decrypted, into a folder. Never overwrites without
    --overwrite; an interrupted restore continues when run again."""
    from photos_sync.cli.render import dumps
    from photos_sync.core.units import human_bytes
    from photos_sync.engine.destination import DestinationContext
    from photos_sync.engine.restore import Restorer, RestoreRequest, archive_listing

    settings = settings_or_exit(() if list_deleted else ("BACKUP_BWLIMIT",), "restore")
    if deleted and as_of_raw:
        fail("--deleted and --as-of cannot be combined", EXIT_USAGE)
    if list_deleted:
        rows = run_async(
            lambda: with_store(
                settings, lambda s: archive_listing(DestinationContext(settings, s), source, path)
            )
        )
        if json_output:
            sys.stdout.write(dumps({"archived": rows}) + "\n")
        elif not rows:
            stdout.print(f"the archive holds nothing under {path or 'the backup'}")
        from photos_sync.core.names import spelled, twin_paths

        twins = twin_paths([(row["run"], row["path"]) for row in rows])
        for row in [] if json_output else rows:
            note = "" if row["utf8"] else "  (name not valid UTF-8: \\xNN is a raw byte)"
            if (row["run"], row["path"]) in twins:
                note += f"  (another name looks the same; this one is {spelled(row['path'])})"
            stdout.print(
                f"{row['run']}  {human_bytes(row['size']):>10}  {row['path']}{note}",
                highlight=False,
                markup=False,
            )
        return
    if to is None:
        fail("restore needs --to DIR (the folder to restore into)", EXIT_USAGE)
    mode = "deleted" if deleted else "as-of" if as_of_raw else "current"
    moment = _parse_moment(as_of_raw) if as_of_raw else None
    restore_params = {
        "to": str(to.expanduser().resolve()),
        "path": path,
        "mode": mode,
        "as_of": moment.isoformat() if moment else None,
        "overwrite": overwrite,
    }
    # With a daemon up, the restore joins its queue (it survives this terminal, and never
    # runs at the same time as a backup); else it runs here.
    if _daemon_run(settings, source, dry_run, False, json_output, False, restore_params):
        return
    view = LiveView(stdout, quiet=json_output)

    async def body(store: Store) -> Any:
        live = 1.0 if view.interactive else None
        restorer = Restorer(DestinationContext(settings, store), view, live_interval=live)
        with view:
            return await restorer.run(
                RestoreRequest(source, to, path, mode, moment, overwrite, dry_run)
            )

    result = run_async(lambda: with_store(settings, body))
    if json_output:
        sys.stdout.write(dumps(result.as_dict()) + "\n")
    else:
        verb = "would restore" if dry_run else "restored"
        stdout.print(
            f"{verb} {plural(result.files, 'file')} ({human_bytes(result.bytes)}) into {to}",
            highlight=False,
        )
        if result.differ_count:
            from photos_sync.engine.restore import differ_note

            stdout.print(
                differ_note(result.differ_count, result.differ, str(to)),
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
    if result.error:
        fail(f"restore failed: {result.error}; run the same command again to resume")
    if result.skipped:  # each was named as it happened ("NOT restored: ...")
        fail(f"{plural(len(result.skipped), 'file')} not restored (duplicate names, listed above)")


@app.command(
    cls=_Command,
    epilog=(
        "Examples:\n\n"
        "  photos-sync verify                 hashes for all, a sample downloaded where none\n\n"
        "  photos-sync verify --full          download and compare every unhashable file\n\n"
        "  photos-sync verify --sample 5 --json"
    ),
)
def verify(
    to: Annotated[str | None, typer.Option("--to", help="Destination (optional with one).")] = None,
    sample: Annotated[
        float,
        typer.Option(
            "--sample",
            metavar="PERCENT",
            help="Share of large files without hashes to download and compare.",
        ),
    ] = 1.0,
    full: Annotated[
        bool, typer.Option("--full", help="Compare every file without a hash.")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Check the backup against what the last completed backup sent: rclone cryptcheck where
    the storage keeps hashes, download-and-compare where it does not. Files added, changed or
    deleted at the source since that backup are listed as newer than it; exit 1 only on files
    missing or differing in the backup, unreadable objects, or unreadable source files."""
    from photos_sync.cli.render import dumps
    from photos_sync.engine.destination import DestinationContext
    from photos_sync.engine.verify import VerifyReport, failed_report
    from photos_sync.engine.verify import verify as run_verify

    mode = "full" if full else f"sample {sample:g}%"

    def give_up(message: str, code: int) -> NoReturn:
        # --json always prints a whole document, whatever went wrong
        if json_output:
            sys.stdout.write(dumps(failed_report(message, to, mode).as_dict()) + "\n")
        fail(message, code)

    if not 0 <= sample <= 100:
        give_up("--sample takes a percentage from 0 to 100", EXIT_USAGE)
    verify_uses = ("BACKUP_INCLUDE_GENERATED",)
    if json_output:
        try:
            load_settings().require(verify_uses)
        except ConfigError as exc:
            give_up(str(exc), EXIT_USAGE)
    settings = settings_or_exit(verify_uses, "verify")
    configure_logging(None)
    view = LiveView(stdout, quiet=json_output)

    async def body(store: Store) -> VerifyReport:
        from photos_sync.reporting.notify import notify_verify

        found = await run_verify(
            DestinationContext(settings, store), to, sink=view, full=full, sample_percent=sample
        )
        await notify_verify(settings, found.as_dict())
        from photos_sync.reporting.metrics import write_textfile

        await write_textfile(settings, store)
        return found

    if to is None:
        names = run_async(lambda: with_store(settings, _destination_names))
        if len(names) > 1:
            _verify_each(settings, names, view, full=full, sample=sample, json_output=json_output)
            return

    async def guarded() -> VerifyReport:
        stopping: tuple[type[BaseException], ...] = (*_known_errors(), OSError)
        try:
            return await with_store(settings, body)
        except stopping as exc:
            if json_output:
                sys.stdout.write(dumps(failed_report(str(exc), to, mode).as_dict()) + "\n")
            raise
        except asyncio.CancelledError:
            if json_output:
                message = "interrupted: run the same command again"
                sys.stdout.write(dumps(failed_report(message, to, mode).as_dict()) + "\n")
            raise

    report = run_async(guarded)
    if json_output:
        sys.stdout.write(dumps(report.as_dict()) + "\n")
    else:
        _print_verify(report)
    if not report.ok:
        raise typer.Exit(EXIT_FAILURE)


def _verify_each(
    settings: Settings,
    names: list[str],
    view: LiveView,
    *,
    full: bool,
    sample: float,
    json_output: bool,
) -> None:
    """`verify` with several destinations and no --to: each in turn; exit 1 if any differs
    or could not be verified (a refused one does not stop the others)."""
    from photos_sync.cli.render import dumps
    from photos_sync.core.destinations import DestinationError
    from photos_sync.credentials.keyfile import SecretsError
    from photos_sync.engine.destination import DestinationContext
    from photos_sync.engine.runner import RunRefused as refused
    from photos_sync.engine.runner import UsageProblem as usage_problem
    from photos_sync.engine.verify import VerifyReport
    from photos_sync.engine.verify import verify as run_verify

    async def body(store: Store) -> list[VerifyReport | tuple[str, str]]:
        from photos_sync.reporting.metrics import write_textfile
        from photos_sync.reporting.notify import notify_verify

        found: list[VerifyReport | tuple[str, str]] = []
        for name in names:
            try:
                report = await run_verify(
                    DestinationContext(settings, store),
                    name,
                    sink=view,
                    full=full,
                    sample_percent=sample,
                )
            except usage_problem:
                raise
            except (refused, DestinationError, SecretsError) as exc:
                found.append((name, str(exc)))
                continue
            await notify_verify(settings, report.as_dict())
            found.append(report)
        await write_textfile(settings, store)
        return found

    results = run_async(lambda: with_store(settings, body))
    failed = [
        r[0] if isinstance(r, tuple) else r.destination
        for r in results
        if isinstance(r, tuple) or not r.ok
    ]
    if json_output:
        items = [
            {"destination": r[0], "ok": False, "error": r[1]}
            if isinstance(r, tuple)
            else r.as_dict()
            for r in results
        ]
        sys.stdout.write(dumps({"ok": not failed, "destinations": items}) + "\n")
    for result in results:
        if isinstance(result, tuple):
            stderr.print(
                f"[red]{result[0]}:[/red] not verified: {result[1]}",
                highlight=False,
                soft_wrap=True,
            )
        elif not json_output:
            _print_verify(result)
    if failed:
        stderr.print(
            f"[red]error:[/red] {len(failed)} of {len(results)} destinations failed to verify: "
            f"{', '.join(str(name) for name in failed)}",
            highlight=False,
        )
        raise typer.Exit(EXIT_FAILURE)


#: Paths newer than the backup listed by a human-readable verify (--json lists them all).
VERIFY_NEWER_SHOWN = 20
_CHANGE_LABELS = {
    "added": "added at the source",
    "modified": "modified at the source",
    "deleted": "deleted at the source",
    "marker": "Immich's marker, rewritten at each start",
}


def _print_verify(report: Any) -> None:
    """A verify's result for people: one summary line, the newer files (stdout), every
    problem (stderr), and for cloud storage the calls it took."""
    from photos_sync.core.names import display_path
    from photos_sync.core.units import human_bytes

    figures = report.figures()
    newer = len(report.newer)
    stdout.print(
        f"{report.destination}: {figures['matched']} files match, {figures['missing']} "
        f"missing, {figures['differ']} differ, {figures['errors']} unreadable; "
        f"{newer} newer than the backup (not a problem); downloaded {len(report.downloaded)} "
        f"files ({human_bytes(report.downloaded_bytes)}) to compare, "
        f"{len(report.left_unverified)} large files without hashes left for another night",
        highlight=False,
    )
    for path, change in report.newer[:VERIFY_NEWER_SHOWN]:
        stdout.print(
            f"newer than the backup ({_CHANGE_LABELS.get(change, change)}): {display_path(path)}",
            highlight=False,
            markup=False,
        )
    if newer > VERIFY_NEWER_SHOWN:
        stdout.print(
            f"… and {newer - VERIFY_NEWER_SHOWN} more newer than the backup "
            "(`photos-sync verify --json` lists them all)",
            highlight=False,
        )
    if report.cloud:
        calls = report.calls()
        stdout.print(
            f"storage calls: {calls['object_reads']:,} object reads (one ranged read of each "
            f"hashed file's header, for its nonce), {calls['downloads']:,} downloads, about "
            f"{calls['listings']:,} listings",
            highlight=False,
        )
    outcome = report.outcome
    for label, paths in (
        ("missing from the backup", outcome.missing),
        ("differs", outcome.differ),
        ("could not be checked", outcome.unchecked),
    ):
        for item in paths:
            stderr.print(
                f"[red]{label}:[/red] {escape(display_path(item))}",
                highlight=False,
                soft_wrap=True,
            )
    for path, problem in report.errors:
        stderr.print(
            f"[red]not checked:[/red] {escape(display_path(path))}: {escape(problem)}",
            highlight=False,
            soft_wrap=True,
        )


def _fast_status(argv: list[str]) -> int | None:
    """`photos-sync backup --status [--json]` without typer's start-up (~100 ms): the command
    a monitoring script or a prompt runs most. Exactly the same code and output as through
    typer; None when `argv` is anything else."""
    if not argv or argv[0] != "backup" or "--status" not in argv[1:]:
        return None
    if not set(argv[1:]) <= {"--status", "--json"} or len(argv[1:]) != len(set(argv[1:])):
        return None
    try:
        _status(settings_or_exit(STATUS_SETTINGS, "backup --status"), "--json" in argv)
    except typer.Exit as done:
        return done.exit_code
    return EXIT_OK


def main() -> None:
    """Entry point: typer app with usage errors mapped to exit code 2."""
    from photos_sync.storage.datadir import private_umask

    private_umask()  # what photos-sync writes is private; rclone gets the user's umask back
    try:
        fast = _fast_status(sys.argv[1:])
        if fast is not None:
            sys.exit(fast)
        app(standalone_mode=True)
    except KeyboardInterrupt:
        stderr.print("interrupted")
        sys.exit(EXIT_FAILURE)
