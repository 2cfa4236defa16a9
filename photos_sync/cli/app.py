"""The `photos-sync` command line (typer): the commands, their options and help, and the
dispatch to the modules that do the work (backup_cmd, restore_cmd, verify_cmd,
destination_cmd, service_cmd). Thin: what a command does lives there, what it prints in
output.py, what it asks in prompts.py.

Exit codes: 0 success, 1 failure, 2 usage error. Errors are one line on stderr, never a
traceback. `--help` and `backup --status` import neither the runner, SQLite nor rich's live
display (see docs/BENCHMARKS.md): the command modules import those when they need them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from photos_sync import __version__
from photos_sync.cli.console import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, fail, stderr, stdout
from photos_sync.cli.runtime import require_destination, settings_or_exit
from photos_sync.core.config import DAEMON_SETTINGS, RUN_SETTINGS, STATUS_SETTINGS, Settings


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
        "  photos-sync backup --full                full sync: list the destination, rebuild "
        "the manifest\n\n"
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
    full: Annotated[
        bool,
        typer.Option(
            "--full",
            help="A full sync: list the destination and rebuild the manifest (not incremental).",
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
        bool, typer.Option("--reset", help="Clear job state and the manifest (not the backup).")
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
    append_only: Annotated[
        bool,
        typer.Option(
            "--append-only",
            help="With --setup s3: a bucket with versioning and Object Lock, checked before "
            "saving, so the keys on this host cannot destroy the backup.",
        ),
    ] = False,
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
    mode = _only_mode(
        status=status,
        history=history,
        reset=reset,
        setup=setup is not None,
        check=check,
        setup_immich=setup_immich,
        remove=remove is not None,
    )
    if (watch or once) and not status:
        fail("--watch and --once go with --status", EXIT_USAGE)
    if delete_key_file and remove is None:
        fail("--delete-key-file goes with --remove NAME", EXIT_USAGE)
    if full and mode is not None:
        fail(f"--full goes with a backup run, not with {mode}", EXIT_USAGE)
    if append_only and setup is None:
        fail("--append-only goes with --setup s3|b2", EXIT_USAGE)
    uses = _settings_used_by(mode)
    if append_only:  # the default lock of an append-only S3 destination
        uses = (*uses, "BACKUP_OBJECT_LOCK_DAYS", "BACKUP_KEEP_DELETED_DAYS")
    settings = settings_or_exit(
        uses,
        f"backup {mode}" if mode else "backup",
        warn_unused=mode != "--check",
    )
    from photos_sync.cli import backup_cmd, destination_cmd

    if status and (watch or once):
        _watch(settings, to, once=once, json_output=json_output)
    if history:
        _history(settings, to, json_output)
    if status:
        backup_cmd.show_status(settings, json_output, to)
    elif remove is not None:
        destination_cmd.remove(settings, remove, yes, delete_key_file)
    elif reset:
        backup_cmd.reset(settings, to, yes)
    elif check:
        backup_cmd.check(settings, json_output)
    elif setup_immich:
        destination_cmd.setup_immich(settings, yes)
    elif setup is not None:
        from photos_sync.engine.setup import SetupRequest

        destination_cmd.setup(
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
                append_only=append_only,
            ),
            yes,
            json_output,
        )
    else:
        backup_cmd.run_backup(settings, to, dry_run, force, json_output, detach, full=full)


def _watch(settings: Settings, to: str | None, *, once: bool, json_output: bool) -> NoReturn:
    """`--status --watch` (or `--once`): the live view, for people only."""
    from photos_sync.cli.watch import watch_status

    if json_output:
        fail("--watch is for people: use --status --json for scripts", EXIT_USAGE)
    if to is not None:
        require_destination(settings, to)
    raise typer.Exit(watch_status(settings, stdout, once=once, destination=to))


def _history(settings: Settings, to: str | None, json_output: bool) -> NoReturn:
    """`--history`: past runs (of destination `to`, or all)."""
    from photos_sync.cli.watch import print_history

    if to is not None:
        require_destination(settings, to)
    raise typer.Exit(print_history(settings, stdout, to, json_output))


def _only_mode(**modes: bool) -> str | None:
    """The one mode flag given to `backup` ("--status", ...), None for a plain backup; exit 2
    when several are."""
    given = [f"--{name.replace('_', '-')}" for name, on in modes.items() if on]
    if len(given) > 1:
        fail(f"{' and '.join(given)} cannot be combined", EXIT_USAGE)
    return given[0] if given else None


def _settings_used_by(mode: str | None) -> tuple[str, ...]:
    """The variables a `backup` mode reads (the others are only warned about)."""
    if mode is None:
        return RUN_SETTINGS
    if mode == "--status":
        return STATUS_SETTINGS
    if mode == "--setup-immich":
        return ("BACKUP_IMMICH_URL", "BACKUP_IMMICH_API_TIMEOUT")
    return ()


@app.command(
    "recovery-kit", cls=_Command, epilog="Example:\n\n  photos-sync recovery-kit nas > kit.txt"
)
def recovery_kit_command(
    name: Annotated[str, typer.Argument(help="Destination name.")],
) -> None:
    """Print rclone.conf text and plain rclone commands that restore without photos-sync.

    The output is SECRET: it holds the encryption password.
    """
    from photos_sync.cli.destination_cmd import recovery_kit

    recovery_kit(name)


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
    from photos_sync.cli import service_cmd

    if install:
        service_cmd.install_service(settings, enable=not no_enable, yes=yes)
    elif uninstall:
        service_cmd.uninstall_service(settings, disable=not no_enable)
    else:
        service_cmd.run_daemon(settings)


@app.command(
    cls=_Command,
    epilog=(
        "Examples:\n\n"
        "  photos-sync restore --from nas --to /srv/immich-restore            everything\n\n"
        "  photos-sync restore --from nas --to /tmp/r --path library/anna/2024   one folder\n\n"
        "  photos-sync restore --from nas --list-deleted --path upload        the archive\n\n"
        "  photos-sync restore --from nas --to /tmp/r --deleted --path library/anna/2024/a.jpg\n\n"
        "  photos-sync restore --from nas --to /tmp/r --as-of 2026-11-01 --path library\n\n"
        '  photos-sync restore --from nas --to /tmp/r --album "Holidays 2024"   one album\n\n'
        "  photos-sync restore --from nas --to /tmp/r --person Anna --taken 2019-06\n\n"
        "  photos-sync restore --from nas --to /srv/immich --immich   a whole Immich, then what "
        "to do"
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
    from_versions: Annotated[
        bool,
        typer.Option(
            "--from-versions",
            help="With --as-of: read the storage's own object versions at TIME (s3, b2), for "
            "when the archive itself was tampered with.",
        ),
    ] = False,
    user: Annotated[
        str | None,
        typer.Option(
            "--user", metavar="EMAIL", help="Only the assets this user owns (Immich's database)."
        ),
    ] = None,
    album: Annotated[
        str | None,
        typer.Option("--album", metavar="NAME", help="Only the assets of this album."),
    ] = None,
    person: Annotated[
        str | None,
        typer.Option("--person", metavar="NAME", help="Only the assets this person is in."),
    ] = None,
    taken: Annotated[
        str | None,
        typer.Option(
            "--taken",
            metavar="YYYY[-MM[-DD]]",
            help="Only the assets taken in this year, month or day.",
        ),
    ] = None,
    immich: Annotated[
        bool,
        typer.Option(
            "--immich",
            help="Restore a whole Immich into an empty folder: its folders, the database dump, "
            "the .immich markers; then check it and print the next steps.",
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be restored.")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Restore files from a backup, decrypted, into a folder. Never overwrites without
    --overwrite; an interrupted restore continues when run again. --user, --album, --person
    and --taken choose files from Immich's database dump (together: all must hold)."""
    from photos_sync.cli.restore_cmd import restore as run_restore

    run_restore(
        source,
        to,
        path,
        overwrite=overwrite,
        deleted=deleted,
        as_of_raw=as_of_raw,
        list_deleted=list_deleted,
        dry_run=dry_run,
        json_output=json_output,
        from_versions=from_versions,
        user=user,
        album=album,
        person=person,
        taken=taken,
        immich=immich,
    )


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
    from photos_sync.cli.verify_cmd import verify as run_verify

    run_verify(to, sample=sample, full=full, json_output=json_output)


def _fast_status(argv: list[str]) -> int | None:
    """`photos-sync backup --status [--json]` without typer's start-up (~100 ms): the command
    a monitoring script or a prompt runs most. Exactly the same code and output as through
    typer; None when `argv` is anything else."""
    if not argv or argv[0] != "backup" or "--status" not in argv[1:]:
        return None
    if not set(argv[1:]) <= {"--status", "--json"} or len(argv[1:]) != len(set(argv[1:])):
        return None
    from photos_sync.cli.backup_cmd import show_status

    try:
        show_status(settings_or_exit(STATUS_SETTINGS, "backup --status"), "--json" in argv)
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
