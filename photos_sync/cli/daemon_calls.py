"""The command line as the daemon's client: one request, or a run started in the daemon and
followed until it ends (over photos_sync.cli.daemon_client).

Each function says "no daemon" (None, False) only when no daemon holds the data dir; one that
holds it but does not answer is an error (exit 1), never a reason to run beside it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, NoReturn

from photos_sync.cli.console import EXIT_USAGE, fail, stderr, stdout
from photos_sync.cli.output import (
    print_detached,
    print_detached_each,
    print_following,
    print_run_end,
    refused_outcome,
    report_each,
)
from photos_sync.cli.runtime import run_async

if TYPE_CHECKING:
    from photos_sync.cli.daemon_client import DaemonClient
    from photos_sync.cli.render import LiveView
    from photos_sync.core.config import Settings


def daemon_error(exc: Exception) -> NoReturn:
    """Exit with the daemon's error (2 for a usage problem it found, else 1)."""
    from photos_sync.cli.daemon_client import DaemonError
    from photos_sync.core import rpc

    if isinstance(exc, DaemonError) and exc.code == rpc.USAGE:
        fail(str(exc), EXIT_USAGE)
    fail(f"{exc}" if isinstance(exc, DaemonError) else f"the daemon stopped answering ({exc})")


def daemon_call(settings: Settings, method: str, params: dict[str, Any] | None = None) -> Any:
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
        daemon_error(exc)
    return result if found else None


def run_in_daemon(
    settings: Settings,
    to: str | None,
    dry_run: bool,
    force: bool,
    json_output: bool,
    detach: bool,
    restore_params: dict[str, Any] | None = None,
    *,
    full: bool = False,
) -> bool:
    """Run the backup (or, with `restore_params`, a restore) in the daemon if one runs for the
    data dir; False (nothing done) if none does. A daemon that runs but does not answer is an
    error (exit 1): a foreground run beside it would race it. `full`: the backup is a full
    sync (`backup --full`).

    Follows the run's progress until it ends, unless `detach`. Ctrl-C stops following only:
    the daemon's run carries on.
    """
    from photos_sync.cli.daemon_client import DaemonError
    from photos_sync.cli.render import LiveView

    view = LiveView(stdout, quiet=json_output)
    params: dict[str, Any] = {
        "destination": to,
        "dry_run": dry_run,
        "force": force,
        "full": full,
    }
    method, what = "start", "backup"
    if restore_params is not None:
        params = {"destination": to, "dry_run": dry_run, **restore_params}
        method, what = "restore", "restore"
    params = {k: v for k, v in params.items() if v}

    async def guarded() -> tuple[str, Any]:
        try:
            return await _start_and_follow(
                settings, method, params, what, view, json_output=json_output, detach=detach
            )
        except DaemonError as exc:
            return "error", exc

    outcome, payload = run_async(guarded)
    return _report(outcome, payload, what, json_output)


async def _start_and_follow(
    settings: Settings,
    method: str,
    params: dict[str, Any],
    what: str,
    view: LiveView,
    *,
    json_output: bool,
    detach: bool,
) -> tuple[str, Any]:
    """Ask the daemon to start the run and follow it: (outcome, payload), the outcome one of
    absent, detached, detached_each, ended, ended_each, left (Ctrl-C) or lost."""
    from photos_sync.cli.daemon_client import find_daemon

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
            print_following(what, run["destination"], started)
        ack = await client.call("subscribe", {"run": run["id"]})
        if ack.get("ended") is not None:
            return "ended", ack["ended"]
        with view:
            end = await _until_end(client, view)
        if end is not None:
            return "ended", end
        return "lost", started
    except asyncio.CancelledError:
        return "left", started
    finally:
        await client.close()


def _report(outcome: str, payload: Any, what: str, json_output: bool) -> bool:
    """Print how a run in the daemon went (see `_start_and_follow`); False when no daemon
    runs. Exits 1 (or 2) when the run failed."""
    if outcome == "absent":
        return False
    if outcome == "error":
        daemon_error(payload)
    if outcome == "ended_each":
        report_each(payload, json_output)
    elif outcome == "detached_each":
        print_detached_each(payload, json_output)
    elif outcome == "detached":
        print_detached(what, payload, json_output)
    elif outcome == "left":
        stderr.print(
            f"stopped watching; the daemon's {what} carries on (see `photos-sync backup "
            "--status`; cancel it by stopping the daemon)",
            highlight=False,
        )
    elif outcome == "lost":
        fail(f"the daemon closed the connection before the {what} ended: see --status")
    else:
        print_run_end(payload, what, json_output)
    return True


async def _until_end(client: DaemonClient, view: LiveView) -> dict[str, Any] | None:
    """Show the run's progress notifications until its `run_ended` (returned); None if the
    daemon closes the connection first."""
    from photos_sync.core.events import EventKind, RunEvent

    async for note in client.notifications():
        event = note.get("params") or {}
        if note["method"] == "run_ended":
            return event
        if note["method"] == "progress":
            view(RunEvent(EventKind(event["kind"]), event["destination"], event["data"]))
    return None


async def _follow_each(
    client: DaemonClient, entries: list[dict[str, Any]], view: LiveView, quiet: bool
) -> list[dict[str, Any]]:
    """Follow the daemon's runs of a backup to several destinations, one after the other;
    return their outcomes as `report_each` takes them."""
    from photos_sync.cli.daemon_client import DaemonError

    outcomes: list[dict[str, Any]] = []
    with view:
        for entry in entries:
            if "error" in entry:
                outcomes.append(refused_outcome(entry["destination"], entry["error"]))
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
                end = await _until_end(client, view)
            if end is None:
                raise DaemonError("the daemon closed the connection before the backup ended")
            result = end.get("result") or {}
            if "run_id" in result:
                outcomes.append(result)
            else:
                error = end.get("error") or "the backup was cancelled in the daemon"
                outcomes.append(refused_outcome(run["destination"], error))
    return outcomes
