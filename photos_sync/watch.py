"""`backup --status --watch` (a live rich view) and `backup --history` (past runs).

`status_view` and `history_table` are pure renderables built from the status document and
photos_sync.history summaries; `watch_status` and `print_history` fetch (from the daemon if
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
from rich.table import Table
from rich.text import Text

from photos_sync.config import Settings
from photos_sync.store import from_iso
from photos_sync.units import human_bytes

#: Seconds between two refreshes of the live view.
REFRESH = 1.0

_STYLE = {
    "COMPLETED": "green",
    "RUNNING": "cyan",
    "PENDING": "white",
    "INTERRUPTED": "yellow",
    "FAILED": "red",
    "completed": "green",
    "running": "cyan",
    "failed": "red",
    "interrupted": "yellow",
}


def _when(text: str | None) -> str:
    moment = from_iso(text)
    return moment.astimezone().strftime("%Y-%m-%d %H:%M") if moment else "never"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def status_view(document: Mapping[str, Any], now: datetime | None = None) -> RenderableType:
    """One block per destination: last success, next run, last verify, and a row per job."""
    parts: list[RenderableType] = []
    daemon = document.get("daemon")
    if isinstance(daemon, Mapping):
        run = daemon.get("run")
        doing = f"backing up to {run['destination']}" if run else "idle"
        parts.append(Text(f"daemon pid {daemon.get('pid')}: {doing}", style="bold"))
        bandwidth = daemon.get("bandwidth") or {}
        if bandwidth.get("configured"):
            parts.append(Text(f"bandwidth limit: {bandwidth['configured']}"))
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
                f"  last success: {_when(destination.get('last_backup_at'))}",
                f"  next run: {_when(next_runs.get(name)) if name in next_runs else '—'}",
                f"  last verify: {verdict}",
            )
        )
        table = Table(box=None, pad_edge=False, show_edge=False)
        for column in ("folder", "state", "progress", "bytes", "files", "speed", "ETA"):
            table.add_column(column, no_wrap=True)
        jobs = [j for j in document.get("jobs") or [] if j["destination"] == name]
        for job in jobs:
            total = int(job.get("bytes_total") or 0)
            done = int(job.get("bytes_transferred") or 0)
            complete = job["status"] == "COMPLETED"
            bar = ProgressBar(
                total=float(total or 1), completed=float(total or 1 if complete else done), width=24
            )
            running = job["status"] == "RUNNING"
            eta = job.get("eta_seconds")
            style = _STYLE.get(job["status"], "white")
            table.add_row(
                f"{job['folder']}/",
                Text(job["status"] + (" (stale)" if job.get("stale") else ""), style=style),
                bar,
                f"{human_bytes(done)}/{human_bytes(total)}",
                f"{job.get('files_transferred', 0)}/{job.get('files_total', 0)}",
                f"{human_bytes(float(job.get('transfer_speed') or 0))}/s" if running else "",
                _duration(float(eta)) if running and eta else "",
            )
        parts.append(table if jobs else Text("  no backup has run yet"))
        for job in jobs:
            if job.get("error_message") and job["status"] != "COMPLETED":
                parts.append(Text(f"  {job['folder']}/: {job['error_message']}", style="red"))
    parts.append(Text("\nCtrl-C to leave", style="dim"))
    return Group(*parts)


def history_table(runs: Sequence[Mapping[str, Any]]) -> RenderableType:
    if not runs:
        return Text("no backup has run yet")
    table = Table(box=None, pad_edge=False, show_edge=False)
    for column in ("destination", "run", "started", "duration", "bytes", "files", "result"):
        table.add_column(column, no_wrap=True)
    for run in runs:
        style = _STYLE.get(str(run["result"]), "white")
        table.add_row(
            str(run["destination"]),
            str(run["run_id"]),
            _when(run.get("started_at")),
            _duration(run.get("duration_seconds")),
            human_bytes(float(run.get("bytes") or 0)),
            str(run.get("files", 0)),
            Text(
                str(run["result"]) + (f" ({run['retries']} retries)" if run.get("retries") else ""),
                style=style,
            ),
        )
    return table


# -- I/O ---------------------------------------------------------------------------------------


async def _fetch(settings: Settings) -> dict[str, Any]:
    from photos_sync.client import DaemonError, connect
    from photos_sync.status import gather_status
    from photos_sync.store import Store

    client = None
    try:
        client = await connect(settings.socket_path)
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
        return await gather_status(settings, store)
    finally:
        await store.close()


def watch_status(
    settings: Settings, console: Console, *, once: bool = False, destination: str | None = None
) -> int:
    """Redraw the status every REFRESH s until Ctrl-C (exit 0); with `once`, draw once.
    With `destination`, only that destination is shown."""

    def view() -> RenderableType:
        document = asyncio.run(_fetch(settings))
        if destination is not None:
            from photos_sync.status import only_destination

            document = only_destination(document, destination)
        return status_view(document)

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
    from photos_sync.history import load_history
    from photos_sync.store import Store

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
        console.print(history_table(runs))
    return 0
