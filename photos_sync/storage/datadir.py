"""The data dir and the files photos-sync keeps in it: a private folder, private files.

What is promised (DESIGN "Data and paths"): the data dir is 0700 and every file photos-sync
writes in it 0600, whatever the environment and the umask. The rules:

- A data dir that photos-sync creates (and any missing parent of it) is made 0700.
- A folder that already exists keeps its mode: photos-sync never chmods a folder someone else
  made (PHOTOS_SYNC_DATA_DIR may point at one). One that other users can write to is refused,
  sticky bit or not: they could plant a `.env` (which names the rclone binary), or a
  `backup.db-wal` before SQLite makes it. A group-writable folder whose group is the owner's
  own user-private group (Debian/Ubuntu's umask 002 habit) is not "other users" and is allowed.
  The one exception is the platform default data dir (`…/photos-sync`): it is photos-sync's
  own folder, which versions before #18 created 0755, so it is tightened to 0700.
- Files are created 0600 (`open_private`, `write_private`); a file of ours found looser
  (written by an older version) is tightened, never loosened.
- backup.db is created 0600 before SQLite opens it: SQLite gives its -wal and -shm files the
  DB file's mode, so they follow (`prepare_db`).
- `private_umask()` (the CLI's entry point) makes whatever else this process creates private
  too (the runner's `locks/`); child processes get the user's own umask back
  (`user_umask()`), so rclone writes backed-up and restored files as the user expects.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import stat
import tempfile
from pathlib import Path

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
#: Mode bits that give other users access.
_OPEN_TO_OTHERS = stat.S_IRWXG | stat.S_IRWXO
#: What the process's umask was before `private_umask()`; None until then.
_user_umask: int | None = None


class DataDirError(RuntimeError):
    """The data dir or a file in it cannot be used safely; the message says what to do."""


def private_umask() -> None:
    """Make files and folders this process creates private (umask 077 on top of the user's).

    Children started through photos_sync.system.execute get the user's umask back.
    """
    global _user_umask
    current = os.umask(0o077)
    if _user_umask is None:
        _user_umask = current
    os.umask(_user_umask | 0o077)


def user_umask() -> int | None:
    """The umask the user ran photos-sync with, for child processes; None if never changed."""
    return _user_umask


def _is_default(path: Path) -> bool:
    from photos_sync.storage.settings_io import default_data_dir

    try:
        return path.resolve() == default_data_dir().resolve()
    except OSError:
        return False


def _users_private_group(info: os.stat_result) -> bool:
    """True if the folder's group is its owner's own user-private group (no other members)."""
    try:
        owner = pwd.getpwuid(info.st_uid)
        group = grp.getgrgid(info.st_gid)
    except KeyError:
        return False
    return (
        owner.pw_gid == info.st_gid
        and group.gr_name == owner.pw_name
        and set(group.gr_mem) <= {owner.pw_name}
    )


def _writable_by_others(info: os.stat_result) -> bool:
    if info.st_mode & stat.S_IWOTH:
        return True
    return bool(info.st_mode & stat.S_IWGRP) and not _users_private_group(info)


def ensure_data_dir(path: Path) -> None:
    """Make sure the data dir `path` exists and is private; DataDirError if it is unsafe.

    Cheap when all is well (one stat). Creates `path` and missing parents 0700; see the
    module docstring for folders that already exist.
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        _create_private(path)
        return
    except OSError as exc:
        raise DataDirError(
            f"cannot use the data dir {path}: {exc.strerror}; set PHOTOS_SYNC_DATA_DIR to a "
            "folder of yours"
        ) from None
    if not stat.S_ISDIR(info.st_mode):
        raise DataDirError(
            f"the data dir {path} is not a folder: move it away, or set PHOTOS_SYNC_DATA_DIR to "
            "a folder"
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode & _OPEN_TO_OTHERS and info.st_uid == os.geteuid() and _is_default(path):
        with contextlib.suppress(OSError):
            os.chmod(path, PRIVATE_DIR)
            return
    if _writable_by_others(info):
        raise DataDirError(
            f"the data dir {path} can be written by other users (mode {mode:04o}), who could "
            f"change what photos-sync runs: run `chmod 700 {path}`, or set PHOTOS_SYNC_DATA_DIR "
            "to a private folder"
        )


def _create_private(path: Path) -> None:
    missing = []
    here = path
    while not here.exists():
        missing.append(here)
        if here.parent == here:
            break
        here = here.parent
    try:
        for folder in reversed(missing):
            with contextlib.suppress(FileExistsError):
                folder.mkdir(mode=PRIVATE_DIR)
                os.chmod(folder, PRIVATE_DIR)  # exactly 0700, whatever the umask
    except OSError as exc:
        raise DataDirError(
            f"cannot create the data dir {path}: {exc.strerror}; set PHOTOS_SYNC_DATA_DIR to a "
            "writable folder"
        ) from None


def open_private(path: Path, flags: int = os.O_WRONLY | os.O_CREAT | os.O_TRUNC) -> int:
    """os.open `path` so that it is 0600: created so, or tightened if it is ours and looser.

    Returns the file descriptor (close-on-exec). OSError as os.open raises it.
    """
    fd = os.open(path, flags | os.O_CLOEXEC, PRIVATE_FILE)
    try:
        _tighten_fd(fd)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _tighten_fd(fd: int) -> None:
    info = os.fstat(fd)
    if stat.S_IMODE(info.st_mode) & _OPEN_TO_OTHERS and info.st_uid == os.geteuid():
        with contextlib.suppress(PermissionError):
            os.fchmod(fd, stat.S_IMODE(info.st_mode) & ~_OPEN_TO_OTHERS)


def write_private(path: Path, data: bytes, mode: int = PRIVATE_FILE) -> None:
    """Replace `path` atomically with `data`: a temporary file beside it created with `mode`
    (0600 by default, never wider even briefly), synced, then renamed over `path`."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sqlite_files(db: Path) -> tuple[Path, Path, Path]:
    """backup.db and the two files SQLite keeps beside it in WAL mode."""
    return db, Path(f"{db}-wal"), Path(f"{db}-shm")


def prepare_db(db: Path) -> None:
    """Before SQLite opens `db`: make it 0600 and check photos-sync can write it.

    Creates an empty 0600 `db` if there is none (SQLite then gives -wal/-shm the same
    mode), tightens our own looser files, and mends -wal/-shm left read-only (0444) by a
    read-only `--status` of older versions. DataDirError, naming the file and the command
    that fixes it, when `db`, its -wal/-shm or the folder cannot be written: SQLite would
    otherwise open it read-only, create files a later writer cannot use, and fail mid-run.

    Existing files are only stat'ed and chmod'ed, never opened: closing a descriptor of a
    SQLite file drops every lock this process holds on it (another Store may be open).
    """
    folder = db.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DataDirError(
            f"the data dir {folder} is read-only: photos-sync keeps its job state in {db.name} "
            f"there (and SQLite needs to create {db.name}-wal beside it); make it writable "
            f"(`chmod u+w {folder}`) or set PHOTOS_SYNC_DATA_DIR to a writable folder"
        )
    main, wal, shm = sqlite_files(db)
    try:
        fd = os.open(main, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_FILE)
    except FileExistsError:
        pass
    except OSError as exc:
        raise DataDirError(_unwritable(main, exc)) from None
    else:
        os.fchmod(fd, PRIVATE_FILE)  # exactly 0600, whatever the umask
        os.close(fd)
    for path in (main, wal, shm):
        try:
            info = path.lstat()
        except FileNotFoundError:
            continue
        mode = stat.S_IMODE(info.st_mode)
        wanted = mode & ~_OPEN_TO_OTHERS
        if path != main and not mode & stat.S_IWUSR and os.access(main, os.W_OK):
            wanted = PRIVATE_FILE  # left 0444 by a read-only open: SQLite copies the DB's mode
        if wanted != mode and info.st_uid == os.geteuid():
            with contextlib.suppress(OSError):
                os.chmod(path, wanted)
        if not os.access(path, os.R_OK | os.W_OK):
            raise DataDirError(_unwritable(path, None))


def _unwritable(path: Path, exc: OSError | None) -> str:
    try:
        info = path.stat()
    except OSError:
        why = exc.strerror if exc else "cannot be read"
        return f"cannot open {path} ({why}): check the data dir's owner and mode"
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid != os.geteuid():
        return (
            f"{path} belongs to another user (uid {info.st_uid}, mode {mode:04o}) and photos-sync "
            f"cannot write it: run photos-sync as that user, or `chown {os.geteuid()} {path}`"
        )
    return (
        f"{path} is read-only (mode {mode:04o}): photos-sync records its job state there; run "
        f"`chmod 600 {path}`"
    )
