"""The people thumbnails a run backs up when thumbs/ is not backed up in full (#16.4): which
dump names them, and which of them are at the source (see core/people_thumbnails.py).

Blocking (reads a whole dump, stats files): the runner calls these in a thread.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from photos_sync.core.immich_dump import DumpEnd, Person
from photos_sync.core.manifest import FileState
from photos_sync.core.people_thumbnails import THUMBS_FOLDER, thumbnail_paths
from photos_sync.immich.dump_file import read_dump_file
from photos_sync.immich.server import list_dumps
from photos_sync.system.source_scan import stat_listed

_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True, slots=True)
class PeopleThumbnails:
    """The people thumbnails of the newest dump: those at the source, and those missing."""

    #: the dump read (its name), None when backups/ holds none
    dump: str | None
    #: the thumbnails the dump names that are regular files below thumbs/, in byte order
    present: list[FileState] = field(default_factory=list)
    #: the ones it names that are not there (paths below thumbs/)
    missing: list[bytes] = field(default_factory=list)
    #: why none are backed up: no dump, or one that cannot be read to its end
    problem: str | None = None

    def files_from(self) -> bytes:
        """The `--files-from-raw` list of the present thumbnails (exact bytes)."""
        return b"".join(state.path + b"\n" for state in self.present)


def newest_dump(immich_path: Path) -> Path | None:
    """The newest finished dump in backups/, if it is a gzip file (as Immich writes them):
    a run plans the people-thumbnails job only when there is a dump it can read."""
    dumps = list_dumps(immich_path / "backups")
    if not dumps:
        return None
    path = immich_path / "backups" / dumps[-1].name
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(_GZIP_MAGIC))
    except OSError:
        return None
    if head != _GZIP_MAGIC:
        return None
    return path if _defines_people(path) else None


#: How far into a dump its schema is looked for (pg_dump writes every CREATE TABLE before the
#: data; pg_dumpall puts roles and the small `postgres` database first).
_SCHEMA_SNIFF = 32 * 1024 * 1024


def _defines_people(path: Path) -> bool:
    """Does the dump create Immich's `person` table? (Read up to _SCHEMA_SNIFF bytes of its
    text: cheap, where the person rows themselves come after the large asset tables. A dump
    cut short still answers from what it holds: the job then says why it backs up none.)"""
    inflate = zlib.decompressobj(wbits=31)  # gzip
    seen = 0
    tail = b""
    try:
        with open(path, "rb") as raw:
            while seen < _SCHEMA_SNIFF:
                packed = raw.read(256 * 1024)
                if not packed:
                    return False
                block = inflate.decompress(packed)
                window = tail + block
                if re.search(rb'CREATE TABLE public\."?person"? ?\(', window):
                    return True
                tail = window[-64:]
                seen += len(block)
                if inflate.eof:
                    return False
    except (OSError, zlib.error):
        return False
    return False


def find_people_thumbnails(immich_path: Path) -> PeopleThumbnails:
    """The thumbnails the `person` table of the newest dump in backups/ names, split into
    those present below thumbs/ and those missing. A dump that is truncated or damaged names
    none (its `problem` says why): a partial list would be taken for the whole."""
    dumps = list_dumps(immich_path / "backups")
    if not dumps:
        return PeopleThumbnails(None, problem="backups/ holds no Immich database dump")
    name = dumps[-1].name
    people: list[Person] = []
    end: DumpEnd | None = None
    for record in read_dump_file(immich_path / "backups" / name, want={Person}):
        if isinstance(record, Person):
            people.append(record)
        elif isinstance(record, DumpEnd):
            end = record
    return people_thumbnails_of(immich_path, name, people, end)


def newest_by_time(immich_path: Path) -> str | None:
    """The name of the dump `find_people_thumbnails` reads (the newest by modification time)."""
    dumps = list_dumps(immich_path / "backups")
    return dumps[-1].name if dumps else None


def people_thumbnails_of(
    immich_path: Path, name: str, people: list[Person], end: DumpEnd | None
) -> PeopleThumbnails:
    """The people thumbnails of the dump `name`, from its Person records and its end."""
    if end is None or not end.complete:
        why = end.problem if end is not None and end.problem else "the dump is incomplete"
        return PeopleThumbnails(name, problem=why if name in why else f"{why} ({name})")
    present, missing = stat_listed(immich_path / THUMBS_FOLDER, thumbnail_paths(people))
    return PeopleThumbnails(name, present, missing)
