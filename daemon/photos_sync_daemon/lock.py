"""One daemon per data dir: an exclusive flock on `<data dir>/daemon.lock`, which names the pid.

The kernel releases the lock when its holder dies, so a crash never leaves a stale lock; the
pid written inside is for the messages shown to a second daemon and to the CLI. The CLI asks
whether a daemon runs by taking a shared lock for an instant
(photos_sync.system.control_socket), so a
daemon that finds the lock taken but no pid in it tries again briefly before giving up.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path

from photos_sync.storage.datadir import ensure_data_dir, open_private
from photos_sync.system.control_socket import LOCK_FILE, read_lock_pid

#: Tries, and the pause between them, while the lock is held by something that wrote no pid
#: (a CLI's probe holds it for microseconds; a daemon writes its pid right after locking).
LOCK_TRIES = 50
LOCK_RETRY_PAUSE = 0.01


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
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock and write our pid into it; AlreadyRunning if someone has it.

        DataDirError (photos_sync.storage.datadir) if the data dir is unsafe to use.
        """
        ensure_data_dir(self.path.parent)
        fd = open_private(self.path, os.O_RDWR | os.O_CREAT)
        for attempt in range(LOCK_TRIES):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                pid = read_lock_pid(fd)
                if pid is not None or attempt == LOCK_TRIES - 1:
                    os.close(fd)
                    raise AlreadyRunning(self.path, pid) from None
                # No event tells when a flock is released; the holder is a probe or a daemon
                # that is about to write its pid, either way a matter of microseconds.
                time.sleep(LOCK_RETRY_PAUSE)
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
