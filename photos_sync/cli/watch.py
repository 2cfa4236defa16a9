"""`backup --status --watch` (a live rich view) and `backup --history` (past runs).

`status_view` and `history_table` are pure renderables built from the status document and
photos_sync.reporting.history summaries; `watch_status` and `print_history` fetch (from the
daemon if
one answers, else from the DB) and draw.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.text import Text

from photos_sync.cli.render import Column, fit_table, size_pair
from photos_sync.core.config import Settings
from photos_sync.core.states import JobStatus, status_style
from photos_sync.core.units import from_iso, human_bytes, plural

#: Seconds between two refreshes of the live view.
REFRESH = 1.0


def _when(text: str | None, form: str = "%Y-%m-%d %H:%M") -> str:
    moment = from_iso(text)
    return moment.astimezone().strftime(form) if moment else "never"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def _job_columns(jobs: Sequence[Mapping[str, Any]]) -> list[Column]:
    bars: list[RenderableType] = []
    percents: list[RenderableType] = []
    states: list[RenderableType] = []
    short_states: list[RenderableType] = []
    for job in jobs:
        total = int(job.get("bytes_total") or 0)
        done = int(job.get("bytes_transferred") or 0)
        complete = job["status"] == JobStatus.COMPLETED
        bars.append(
            ProgressBar(
                total=float(total or 1), completed=float(total or 1 if complete else done), width=20
            )
        )
        share = 100.0 if complete else 100.0 * min(done, total) / total if total else 0.0
        percents.append(f"{share:.0f}%")
        style = status_style(job["status"])
        stale = bool(job.get("stale"))
        states.append(Text(job["status"] + (" (stale)" if stale else ""), style=style))
        short_states.append(Text("STALE" if stale else job["status"], style=style))
    running = [j["status"] == JobStatus.RUNNING for j in jobs]
    sizes = [(int(j.get("bytes_transferred") or 0), int(j.get("bytes_total") or 0)) for j in jobs]
    return [
        Column("folder", [f"{j['folder']}/" for j in jobs]),
        Column("state", states, short_states),
        Column("progress", bars, percents),
        Column(
            "bytes",
            [size_pair(done, total) for done, total in sizes],
            [size_pair(done, total, short=True) for done, total in sizes],
        ),
        Column(
            "files",
            [f"{j.get('files_transferred', 0)}/{j.get('files_total', 0)}" for j in jobs],
            [str(j.get("files_transferred", 0)) for j in jobs],
            justify="right",
        ),
        Column(
            "speed",
            [
                f"{human_bytes(float(j.get('transfer_speed') or 0))}/s" if r else ""
                for j, r in zip(jobs, running, strict=True)
            ],
        ),
        Column(
            "ETA",
            [
                _duration(float(j["eta_seconds"])) if r and j.get("eta_seconds") else ""
                for j, r in zip(jobs, running, strict=True)
            ],
        ),
    ]


def status_view(
    document: Mapping[str, Any],
    now: datetime | None = None,
    *,
    width: int = 80,
    live: bool = True,
) -> RenderableType:
    """One block per destination: last success, next run, last verify, and a row per job,
    fitted to `width` columns. `live`: the view is redrawn until Ctrl-C (and says so)."""
    parts: list[RenderableType] = []
    daemon = document.get("daemon")
    if isinstance(daemon, Mapping):
        run = daemon.get("run")
        doing = f"backing up to {run['destination']}" if run else "idle"
        parts.append(Text(f"daemon pid {daemon.get('pid')}: {doing}", style="bold"))
        bandwidth = daemon.get("bandwidth") or {}
        if bandwidth.get("configured"):
            parts.append(Text(f"bandwidth limit: {bandwidth['configured']}"))
    elif document.get("daemon_unreachable"):
        parts.append(Text(f"{document['daemon_unreachable']}: figures from the job database"))
    else:
        parts.append(Text("no daemon: figures from the job database", style="bold"))
    next_runs = (daemon or {}).get("next_run") or {} if isinstance(daemon, Mapping) else {}
    destinations = document.get("destinations") or []
    if not destinations:
        parts.append(Text("No destination yet: run `photos-sync backup --setup ...`."))
    for destination in destinations:
        name = destination["name"]
        verify = destination.get("last_verify")
        verdict = "never"
        if verify:
            verdict = f"{_when(verify.get('finished_at'))} " + (
                "ok"
                if verify.get("ok")
                else f"PROBLEMS ({verify.get('missing', 0)} missing, "
                f"{verify.get('differ', 0)} differ)"
            )
        parts.append(
            Text.assemble(
                (f"\n{name}", "bold"),
                f" — last success: {_when(destination.get('last_backup_at'))}, next run: "
                f"{_when(next_runs.get(name)) if name in next_runs else '—'}",
            )
        )
        parts.append(Text(f"  last verify: {verdict}"))
        jobs = [j for j in document.get("jobs") or [] if j["destination"] == name]
        if jobs:
            parts.append(
                fit_table(
                    _job_columns(jobs),
                    width,
                    ("progress", "bytes", "files", "state", "files", "ETA", "speed"),
                )
            )
        else:
            parts.append(Text("  no backup has run yet"))
        for job in jobs:
            if job.get("error_message") and job["status"] != JobStatus.COMPLETED:
                parts.append(Text(f"  {job['folder']}/: {job['error_message']}", style="red"))
    if live:
        parts.append(Text("\nCtrl-C to leave", style="dim"))
    return Group(*parts)


def _result(run: Mapping[str, Any], short: bool) -> Text:
    retries = int(run.get("retries") or 0)
    text = str(run["result"])
    if retries and not short:
        text += f" ({plural(retries, 'retry', 'retries')})"
    return Text(text, style=status_style(str(run["result"])))


def history_table(runs: Sequence[Mapping[str, Any]], width: int = 80) -> RenderableType:
    """Past runs, newest first, fitted to `width` columns: the run stamp goes first, then the
    year of the start, then the retry counts; destination names, times and results stay."""
    if not runs:
        return Text("no backup has run yet")
    columns = [
        Column("to", [str(r["destination"]) for r in runs]),
        Column("run", [str(r["run_id"]) for r in runs]),
        Column(
            "started",
            [_when(r.get("started_at")) for r in runs],
            [_when(r.get("started_at"), "%m-%d %H:%M") for r in runs],
        ),
        Column("took", [_duration(r.get("duration_seconds")) for r in runs], justify="right"),
        Column("sent", [human_bytes(float(r.get("bytes") or 0)) for r in runs], justify="right"),
        Column("files", [str(r.get("files", 0)) for r in runs], justify="right"),
        Column("result", [_result(r, False) for r in runs], [_result(r, True) for r in runs]),
    ]
    return fit_table(columns, width, ("run", "started", "result", "files"))


# -- I/O ---------------------------------------------------------------------------------------


async def _fetch(settings: Settings) -> dict[str, Any]:
    from photos_sync.cli.daemon_client import DaemonError, DaemonUnreachable, find_daemon
    from photos_sync.reporting.status import gather_status
    from photos_sync.storage.store import Store

    client = None
    unreachable = None
    try:
        client = await find_daemon(settings.data_dir, settings.socket_path)
    except DaemonUnreachable as exc:
        unreachable = exc.short  # the DB still shows where things are
    except (DaemonError, OSError):
        client = None
    if client is not None:
        try:
            return dict(await client.call("status"))
        except (DaemonError, OSError, TimeoutError):
            pass
        finally:
            await client.close()
    store = await Store.open(settings.db_path)
    try:
        document = await gather_status(settings, store)
    finally:
        await store.close()
    if unreachable:
        document["daemon_unreachable"] = unreachable
    return document


def watch_status(
    settings: Settings, console: Console, *, once: bool = False, destination: str | None = None
) -> int:
    """Redraw the status every REFRESH s until Ctrl-C (exit 0); with `once`, draw once.
    With `destination`, only that destination is shown."""

    def view() -> RenderableType:
        document = asyncio.run(_fetch(settings))
        if destination is not None:
            from photos_sync.reporting.status import only_destination

            document = only_destination(document, destination)
        return status_view(document, width=console.width, live=not once)

    if once:
        console.print(view())
        return 0
    try:
        with Live(console=console, auto_refresh=False, screen=False) as live:
            while True:
                live.update(view(), refresh=True)
                time.sleep(REFRESH)
    except KeyboardInterrupt:
        return 0


def print_history(
    settings: Settings, console: Console, destination: str | None, json_output: bool
) -> int:
    from photos_sync.reporting.history import load_history
    from photos_sync.storage.store import Store

    async def body() -> list[dict[str, Any]]:
        store = await Store.open(settings.db_path)
        try:
            return await load_history(store, destination, limit=100)
        finally:
            await store.close()

    runs = asyncio.run(body())
    if json_output:
        print(json.dumps({"runs": runs}, indent=2, sort_keys=True))
    else:
        console.print(history_table(runs, console.width))
    return 0
