"""`photos-sync daemon`: the daemon in the foreground, or its systemd/launchd service
installed (`--install`) or removed (`--uninstall`)."""

from __future__ import annotations

import os
from datetime import datetime
from typing import TYPE_CHECKING

import typer

from photos_sync.cli.console import EXIT_USAGE, fail, stdout
from photos_sync.cli.output import print_lines
from photos_sync.cli.prompts import confirm_install
from photos_sync.cli.runtime import run_async, with_store

if TYPE_CHECKING:
    from photos_sync.core.config import Settings
    from photos_sync.storage.store import Store


def run_daemon(settings: Settings) -> None:
    """The daemon in this process until SIGTERM/SIGINT; exits with its code."""
    from photos_sync_daemon import app as daemon_app

    raise typer.Exit(daemon_app.main(settings))


def install_service(settings: Settings, *, enable: bool, yes: bool) -> None:
    """`daemon --install`: show what will be written, ask, write, enable, sum up."""
    from photos_sync_daemon import service_files

    from photos_sync.system.service import ServiceError

    try:
        plan = service_files.plan_install(settings, environ=os.environ)
    except ServiceError as exc:
        fail(str(exc), EXIT_USAGE)
    print_lines(plan.describe())
    if not yes:
        confirm_install()
    try:
        done = service_files.apply_install(plan, enable=enable)
    except ServiceError as exc:
        fail(str(exc))
    now = datetime.now().astimezone()
    destinations, next_runs = run_async(
        lambda: with_store(settings, lambda s: _facts(s, settings, now))
    )
    print_lines(service_files.render_summary(plan, done, settings, destinations, next_runs, now))


async def _facts(
    store: Store, settings: Settings, now: datetime
) -> tuple[list[tuple[str, str]], dict[str, datetime]]:
    """For the closing summary: each destination and where it is, and the next runs."""
    from photos_sync.core.destinations import destination_type
    from photos_sync.system.service import upcoming_runs

    destinations = [
        (d.name, destination_type(d.type).describe(d)) for d in await store.list_destinations()
    ]
    return destinations, await upcoming_runs(settings.schedule, store, now)


def uninstall_service(settings: Settings, *, disable: bool) -> None:
    """`daemon --uninstall`: stop and remove the service; its .env stays."""
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
