"""People thumbnails (#16.4): which files of thumbs/ a run backs up when thumbs/ itself is not
backed up. Pure: no I/O.

Immich makes thumbnails and previews of assets again from the originals (its "generate
thumbnails" job), but a person's face thumbnail only by running face detection again, by hand,
and the people's names then stay attached to nothing. So even with BACKUP_INCLUDE_GENERATED
off, the thumbnails the `person` table of the newest dump names are backed up, by an `rclone
copy --files-from-raw` of those files (core.rclone_args.listed_copy_argv): a copy, not a
sync, so the backup of a thumbnail the source lost is never archived away, and a replaced one
goes to the archive as in any folder.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator

from photos_sync.core.immich_dump import Person
from photos_sync.core.manifest import FileState
from photos_sync.core.names import raw_bytes

#: The Immich folder the people thumbnails are in.
THUMBS_FOLDER = "thumbs"


def thumbnail_paths(people: Iterable[Person]) -> list[bytes]:
    """The paths below thumbs/ (exact bytes, byte order, each once) of the people's
    thumbnails. A thumbnail stored outside thumbs/ of UPLOAD_LOCATION (or none) is left out:
    it is not in the folder this job copies."""
    prefix = THUMBS_FOLDER + "/"
    found = set()
    for person in people:
        relative = person.thumbnail.relative if person.thumbnail is not None else None
        if relative is not None and relative.startswith(prefix) and len(relative) > len(prefix):
            found.add(raw_bytes(relative[len(prefix) :]))
    return sorted(found)


def overlay(recorded: Iterable[FileState], copied: Iterable[FileState]) -> Iterator[FileState]:
    """What the backup of thumbs/ holds after a copy of `copied`: the files it `recorded`
    before (a copy deletes nothing) with those of `copied` replacing theirs. Both inputs and
    the output are in byte order of their paths (the manifest's order)."""
    previous: FileState | None = None
    # copied before recorded for the same path: the first of each path is the one kept
    merged = heapq.merge(
        ((state.path, 0, state) for state in copied),
        ((state.path, 1, state) for state in recorded),
    )
    for _path, _rank, state in merged:
        if previous is not None and previous.path == state.path:
            continue
        previous = state
        yield state
