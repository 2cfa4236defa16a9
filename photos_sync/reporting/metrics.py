"""Prometheus metrics: gathered from the store, written to a file (the text is built by the pure
photos_sync.core.metrics_exposition).

`collect` gathers a status document and the run history from the store; `write_textfile`
writes the text atomically for node_exporter's textfile collector (BACKUP_METRICS_FILE). The
daemon serves the same text over HTTP when BACKUP_METRICS_ADDR is set
(photos_sync_daemon.metrics_server).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from photos_sync.core.config import Settings
from photos_sync.core.metrics_exposition import (
    CONTENT_TYPE,
    metrics_addr,
    metrics_file,
    render_metrics,
)
from photos_sync.storage.store import Store
from photos_sync.system.logs import get_logger

__all__ = ["CONTENT_TYPE", "collect", "metrics_addr", "metrics_file", "write_textfile"]

log = get_logger("photos_sync.reporting.metrics")


async def collect(
    settings: Settings, store: Store, document: Mapping[str, Any] | None = None
) -> str:
    """Metrics text from the store (and `document`, e.g. the daemon's live status)."""
    from photos_sync.reporting.history import load_history
    from photos_sync.reporting.status import gather_status

    if document is None:
        document = await gather_status(settings, store)
    runs = await load_history(store, limit=None)
    return render_metrics(document, runs)


def write_atomically(path: Path, text: str) -> None:
    """Write `text` to `path` via a temporary file in the same folder and a rename, so the
    textfile collector never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


async def write_textfile(
    settings: Settings, store: Store, document: Mapping[str, Any] | None = None
) -> Path | None:
    """Write BACKUP_METRICS_FILE if set; never raises (a failure is logged)."""
    path = metrics_file(settings.extra)
    if path is None:
        return None
    try:
        write_atomically(path, await collect(settings, store, document))
    except Exception as exc:
        log.warning("metrics_file_failed", path=str(path), error=str(exc))
        return None
    return path
