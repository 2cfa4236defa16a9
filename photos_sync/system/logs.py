"""structlog set-up: key=value lines to backup.log (overwritten each run) and optionally stderr.

Callers must never pass secrets to a log call; values that might carry them (rclone error
text) are passed through photos_sync.core.redact first.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

import structlog

from photos_sync.storage import datadir


class _TeeLogger:
    """A structlog logger that writes each rendered line to several text streams."""

    def __init__(self, streams: list[TextIO]) -> None:
        self._streams = streams
        self._lock = threading.Lock()

    def msg(self, message: str) -> None:
        with self._lock:
            for stream in self._streams:
                try:
                    stream.write(message + "\n")
                    stream.flush()
                except (OSError, ValueError):
                    pass  # a full disk or closed stream must not break a backup

    log = debug = info = warning = warn = error = critical = exception = fatal = msg


_open_files: list[TextIO] = []


def configure_logging(log_path: Path | None, *, to_stderr: bool = False) -> None:
    """Send structlog output to `log_path` (truncated, 0600, in the data dir) and, if asked,
    to stderr.

    An unwritable log file is not fatal: logging then goes to stderr only if requested.
    """
    for handle in _open_files:
        handle.close()
    _open_files.clear()
    streams: list[TextIO] = []
    if log_path is not None:
        try:
            datadir.ensure_data_dir(log_path.parent)
            handle = os.fdopen(datadir.open_private(log_path), "w", encoding="utf-8")
            _open_files.append(handle)
            streams.append(handle)
        except (OSError, datadir.DataDirError):
            pass  # the DB open that follows reports an unusable data dir in one line
    if to_stderr:
        streams.append(sys.stderr)
    logger = _TeeLogger(streams)

    def factory(*_args: Any) -> _TeeLogger:
        return logger

    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.KeyValueRenderer(
                key_order=["timestamp", "level", "event"], drop_missing=True
            ),
        ],
        logger_factory=factory,
        cache_logger_on_first_use=False,
    )


def get_logger(name: str = "photos_sync") -> Any:
    return structlog.get_logger(name)
