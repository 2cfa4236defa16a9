"""The local key-file secret store: one 0600 JSON file per destination in a 0700 folder.

Files are written atomically (a 0600 temporary file, fsync, rename), so a crash never leaves
a half-written key file, and refused on read when others could read them.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import string
from collections.abc import Mapping
from pathlib import Path

from photos_sync.storage.datadir import DataDirError, ensure_data_dir, write_private

_ALPHABET = string.ascii_letters + string.digits


class SecretsError(RuntimeError):
    """Secrets cannot be read or written; the message says what to do."""


def generate_password(length: int = 32) -> str:
    """A random password from letters and digits (32 chars ~ 190 bits)."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def ensure_private_dir(path: Path) -> None:
    """Create `path` (the data dir's `secrets/`, and the data dir if need be) and make it 0700."""
    try:
        ensure_data_dir(path.parent)
    except DataDirError as exc:
        raise SecretsError(str(exc)) from None
    try:
        path.mkdir(exist_ok=True)
        os.chmod(path, 0o700)
    except OSError as exc:
        raise SecretsError(
            f"cannot create {path}: {exc.strerror}; set PHOTOS_SYNC_DATA_DIR to a writable folder"
        ) from None


def write_key_file(path: Path, values: Mapping[str, str]) -> None:
    """Atomically write `values` as JSON into `path` with mode 0600."""
    ensure_private_dir(path.parent)
    write_private(path, json.dumps(dict(values), indent=2, sort_keys=True).encode())


def read_key_file(path: Path) -> dict[str, str]:
    """The secrets in `path`; SecretsError if it is missing, unreadable, or open to others."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise SecretsError(
            f"key file {path} is missing: restore it from your copy of the recovery kit, or "
            "run `photos-sync backup --setup` again"
        ) from None
    except OSError as exc:
        raise SecretsError(f"cannot read key file {path}: {exc.strerror}") from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretsError(
            f"key file {path} is readable by others (mode {stat.S_IMODE(info.st_mode):04o}): "
            f"run chmod 600 {path}"
        )
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SecretsError(f"key file {path} is not valid JSON ({exc}); restore it") from None
    if not isinstance(values, dict):
        raise SecretsError(f"key file {path} does not hold a JSON object; restore it")
    return {str(k): str(v) for k, v in values.items()}
