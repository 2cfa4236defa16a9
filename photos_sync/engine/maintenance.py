"""`backup --reset`: the rule for clearing job state, one place for the command line (no daemon)
and the daemon's `reset` method."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from photos_sync.core.config import Settings
from photos_sync.core.destinations import unknown_destination_message
from photos_sync.core.events import RunRefused, UsageProblem
from photos_sync.storage.manifest_db import ManifestDB, ManifestError, manifest_path
from photos_sync.storage.store import Store


async def reset_jobs(settings: Settings, store: Store, destination: str | None) -> int:
    """Delete the job history of `destination` (of every destination when None) and forget its
    manifest, so that its next run is a full sync that rebuilds it (#15); return how many jobs
    went. The backed-up files are never touched, nor the manifest's copy in the destination.

    Raises UsageProblem for an unknown destination, and RunRefused while a job of it (any job,
    when `destination` is None) is RUNNING, whichever process runs it.
    """
    destinations = await store.list_destinations()
    destination_id = None
    if destination is not None:
        found = next((d for d in destinations if d.name == destination), None)
        if found is None:
            known = [d.name for d in destinations]
            raise UsageProblem(unknown_destination_message(destination, known))
        destination_id = found.id
    running = await store.active_job(destination_id)
    if running is not None:
        raise RunRefused(
            f"a job is RUNNING (pid {running.owner_pid}); stop that backup before --reset"
        )
    for item in destinations:
        if destination_id is None or item.id == destination_id:
            path = manifest_path(settings.data_dir, item.id)
            await asyncio.to_thread(forget_manifest, path, item.name)
    return await store.reset(destination_id)


def forget_manifest(path: Path, name: str) -> None:
    """Empty the manifest at `path` (of destination `name`): its next run reconciles.

    A manifest that is not there is not created; one that cannot be read is deleted (a run
    would set it aside and reconcile). RunRefused when another process holds it locked."""
    if not path.exists():
        return
    try:
        manifest = ManifestDB(path)
    except ManifestError:
        delete_manifest_files(path)
        return
    try:
        manifest.forget()
    except sqlite3.OperationalError as exc:
        raise RunRefused(
            f"the manifest of {name!r} is in use ({exc}): stop the backup that uses it before "
            "--reset"
        ) from None
    except sqlite3.DatabaseError:
        unreadable = True
    else:
        unreadable = False
    finally:
        manifest.close()
    if unreadable:
        delete_manifest_files(path)


def delete_manifest_files(path: Path) -> None:
    """Delete the manifest at `path` with its SQLite journal files."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
