"""Walk a source folder for hazardous file names (the logic is photos_sync.core.names, pure).

The runner does this before each folder's sync rather than rely on rclone's notices alone:
the walk sees every name's exact bytes, does not depend on rclone's wording, and finds Unicode
twins that `--no-unicode-normalization` now backs up without a word from rclone.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from photos_sync.core.names import NameProblem, find_name_problems


def _listing(root: Path) -> Iterator[tuple[str, list[str], list[str]]]:
    """(folder-relative directory, its sub-folders, its files) for every directory below
    `root`, names as os.fsdecode gives them.

    Symlinks are not followed (rclone does not follow them either); unreadable folders are
    skipped here, rclone reports them as errors.
    """
    top = os.fsdecode(root)
    for directory, subdirectories, files in os.walk(top, followlinks=False):
        relative = os.path.relpath(directory, top)
        yield ("" if relative == "." else relative), subdirectories, files


def scan_names(root: Path, folder: str, name_limit: int | None = None) -> list[NameProblem]:
    """The hazardous names below `root`, reported as paths under `folder` (e.g. "library");
    `name_limit`: see find_name_problems.

    Blocking (one directory walk): call it in a thread from async code.
    """
    return find_name_problems(folder, _listing(root), name_limit=name_limit)
