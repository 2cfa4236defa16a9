"""Destinations: `backup --setup` (the wizard), `--setup-immich`, `--remove NAME`, and
`recovery-kit NAME`."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from photos_sync.cli.console import EXIT_INTERRUPTED, EXIT_USAGE, fail, stderr, stdout
from photos_sync.cli.daemon_calls import daemon_call
from photos_sync.cli.output import (
    print_key_file_fate,
    print_removal_notice,
    print_removed,
    print_secret_kit,
    print_setup_outcome,
)
from photos_sync.cli.prompts import (
    TerminalUI,
    ask_api_key,
    asks_questions,
    confirm_removal,
)
from photos_sync.cli.runtime import (
    configure_logging,
    fail_on_known_error,
    fail_on_os_error,
    run_async,
    settings_or_exit,
    with_store,
)

if TYPE_CHECKING:
    from photos_sync.core.config import Settings
    from photos_sync.core.records import Destination
    from photos_sync.engine.setup import SetupOutcome, SetupRequest
    from photos_sync.storage.store import Store

T = TypeVar("T")

SETUP_TYPES = ("b2", "s3", "local")


# -- --setup -----------------------------------------------------------------------------------


def setup(settings: Settings, request: SetupRequest, yes: bool, json_output: bool) -> None:
    """`backup --setup TYPE`: the wizard at a terminal, its steps as lines for a script."""
    from photos_sync.core.events import RunRefused, UsageProblem
    from photos_sync.engine.setup import SetupError, StepUI, run_setup

    interactive = asks_questions(yes)
    _check_setup_request(request, interactive=interactive)
    configure_logging(settings.log_path)

    def report(text: str) -> None:
        if not json_output:
            stdout.print(f"• {text}", highlight=False)

    ui: Any = TerminalUI(json_output) if interactive else StepUI(report, assume_yes=yes)

    async def body(store: Store) -> SetupOutcome:
        if (
            request.name
            and not yes
            and not interactive
            and await store.get_destination(request.name) is not None
        ):
            raise UsageProblem(f"destination {request.name!r} exists: add --yes to update it")
        try:
            return await run_setup(settings, store, request, ui)
        except SetupError as exc:
            raise RunRefused(str(exc)) from None

    outcome = _run_setup(lambda: with_store(settings, body))
    print_setup_outcome(settings, outcome, json_output)


def _check_setup_request(request: SetupRequest, *, interactive: bool) -> None:
    """Exit 2 on an unknown type or secrets store, or (for a script) a missing option."""
    kind = request.kind
    if kind not in SETUP_TYPES:
        fail(
            f"--setup {kind!r} is not a known type: use one of {', '.join(SETUP_TYPES)}", EXIT_USAGE
        )
    if request.secrets not in (None, "op", "file"):
        fail(f"--secrets {request.secrets!r} is unknown: use op or file", EXIT_USAGE)
    if request.append_only and kind == "local":
        fail(
            "--append-only needs cloud storage (s3 or b2): whoever controls this host can "
            "delete a local disk",
            EXIT_USAGE,
        )
    if interactive:
        return  # at a terminal the wizard asks for these; a script must give them
    if not request.name:
        fail("--setup needs --name NAME", EXIT_USAGE)
    if kind == "local" and request.path is None:
        fail("--setup local needs --path DIR", EXIT_USAGE)
    if kind != "local" and not request.bucket and request.secrets == "file":
        fail(f"--setup {kind} needs --bucket BUCKET", EXIT_USAGE)


def _run_setup(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """run_async for the wizard: Ctrl-C at a question or during the checks ends it with
    exit 130 and one line (nothing is saved before the last step, which finishes first)."""
    from photos_sync.engine.setup import SetupInterrupted

    async def main() -> T:
        task = asyncio.current_task()
        assert task is not None
        # SIGINT is left to asyncio.run (first Ctrl-C cancels this task) and to the prompts.
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await make()

    try:
        return asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError, SetupInterrupted):
        stderr.print("setup interrupted: nothing was saved", highlight=False)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except Exception as exc:
        fail_on_known_error(exc)
        fail_on_os_error(exc)
        raise


# -- --setup-immich ----------------------------------------------------------------------------


def setup_immich(settings: Settings, yes: bool) -> None:
    """`--setup-immich`: keep the Immich API key in secrets/immich.json (0600), test it."""
    from photos_sync.core.events import RunRefused
    from photos_sync.immich import server as immich

    if settings.immich_url is None:
        fail(
            "--setup-immich needs BACKUP_IMMICH_URL (e.g. http://localhost:2283) in the "
            "environment or a .env file",
            EXIT_USAGE,
        )
    key = os.environ.get("PHOTOS_SYNC_IMMICH_API_KEY", "").strip()
    if not key:
        if not asks_questions(yes):
            fail(
                "no API key: set PHOTOS_SYNC_IMMICH_API_KEY (keys are never taken from options)",
                EXIT_USAGE,
            )
        key = ask_api_key()
    configure_logging(settings.log_path)

    async def body() -> str:
        client = immich.ImmichClient(
            settings.immich_url or "",
            immich.ApiKey(key, "given to --setup-immich"),
            settings.immich_api_timeout,
        )
        try:
            user = await client.whoami()
        except immich.ImmichError as exc:
            raise RunRefused(f"{exc}; nothing was saved") from None
        if user.get("isAdmin") is False:
            raise RunRefused(
                "this API key belongs to a user who is not an admin: database backups need an "
                "admin's key; nothing was saved"
            )
        path = immich.store_api_key(settings, key)
        return f"Immich API key of {user.get('email') or user.get('name')} stored in {path}"

    stdout.print(run_async(body), highlight=False)


# -- --remove ----------------------------------------------------------------------------------


def remove(settings: Settings, name: str, yes: bool, delete_key_file: bool) -> None:
    """`--remove NAME`: photos-sync forgets the destination; its data stays (see removal.py).

    Two separate consents: one to remove the destination (the question, or --yes), one to
    delete its key file (a second question, or --delete-key-file). With --yes alone the key
    file is kept."""
    from photos_sync.engine.removal import busy_message, plan_removal, remove_destination

    plan = run_async(lambda: with_store(settings, lambda s: plan_removal(s, name)))
    busy = busy_message(settings, plan)
    if busy is not None:
        fail(busy)
    print_removal_notice(plan)
    interactive = asks_questions(yes)
    if not yes and not interactive:
        fail("--remove asks for confirmation: add --yes to run it unattended", EXIT_USAGE)
    key_file = plan.key_file if plan.key_file is not None and plan.key_file.exists() else None
    if interactive:
        delete_key_file = confirm_removal(name, key_file, delete_key_file)
    from_daemon = daemon_call(settings, "remove", {"destination": name})
    if from_daemon is not None:
        removed = int(from_daemon["removed_jobs"])
    else:
        removed = run_async(
            lambda: with_store(settings, lambda s: remove_destination(settings, s, name))
        )
    print_removed(plan, removed)
    if key_file is not None and delete_key_file:
        key_file.unlink(missing_ok=True)
    print_key_file_fate(plan, key_file, delete_key_file)


# -- recovery-kit ------------------------------------------------------------------------------


def recovery_kit(name: str) -> None:
    """`recovery-kit NAME`: rclone.conf text and plain rclone commands (SECRET) on stdout."""
    from photos_sync.core.events import UsageProblem

    settings = settings_or_exit((), "recovery-kit")

    async def body(store: Store) -> str:
        destination = await store.get_destination(name)
        if destination is None:
            names = ", ".join(d.name for d in await store.list_destinations()) or "none"
            raise UsageProblem(f"unknown destination {name!r}: known destinations are {names}")
        return await _kit_text(settings, store, destination)

    print_secret_kit(run_async(lambda: with_store(settings, body)))


async def _kit_text(settings: Settings, store: Store, destination: Destination) -> str:
    """The kit of `destination`: its secrets loaded, rclone's obscured forms, the text."""
    from photos_sync.core.destinations import destination_type
    from photos_sync.engine.destination import DestinationContext
    from photos_sync.reporting.recovery_kit import recovery_kit as kit_text

    secrets = await DestinationContext(settings, store).rclone_secrets(destination)
    return kit_text(
        destination.name,
        destination_type(destination.type).describe(destination),
        secrets.remotes(destination),
        secrets.password,
        secrets.salt,
    )
