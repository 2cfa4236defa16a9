"""`photos-sync restore`: files back from a backup (in the daemon's queue when one runs, else
here): all of it, a path, a point in time, the files of an album, person, user or date
(`--album/--person/--user/--taken`), a whole Immich (`--immich`); and `--list-deleted`, what
the archive holds."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from photos_sync.cli.console import EXIT_USAGE, fail, stdout
from photos_sync.cli.daemon_calls import run_in_daemon
from photos_sync.cli.output import print_archive_listing, print_restore_result
from photos_sync.cli.runtime import run_async, settings_or_exit, with_store

if TYPE_CHECKING:
    from photos_sync.core.config import Settings
    from photos_sync.core.events import RestoreRequest
    from photos_sync.core.immich_select import Criteria
    from photos_sync.engine.restore import RestoreResult
    from photos_sync.storage.store import Store


def restore(
    source: str | None,
    to: Path | None,
    path: str,
    *,
    overwrite: bool,
    deleted: bool,
    as_of_raw: str | None,
    list_deleted: bool,
    dry_run: bool,
    json_output: bool,
    from_versions: bool = False,
    user: str | None = None,
    album: str | None = None,
    person: str | None = None,
    taken: str | None = None,
    immich: bool = False,
) -> None:
    """The `restore` command once typer has parsed it (see app.restore for the options)."""
    settings = settings_or_exit(() if list_deleted else ("BACKUP_BWLIMIT",), "restore")
    if deleted and as_of_raw:
        fail("--deleted and --as-of cannot be combined", EXIT_USAGE)
    if from_versions and not as_of_raw:
        fail(
            "--from-versions goes with --as-of TIME: the moment whose object versions to read",
            EXIT_USAGE,
        )
    criteria = _criteria(user, album, person, taken)
    _check_combinations(criteria, immich, deleted=deleted, list_deleted=list_deleted, path=path)
    if list_deleted:
        _list_archive(settings, source, path, json_output)
        return
    if to is None:
        fail("restore needs --to DIR (the folder to restore into)", EXIT_USAGE)
    mode = "deleted" if deleted else "as-of" if as_of_raw else "current"
    moment = parse_moment(as_of_raw) if as_of_raw else None
    restore_params: dict[str, Any] = {
        "to": str(to.expanduser().resolve()),
        "path": path,
        "mode": mode,
        "as_of": moment.isoformat() if moment else None,
        "overwrite": overwrite,
        "immich": immich,
        "from_versions": from_versions,
        **(criteria.as_params() if criteria is not None else {}),
    }
    # With a daemon up, the restore joins its queue (it survives this terminal, and never
    # runs at the same time as a backup); else it runs here.
    if run_in_daemon(settings, source, dry_run, False, json_output, False, restore_params):
        return
    from photos_sync.core.events import RestoreRequest

    request = RestoreRequest(
        source,
        to,
        path,
        mode,
        moment,
        overwrite,
        dry_run,
        selection=criteria,
        immich=immich,
        from_versions=from_versions,
    )
    result = _restore_here(settings, request, json_output)
    print_restore_result(result, to, dry_run=dry_run, json_output=json_output)


def _criteria(
    user: str | None, album: str | None, person: str | None, taken: str | None
) -> Criteria | None:
    """The restore-by-meaning criteria given (exit 2 for a malformed one), None for none."""
    from photos_sync.core.immich_select import parse_criteria

    try:
        criteria = parse_criteria(user, album, person, taken)
    except ValueError as problem:
        fail(str(problem), EXIT_USAGE)
    return None if criteria.empty else criteria


def _check_combinations(
    criteria: Criteria | None, immich: bool, *, deleted: bool, list_deleted: bool, path: str
) -> None:
    """Exit 2 for flags that cannot go together."""
    chosen = "--user/--album/--person/--taken" if criteria is not None else None
    if immich and chosen:
        fail(f"--immich restores everything: it cannot be combined with {chosen}", EXIT_USAGE)
    for flag in filter(None, (chosen, "--immich" if immich else None)):
        if deleted:
            fail(f"{flag} cannot be combined with --deleted (use --as-of TIME)", EXIT_USAGE)
        if list_deleted:
            fail(f"{flag} cannot be combined with --list-deleted", EXIT_USAGE)
    if immich and path:
        fail(
            "--immich restores all of Immich's folders: it cannot be combined with --path",
            EXIT_USAGE,
        )


def _restore_here(settings: Settings, request: RestoreRequest, json_output: bool) -> RestoreResult:
    """Run the restore in this process, its progress on the terminal."""
    from photos_sync.cli.render import LiveView
    from photos_sync.engine.destination import DestinationContext
    from photos_sync.engine.restore import Restorer

    view = LiveView(stdout, quiet=json_output)

    async def body(store: Store) -> RestoreResult:
        live = 1.0 if view.interactive else None
        restorer = Restorer(DestinationContext(settings, store), view, live_interval=live)
        with view:
            return await restorer.run(request)

    return run_async(lambda: with_store(settings, body))


def _list_archive(settings: Settings, source: str | None, path: str, json_output: bool) -> None:
    """`--list-deleted`: the archived copies under `path`."""
    from photos_sync.engine.destination import DestinationContext
    from photos_sync.engine.restore import archive_listing

    rows = run_async(
        lambda: with_store(
            settings, lambda s: archive_listing(DestinationContext(settings, s), source, path)
        )
    )
    print_archive_listing(rows, path, json_output)


def parse_moment(raw: str) -> datetime:
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
