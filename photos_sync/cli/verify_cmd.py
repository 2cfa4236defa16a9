"""`photos-sync verify`: the backup checked against what the last completed backup sent, for
one destination or each in turn. With --json a whole document is printed whatever happens."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, NoReturn

import typer

from photos_sync.cli.console import EXIT_FAILURE, EXIT_USAGE, fail, print_json_line, stdout
from photos_sync.cli.output import print_verify, print_verify_each
from photos_sync.cli.runtime import (
    configure_logging,
    destination_names,
    known_errors,
    run_async,
    settings_or_exit,
    with_store,
)
from photos_sync.core.config import ConfigError
from photos_sync.storage.settings_io import load_settings

if TYPE_CHECKING:
    from photos_sync.cli.render import LiveView
    from photos_sync.core.config import Settings
    from photos_sync.engine.verify import VerifyReport
    from photos_sync.storage.store import Store

#: The settings `verify` reads.
VERIFY_USES = ("BACKUP_INCLUDE_GENERATED",)


def verify(to: str | None, *, sample: float, full: bool, json_output: bool) -> None:
    """The `verify` command once typer has parsed it (see app.verify for the options)."""
    from photos_sync.cli.render import LiveView

    mode = "full" if full else f"sample {sample:g}%"

    def give_up(message: str, code: int) -> NoReturn:
        # --json always prints a whole document, whatever went wrong
        if json_output:
            _print_failed_report(message, to, mode)
        fail(message, code)

    if not 0 <= sample <= 100:
        give_up("--sample takes a percentage from 0 to 100", EXIT_USAGE)
    if json_output:
        try:
            load_settings().require(VERIFY_USES)
        except ConfigError as exc:
            give_up(str(exc), EXIT_USAGE)
    settings = settings_or_exit(VERIFY_USES, "verify")
    configure_logging(None)
    view = LiveView(stdout, quiet=json_output)

    if to is None:
        names = run_async(lambda: with_store(settings, destination_names))
        if len(names) > 1:
            _verify_each(settings, names, view, full=full, sample=sample, json_output=json_output)
            return

    async def body(store: Store) -> VerifyReport:
        from photos_sync.reporting.metrics import write_textfile

        found = await _verify_one(settings, store, view, to, full=full, sample=sample)
        await write_textfile(settings, store)
        return found

    async def guarded() -> VerifyReport:
        stopping: tuple[type[BaseException], ...] = (*known_errors(), OSError)
        try:
            return await with_store(settings, body)
        except stopping as exc:
            if json_output:
                _print_failed_report(str(exc), to, mode)
            raise
        except asyncio.CancelledError:
            if json_output:
                _print_failed_report("interrupted: run the same command again", to, mode)
            raise

    report = run_async(guarded)
    if json_output:
        print_json_line(report.as_dict())
    else:
        print_verify(report)
    if not report.ok:
        raise typer.Exit(EXIT_FAILURE)


async def _verify_one(
    settings: Settings, store: Store, view: LiveView, name: str | None, *, full: bool, sample: float
) -> VerifyReport:
    """Verify one destination here, and tell the notifiers how it went."""
    from photos_sync.engine.destination import DestinationContext
    from photos_sync.engine.verify import verify as run_verify
    from photos_sync.reporting.notify import notify_verify

    found = await run_verify(
        DestinationContext(settings, store), name, sink=view, full=full, sample_percent=sample
    )
    await notify_verify(settings, found.as_dict())
    return found


def _print_failed_report(message: str, to: str | None, mode: str) -> None:
    """The --json document of a verify that could not run."""
    from photos_sync.engine.verify import failed_report

    print_json_line(failed_report(message, to, mode).as_dict())


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
    from photos_sync.core.destinations import DestinationError
    from photos_sync.core.events import RunRefused, UsageProblem
    from photos_sync.credentials.keyfile import SecretsError

    async def body(store: Store) -> list[VerifyReport | tuple[str, str]]:
        from photos_sync.reporting.metrics import write_textfile

        found: list[VerifyReport | tuple[str, str]] = []
        for name in names:
            try:
                found.append(
                    await _verify_one(settings, store, view, name, full=full, sample=sample)
                )
            except UsageProblem:
                raise
            except (RunRefused, DestinationError, SecretsError) as exc:
                found.append((name, str(exc)))
        await write_textfile(settings, store)
        return found

    print_verify_each(run_async(lambda: with_store(settings, body)), json_output)
