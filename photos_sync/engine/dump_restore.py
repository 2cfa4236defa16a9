"""The database dump's part in a restore: find the dump that belongs to it, fetch it, choose
files from it (`restore --user/--album/--person/--taken`), and check a restored tree against it
(`restore --immich`). The rules are in photos_sync.core.immich_select and
photos_sync.core.immich_restore; the copies themselves in photos_sync.engine.restore.

A dump is fetched decrypted into a private temporary folder of the data dir (mode 0700: it
holds the server's password hashes and every user's metadata) and removed with it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from photos_sync.core.archive import PointInTime
from photos_sync.core.events import RunRefused, UsageProblem
from photos_sync.core.immich_dump import IMMICH_FOLDERS, DumpEnd
from photos_sync.core.immich_restore import (
    DUMPS_FOLDER,
    REFERENCE_RECORDS,
    DumpInBackup,
    TreeCheck,
    is_routine_dump,
    newest_dump,
)
from photos_sync.core.immich_select import Criteria, Selected, Selection, UnknownName
from photos_sync.core.names import display_path
from photos_sync.core.planning import IMMICH_MARKER
from photos_sync.core.rclone_args import ARCHIVE_FOLDER
from photos_sync.immich.dump_file import read_dump_file
from photos_sync.rclone.remote import CryptRemote
from photos_sync.storage import datadir


class DumpUnusable(RunRefused):
    """The dump cannot be read to its end (truncated, damaged, not a dump)."""


@contextmanager
def private_folder(data_dir: Path) -> Iterator[Path]:
    """A fresh folder in the data dir, only the user's (0700), removed with what it holds."""
    data_dir.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="restore-dump-", dir=data_dir))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def live_dumps(remote: CryptRemote) -> list[DumpInBackup]:
    """The routine dumps in the live backup's `backups/`."""
    entries = await remote.list_files(DUMPS_FOLDER)
    names = (str(entry.get("Path", "")) for entry in entries)
    return [
        DumpInBackup(name, f"{DUMPS_FOLDER}/{name}")
        for name in names
        if "/" not in name and is_routine_dump(name)
    ]


def dumps_at(choice: PointInTime) -> list[DumpInBackup]:
    """The routine dumps a point-in-time choice holds, where their content is in the backup."""
    found: list[DumpInBackup] = []

    def consider(path: str, location: str) -> None:
        folder, _, name = path.partition("/")
        if folder == DUMPS_FOLDER and "/" not in name and is_routine_dump(name):
            found.append(DumpInBackup(name, location))

    for stamp, paths in choice.from_archive.items():
        for path in paths:
            consider(path, f"{ARCHIVE_FOLDER}/{stamp}/{path}")
    for path in choice.from_live:
        consider(path, path)
    for source, where, path in choice.renamed:
        consider(path, f"{ARCHIVE_FOLDER}/{source}/{where}" if source else where)
    return found


def choose_dump(dumps: list[DumpInBackup], label: str, moment: datetime | None) -> DumpInBackup:
    """The newest of `dumps`; RunRefused when there is none."""
    local = datetime.now().astimezone().tzinfo
    assert local is not None  # astimezone() always gives a zone
    chosen = newest_dump(dumps, local)
    if chosen is None:
        when = f" at {moment.isoformat()}" if moment is not None else ""
        raise RunRefused(
            f"the backup of {label!r} holds no Immich database dump (backups/immich-db-backup-"
            f"*.sql.gz){when}: a restore by album, person, user, date or --immich needs one"
        )
    return chosen


async def fetch_dump(remote: CryptRemote, dump: DumpInBackup, folder: Path) -> Path:
    """Download `dump` decrypted into `folder`; RunRefused if it is not there after all."""
    local = folder / dump.name
    if not await remote.download(dump.location, str(local)) or not local.is_file():
        raise RunRefused(
            f"the database dump {display_path(dump.location)} could not be read from the "
            f"backup of {remote.label!r}"
        )
    return local


def _unusable(dump: str, end: DumpEnd) -> DumpUnusable:
    return DumpUnusable(
        f"the database dump {dump} is unusable: {end.problem}; restore with --as-of a time "
        "before it was written to use an older dump"
    )


def select_from_dump(path: Path, name: str, criteria: Criteria) -> Selected:
    """The files `criteria` choose from the dump at `path` (read once per pass the selection
    needs). UsageProblem for a name the dump does not hold, DumpUnusable for a dump that
    cannot be read to its end."""
    selection = Selection(criteria)
    for kinds in selection.passes():
        for record in read_dump_file(path, want=kinds):
            if isinstance(record, DumpEnd):
                if not record.complete:
                    raise _unusable(name, record)
            else:
                selection.feed(record)
        try:
            selection.end_pass()
        except UnknownName as problem:
            raise UsageProblem(str(problem)) from None
    return selection.result()


def check_dump(path: Path, name: str) -> DumpEnd:
    """The verdict on the whole dump; DumpUnusable unless it is complete."""
    end: DumpEnd | None = None
    for record in read_dump_file(path, want=()):
        if isinstance(record, DumpEnd):
            end = record
    assert end is not None
    if not end.complete:
        raise _unusable(name, end)
    return end


def check_tree(dump: Path, target: Path) -> tuple[TreeCheck, DumpEnd]:
    """How much of what the dump references the restored tree at `target` holds."""
    check = TreeCheck()
    end: DumpEnd | None = None

    def exists(relative: str) -> bool:
        return os.path.isfile(target / relative)

    for record in read_dump_file(dump, want=REFERENCE_RECORDS):
        if isinstance(record, DumpEnd):
            end = record
        else:
            check.feed(record, exists)
    assert end is not None
    return check, end


def make_user_dirs(path: Path) -> None:
    """Create `path` and its missing parents as the user's umask would (this process creates
    everything private, for the data dir: see storage.datadir.private_umask), so that a
    restored tree is as readable as the files rclone writes into it."""
    missing: list[Path] = []
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing.append(folder)
    path.mkdir(parents=True, exist_ok=True)
    umask = datadir.user_umask()
    if umask is not None:
        for folder in missing:
            os.chmod(folder, 0o777 & ~umask)


def _write_user_file(path: Path, text: str) -> None:
    path.write_text(text)
    umask = datadir.user_umask()
    if umask is not None:
        os.chmod(path, 0o666 & ~umask)


def write_markers(target: Path) -> list[str]:
    """Immich's `.immich` marker in each of its six folders below `target` (created when
    missing, a marker already there kept), as Immich writes them: the time in milliseconds.
    Immich refuses to start (and its restore screen flags the folder) without them. Returns
    the markers' paths below `target`."""
    written = []
    for folder in IMMICH_FOLDERS:
        marker = target / folder / IMMICH_MARKER
        make_user_dirs(marker.parent)
        if not marker.exists():
            _write_user_file(marker, str(int(time.time() * 1000)))
        written.append(f"{folder}/{IMMICH_MARKER}")
    return written


def place_dump(local: Path, target: Path, overwrite: bool) -> int:
    """Move the fetched dump into `target/backups/` (an existing file of that name is kept
    unless `overwrite`); its size."""
    final = target / DUMPS_FOLDER / local.name
    make_user_dirs(final.parent)
    size = local.stat().st_size
    if final.exists() and not overwrite:
        return size
    shutil.move(str(local), str(final))
    return size


def not_restored(paths: tuple[str, ...], target: Path) -> list[str]:
    """The chosen paths that are not files below `target` after the copy."""
    return [path for path in paths if not os.path.isfile(target / path)]


def target_is_empty(target: Path) -> bool:
    return not target.exists() or (target.is_dir() and not any(target.iterdir()))
