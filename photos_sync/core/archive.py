"""The archive of deleted and replaced files: versions, point-in-time choice, retention.
Pure: listings come in, decisions go out.

Each backup run moves what the source deleted or replaced into `.deleted/<run stamp>/`, with
the file's plain path below it (`.deleted/20261125T030000Z/library/user/2024/05/a.jpg`). So
the copy archived by run S is the version that was live *before* S. A file's state at time T
is therefore: the copy archived by the first run after T, if there is one; else the live copy
(unless that is newer than T); and a file archived at or before T with no later version was
already gone at T.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
#: File written into a run's archive folder (`.deleted/<run>/`) listing the files that run
#: moved inside the backup (#15), so that `restore --as-of` an earlier time finds them at
#: their old paths. Not an archived file; pruned with the archive folder it lives in.
MOVES_RECORD = ".photos-sync-moves.jsonl"

#: `rclone lsf` flags for a listing that keeps every name's exact bytes: `lsjson` cannot (JSON
#: turns bytes that are not UTF-8 into U+FFFD, and the file is then never found again by
#: that name). CSV quotes names holding commas, quotes or line breaks.
RAW_LISTING_FLAGS = (
    "-R",
    "--files-only",
    "--csv",
    "--format",
    "pst",
    "--time-format",
    "RFC3339Nano",
)


def parse_stamp(stamp: str) -> datetime | None:
    """The run time encoded in an archive folder name, or None if it is not one."""
    try:
        return datetime.strptime(stamp, STAMP_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class ArchivedFile:
    stamp: str  # the run that archived it
    path: str  # plain path below the Immich root, e.g. "library/u/2024/a.jpg"
    size: int
    modified: datetime | None = None  # the file's own modification time (kept by rclone)


def parse_modtime(raw: object) -> datetime | None:
    """rclone's `ModTime` (RFC 3339, nanoseconds) as an aware datetime, or None."""
    if not isinstance(raw, str) or not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_raw_listing(text: str) -> list[dict[str, object]]:
    """`rclone lsf` output made with RAW_LISTING_FLAGS, decoded with
    photos_sync.core.names.decode_raw, as lsjson-like entries {"Path", "Size", "ModTime"}.

    Paths keep undecodable bytes as surrogate escapes, so they go back to rclone unchanged.
    """
    entries: list[dict[str, object]] = []
    for row in csv.reader(io.StringIO(text, newline="")):
        if len(row) != 3 or not row[0]:
            continue
        path, size, modified = row
        entries.append(
            {"Path": path, "Size": int(size) if size.isdigit() else 0, "ModTime": modified}
        )
    return entries


@dataclass(frozen=True, slots=True)
class LiveFile:
    path: str
    size: int
    modified: datetime | None


def parse_archive_listing(entries: Iterable[Mapping[str, object]]) -> list[ArchivedFile]:
    """ArchivedFiles from `rclone lsjson -R --files-only pscrypt:.deleted` entries."""
    files = []
    for entry in entries:
        stamp, _, path = str(entry.get("Path", "")).partition("/")
        if not path or parse_stamp(stamp) is None or path == MOVES_RECORD:
            continue
        size = entry.get("Size", 0)
        files.append(
            ArchivedFile(
                stamp,
                path,
                size if isinstance(size, int) else 0,
                parse_modtime(entry.get("ModTime")),
            )
        )
    return files


def under(path: str, prefix: str) -> bool:
    """True if `path` is `prefix` itself or inside it ('' matches everything)."""
    prefix = prefix.strip("/")
    return not prefix or path == prefix or path.startswith(prefix + "/")


def newest_archived(files: Iterable[ArchivedFile], prefix: str) -> dict[str, ArchivedFile]:
    """For each archived path under `prefix`, its most recently archived version."""
    chosen: dict[str, ArchivedFile] = {}
    for item in files:
        if under(item.path, prefix) and (
            item.path not in chosen or item.stamp > chosen[item.path].stamp
        ):
            chosen[item.path] = item
    return chosen


@dataclass(frozen=True, slots=True)
class PointInTime:
    """What to copy to rebuild `prefix` as it was at a moment."""

    from_archive: dict[str, list[str]]  # stamp -> plain paths to copy from .deleted/<stamp>/
    from_live: list[str]  # plain paths to copy from the live backup
    #: files a later run moved inside the backup (#15): (stamp of the archive folder holding
    #: the content, or None for the live backup; its path there; the path it had at the moment)
    renamed: list[tuple[str | None, str, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class MovedFile:
    """A move a run made inside the backup (from its MOVES_RECORD): plain paths."""

    stamp: str
    source: str
    target: str


#: How many moves of one file are followed (a loop in damaged records must end).
_MAX_HOPS = 64


class _History:
    """Every run's effect on each path: archived copies, departures (moved away), arrivals."""

    def __init__(
        self,
        archived: Iterable[ArchivedFile],
        live: Iterable[LiveFile],
        moves: Iterable[MovedFile],
    ) -> None:
        self.archived: dict[str, list[ArchivedFile]] = {}
        for item in archived:
            if parse_stamp(item.stamp) is not None:
                self.archived.setdefault(item.path, []).append(item)
        self.live = {f.path: f for f in live}
        self.departures: dict[str, list[MovedFile]] = {}
        self.arrivals: dict[str, list[MovedFile]] = {}
        for move in moves:
            if parse_stamp(move.stamp) is not None:
                self.departures.setdefault(move.source, []).append(move)
                self.arrivals.setdefault(move.target, []).append(move)

    @staticmethod
    def _first_after(items: Iterable[Any], moment: datetime) -> Any:
        later = [i for i in items if (parse_stamp(i.stamp) or moment) > moment]
        return min(later, key=lambda i: i.stamp) if later else None

    def locate(
        self, path: str, moment: datetime, *, top: bool, hops: int = 0
    ) -> tuple[str | None, str, datetime | None] | None:
        """Where the content `path` had just after `moment` is now: (archive stamp or None
        for live, path there, its modification time); None if `path` held nothing then.

        The first event after `moment` decides: an archived copy is that content; a move
        away means the content went to the move's target (followed from the move's run on);
        for the path asked about (`top`), an arrival first means the path was empty then.
        At one run, an archived copy comes before a move (a move that failed was archived)."""
        archived = self._first_after(self.archived.get(path, ()), moment)
        departed = self._first_after(self.departures.get(path, ()), moment)
        arrived = self._first_after(self.arrivals.get(path, ()), moment) if top else None
        events = [
            (e.stamp, rank, e)
            for rank, e in enumerate((archived, departed, arrived))
            if e is not None
        ]
        if not events:
            found = self.live.get(path)
            return (None, path, found.modified) if found is not None else None
        _stamp, rank, event = min(events, key=lambda t: (t[0], t[1]))
        if rank == 0:
            return event.stamp, path, event.modified
        if rank == 2 or hops >= _MAX_HOPS:
            return None
        when = parse_stamp(event.stamp)
        assert when is not None
        return self.locate(event.target, when, top=False, hops=hops + 1)


def as_of(
    archived: Iterable[ArchivedFile],
    live: Iterable[LiveFile],
    prefix: str,
    moment: datetime,
    moves: Iterable[MovedFile] = (),
) -> PointInTime:
    """Choose, for every file under `prefix`, the version that was live at `moment`.

    A version whose own modification time is after `moment` did not exist yet: if the first
    copy archived after `moment` is such a version, the file was created later and is left
    out (the same rule as for live files). A file a later run moved inside the backup is
    found where it went and restored under the path it had at `moment`.
    """
    history = _History(archived, live, moves)
    candidates = set(history.archived) | set(history.live) | set(history.departures)
    from_archive: dict[str, list[str]] = {}
    from_live: list[str] = []
    renamed: list[tuple[str | None, str, str]] = []
    for path in sorted(p for p in candidates if under(p, prefix)):
        found = history.locate(path, moment, top=True)
        if found is None:
            continue
        stamp, where, modified = found
        if modified is not None and modified > moment:
            continue
        if where != path:
            renamed.append((stamp, where, path))
        elif stamp is None:
            from_live.append(path)
        else:
            from_archive.setdefault(stamp, []).append(path)
    return PointInTime({s: sorted(p) for s, p in sorted(from_archive.items())}, from_live, renamed)


def expired_stamps(stamps: Iterable[str], keep_days: int, now: datetime) -> list[str]:
    """Archive folders older than `keep_days` (0 keeps everything), oldest first."""
    if keep_days <= 0:
        return []
    cutoff = now - timedelta(days=keep_days)
    expired = []
    for stamp in stamps:
        when = parse_stamp(stamp)
        if when is not None and when < cutoff:
            expired.append(stamp)
    return sorted(expired)
