"""`photos-sync backup`: the backup itself (in the daemon when one runs, else here, to each
destination in turn when several exist), and its `--status`, `--reset` and `--check` modes."""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from photos_sync.cli.console import EXIT_USAGE, fail, stdout
from photos_sync.cli.daemon_calls import daemon_call, run_in_daemon
from photos_sync.cli.output import (
    print_check,
    print_run_result,
    print_status,
    refused_outcome,
    report_each,
)
from photos_sync.cli.prompts import confirm_reset
from photos_sync.cli.runtime import (
    configure_logging,
    destination_names,
    require_destination,
    run_async,
    with_store,
)
from photos_sync.core.units import plural

if TYPE_CHECKING:
    from photos_sync.cli.render import LiveView
    from photos_sync.core.config import Settings
    from photos_sync.core.events import RunRequest, RunResult
    from photos_sync.storage.store import Store


def run_backup(
    settings: Settings,
    to: str | None,
    dry_run: bool,
    force: bool,
    json_output: bool,
    detach: bool = False,
    *,
    full: bool = False,
) -> None:
    """`backup [--to NAME] [--full]`: in the daemon if one runs, else here; exit 1 if it
    failed. `full` makes the run a full sync whatever the manifest says."""
    if run_in_daemon(settings, to, dry_run, force, json_output, detach, full=full):
        return
    if detach:
        fail(
            "--detach needs the daemon, and none answers on "
            f"{settings.socket_path}: start it with `photos-sync daemon` (or `photos-sync daemon "
            "--install`), or drop --detach to back up in the foreground"
        )
    from photos_sync.cli.render import LiveView
    from photos_sync.core.events import RunRequest

    configure_logging(settings.log_path)
    view = LiveView(stdout, quiet=json_output)
    if to is None:
        names = run_async(lambda: with_store(settings, destination_names))
        if len(names) > 1:
            _run_each(settings, names, dry_run, force, json_output, view, full=full)
            return

    async def body(store: Store) -> RunResult:
        request = RunRequest(to, dry_run, force, full=full)
        return await _back_up(settings, store, request, view, showing=view)

    print_run_result(run_async(lambda: with_store(settings, body)), json_output)


async def _back_up(
    settings: Settings,
    store: Store,
    request: RunRequest,
    view: LiveView,
    *,
    showing: AbstractContextManager[Any],
) -> RunResult:
    """One backup run here, in the foreground, its progress on `view` (shown while `showing`
    is entered)."""
    from photos_sync.engine.reported_run import reported_run
    from photos_sync.engine.runner import Runner

    async with reported_run(settings, store, request, view) as sink:
        live = 1.0 if view.interactive else None
        runner = Runner(settings, store, sink=sink, live_interval=live)
        with showing:
            return await runner.run(request)


def _run_each(
    settings: Settings,
    names: list[str],
    dry_run: bool,
    force: bool,
    json_output: bool,
    view: LiveView,
    *,
    full: bool = False,
) -> None:
    """No --to, several destinations, no daemon: back up to each in turn here, with one fresh
    Immich dump for all. A destination that is refused or fails does not stop the others."""
    from photos_sync.core.destinations import DestinationError
    from photos_sync.core.events import RunRefused, RunRequest, UsageProblem
    from photos_sync.credentials.keyfile import SecretsError
    from photos_sync.immich.server import SharedDump

    async def body(store: Store) -> list[dict[str, Any]]:
        shared = SharedDump()
        outcomes: list[dict[str, Any]] = []
        with view:
            for name in names:
                request = RunRequest(name, dry_run, force, dump=shared, full=full)
                try:
                    result = await _back_up(
                        settings, store, request, view, showing=contextlib.nullcontext()
                    )
                    outcomes.append(result.as_dict())
                except UsageProblem:
                    raise
                except (RunRefused, DestinationError, SecretsError) as exc:
                    outcomes.append(refused_outcome(name, str(exc)))
        return outcomes

    report_each(run_async(lambda: with_store(settings, body)), json_output)


def show_status(settings: Settings, json_output: bool, to: str | None = None) -> None:
    """`backup --status`: the daemon's view when one runs (live figures), else the store's."""
    from_daemon = daemon_call(settings, "status")
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
    print_status(document, json_output)


def reset(settings: Settings, to: str | None, yes: bool) -> None:
    """`backup --reset`: clear job state (in the daemon when one runs); the files stay."""
    from photos_sync.engine.maintenance import reset_jobs

    if to is not None:
        require_destination(settings, to)
    what = (
        f"the job history and manifest of {to!r}"
        if to
        else "the job history and manifest of every destination"
    )
    if not yes:
        confirm_reset(what)
    from_daemon = daemon_call(settings, "reset", {"destination": to} if to else None)
    if from_daemon is not None:
        removed = int(from_daemon["removed"])
    else:
        removed = run_async(lambda: with_store(settings, lambda s: reset_jobs(settings, s, to)))
    stdout.print(
        f"cleared {plural(removed, 'job')} ({what}): the next run is a full sync; the backup "
        "itself is untouched",
        highlight=False,
    )


def check(settings: Settings, json_output: bool) -> None:
    """`backup --check`: prerequisites, one line each; exit 1 if one is missing."""
    from photos_sync.engine.check import run_checks

    print_check(
        run_async(lambda: with_store(settings, lambda s: run_checks(settings, s))), json_output
    )
