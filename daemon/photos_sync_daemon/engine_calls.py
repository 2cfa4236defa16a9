"""How the daemon calls the engine: the one module here that builds a Runner, a Restorer or
a verify.

Each call reads the settings in force at that moment (they change on SIGHUP), so a run, a
restore or a verify started after a reload uses the new values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from photos_sync.core.events import ProgressSink
from photos_sync.engine.destination import DestinationContext
from photos_sync.engine.runner import Runner
from photos_sync.engine.verify import VerifyReport, verify

if TYPE_CHECKING:
    from photos_sync.core.config import Settings
    from photos_sync.core.events import RestoreRequest
    from photos_sync.engine.restore import RestoreResult
    from photos_sync.storage.store import Store

#: rclone's stats period while the daemon runs it (what subscribers and `status` see).
LIVE_INTERVAL = 1.0


class EngineCalls:
    """Runner, Restorer and verify for the daemon's store and current settings."""

    def __init__(self, settings: Callable[[], Settings], store: Store) -> None:
        self._settings = settings
        self._store = store

    def runner(self, sink: ProgressSink | None = None) -> Runner:
        """A Runner; with a `sink`, one that reports live progress every LIVE_INTERVAL."""
        if sink is None:
            return Runner(self._settings(), self._store)
        return Runner(self._settings(), self._store, sink=sink, live_interval=LIVE_INTERVAL)

    def destinations(self) -> DestinationContext:
        """Resolves, opens, locks and checks destinations with the current settings."""
        return DestinationContext(self._settings(), self._store)

    async def resolve(self, name: str | None) -> str:
        """The name of the destination `name` means (None: the only one); raises like the
        runner when there is none or it is unknown."""
        return (await self.destinations().resolve(name)).name

    async def restore(self, request: RestoreRequest, sink: ProgressSink) -> RestoreResult:
        from photos_sync.engine.restore import Restorer

        restorer = Restorer(self.destinations(), sink, live_interval=LIVE_INTERVAL)
        return await restorer.run(request)

    async def verify(self, destination: str) -> VerifyReport:
        return await verify(self.destinations(), destination)
