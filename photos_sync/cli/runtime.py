"""How a command runs: its settings checked, its coroutine on an event loop that SIGTERM and
Ctrl-C cancel, its store opened and closed, and known errors turned into one line.

Nothing heavy at import time: the runner, SQLite and structlog load when a command needs them.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from photos_sync.cli.console import EXIT_USAGE, fail, warn
from photos_sync.core.config import ConfigError, Settings
from photos_sync.storage.settings_io import load_settings

if TYPE_CHECKING:
    from photos_sync.storage.store import Store

T = TypeVar("T")


def known_errors() -> tuple[type[BaseException], ...]:
    """Errors that carry a one-line message for the user (imported only when one happened)."""
    from photos_sync.core.destinations import DestinationError
    from photos_sync.core.events import RunRefused
    from photos_sync.credentials.keyfile import SecretsError
    from photos_sync.storage.store import StoreError
    from photos_sync.system.execute import RcloneNotFound

    return (ConfigError, StoreError, RunRefused, DestinationError, SecretsError, RcloneNotFound)


def fail_on_known_error(exc: Exception) -> None:
    """Exit with one line if `exc` is a usage problem (2) or another known error (1); return
    for anything else (the caller re-raises it)."""
    from photos_sync.core.events import UsageProblem

    if isinstance(exc, UsageProblem):
        fail(str(exc), EXIT_USAGE)
    if isinstance(exc, known_errors()):
        fail(str(exc))


def fail_on_os_error(exc: Exception) -> None:
    """Exit with one line for a permission problem or a full disk; return for other errors."""
    if isinstance(exc, PermissionError):
        fail(f"permission denied: {exc.filename}: check the owner and mode of that path")
    if isinstance(exc, OSError) and exc.errno == 28:
        fail(f"no space left on device ({exc.filename or 'data dir'}): free some space")


def run_async(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine; SIGTERM and SIGINT cancel it (so jobs are saved as INTERRUPTED),
    and known errors become one line and an exit code."""

    async def main() -> T:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        return await make()

    try:
        return asyncio.run(main())
    except asyncio.CancelledError:
        fail("interrupted: progress is saved; run the same command again to resume")
    except Exception as exc:
        fail_on_known_error(exc)
        raise


def settings_or_exit(uses: Iterable[str], command: str, *, warn_unused: bool = True) -> Settings:
    """The settings for `command`, which reads the variables `uses`: exit 2 with one line
    naming each malformed one. Malformed variables it does not read (unless `warn_unused` is
    off, for `--check`, which lists them itself), unknown names and unreadable `.env` lines
    are warnings on stderr."""
    settings = load_settings()
    for notice in settings.notices:
        warn(notice)
    try:
        settings.require(uses)
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    if warn_unused:
        for problem in settings.unused_problems(uses):
            warn(f"{problem} ({command} does not use it)")
    return settings


def configure_logging(log_path: Path | None) -> None:
    """Structured logs to `log_path` (None: nowhere); structlog loads only here."""
    from photos_sync.system.logs import configure_logging as configure

    configure(log_path)


async def with_store(settings: Settings, body: Callable[[Store], Awaitable[T]]) -> T:
    """`body` with the data dir's store open; closed afterwards, whatever happens."""
    from photos_sync.storage.store import Store

    store = await Store.open(settings.db_path)
    try:
        return await body(store)
    finally:
        await store.close()


async def destination_names(store: Store) -> list[str]:
    return [d.name for d in await store.list_destinations()]


def require_destination(settings: Settings, name: str) -> None:
    """Exit 2 with the known names unless destination `name` exists."""
    from photos_sync.core.destinations import unknown_destination_message

    names = run_async(lambda: with_store(settings, destination_names))
    if name not in names:
        fail(unknown_destination_message(name, names), EXIT_USAGE)
