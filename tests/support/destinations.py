"""A configured local destination without paying for a whole setup each time.

`photos-sync backup --setup local` starts the CLI and about ten rclone processes (key checks,
a test write through encryption): a few CPU-seconds, and most end-to-end tests need a
destination only as their starting point. Each test process therefore runs the REAL setup
once per (destination name, setup-relevant environment) into a private template, and later
tests get a copy of what it wrote: the data dir (backup.db, backup.log, the 0600 key file)
and the destination folder (its encrypted marker). The two paths setup records (the
destination folder and the key file) and the log line naming them are rewritten to the
test's own paths, so the copy is byte for byte what a setup in that test would have left,
apart from the timestamps and the generated password.

Whenever the test's environment could make a setup write something else (a `.env` file, an
existing data dir, a variable pointing into the test's own folders) `clone_local` declines
and the caller runs the real setup. `TESTS_REAL_SETUP=1 pytest ...` turns copies off (every
destination then comes from the CLI, as before; for timing or for doubt).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from photos_sync.core.config import Settings
from tests.support.procs import TAG_VARIABLE

#: Read once, at import: isolated_env has not run yet, and the name is none of photos-sync's.
COPIES = os.environ.get("TESTS_REAL_SETUP") != "1"

#: Prefixes of the variables photos-sync reads (as tests/conftest.py's isolated_env clears).
_OURS = ("BACKUP_", "PHOTOS_SYNC_", "RCLONE_", "OP_")

#: Variables that differ per test but cannot change what setup writes (the data dir's
#: location is handled by the copy itself; the Immich path only changes setup's "Next:" hint).
_PER_TEST = frozenset(
    {
        "PHOTOS_SYNC_DATA_DIR",
        "PHOTOS_SYNC_SOCKET",
        "PHOTOS_SYNC_SYSTEM_UNIT_DIR",
        "BACKUP_IMMICH_PATH",
        TAG_VARIABLE,
    }
)


@dataclass(frozen=True)
class _Template:
    data_dir: Path
    dest: Path


_templates: dict[tuple[str, tuple[tuple[str, str], ...]], _Template] = {}
_root: list[Path] = []


def _template_root() -> Path:
    if not _root:
        _root.append(Path(tempfile.mkdtemp(prefix="ps-setup-template-")))
        atexit.register(shutil.rmtree, _root[0], True)
    return _root[0]


def _setup_environment(
    data_dir: Path, environ: Mapping[str, str]
) -> tuple[tuple[str, str], ...] | None:
    """The variables that can shape a setup's result, or None when this environment may make
    setup write something a copy would not reproduce."""
    tmp_root = str(data_dir.parent)
    relevant = []
    for key, value in environ.items():
        if not key.startswith(_OURS) or key in _PER_TEST:
            continue
        if tmp_root in value:
            return None  # e.g. an rclone spy or op double keeping state in the test's folder
        relevant.append((key, value))
    # What rclone writes at the destination (the marker) gets the modes of the umask.
    umask = os.umask(0o022)
    os.umask(umask)
    relevant.append(("umask", f"{umask:04o}"))
    return tuple(sorted(relevant))


def _make_template(name: str, key: tuple[tuple[str, str], ...]) -> _Template:
    from tests.support.cli import photos_sync

    base = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=_template_root()))
    for folder in ("home", "cwd", "run", "dest"):
        (base / folder).mkdir()
    env = {
        **{name: value for name, value in key if name != "umask"},
        "HOME": str(base / "home"),
        "PHOTOS_SYNC_DATA_DIR": str(base / "data"),
        "PHOTOS_SYNC_SOCKET": str(base / "run" / "daemon.sock"),
        "PHOTOS_SYNC_SYSTEM_UNIT_DIR": str(base / "etc-systemd-system"),
    }
    result = photos_sync(
        "backup",
        "--setup",
        "local",
        "--name",
        name,
        "--path",
        str(base / "dest"),
        "--yes",
        env=env,
        cwd=base / "cwd",
    )
    assert result.returncode == 0, result.stderr
    return _Template(base / "data", base / "dest")


def _fingerprint(data_dir: Path) -> tuple[tuple[str, int, int], ...]:
    return tuple(
        (str(p.relative_to(data_dir)), p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(data_dir.rglob("*"))
        if p.is_file()
    )


#: Data dirs this process filled by copying, with what they held right after: a second
#: destination may be added by copying only while nothing else has touched them.
_cloned: dict[Path, tuple[tuple[str, int, int], ...]] = {}


def clone_local(dest: Path, name: str = "nas", env: Mapping[str, str] | None = None) -> bool:
    """Leave in this test's data dir and in the folder `dest` (missing or empty) what
    `photos-sync backup --setup local --name NAME --path DEST --yes`, run with this test's
    environment plus `env`, would; False (nothing done) when a copy could differ from a real
    setup here, so the caller must run it."""
    existed = dest.exists()
    if not existed:
        dest.mkdir(parents=True)
    if _clone(dest, name, {**os.environ, **(env or {})}):
        return True
    if not existed:
        dest.rmdir()
    return False


def _clone(dest: Path, name: str, environ: Mapping[str, str]) -> bool:
    data_dir_value = environ.get("PHOTOS_SYNC_DATA_DIR")
    if not COPIES or not data_dir_value:
        return False
    data_dir = Path(data_dir_value)
    adding = data_dir.exists()
    if adding and _cloned.get(data_dir) != _fingerprint(data_dir):
        return False
    if (Path.cwd() / ".env").exists() or any(dest.iterdir()):
        return False
    key = _setup_environment(data_dir, environ)
    if key is None:
        return False
    template = _templates.get((name, key))
    if template is None:
        template = _templates[(name, key)] = _make_template(name, key)
    if adding and (data_dir / "secrets" / f"{name}.json").exists():
        return False

    renames = {
        str(template.data_dir): str(data_dir),
        str(template.dest): str(dest),
    }

    def moved(text: str | None) -> str | None:
        for old, new in renames.items():
            text = text.replace(old, new) if text is not None else None
        return text

    shutil.copytree(template.dest, dest, symlinks=True, dirs_exist_ok=True)
    if adding:
        _add_to(data_dir, template, name, moved)
    else:
        shutil.copytree(template.data_dir, data_dir, symlinks=True)
        with contextlib.closing(sqlite3.connect(data_dir / "backup.db")) as conn:
            rows = conn.execute(
                "SELECT id, remote_path, secrets_ref FROM backup_destinations"
            ).fetchall()
            for row_id, remote_path, secrets_ref in rows:
                conn.execute(
                    "UPDATE backup_destinations SET remote_path = ?, secrets_ref = ? WHERE id = ?",
                    (moved(remote_path), moved(secrets_ref), row_id),
                )
            conn.commit()
        log = data_dir / "backup.log"
        if log.exists():
            log.write_text(moved(log.read_text()) or "")
    _cloned[data_dir] = _fingerprint(data_dir)
    return True


def _add_to(
    data_dir: Path, template: _Template, name: str, moved: Callable[[str | None], str | None]
) -> None:
    """A second destination in a data dir filled by clone_local: its key file, its row (the
    next id, as setup's INSERT gets), and setup's log lines."""
    for source in sorted((template.data_dir / "secrets").iterdir()):
        target = data_dir / "secrets" / source.name
        if not target.exists() or source.name == f"{name}.json":
            shutil.copy2(source, target)
    with contextlib.closing(sqlite3.connect(template.data_dir / "backup.db")) as conn:
        conn.row_factory = sqlite3.Row
        row = dict(conn.execute("SELECT * FROM backup_destinations").fetchone())
    del row["id"]
    row["remote_path"] = moved(row["remote_path"])
    row["secrets_ref"] = moved(row["secrets_ref"])
    columns = ", ".join(row)
    marks = ", ".join("?" for _ in row)
    with contextlib.closing(sqlite3.connect(data_dir / "backup.db")) as conn:
        conn.execute(
            f"INSERT INTO backup_destinations ({columns}) VALUES ({marks})", tuple(row.values())
        )
        conn.commit()
    # backup.log is overwritten by each command (system/logs.py): setup's lines replace it.
    log = template.data_dir / "backup.log"
    if log.exists():
        (data_dir / "backup.log").write_text(moved(log.read_text()) or "")


def clone_in_process(settings: Settings, dest: Path, name: str = "nas") -> bool:
    """As clone_local, for a test that would call photos_sync.engine.setup.setup_local(
    settings, store, name=NAME, path=DEST) itself: declines unless `settings` are this
    environment's own (a test may pass altered ones). `dest` need not exist (setup creates
    it); the copy leaves no backup.log (an in-process setup configures no logging)."""
    from photos_sync.storage.settings_io import load_settings

    if not COPIES or settings != load_settings():
        return False
    if not clone_local(dest, name):
        return False
    log = settings.data_dir / "backup.log"
    log.unlink(missing_ok=True)
    _cloned[settings.data_dir] = _fingerprint(settings.data_dir)
    return True
