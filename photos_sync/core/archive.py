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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

STAMP_FORMAT = "%Y%m%dT%H%M%SZ"

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
        if not path or parse_stamp(stamp) is None:
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


def as_of(
    archived: Iterable[ArchivedFile],
    live: Iterable[LiveFile],
    prefix: str,
    moment: datetime,
) -> PointInTime:
    """Choose, for every file under `prefix`, the version that was live at `moment`.

    A version whose own modification time is after `moment` did not exist yet: if the first
    copy archived after `moment` is such a version, the file was created later and is left
    out (the same rule as for live files).
    """
    later: dict[str, ArchivedFile] = {}
    for item in archived:
        when = parse_stamp(item.stamp)
        if when is None or when <= moment or not under(item.path, prefix):
            continue
        if item.path not in later or item.stamp < later[item.path].stamp:
            later[item.path] = item
    from_archive: dict[str, list[str]] = {}
    for item in later.values():
        if item.modified is not None and item.modified > moment:
            continue
        from_archive.setdefault(item.stamp, []).append(item.path)
    from_live = sorted(
        f.path
        for f in live
        if under(f.path, prefix)
        and f.path not in later
        and (f.modified is None or f.modified <= moment)
    )
    return PointInTime({s: sorted(p) for s, p in sorted(from_archive.items())}, from_live)


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
