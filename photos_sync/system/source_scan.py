"""Looks at the source tree on disk before a sync (I/O, no subprocess)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from photos_sync.core.manifest import FileState, walk_order
from photos_sync.core.names import NameCheck


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


class WalkProblems:
    """What a source walk could not read (folders it could not open, files it could not
    stat): paths relative to the walk's root. A walk with problems must not be taken for the
    whole truth: the files below are not gone, they were not seen."""

    def __init__(self) -> None:
        self.unreadable: list[bytes] = []


def _sorted_entries(
    folder: bytes, relative: bytes, problems: WalkProblems, names: NameCheck | None
) -> Iterator[tuple[bytes, bytes, os.stat_result | None]]:
    """(full path, relative path, stat or None for a folder) of the folder's files and
    subfolders in walk order; an unreadable folder is noted in `problems` and yields none.
    Every name the folder holds (links and special files too) goes to `names`, split as
    os.walk splits them (a link to a folder counts as a folder)."""
    listed: list[tuple[bytes, bytes, bytes, os.stat_result | None]] = []
    folder_names: list[bytes] = []
    file_names: list[bytes] = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        listed.append((walk_order(entry.name, True), entry.path, entry.name, None))
                        folder_names.append(entry.name)
                    elif entry.is_file(follow_symlinks=False):
                        info = entry.stat(follow_symlinks=False)
                        listed.append((walk_order(entry.name, False), entry.path, entry.name, info))
                        file_names.append(entry.name)
                    elif names is not None:
                        (folder_names if entry.is_dir() else file_names).append(entry.name)
                except OSError:
                    problems.unreadable.append(
                        relative + b"/" + entry.name if relative else entry.name
                    )
    except OSError:
        problems.unreadable.append(relative or b".")
        return
    if names is not None:
        names.add(relative, folder_names, file_names)
    listed.sort(key=lambda item: item[0])
    for _key, path, name, found in listed:
        yield path, (relative + b"/" + name if relative else name), found


def walk_files(
    root: Path, problems: WalkProblems, names: NameCheck | None = None
) -> Iterator[FileState]:
    """Every regular file below `root` with its size and modification time, as rclone's sync
    would see it without --copy-links (symbolic links and special files are left out), in
    byte order of the paths (see core.manifest.walk_order). Memory holds one listing per
    level of depth, not the tree. With `names`, every directory's names are checked on the
    way (the runner's file-name check, without a second walk).

    Immich's `.immich` marker is a file like any other: it is backed up too.
    """
    levels = [_sorted_entries(os.fsencode(root), b"", problems, names)]
    while levels:
        item = next(levels[-1], None)
        if item is None:
            levels.pop()
            continue
        path, relative, info = item
        if info is None:
            levels.append(_sorted_entries(path, relative, problems, names))
        else:
            yield FileState(relative, info.st_size, info.st_mtime_ns)


def stat_listed(root: Path, paths: Iterable[bytes]) -> tuple[list[FileState], list[bytes]]:
    """The regular files among `paths` (relative to `root`, exact bytes) with their size and
    modification time, in the order given, and the paths that are not a regular file there
    (missing, a folder, a symbolic link, unreadable): a walk restricted to a list."""
    found: list[FileState] = []
    missing: list[bytes] = []
    base = os.fsencode(root)
    for path in paths:
        try:
            info = os.stat(os.path.join(base, path), follow_symlinks=False)
        except OSError:
            missing.append(path)
            continue
        if stat.S_ISREG(info.st_mode):
            found.append(FileState(path, info.st_size, info.st_mtime_ns))
        else:
            missing.append(path)
    return found, missing
