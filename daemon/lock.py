"""One daemon per data dir: an exclusive flock on `<data dir>/daemon.lock`, which names the pid.

The kernel releases the lock when its holder dies, so a crash never leaves a stale lock; the
pid written inside is only for the message shown to a second daemon.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from photos_sync.datadir import ensure_data_dir, open_private


class AlreadyRunning(RuntimeError):
    """Another daemon holds the data dir; `pid` is its process id when known."""

    def __init__(self, path: Path, pid: int | None) -> None:
        who = f"pid {pid}" if pid else "pid unknown"
        super().__init__(
            f"another photos-sync daemon is already running for this data dir ({who}, lock "
            f"{path}); stop it first, or use a different PHOTOS_SYNC_DATA_DIR"
        )
        self.pid = pid


class DataDirLock:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "daemon.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock and write our pid into it; AlreadyRunning if someone has it.

        DataDirError (photos_sync.datadir) if the data dir is unsafe to use.
        """
        ensure_data_dir(self.path.parent)
        fd = open_private(self.path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise AlreadyRunning(self.path, pid) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)  # closing drops the flock
        self._fd = None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 64, 0).decode().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None
