"""What the commands print when they are done: run results, restore and verify reports, the
daemon's part of `--status`, the outcome of setup, removal and service install.

People get rich text (errors on stderr), scripts one JSON document on stdout. Everything
heavy (render's tables, the engine's notes) is imported when a result is printed.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape

from photos_sync.cli.console import EXIT_FAILURE, EXIT_USAGE, fail, print_json_line, stderr, stdout
from photos_sync.core.states import JobStatus
from photos_sync.core.units import plural

if TYPE_CHECKING:
    from photos_sync.core.config import Settings
    from photos_sync.core.events import RunResult
    from photos_sync.engine.check import CheckReport
    from photos_sync.engine.removal import RemovalPlan
    from photos_sync.engine.restore import RestoreResult
    from photos_sync.engine.setup import SetupOutcome
    from photos_sync.engine.verify import VerifyReport


# -- backups -----------------------------------------------------------------------------------


def print_run_result(result: RunResult, json_output: bool) -> None:
    """The end of a foreground backup to one destination; exit 1 if it failed."""
    if json_output:
        from photos_sync.cli.render import dumps

        stdout.print_json(dumps(result.as_dict()))
    else:
        stdout.print(run_summary(result.as_dict()), highlight=False)
    print_immich_outcome(result.immich)
    if not result.ok:
        for job in result.jobs:
            if job.error_message and job.status is not JobStatus.COMPLETED:
                message = escape(job.error_message)  # it may name a file holding "[...]"
                line = f"[red]{job.folder}/:[/red] {message}"
                stderr.print(line, highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_FAILURE)


def run_summary(data: Mapping[str, Any]) -> str:
    """The end of a backup run for people, from its RunResult.as_dict(): the summary line
    (engine.runner.summarise), then how its folders went, when the run says (`modes_note`)."""
    from photos_sync.engine.runner import summarise

    note = modes_note(data)
    return summarise(data) + (f"\n{note}" if note else "")


def modes_note(data: Mapping[str, Any]) -> str:
    """How a run's folders went (#15), from its `folder_modes` and `moved`: 'incremental:
    library/, upload/; full sync of backups/ (a folder the manifest does not cover yet); 3 files
    moved inside the backup, not sent again'. Empty for a run that does not say (a dry run)."""
    modes: Mapping[str, str] = data.get("folder_modes") or {}
    moved = int(data.get("moved") or 0)
    by_mode: dict[str, list[str]] = {}
    for folder, mode in modes.items():
        by_mode.setdefault(mode, []).append(f"{folder}/")
    parts = []
    incremental = by_mode.pop("incremental", [])
    if incremental:
        parts.append(f"incremental: {', '.join(incremental)}")
    for mode, folders in by_mode.items():
        why = mode.removeprefix("full sync").removeprefix(":").strip()
        parts.append(f"full sync of {', '.join(folders)}" + (f" ({why})" if why else ""))
    if moved:
        parts.append(f"{plural(moved, 'file')} moved inside the backup, not sent again")
    return "; ".join(parts)


def refused_outcome(destination: str, error: str) -> dict[str, Any]:
    """The outcome of a backup to `destination` refused (or lost) before it began, beside the
    RunResult.as_dict() of the others in `report_each`."""
    return {"destination": destination, "ok": False, "error": error}


def report_each(outcomes: list[dict[str, Any]], json_output: bool) -> None:
    """The end of a backup to several destinations: one line per destination, the errors,
    exit 1 if any failed. Each outcome is a RunResult.as_dict(), or a `refused_outcome`."""
    if json_output:
        ok = all(o.get("ok") for o in outcomes)
        print_json_line({"ok": ok, "destinations": outcomes})
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
            stdout.print(run_summary(outcome), highlight=False)
        for job in outcome.get("jobs") or []:
            if job.get("error_message") and job["status"] != JobStatus.COMPLETED:
                stderr.print(
                    f"[red]{name}: {job['folder']}/:[/red] {job['error_message']}",
                    highlight=False,
                )
        immich = outcome.get("immich")
        if immich and immich not in immich_seen:
            immich_seen.append(immich)
            print_immich_outcome(immich)
    failed = [o["destination"] for o in outcomes if not o.get("ok")]
    if failed:
        stderr.print(
            f"[red]error:[/red] {len(failed)} of {len(outcomes)} destinations failed: "
            f"{', '.join(failed)}",
            highlight=False,
        )
        raise typer.Exit(EXIT_FAILURE)


def print_immich_outcome(outcome: Mapping[str, Any] | None) -> None:
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


# -- runs in the daemon ------------------------------------------------------------------------


def print_following(what: str, destination: str, started: Mapping[str, Any]) -> None:
    """The line before following a run in the daemon: running, already running or queued."""
    verb = "already running" if started["already_running"] else "running"
    if started["queued"]:
        verb = "queued"
    stdout.print(
        f"{what} with {destination} {verb} in the photos-sync daemon; "
        f"Ctrl-C stops watching, not the {what}",
        highlight=False,
    )


def print_detached(what: str, started: Mapping[str, Any], json_output: bool) -> None:
    """`--detach`: the run the daemon started (or already had)."""
    if json_output:
        print_json_line(started)
        return
    run = started["run"]
    stdout.print(
        f"{what} with {run['destination']} "
        + ("is already running" if started["already_running"] else "started")
        + f" in the daemon (run {run['id']}); see `photos-sync backup --status`",
        highlight=False,
    )


def print_detached_each(started: Mapping[str, Any], json_output: bool) -> None:
    """`--detach` with several destinations: a line for each run the daemon queued, one on
    stderr for each it refused (then exit 1)."""
    if json_output:
        print_json_line(started)
    for entry in started["runs"]:
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
    if any("error" in entry for entry in started["runs"]):
        raise typer.Exit(EXIT_FAILURE)


def print_run_end(end: Mapping[str, Any], what: str, json_output: bool) -> None:
    """The end of a run followed in the daemon (its `run_ended` notification): the summary,
    then the errors; exit 2 for a usage problem, 1 for any other failure."""
    if end.get("error"):
        fail(str(end["error"]), EXIT_USAGE if end.get("error_code") == -32002 else EXIT_FAILURE)
    if end.get("cancelled"):
        fail(f"the {what} was cancelled in the daemon; progress is saved, run again to resume")
    result = end.get("result") or {}
    restore = end["run"].get("reason") == "restore"
    if json_output:
        print_json_line(end.get("result"))
    else:
        if restore:
            _print_selection(result)
        stdout.print(run_end_summary(end), highlight=False)
        if restore:
            _print_immich_restore(result)
    print_immich_outcome(result.get("immich"))
    if end.get("ok"):
        return
    problem = restore_problem(result, str((result.get("job") or {}).get("target_dir", "")))
    if restore and problem:
        stderr.print(problem, markup=False, highlight=False, soft_wrap=True)
    restore_error = result.get("error")
    if restore_error:
        stderr.print(f"[red]restore failed:[/red] {restore_error}; run it again to resume")
    skipped = result.get("skipped") or []
    if skipped:  # each was named as it happened ("NOT restored: ...")
        stderr.print(f"{plural(len(skipped), 'file')} not restored (duplicate names, listed above)")
    for job in result.get("jobs") or []:
        if job.get("error_message") and job["status"] != JobStatus.COMPLETED:
            line = f"[red]{job['folder']}/:[/red] {escape(job['error_message'])}"
            stderr.print(line, highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_FAILURE)


def run_end_summary(end: Mapping[str, Any]) -> str:
    """The summary line of a run that ended in the daemon: a backup's or a restore's."""
    result = end.get("result") or {}
    destination = end["run"]["destination"]
    if end["run"].get("reason") != "restore":
        return run_summary({"destination": destination, **result})
    job = result.get("job") or {}
    target = str(job.get("target_dir", "the target folder"))
    line = restore_line(
        int(result.get("files", 0)),
        result.get("bytes", 0),
        target,
        dry_run=bool(end["run"].get("dry_run")),
        source=destination,
    )
    if result.get("differ"):
        from photos_sync.engine.restore import differ_note

        line += "\n" + differ_note(
            int(result["differ"]), list(result.get("differ_paths") or []), target
        )
    return line


def print_daemon_status(daemon: Any) -> None:
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
        from photos_sync.core.units import from_iso

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


def print_status(document: Mapping[str, Any], json_output: bool) -> None:
    """`backup --status`: destinations, jobs, restores and the daemon, or the JSON document."""
    from photos_sync.cli import render

    if json_output:
        print_json_line(document)
        return
    render.print_status(stdout, document)
    render.print_restores(stdout, document)
    print_daemon_status(document.get("daemon"))


def print_check(report: CheckReport, json_output: bool) -> None:
    """`backup --check`: one line per prerequisite; exit 1 if one is missing."""
    from photos_sync.engine.check import render_checks

    if json_output:
        print_json_line(report.as_dict())
    else:
        for line in render_checks(report):
            stdout.print(line, highlight=False, soft_wrap=True)
    if not report.ok:
        raise typer.Exit(EXIT_FAILURE)


# -- restores ----------------------------------------------------------------------------------


def restore_line(
    files: int, size: int, target: str, *, dry_run: bool, source: str | None = None
) -> str:
    """'restored 3 files (1.2 MiB) [from nas] into /srv/r' (or 'would restore', dry run)."""
    from photos_sync.core.units import human_bytes

    verb = "would restore" if dry_run else "restored"
    origin = f"from {source} " if source is not None else ""
    return f"{verb} {plural(files, 'file')} ({human_bytes(size)}) {origin}into {target}"


def print_restore_result(
    result: RestoreResult, target: Path, *, dry_run: bool, json_output: bool
) -> None:
    """The end of a foreground restore; exit 1 on an error or files left out."""
    document = result.as_dict()
    if json_output:
        print_json_line(document)
    else:
        _print_selection(document)
        line = restore_line(result.files, result.bytes, str(target), dry_run=dry_run)
        stdout.print(line, highlight=False)
        if result.differ_count:
            from photos_sync.engine.restore import differ_note

            stdout.print(
                differ_note(result.differ_count, result.differ, str(target)),
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
        _print_immich_restore(document)
    if result.error:
        fail(f"restore failed: {result.error}; run the same command again to resume")
    if result.skipped:  # each was named as it happened ("NOT restored: ...")
        fail(f"{plural(len(result.skipped), 'file')} not restored (duplicate names, listed above)")
    problem = restore_problem(document, str(target))
    if problem:
        fail(problem)


def _say(text: str) -> None:
    stdout.print(text, markup=False, highlight=False, soft_wrap=True)


def _print_selection(result: Mapping[str, Any]) -> None:
    """A restore by meaning: what the dump chose (before the line that says what came back)."""
    selection = result.get("selection")
    if selection:
        _say(str(selection["summary"]))


def _print_immich_restore(result: Mapping[str, Any]) -> None:
    """`restore --immich`: the dump, the markers, the check and the next steps."""
    immich = result.get("immich_restore")
    if not immich:
        return
    version = f"Immich {immich['immich_version']}, " if immich.get("immich_version") else ""
    _say(f"database dump: backups/{immich['dump']} ({version}{immich.get('dump_format')})")
    if immich.get("markers"):
        folders = ", ".join(marker.partition("/")[0] for marker in immich["markers"])
        _say(f"Immich's .immich markers are in {folders}")
    check = immich.get("check")
    if check:
        _say(str(check["summary"]))
    if immich.get("next_steps"):
        _say("next steps:")
        for step in immich["next_steps"]:
            _say(f"  {step}")


def restore_problem(result: Mapping[str, Any], target: str) -> str | None:
    """The line that makes a restore by meaning or a `--immich` restore fail although every
    copy worked: chosen files the backup lacked, or files the database needs that the
    restored tree lacks; None when there is none."""
    selection = result.get("selection") or {}
    if selection.get("not_in_backup"):
        count = int(selection["not_in_backup"])
        shown = ", ".join(selection.get("not_in_backup_paths") or [])
        return (
            f"{plural(count, 'chosen file')} {'is' if count == 1 else 'are'} not in the backup "
            f"(e.g. {shown}): the database dump names {'it' if count == 1 else 'them'} but no "
            "backup run sent it; run `photos-sync verify` to see what else is missing"
        )
    check = (result.get("immich_restore") or {}).get("check") or {}
    if check.get("missing"):
        count = int(check["missing"])
        shown = ", ".join(check.get("first_missing") or [])
        return (
            f"{plural(count, 'file')} the database needs {'is' if count == 1 else 'are'} not in "
            f"{target} (e.g. {shown}): Immich will show {'its asset' if count == 1 else 'those'}"
            " broken; restore with --as-of an earlier time, or accept the loss"
        )
    return None


def print_archive_listing(rows: Sequence[Mapping[str, Any]], path: str, json_output: bool) -> None:
    """`restore --list-deleted`: what the archive holds under `path`, one line per copy."""
    from photos_sync.core.names import spelled, twin_paths
    from photos_sync.core.units import human_bytes

    if json_output:
        print_json_line({"archived": rows})
        return
    if not rows:
        stdout.print(f"the archive holds nothing under {path or 'the backup'}")
    twins = twin_paths([(row["run"], row["path"]) for row in rows])
    for row in rows:
        note = "" if row["utf8"] else "  (name not valid UTF-8: \\xNN is a raw byte)"
        if (row["run"], row["path"]) in twins:
            note += f"  (another name looks the same; this one is {spelled(row['path'])})"
        stdout.print(
            f"{row['run']}  {human_bytes(row['size']):>10}  {row['path']}{note}",
            highlight=False,
            markup=False,
        )


# -- verify ------------------------------------------------------------------------------------

#: Paths newer than the backup listed by a human-readable verify (--json lists them all).
VERIFY_NEWER_SHOWN = 20
_CHANGE_LABELS = {
    "added": "added at the source",
    "modified": "modified at the source",
    "deleted": "deleted at the source",
    "marker": "Immich's marker, rewritten at each start",
}


def print_verify(report: VerifyReport) -> None:
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
    _print_verify_problems(report)


def _print_verify_problems(report: VerifyReport) -> None:
    """Every file missing, differing or unreadable, one line each on stderr."""
    from photos_sync.core.names import display_path

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


def print_verify_each(results: Sequence[VerifyReport | tuple[str, str]], json_output: bool) -> None:
    """`verify` of several destinations: each report, a line for each one that could not be
    verified (a (name, error) pair); exit 1 if any failed."""
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
        print_json_line({"ok": not failed, "destinations": items})
    for result in results:
        if isinstance(result, tuple):
            stderr.print(
                f"[red]{result[0]}:[/red] not verified: {result[1]}",
                highlight=False,
                soft_wrap=True,
            )
        elif not json_output:
            print_verify(result)
    if failed:
        stderr.print(
            f"[red]error:[/red] {len(failed)} of {len(results)} destinations failed to verify: "
            f"{', '.join(str(name) for name in failed)}",
            highlight=False,
        )
        raise typer.Exit(EXIT_FAILURE)


# -- destinations ------------------------------------------------------------------------------


def print_setup_outcome(settings: Settings, outcome: SetupOutcome, json_output: bool) -> None:
    """After `--setup`: where the destination is, what was created, where its keys are, and
    the next command to run."""
    destination = outcome.destination
    if json_output:
        print_json_line(destination.as_dict())
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


def untouched_by_removal(plan: RemovalPlan) -> str:
    """What removing a destination leaves alone: its files, and its 1Password item."""
    untouched = f"the backed-up files in {plan.location}"
    if plan.op_item:
        untouched += f" and the {plan.op_item}"
    return untouched


def print_removal_notice(plan: RemovalPlan) -> None:
    """Before `--remove` asks: what goes and what stays."""
    stdout.print(
        f"Removing destination {plan.name!r} deletes its settings, job history and manifest "
        f"from photos-sync. Untouched: {untouched_by_removal(plan)}.",
        highlight=False,
        soft_wrap=True,
    )


def print_removed(plan: RemovalPlan, removed_jobs: int) -> None:
    """After `--remove`: what went, what stayed."""
    stdout.print(
        f"removed destination {plan.name!r}, its job history ({removed_jobs} jobs) and its "
        f"manifest from photos-sync; {untouched_by_removal(plan)} are untouched",
        highlight=False,
        soft_wrap=True,
    )


def print_key_file_fate(plan: RemovalPlan, key_file: Path | None, delete_key_file: bool) -> None:
    """After `--remove`: what became of the key file (deleted, kept, shared, none)."""
    if key_file is not None and delete_key_file:
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


def print_lines(lines: Sequence[str]) -> None:
    """Lines already worded (a plan, a summary), each as it is."""
    for line in lines:
        stdout.print(line, highlight=False, soft_wrap=True)


def print_secret_kit(text: str) -> None:
    """The recovery kit on stdout, with a warning when a person is looking."""
    if sys.stdout.isatty():
        stderr.print("[yellow]SECRET: this text decrypts your backup; store it safely.[/yellow]")
    sys.stdout.write(text)
