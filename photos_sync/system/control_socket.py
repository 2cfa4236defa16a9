"""Where the daemon's control socket lives, and whether a daemon owns a data dir.

The daemon and the CLI must agree on both. The daemon binds where `socket_location` says and
the CLI connects there. Whether a daemon runs for a data dir is decided by its lock
(`lock_holder`), never by whether a connect succeeded: a daemon that is busy, stopped or
overloaded refuses connections too, and the CLI must not start a foreground run beside it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from dataclasses import dataclass
from pathlib import Path

#: The daemon's lock in the data dir; it holds an exclusive flock on it for its whole life.
LOCK_FILE = "daemon.lock"
#: In a shared sticky folder such as /tmp the socket goes into `<folder>/photos-sync-<uid>/`.
PRIVATE_PREFIX = "photos-sync-"


def others_can_write(info: os.stat_result) -> bool:
    """True if users other than the owner may create, rename or remove entries in the folder."""
    return bool(info.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def is_sticky(info: os.stat_result) -> bool:
    """The sticky bit: only an entry's owner (and the folder's owner, and root) may remove it."""
    return bool(info.st_mode & stat.S_ISVTX)


def private_folder_name(uid: int) -> str:
    return f"{PRIVATE_PREFIX}{uid}"


def socket_location(configured: Path) -> Path:
    """The socket path to bind and to connect to for PHOTOS_SYNC_SOCKET=`configured`.

    That is `configured` itself, unless its folder is a shared sticky one such as /tmp or
    /dev/shm: there another user could take the name first, so the socket goes into a private
    subfolder, `<folder>/photos-sync-<uid>/<name>`. Looks at the folder only; creates nothing.
    """
    try:
        info = configured.parent.stat()
    except OSError:
        return configured
    if stat.S_ISDIR(info.st_mode) and is_sticky(info) and others_can_write(info):
        return configured.parent / private_folder_name(os.getuid()) / configured.name
    return configured


@dataclass(frozen=True)
class LockHolder:
    """A process holds the data dir's daemon lock; `pid` is the one it wrote, when readable."""

    pid: int | None


def lock_holder(data_dir: Path) -> LockHolder | None:
    """Who holds `<data_dir>/daemon.lock`: None when no process does (no daemon runs for it).

    Takes a shared lock for an instant to find out (a daemon starting at that instant retries,
    see photos_sync_daemon.lock). OSError when the lock file exists but cannot be opened.
    """
    try:
        fd = os.open(data_dir / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return LockHolder(read_lock_pid(fd))
        return None  # closing the descriptor below drops our shared lock
    finally:
        os.close(fd)


def read_lock_pid(fd: int) -> int | None:
    """The pid written in an open lock file, None if it is empty or unreadable."""
    with contextlib.suppress(OSError, ValueError):
        text = os.pread(fd, 64, 0).decode().strip()
        return int(text) if text else None
    return None
