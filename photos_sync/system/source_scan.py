"""Looks at the source tree on disk before a sync (I/O, no subprocess)."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def find_symlink_loops(root: Path, limit: int = 1000) -> list[str]:
    """Paths (relative to `root`, '/'-separated) of symbolic links that lead back into a folder
    they are already inside, following links as `rclone --copy-links` would.

    rclone follows such a link until the path grows too long, sending the same files again at
    every level; excluding these paths is the loop guard of BACKUP_FOLLOW_SYMLINKS.
    """
    loops: list[str] = []

    def walk(folder: str, relative: str, ancestors: frozenset[tuple[int, int]]) -> None:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return  # unreadable: rclone names it when it gets there
        for entry in entries:
            if len(loops) >= limit:
                return
            path = f"{relative}/{entry.name}" if relative else entry.name
            try:
                info = os.stat(entry.path)  # follows the link, as rclone -L does
            except OSError:
                continue  # dangling link: rclone names it
            if not stat.S_ISDIR(info.st_mode):
                continue
            identity = (info.st_dev, info.st_ino)
            if identity in ancestors:
                loops.append(path)
                continue
            walk(entry.path, path, ancestors | {identity})

    top = os.stat(root)
    walk(str(root), "", frozenset({(top.st_dev, top.st_ino)}))
    return loops
