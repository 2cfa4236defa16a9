"""`photos-sync backup --remove NAME`: photos-sync forgets a destination, never its data.

What goes: the destination's row and, with it (ON DELETE CASCADE), its backup jobs, restore
jobs and verify results; its manifest (`<data dir>/manifests/<id>.*`: a destination set up
later may get the same id, and must not inherit it). What stays: the backed-up files (the
manifest's copy among them), any 1Password item, and the key file unless the caller deletes
it after its own confirmation (without the key file, or a recovery kit printed before, the
backup cannot be decrypted). Refused while a backup, verify
or restore uses the destination.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from photos_sync.core.config import Settings
from photos_sync.core.destinations import (
    DestinationError,
    destination_type,
    parse_op_locator,
    parse_secrets_ref,
    unknown_destination_message,
)
from photos_sync.core.events import RunRefused, UsageProblem
from photos_sync.core.records import Destination
from photos_sync.core.states import JobStatus, Staleness, stale_threshold
from photos_sync.engine.destination import destination_lock
from photos_sync.storage.manifest_db import manifest_path
from photos_sync.storage.store import RestoreAndVerifyStore, Store
from photos_sync.system import procinfo


@dataclass(frozen=True, slots=True)
class RemovalPlan:
    """What removing a destination touches, for the confirmation and the final message."""

    name: str
    destination_id: int
    #: where its backup lies ("/mnt/usb", "b2 bucket …"): left untouched
    location: str
    #: 1Password item holding its keys (left untouched), if they are kept there
    op_item: str | None
    #: its key file, when it has one that no other destination uses
    key_file: Path | None
    #: a key file another destination uses too (never deleted)
    shared_key_file: Path | None


async def plan_removal(store: Store, name: str) -> RemovalPlan:
    """The plan for removing `name`; UsageProblem when there is no such destination."""
    destinations = await store.list_destinations()
    found = next((d for d in destinations if d.name == name), None)
    if found is None:
        raise UsageProblem(unknown_destination_message(name, [d.name for d in destinations]))
    op_item, key_file, shared = None, None, None
    with contextlib.suppress(DestinationError):
        kind, locator = parse_secrets_ref(found.secrets_ref)
        if kind == "op":
            vault, title = parse_op_locator(locator)
            op_item = f'1Password item "{title}" (vault "{vault}")'
        elif kind == "file":
            others = [d.secrets_ref for d in destinations if d.id != found.id]
            if found.secrets_ref in others:
                shared = Path(locator)
            else:
                key_file = Path(locator)
    return RemovalPlan(
        name, found.id, destination_type(found.type).describe(found), op_item, key_file, shared
    )


def delete_manifest(data_dir: Path, destination_id: int) -> None:
    """Delete the destination's manifest: the SQLite file with its journals, one set aside as
    unreadable, and what a run left behind in the manifests folder for it."""
    folder = manifest_path(data_dir, destination_id).parent
    patterns = (
        f"{destination_id}.*",  # N.sqlite, -wal, -shm, .broken-<time>, N.importing
        f"send-{destination_id}-*",
        f"read-{destination_id}-*",
        f"upload-{destination_id}.*",
        f"download-{destination_id}.*",
    )
    for pattern in patterns:
        for path in folder.glob(pattern):
            path.unlink(missing_ok=True)


def busy_message(settings: Settings, plan: RemovalPlan) -> str | None:
    """Why the destination cannot be removed right now (a run holds its lock), else None: a
    first look, before any question; `remove_destination` looks again while removing."""
    with destination_lock(settings.data_dir, plan.destination_id) as locked:
        return None if locked else _busy(plan.name)


def _busy(name: str) -> str:
    return (
        f"a backup or verify of {name!r} is running: remove the destination after it has "
        "ended (see `photos-sync backup --status`)"
    )


async def _refuse_if_in_use(settings: Settings, store: Store, destination: Destination) -> None:
    threshold = stale_threshold(settings.stats_interval)
    for job in await store.jobs_with_status(JobStatus.RUNNING, destination.id):
        if procinfo.job_staleness(job, threshold)[0] is not Staleness.ORPHANED:
            raise RunRefused(
                f"a backup to {destination.name!r} is running (pid {job.owner_pid} on "
                f"{job.owner_host}): remove the destination after it has ended"
            )
    for restore in await RestoreAndVerifyStore(store).recent_restores(limit=50):
        if (
            restore.destination_id == destination.id
            and restore.status is JobStatus.RUNNING
            and restore.owner_pid is not None
            and procinfo.pid_alive(restore.owner_pid)
        ):
            raise RunRefused(
                f"a restore from {destination.name!r} is running (pid {restore.owner_pid}): "
                "remove the destination after it has ended"
            )


async def remove_destination(settings: Settings, store: Store, name: str) -> int:
    """Delete destination `name` and its history; return how many backup jobs went.

    Holds the destination's run lock meanwhile, so no backup or verify can start on it;
    RunRefused when one is running, UsageProblem when `name` is unknown.
    """
    destination = await store.get_destination(name)
    if destination is None:
        known = [d.name for d in await store.list_destinations()]
        raise UsageProblem(unknown_destination_message(name, known))
    with destination_lock(settings.data_dir, destination.id) as locked:
        if not locked:
            raise RunRefused(_busy(name))
        await _refuse_if_in_use(settings, store, destination)
        removed = await store.delete_destination(destination.id)
        delete_manifest(settings.data_dir, destination.id)
    from photos_sync.reporting.metrics import write_textfile

    await write_textfile(settings, store)  # monitoring stops seeing the destination
    return removed
