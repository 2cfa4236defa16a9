"""Turning state into text for people (rich) and into stable JSON for scripts.

The `--status --json` document itself is built by photos_sync.reporting.status
(`status_document`); the Live/print helpers here write to the console.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich.cells import cell_len
from rich.console import Console, JustifyMethod, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from photos_sync.core.consistency import proof_from_dict
from photos_sync.core.events import EventKind, RunEvent
from photos_sync.core.skips import summary as skip_summary
from photos_sync.core.states import JobStatus, status_style
from photos_sync.core.units import duration, from_iso, human_bytes, plural

if TYPE_CHECKING:
    # Types only: `backup --status` must not pay for rich's progress.
    from rich.progress import Progress, TaskID


def dumps(document: Any) -> str:
    return json.dumps(document, indent=2, sort_keys=True, default=str)


def _when(text: str | None, short: bool = False) -> str:
    moment = from_iso(text)
    if moment is None:
        return "never"
    return moment.astimezone().strftime("%m-%d %H:%M" if short else "%Y-%m-%d %H:%M:%S")


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a table that `fit_table` may shorten or drop to fit a width."""

    header: str
    cells: Sequence[RenderableType]
    #: the same cells in fewer characters, tried before the column is dropped
    short: Sequence[RenderableType] | None = None
    justify: JustifyMethod = "left"


#: Blank cells between two columns (rich's padding (0, 1) on each side).
_GAP = 2


def _cell_width(cell: RenderableType) -> int:
    if isinstance(cell, Text):
        return cell.cell_len
    if isinstance(cell, str):
        return cell_len(cell)
    return int(getattr(cell, "width", None) or 0)  # a fixed-width bar


def _column_width(header: str, cells: Sequence[RenderableType]) -> int:
    return max([cell_len(header), *(_cell_width(c) for c in cells)])


def fit_table(columns: Sequence[Column], width: int, reductions: Sequence[str]) -> Table:
    """A table of `columns` no wider than `width` where it can be: while it is too wide, the
    next column named in `reductions` is shortened (to its `short` cells, if it has them and
    they are not in use yet) or else dropped. Columns never named there (names, results)
    keep their full text; only when every reduction is spent does rich truncate cells."""
    shown = {c.header: list(c.cells) for c in columns}
    shortened: set[str] = set()

    def total() -> int:
        widths = [_column_width(h, cells) for h, cells in shown.items()]
        return sum(widths) + _GAP * (len(widths) - 1)

    for header in reductions:
        if total() <= width:
            break
        column = next((c for c in columns if c.header == header), None)
        if column is None or header not in shown:
            continue
        if column.short is not None and header not in shortened:
            shown[header] = list(column.short)
            shortened.add(header)
        else:
            del shown[header]
    table = Table(box=None, pad_edge=False, show_edge=False)
    for column in columns:
        if column.header in shown:
            table.add_column(column.header, no_wrap=True, justify=column.justify)
    for row in zip(*shown.values(), strict=True):
        table.add_row(*row)
    return table


def size_pair(done: float, total: float, *, short: bool = False) -> str:
    """'1.2 GiB/3.4 GiB', or with `short` and one unit for both, '1.2/3.4 GiB'."""
    left, right = human_bytes(done), human_bytes(total)
    if short and left.split()[-1] == right.split()[-1]:
        return f"{left.split()[0]}/{right}"
    return f"{left}/{right}"


def print_status(console: Console, document: Mapping[str, Any]) -> None:
    """The human `--status` view of a status document (reporting.status.status_document)."""
    destinations = document["destinations"]
    if not destinations:
        console.print(
            "No destination yet: run `photos-sync backup --setup local --name NAME --path DIR`."
        )
        return
    for destination in destinations:
        console.print(
            f"[bold]{destination['name']}[/bold] ({destination['type']}: "
            f"{destination['remote_path'] or destination['bucket_name']}) — last complete backup: "
            f"{_when(destination['last_backup_at'])}"
        )
        verify = destination.get("last_verify")
        if verify:
            verdict = "[green]ok[/green]" if verify["ok"] else "[red]PROBLEMS[/red]"
            console.print(
                f"  last verify: {_when(verify['finished_at'])} ({verify['mode']}) {verdict} — "
                f"{verify['matched']} match, {verify['missing']} missing, {verify['extra']} "
                f"extra, {verify['differ']} differ, {verify['errors']} unreadable"
            )
        manifest = destination.get("manifest")
        if manifest:
            console.print(f"  {manifest_line(manifest)}", markup=False, highlight=False)
        proof = destination.get("consistency")
        if proof:
            line = proof_from_dict(proof).line()
            style = "green" if proof.get("ok") else "red"
            console.print(f"  [{style}]{escape(line)}[/{style}]")
        jobs = [j for j in document["jobs"] if j["destination"] == destination["name"]]
        if not jobs:
            console.print("  no backup has run yet")
            continue
        console.print(job_table(jobs, console.width))
        for job in jobs:
            if job["error_message"] and job["status"] != JobStatus.COMPLETED:
                console.print(
                    f"  [red]{job['folder']}/: {escape(job['error_message'])}[/red] "
                    f"(attempts: {job['retry_count']})"
                )
            if job.get("files_skipped"):
                detail = job.get("skipped_detail") or []
                console.print(
                    f"  [yellow]WARNING {job['folder']}/: "
                    f"{skip_summary(int(job['files_skipped']), list(detail))}[/yellow]",
                    markup=True,
                    highlight=False,
                )
                for item in detail:
                    console.print(
                        f"    {item['path']} — {item['advice']}", markup=False, highlight=False
                    )
            if job["stale"]:
                console.print(
                    f"  [yellow]{job['folder']}/ is RUNNING but silent since "
                    f"{_when(job['last_update'])} (pid {job['owner_pid']}): it may be hung[/yellow]"
                )
    print_immich(console, document.get("immich"))


def manifest_line(manifest: Mapping[str, Any]) -> str:
    """`--status`'s line about a destination's manifest (reporting.status.manifest_section)."""
    if manifest.get("error"):
        return (
            f"manifest: could not be read ({manifest['error']}); a run that cannot read it "
            "either sets it aside and does a full sync"
        )
    if not manifest.get("present"):
        return (
            "manifest: none yet — the next run is a full sync (or starts from the manifest's "
            "copy in the destination)"
        )
    if manifest.get("reconciled_at"):
        line = f"manifest: {int(manifest['files']):,} files, last full sync "
        line += _when(manifest["reconciled_at"])
        due = manifest.get("next_reconcile_at")
        line += f", next due {_when(due)}" if due else ", periodic full sync off"
    else:
        line = f"manifest: {int(manifest['files']):,} files, no full sync finished yet"
    return f"{line}; next run: {manifest.get('next_run')}"


def job_table(jobs: Sequence[Mapping[str, Any]], width: int) -> Table:
    """`--status`'s table of jobs, fitted to `width` (folder names and states stay whole)."""

    def state(job: Mapping[str, Any], short: bool) -> Text:
        text = ("STALE" if short else f"{job['status']} (stale)") if job["stale"] else job["status"]
        return Text(text, style=status_style(job["status"]))

    columns = [
        Column("folder", [f"{j['folder']}/" for j in jobs]),
        Column("status", [state(j, False) for j in jobs], [state(j, True) for j in jobs]),
        Column(
            "done",
            [size_pair(j["bytes_transferred"], j["bytes_total"]) for j in jobs],
            [size_pair(j["bytes_transferred"], j["bytes_total"], short=True) for j in jobs],
        ),
        Column(
            "files",
            [f"{j['files_transferred']}/{j['files_total']}" for j in jobs],
            [str(j["files_transferred"]) for j in jobs],
            justify="right",
        ),
        Column("%", [f"{j['percent']:.1f}" for j in jobs], justify="right"),
        Column(
            "speed",
            [
                f"{human_bytes(j['transfer_speed'])}/s" if j["status"] == JobStatus.RUNNING else ""
                for j in jobs
            ],
        ),
        Column("updated", [_when(j["last_update"], short=True) for j in jobs]),
    ]
    return fit_table(columns, width, ("done", "updated", "files", "status", "speed", "files"))


def print_immich(console: Console, section: Mapping[str, Any] | None) -> None:
    """The Immich lines of `--status`: newest DB dump (age, size) and any warnings."""
    if not section:
        return
    dumps = section.get("dumps") or {}
    newest = dumps.get("newest")
    if newest:
        line = (
            f"Immich DB dump: {newest['name']} — {human_bytes(newest['size'])}, "
            f"{newest['age_hours']:.1f} h old"
        )
    else:
        line = "Immich DB dump: none in backups/"
    last = section.get("last_request") or {}
    if last.get("fresh"):
        line += " (fresh dump requested by the last run)"
    console.print(line, highlight=False)
    for warning in section.get("warnings") or ():
        console.print(f"  [yellow]warning: {warning}[/yellow]", highlight=False)


def print_restores(console: Console, document: Mapping[str, Any]) -> None:
    """Unfinished restores, with what to do about them."""
    for restore in document.get("restores") or []:
        if restore["status"] == JobStatus.COMPLETED:
            continue
        console.print(
            f"[yellow]restore from {restore['destination']} into {restore['target_dir']} "
            f"({escape(restore['remote_path'] or 'everything')}, {restore['mode']}): "
            f"{restore['status']}[/yellow] — {plural(restore['files_transferred'], 'file')} so "
            "far; "
            "run the same `photos-sync restore` command again to finish it"
        )


class LiveView:
    """Follows RunEvents: a rich progress bar per job on a terminal, plain lines otherwise."""

    def __init__(self, console: Console, *, quiet: bool = False) -> None:
        self.console = console
        self.quiet = quiet
        self.interactive = console.is_terminal and not quiet
        self._progress: Progress | None = None
        self._tasks: dict[int, TaskID] = {}
        self._last_plain: dict[int, float] = {}

    def __enter__(self) -> LiveView:
        if self.interactive:
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                DownloadColumn(binary_units=True),
                TextColumn("{task.fields[files]}"),
                TextColumn("{task.fields[rate]}"),
                TextColumn("{task.fields[eta]}"),
                console=self.console,
                transient=False,
            )
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def _say(self, text: str) -> None:
        # markup off: file names and rclone's errors may hold "[...]" ("[/x]" raised MarkupError);
        # soft wrap: one line per event however long, so a log or grep sees whole file names
        if not self.quiet:
            self.console.print(text, highlight=False, markup=False, soft_wrap=True)

    def __call__(self, event: RunEvent) -> None:
        data = event.data
        # A backup job is its folder ("library/"); a restore names what it restores.
        label = str(data.get("label") or f"{data.get('folder')}/")
        if event.kind is EventKind.RUN_STARTED:
            verb = "resuming" if data.get("resumed") else "starting"
            self._say(
                f"{verb} backup to {event.destination}: "
                + ", ".join(f"{f}/" for f in data.get("folders", []))
            )
        elif event.kind is EventKind.JOB_STARTED:
            if self._progress is not None and data["id"] not in self._tasks:
                self._tasks[data["id"]] = self._progress.add_task(
                    label, total=None, files="", rate="", eta=""
                )
            elif self._progress is None:
                self._last_plain[data["id"]] = datetime.now().timestamp()
                self._say(f"{label}: started")
        elif event.kind is EventKind.JOB_PROGRESS:
            task = self._tasks.get(data["job_id"])
            if self._progress is not None and task is not None:
                eta = data.get("eta")
                self._progress.update(
                    task,
                    completed=data["bytes_done"],
                    total=data["bytes_total"] or None,
                    files=f"{data['files_done']}/{plural(data['files_total'], 'file')}",
                    rate=f"{human_bytes(data['speed'])}/s",
                    eta=f"ETA {duration(eta)}" if eta else "",
                )
            elif self._progress is None:
                now = datetime.now().timestamp()
                if now - self._last_plain.get(data["job_id"], 0) >= 10:
                    self._last_plain[data["job_id"]] = now
                    self._say(
                        f"{label}: {human_bytes(data['bytes_done'])} of "
                        f"{human_bytes(data['bytes_total'])}, {data['files_done']}/"
                        f"{plural(data['files_total'], 'file')}, {human_bytes(data['speed'])}/s"
                    )
        elif event.kind is EventKind.JOB_FINISHED:
            task = self._tasks.get(data["id"])
            if self._progress is not None and task is not None:
                total = max(data["bytes_total"], data["bytes_transferred"])
                if data["status"] == JobStatus.COMPLETED:
                    self._progress.update(
                        task,
                        completed=total,
                        total=total or 1,
                        files=plural(data["files_transferred"], "file"),
                        rate="",
                        eta="done",
                    )
            line = (
                f"{label}: {data['status']} — {plural(data['files_transferred'], 'file')}, "
                f"{human_bytes(data['bytes_transferred'])}"
            )
            if data.get("error_message") and data["status"] != JobStatus.COMPLETED:
                line += f" — {data['error_message']}"
            self._say(line)
        elif event.kind is EventKind.MESSAGE:
            self._say(str(data.get("text", "")))
