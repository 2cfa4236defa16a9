"""What surrounds every backup run, in the foreground and in the daemon alike: the notifiers
watch it, and the metrics textfile is rewritten when it ends."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from photos_sync.core.config import Settings
from photos_sync.core.events import ProgressSink, RunRequest
from photos_sync.reporting import metrics
from photos_sync.reporting.notify import Notifier
from photos_sync.storage.store import Store


@contextlib.asynccontextmanager
async def reported_run(
    settings: Settings, store: Store, request: RunRequest, sink: ProgressSink
) -> AsyncIterator[ProgressSink]:
    """Around one backup run: yields the sink to give the runner (it also feeds the notifiers;
    a run that is refused or crashes is a failure notice). When the run ends, whatever the
    outcome, the metrics textfile is rewritten, except after a dry run."""
    try:
        async with Notifier.from_settings(settings).watching(request, sink) as watched:
            yield watched
    finally:
        if not request.dry_run:
            await metrics.write_textfile(settings, store)
