"""File names that a backup could lose or garble, found from listings. Pure: no I/O.

Two hazards were found under attack (issue #18, point 8):

- *Unicode twins*: two names in one folder that differ only in Unicode normalisation (`café`
  written as NFC "\\u00e9" and as NFD "e\\u0301"). rclone compares names after NFC
  normalisation by default, keeps one of the two and logs only a NOTICE ("Duplicate object
  found in source - ignoring"); a whole folder is dropped the same way. photos-sync therefore
  runs rclone with `--no-unicode-normalization` (both are backed up and restored), and still
  names the twins: restoring them onto a normalising file system (macOS) keeps only one.
- *Undecodable names*: bytes that are not UTF-8 (`b"bad\\xff.jpg"` on Linux). rclone keeps the
  bytes (crypt encrypts them as they are), but its JSON output turns them into U+FFFD, so a
  listing parsed from JSON no longer names the file. Such names travel through photos-sync as
  `os.fsdecode` strings (the bad bytes as surrogate escapes U+DC80..U+DCFF) and are shown with
  `display_path` (`bad\\xff.jpg`).
"""

from __future__ import annotations

import enum
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

#: os.fsdecode (surrogateescape) turns each undecodable byte 0xNN into the code point U+DCNN.
_ESCAPED_BYTES = range(0xDC80, 0xDD00)


class NameHazard(enum.StrEnum):
    UNICODE_TWIN = "unicode-twin"  # another name in the folder differs only in normalisation
    NOT_UTF8 = "not-utf8"  # the name's bytes are not valid UTF-8
    SKIPPED = "skipped"  # rclone said it ignored the file: it was NOT backed up
    TOO_LONG = "too-long"  # once encrypted, longer than the destination's file system allows


#: The longest name, in bytes, of a file or folder on the usual disks (ext4, XFS, Btrfs, ZFS,
#: APFS, NTFS...): a local destination stores each encrypted name as one such name.
DISK_NAME_LIMIT = 255


def encrypted_name_length(size: int) -> int:
    """How long rclone crypt's standard encryption makes a name of `size` bytes: AES-EME
    works on 16-byte blocks (PKCS#7 padding adds at least one byte), base32 spells 5 bits per
    character. 143 bytes -> 231 characters, 144 -> 256."""
    padded = 16 * (size // 16 + 1)
    return -(-padded * 8 // 5)


def longest_name(limit: int) -> int:
    """The longest plain name, in bytes, whose encrypted name fits in `limit` (143 for 255)."""
    size = 0
    while encrypted_name_length(size + 1) <= limit:
        size += 1
    return size


@dataclass(frozen=True, slots=True)
class NameProblem:
    """One file or folder name that needs the user's attention after a run.

    `path` is the plain path below the Immich root as `os.fsdecode` gives it (undecodable
    bytes as surrogate escapes), so it can be handed back to rclone byte for byte; show it
    with `display_path`.
    """

    hazard: NameHazard
    path: str
    backed_up: bool
    detail: str
    is_directory: bool = False

    def shown(self) -> str:
        """The path as shown to people (a folder with a trailing "/")."""
        return display_path(self.path) + ("/" if self.is_directory else "")

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.hazard.value,
            "path": display_path(self.path),
            "is_directory": self.is_directory,
            "backed_up": self.backed_up,
            "detail": self.detail,
        }

    def line(self) -> str:
        """One line for the run's output."""
        state = "backed up" if self.backed_up else "NOT backed up"
        return f"file name: {self.shown()} — {state}; {self.detail}"


def is_utf8(name: str) -> bool:
    """True unless `name` (from os.fsdecode) carries bytes that are not valid UTF-8."""
    if name.isascii():
        return True
    try:
        name.encode("utf-8")  # fails on any surrogate, and os.fsdecode makes them only of bad bytes
    except UnicodeEncodeError:
        return False
    return True


def display_path(path: str) -> str:
    """`path` printable and JSON-safe: each undecodable byte shown as `\\xNN` (as rclone's
    NOTICE and Python's repr do); valid names are returned unchanged."""
    if is_utf8(path):
        return path
    return "".join(
        f"\\x{ord(char) - 0xDC00:02x}" if ord(char) in _ESCAPED_BYTES else char for char in path
    )


def raw_bytes(path: str) -> bytes:
    """The exact bytes of a path held as an os.fsdecode string (for rclone's file lists)."""
    return path.encode("utf-8", "surrogateescape")


def decode_raw(data: bytes) -> str:
    """rclone's raw (non-JSON) output as text that keeps undecodable bytes (see `raw_bytes`)."""
    return data.decode("utf-8", "surrogateescape")


def _join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p.strip("/"))


def find_name_problems(
    folder: str,
    directories: Iterable[tuple[str, Sequence[str], Sequence[str]]],
    *,
    name_limit: int | None = None,
) -> list[NameProblem]:
    """The hazardous names in a listing of `folder` (e.g. "library").

    `directories` yields, for each directory, its folder-relative path ("" for the top), the
    names of its sub-folders and the names of its files, as os.fsdecode gives them (os.walk's
    shape). Each name that is not UTF-8 is reported once (not the files below an undecodable
    folder); each member of a group of names that normalise (NFC) to the same text is
    reported, naming the others. With `name_limit` (the destination's longest name, e.g.
    DISK_NAME_LIMIT), each name too long to store once encrypted is reported.
    """
    longest = longest_name(name_limit) if name_limit is not None else None
    problems: list[NameProblem] = []
    for directory, subdirectories, files in directories:
        entries = [(name, True) for name in subdirectories] + [(name, False) for name in files]
        if longest is not None:
            problems += [
                _too_long(folder, directory, name, is_directory, longest)
                for name, is_directory in entries
                if len(name) > longest or len(raw_bytes(name)) > longest
            ]
        if all(name.isascii() for name, _ in entries):
            continue  # the common case, and distinct ASCII names cannot be twins or undecodable
        by_form: dict[str, list[tuple[str, bool]]] = {}
        for name, is_directory in entries:
            by_form.setdefault(unicodedata.normalize("NFC", name), []).append((name, is_directory))
            if not is_utf8(name):
                problems.append(
                    NameProblem(
                        NameHazard.NOT_UTF8,
                        _join(folder, directory, name),
                        True,
                        "the name is not valid UTF-8 and is kept byte for byte (\\xNN shows a "
                        "raw byte); restore it with its folder, or name it with --path as shown",
                        is_directory,
                    )
                )
        for twins in by_form.values():
            if len(twins) < 2:
                continue
            for name, is_directory in sorted(twins):
                # twins look the same on screen: spell them out code point by code point
                others = ", ".join(
                    f"{spelled(other)} ({_form(other)})"
                    for other, _ in sorted(twins)
                    if other != name
                )
                problems.append(
                    NameProblem(
                        NameHazard.UNICODE_TWIN,
                        _join(folder, directory, name),
                        True,
                        f"this name, {spelled(name)} ({_form(name)}), differs from {others} only "
                        "in Unicode normalisation: both are backed up, but restored onto macOS or "
                        "another normalising file system only one survives; rename one of them",
                        is_directory,
                    )
                )
    return sorted(problems, key=lambda p: (p.path, p.hazard))


class NameCheck:
    """The hazardous names of one folder, gathered directory by directory from a walk's raw
    listings, so that a walk made for another purpose (the manifest's) checks the names too
    and the source is read once per run.

    Memory holds the problems found, never the listings: a directory whose names are all
    ASCII and short enough (the common case) costs one pass over its names, as bytes.
    """

    def __init__(self, folder: str, name_limit: int | None = None) -> None:
        self.folder = folder
        self.name_limit = name_limit
        self._longest = longest_name(name_limit) if name_limit is not None else None
        self._found: list[NameProblem] = []

    def add(
        self, directory: bytes, subdirectories: Sequence[bytes], files: Sequence[bytes]
    ) -> None:
        """One directory of the walk: its folder-relative path (b"" for the top) and the
        exact bytes of its sub-folders' and files' names (os.walk's split)."""
        longest = self._longest
        plain = all(n.isascii() for n in subdirectories) and all(n.isascii() for n in files)
        if plain and (
            longest is None
            or (all(len(n) <= longest for n in subdirectories)
                and all(len(n) <= longest for n in files))
        ):  # fmt: skip
            return
        listing = (
            decode_raw(directory),
            [decode_raw(n) for n in subdirectories],
            [decode_raw(n) for n in files],
        )
        self._found += find_name_problems(self.folder, [listing], name_limit=self.name_limit)

    def problems(self) -> list[NameProblem]:
        """Every problem found so far, in find_name_problems' order."""
        return sorted(self._found, key=lambda p: (p.path, p.hazard))


def _too_long(
    folder: str, directory: str, name: str, is_directory: bool, longest: int
) -> NameProblem:
    size = len(raw_bytes(name))
    return NameProblem(
        NameHazard.TOO_LONG,
        _join(folder, directory, name),
        False,
        f"the name is {size} bytes; encrypted it would be {encrypted_name_length(size)} "
        f"characters, more than the destination's disk allows for a name, so rclone cannot "
        f"store it (file name too long): shorten it to {longest} bytes or fewer",
        is_directory,
    )


def spelled(name: str) -> str:
    """A name with every character beyond ASCII written as an escape ('cafe\\u0301.jpg'), so
    that two names which look the same can be told apart."""
    return ascii(display_path(name))


def twin_paths(entries: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """Of (group, path) pairs — e.g. (archive run, path) — those whose path has a Unicode twin
    in the same group (paths that differ only in normalisation)."""
    by_form: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for group, path in entries:
        by_form.setdefault((group, unicodedata.normalize("NFC", path)), []).append((group, path))
    return {entry for found in by_form.values() if len(set(found)) > 1 for entry in found}


def _form(name: str) -> str:
    if unicodedata.is_normalized("NFC", name):
        return "NFC"
    if unicodedata.is_normalized("NFD", name):
        return "NFD"
    return "neither NFC nor NFD"


def summary_note(total: int, not_backed_up: int) -> str:
    """The end of a run's summary line about file names ("" when there are none)."""
    if not total:
        return ""
    names = "1 file name needs" if total == 1 else f"{total} file names need"
    note = f"; {names} attention (listed above)"
    if not_backed_up:
        note += f", {not_backed_up} of them NOT backed up"
    return note


def with_skipped(
    folder: str, problems: list[NameProblem], skipped: Mapping[str, bool]
) -> list[NameProblem]:
    """`problems` found before a folder's sync, corrected by what rclone said it ignored.

    `skipped` maps paths (relative to `folder`, as rclone logged them: NFC, undecodable bytes
    as U+FFFD) to whether each is a folder. Unicode twins of a skipped path are marked NOT
    backed up (rclone kept one of them and does not say which); any other skipped path gets
    its own problem.
    """
    lost = {unicodedata.normalize("NFC", _join(folder, path)) for path in skipped}
    result = []
    twins = set()
    for problem in problems:
        form = unicodedata.normalize("NFC", problem.path)
        if problem.hazard is NameHazard.UNICODE_TWIN:
            twins.add(form)
            if form in lost:
                problem = replace(
                    problem,
                    backed_up=False,
                    detail="rclone kept only one of the names in this folder that differ only "
                    "in Unicode normalisation, and does not say which: this one may be missing "
                    "from the backup"
                    + (" with everything in it" if problem.is_directory else "")
                    + "; rename one of them and run again",
                )
        result.append(problem)
    for path, is_directory in sorted(skipped.items()):
        full = _join(folder, path)
        if unicodedata.normalize("NFC", full) in twins:
            continue
        what = "folder (and everything in it)" if is_directory else "file"
        result.append(
            NameProblem(
                NameHazard.SKIPPED,
                full,
                False,
                f"rclone ignored this {what} as a duplicate of another name in its folder "
                "(its notice: Duplicate found in source - ignoring); rename one of the two and "
                "run again",
                is_directory,
            )
        )
    return sorted(result, key=lambda p: (p.path, p.hazard))
