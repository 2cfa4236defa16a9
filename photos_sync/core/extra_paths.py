"""Folders outside Immich's UPLOAD_LOCATION that a run backs up too (#16.3), and where in the
backup a path Immich stored is kept. Pure: no I/O.

**BACKUP_EXTRA_PATHS** lists host folders, typically the folders of Immich's external
libraries, separated by `:` (as `PATH` is): `/mnt/photos/family:/srv/scans`. Each entry is a
folder's absolute path, or `NAME=PATH` to choose the name it is kept under:
`family=/mnt/photos/family`. Without a name, the folder's own name is used. Each becomes a job
after Immich's folders, backed up into `extra/<NAME>/` in the destination (its deleted and
replaced files into `.deleted/<run>/extra/<NAME>/`). Names are letters, digits, `.`, `_` and
`-`, start with a letter or a digit, are at most 64 characters and unique (whatever their
case); two folders may not lie inside each other nor inside (or around) BACKUP_IMMICH_PATH,
which would back the same files up twice. A path holding `:` cannot be listed.

**BACKUP_EXTERNAL_LIBRARY_MAP** says where the folders Immich sees inside its container are
on the host, so that the paths an external library stores (container paths such as
`/mnt/media/2020/DSC_0001.JPG`) can be found in the backup: `CONTAINER=HOST` entries separated
by `:`, as in docker-compose's `- /srv/photos:/mnt/media:ro` written the other way round:
`/mnt/media=/srv/photos`. A stored path no entry maps is taken as a host path (a volume
mounted at the same path on both sides needs no entry).

`Coverage.cover(stored)` puts the two together for the consistency proof.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass

#: The destination folder that holds the extra folders, one subfolder each.
EXTRA_FOLDER = "extra"
#: What separates the entries of BACKUP_EXTRA_PATHS and BACKUP_EXTERNAL_LIBRARY_MAP.
ENTRY_SEPARATOR = ":"
#: A name an extra folder is kept under (a folder name in the destination and in job lists).
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class ExtraPathError(ValueError):
    """A malformed BACKUP_EXTRA_PATHS or BACKUP_EXTERNAL_LIBRARY_MAP value: the message says
    what is wrong and what is expected, without the variable's name (the caller adds it)."""


@dataclass(frozen=True, slots=True)
class ExtraPath:
    """One host folder backed up besides Immich's: kept under `extra/<name>/`."""

    name: str
    #: absolute, normalised, without a trailing slash
    host: str

    @property
    def folder(self) -> str:
        """The job's folder, and the folder it is kept under in the destination."""
        return f"{EXTRA_FOLDER}/{self.name}"


@dataclass(frozen=True, slots=True)
class LibraryMount:
    """A folder Immich sees at `container` inside its container, found at `host` on the host."""

    container: str
    host: str


def _normalised(path: str) -> str:
    """`path` without `.`/`..` parts, doubled or trailing slashes (an absolute one stays so)."""
    return posixpath.normpath(path) if path != "/" else path


def _inside(path: str, folder: str) -> bool:
    """Is `path` the folder `folder` or below it (both normalised and absolute)?"""
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _entries(raw: str) -> list[str]:
    return [entry.strip() for entry in raw.split(ENTRY_SEPARATOR) if entry.strip()]


def parse_extra_paths(raw: str, immich_path: str | None = None) -> tuple[ExtraPath, ...]:
    """The folders of a BACKUP_EXTRA_PATHS value, in its order (see the module docstring).

    Raises ExtraPathError for a relative path, a name that is not safe or not unique, two
    folders inside each other, or one inside (or around) `immich_path`."""
    extras: list[ExtraPath] = []
    for entry in _entries(raw):
        if entry.startswith("/"):
            name, path = None, entry
        else:
            name, separator, path = entry.partition("=")
            name = name.strip()
            path = path.strip()
            if not separator or not path.startswith("/"):
                raise ExtraPathError(
                    f"{entry!r} is not an absolute path: expected folders such as "
                    "/mnt/photos/family, or NAME=/mnt/photos/family, separated by ':'"
                )
        host = _normalised(path)
        if host == "/":
            raise ExtraPathError("'/' cannot be backed up as an extra folder: name a folder")
        if name is None:
            name = posixpath.basename(host)
            if not NAME_PATTERN.fullmatch(name):
                raise ExtraPathError(
                    f"the folder name of {path!r} cannot name its backup (letters, digits, "
                    f"'.', '_' and '-' only): give it one, e.g. photos={path}"
                )
        elif not NAME_PATTERN.fullmatch(name):
            raise ExtraPathError(
                f"{name!r} (in {entry!r}) is not a usable name: letters, digits, '.', '_' and "
                "'-', starting with a letter or digit, at most 64 characters"
            )
        extras.append(ExtraPath(name, host))
    _check_distinct(extras, immich_path)
    return tuple(extras)


def _check_distinct(extras: list[ExtraPath], immich_path: str | None) -> None:
    seen: dict[str, ExtraPath] = {}
    for extra in extras:
        other = seen.get(extra.name.lower())
        if other is not None:
            raise ExtraPathError(
                f"{other.host} and {extra.host} would both be kept as {EXTRA_FOLDER}/"
                f"{extra.name}/: give them different names, e.g. a={other.host}:b={extra.host}"
            )
        seen[extra.name.lower()] = extra
    for index, extra in enumerate(extras):
        for other in extras[index + 1 :]:
            if _inside(extra.host, other.host) or _inside(other.host, extra.host):
                raise ExtraPathError(
                    f"{extra.host} and {other.host} overlap (one is inside the other): "
                    "list each folder once"
                )
    if immich_path and immich_path.startswith("/"):
        immich = _normalised(immich_path)
        for extra in extras:
            if _inside(extra.host, immich) or _inside(immich, extra.host):
                raise ExtraPathError(
                    f"{extra.host} overlaps BACKUP_IMMICH_PATH ({immich}), which is backed up "
                    "already: list only folders outside it"
                )


def parse_library_map(raw: str) -> tuple[LibraryMount, ...]:
    """The entries of a BACKUP_EXTERNAL_LIBRARY_MAP value, in its order (see the module
    docstring). Raises ExtraPathError for an entry that is not `CONTAINER=HOST` with two
    absolute paths, or a container path given twice."""
    mounts: list[LibraryMount] = []
    for entry in _entries(raw):
        container, separator, host = (part.strip() for part in entry.partition("="))
        if not separator or not container.startswith("/") or not host.startswith("/"):
            raise ExtraPathError(
                f"{entry!r} is not CONTAINER=HOST: expected entries such as "
                "/mnt/media=/srv/photos (Immich's path = the host's), separated by ':'"
            )
        mount = LibraryMount(_normalised(container), _normalised(host))
        if any(m.container == mount.container for m in mounts):
            raise ExtraPathError(f"{mount.container} is mapped twice: keep one entry")
        mounts.append(mount)
    return tuple(mounts)


class Coverage:
    """Where the paths Immich stores outside UPLOAD_LOCATION are kept in the backup."""

    __slots__ = ("_extras", "_mounts")

    def __init__(self, extras: Iterable[ExtraPath], mounts: Iterable[LibraryMount] = ()) -> None:
        # longest first: a folder inside another is matched before it
        self._extras = sorted(extras, key=lambda e: len(e.host), reverse=True)
        self._mounts = sorted(mounts, key=lambda m: len(m.container), reverse=True)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Coverage):
            return NotImplemented
        return (self._extras, self._mounts) == (other._extras, other._mounts)

    def __hash__(self) -> int:
        return hash((tuple(self._extras), tuple(self._mounts)))

    def host_path(self, stored: str) -> str | None:
        """The host path of a path Immich stored (a container path), or None when it is not
        an absolute path. A path no mapping names is taken as a host path already."""
        if not stored.startswith("/"):
            return None
        path = _normalised(stored)
        for mount in self._mounts:
            if _inside(path, mount.container):
                rest = path[len(mount.container) :].lstrip("/")
                return posixpath.join(mount.host, rest) if rest else mount.host
        return path

    def cover(self, stored: str) -> tuple[str, str] | None:
        """`(folder, relative)`: the backup folder (`extra/<name>`, a job's folder) and the
        path below it where the file Immich stored at `stored` is kept; None when no extra
        folder holds it (the file is not backed up). `stored` is a path as the dump holds
        it, e.g. `StoredPath.stored` of a path outside UPLOAD_LOCATION."""
        host = self.host_path(stored)
        if host is None:
            return None
        for extra in self._extras:
            if host != extra.host and _inside(host, extra.host):
                return extra.folder, host[len(extra.host) :].lstrip("/")
        return None
