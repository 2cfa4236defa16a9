"""What an S3 bucket says about versioning and Object Lock, read with rclone (#17).

rclone has no command that prints a bucket's Object Lock configuration; what it can read is an
object's lock (`lsjson -M`: object-lock-mode, object-lock-retain-until-date). So the lock is
seen on objects: a probe written at `--setup` (core/append_only.LOCK_PROBE), the backup's own
files at `--check`. Every call goes through the destination's CryptRemote environment.
"""

from __future__ import annotations

import json
from typing import Any

from photos_sync.core.append_only import (
    LOCK_PROBE,
    metadata_argv,
    probe_write_argv,
    versioning_argv,
)
from photos_sync.core.rclone_args import simple_argv
from photos_sync.rclone.remote import CryptRemote
from photos_sync.system import execute

_PROBE_CONTENT = b"photos-sync: proof that Object Lock works on this bucket; safe to ignore\n"


async def bucket_versioning(remote: CryptRemote, bucket: str) -> str:
    """The bucket's versioning status: "Enabled", "Suspended" or "Unversioned"
    (DestinationError when it cannot be read)."""
    result = await execute.run_captured(
        versioning_argv(remote.binary, bucket), remote.child_env(), timeout=120
    )
    if result.returncode != 0:
        raise remote.failure("reading the bucket's versioning", result)
    try:
        status = json.loads(result.stdout or b'""')
    except ValueError:
        status = result.stdout.decode("utf-8", "replace").strip()
    return str(status or "Unversioned")


def _metadata(entry: object) -> dict[str, Any]:
    if isinstance(entry, dict) and isinstance(entry.get("Metadata"), dict):
        return dict(entry["Metadata"])
    return {}


async def object_metadata(remote: CryptRemote, path: str) -> dict[str, Any]:
    """The metadata of the raw object at `path` (e.g. "psbase:bucket/x")."""
    result = await execute.run_captured(
        metadata_argv(remote.binary, path, stat=True), remote.child_env(), timeout=120
    )
    if result.returncode != 0:
        raise remote.failure(f"reading the metadata of {path}", result)
    return _metadata(json.loads(result.stdout or b"null"))


async def top_level_metadata(remote: CryptRemote, folder: str) -> list[dict[str, Any]]:
    """The metadata of each file at the top of the raw folder `folder` (the backup's marker)."""
    result = await execute.run_captured(
        metadata_argv(remote.binary, folder, stat=False), remote.child_env(), timeout=120
    )
    if result.returncode != 0:
        raise remote.failure(f"listing {folder}", result)
    entries = json.loads(result.stdout or b"[]")
    return [_metadata(e) for e in entries] if isinstance(entries, list) else []


async def write_probe(remote: CryptRemote, folder: str, *, lock: bool) -> dict[str, Any]:
    """Write the lock probe into the raw `folder` ("psbase:bucket[/path]"; with a one-day
    per-object lock when `lock`) and return its metadata as stored (DestinationError when the
    storage refused the write)."""
    path = f"{folder.rstrip('/')}/{LOCK_PROBE}"
    result = await execute.run_captured(
        probe_write_argv(remote.binary, path, lock=lock),
        remote.child_env(),
        stdin=_PROBE_CONTENT,
        timeout=120,
    )
    if result.returncode != 0:
        raise remote.failure("writing the Object Lock probe", result)
    return await object_metadata(remote, path)


async def delete_probe(remote: CryptRemote, folder: str) -> bool:
    """Delete the probe (a delete marker on a versioned bucket; its locked version stays until
    its retention ends). False when the storage refused."""
    path = f"{folder.rstrip('/')}/{LOCK_PROBE}"
    result = await execute.run_captured(
        simple_argv(remote.binary, "deletefile", path), remote.child_env(), timeout=120
    )
    return result.returncode == 0
