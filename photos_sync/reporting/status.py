"""Collect what `--status` shows from the store (the daemon adds its live figures on top).

`status_document`, `manifest_section` and `percent` are pure: they shape the `--status --json`
contract.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from photos_sync.core.config import Settings
from photos_sync.core.manifest import (
    ManifestHead,
    Reconcile,
    destination_key,
    run_reconcile,
)
from photos_sync.core.records import Destination, Job, to_iso, utcnow
from photos_sync.core.states import JobStatus, Staleness, stale_threshold
from photos_sync.storage.manifest_db import ManifestError, manifest_path
from photos_sync.storage.manifest_reader import ManifestFacts, read_manifest_facts
from photos_sync.storage.store import RestoreAndVerifyStore, Store
from photos_sync.system import procinfo


def percent(job: Job) -> float:
    if job.status is JobStatus.COMPLETED:
        return 100.0
    if job.bytes_total <= 0:
        return 0.0
    return round(100.0 * min(job.bytes_transferred, job.bytes_total) / job.bytes_total, 1)


def status_document(
    destinations: Sequence[Destination],
    jobs_by_destination: Mapping[int, Sequence[Job]],
    staleness: Mapping[int, Staleness],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The `--status --json` object: {"destinations": [...], "jobs": [...]}.

    Each job carries every stored job field (status upper case), plus `destination` (its
    name), `percent`, and `stale` (true when a RUNNING job is silent past the threshold).
    """
    names = {d.id: d.name for d in destinations}
    jobs = []
    for destination in destinations:
        for job in jobs_by_destination.get(destination.id, ()):
            item = job.as_dict()
            item["destination"] = names[job.destination_id]
            item["percent"] = percent(job)
            item["stale"] = staleness.get(job.id) is Staleness.STALE
            jobs.append(item)
    document = {"destinations": [d.as_dict() for d in destinations], "jobs": jobs}
    if extra:
        document.update(extra)
    return document


async def gather_status(settings: Settings, store: Store) -> dict[str, Any]:
    """The status document (see status_document) of every destination's latest run."""
    destinations = await store.list_destinations()
    threshold = stale_threshold(settings.stats_interval)
    jobs_by_destination = {}
    staleness: dict[int, Staleness] = {}
    for destination in destinations:
        jobs = await store.latest_run_jobs(destination.id)
        jobs_by_destination[destination.id] = jobs
        for job in jobs:
            if job.status is JobStatus.RUNNING:
                staleness[job.id] = procinfo.job_staleness(job, threshold)[0]
    document = status_document(destinations, jobs_by_destination, staleness)
    verifies = RestoreAndVerifyStore(store)
    for destination, entry in zip(destinations, document["destinations"], strict=True):
        entry["last_verify"] = await verifies.last_verify(destination.id)
        entry["manifest"] = await _manifest_of(settings, destination)
        entry["consistency"] = entry["manifest"].pop("consistency", None)
    names = {d.id: d.name for d in destinations}
    document["restores"] = [
        {**job.as_dict(), "destination": names.get(job.destination_id)}
        for job in await verifies.recent_restores()
    ]
    from photos_sync.immich.server import status_section

    document["immich"] = status_section(settings)  # DB dump health and the last request (#9)
    return document


async def _manifest_of(settings: Settings, destination: Destination) -> dict[str, Any]:
    """The manifest part of a destination's status, from its manifest read read-only (a
    count of a million rows takes a moment: off the event loop)."""
    path = manifest_path(settings.data_dir, destination.id)
    try:
        facts = await asyncio.to_thread(read_manifest_facts, path)
    except ManifestError as exc:
        return manifest_section(None, destination, settings, utcnow(), error=str(exc))
    return manifest_section(facts, destination, settings, utcnow())


def manifest_section(
    facts: ManifestFacts | None,
    destination: Destination,
    settings: Settings,
    now: datetime,
    *,
    error: str | None = None,
) -> dict[str, Any]:
    """The `manifest` object of a destination in `--status --json` (#15):

    - `present`: whether a manifest file exists; `files`: the files it records;
    - `reconciled_at`: when the last full sync rebuilt it (null: none has yet);
    - `next_reconcile_at`: when a run is next a full sync by BACKUP_RECONCILE_EVERY (null:
      never reconciled, or the setting is off);
    - `unfinished`: folders a run began changing and did not finish (they sync in full);
    - `next_run`: "incremental", or "full sync: <why>" — what the next run does as far as
      this machine can tell (the run also reads the manifest's head in the destination);
    - `error`: why the file could not be read here (a run that cannot read it either sets it
      aside and syncs in full).
    """
    every = settings.reconcile_every
    section: dict[str, Any] = {
        "present": facts is not None or error is not None,
        "files": 0,
        "reconciled_at": None,
        "next_reconcile_at": None,
        "unfinished": [],
        "next_run": "full sync: no manifest yet",
        "error": error,
    }
    if error is not None:
        section["next_run"] = "unknown: the manifest could not be read"
        return section
    if facts is None:
        return section
    state = facts.state
    key = destination_key(
        destination.type, destination.bucket_name, destination.remote_path, destination.endpoint
    )
    # As far as this machine knows, the destination's head names the last copy it uploaded.
    head = ManifestHead(state.copy_run, key, facts.files) if state.copy_run else None
    reason = run_reconcile(
        state,
        head,
        key=key,
        now=now,
        every=every,
        full=False,
        follow_symlinks=settings.follow_symlinks,
    )
    unfinished = sorted(state.unfinished)
    section.update(
        consistency=facts.consistency,
        files=facts.files,
        reconciled_at=to_iso(state.reconciled_at) if state.reconciled_at else None,
        next_reconcile_at=_next_reconcile(state.reconciled_at, every),
        unfinished=unfinished,
    )
    if reason is not None:
        section["next_run"] = f"full sync: {reason.value}"
    elif unfinished:
        folders = ", ".join(f"{f}/" for f in unfinished)
        section["next_run"] = f"full sync of {folders}: {Reconcile.UNFINISHED.value}"
    else:
        section["next_run"] = "incremental"
    return section


def _next_reconcile(reconciled_at: datetime | None, every: timedelta | None) -> str | None:
    if reconciled_at is None or every is None:
        return None
    return to_iso(reconciled_at + every)


def only_destination(document: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The status document narrowed to destination `name` (`--status --to NAME`): its entry,
    jobs, restores and next scheduled runs; the daemon's own state and Immich's stay. Pure."""
    narrowed = dict(document)
    narrowed["destinations"] = [d for d in document.get("destinations") or [] if d["name"] == name]
    for key in ("jobs", "restores"):
        if key in document:
            narrowed[key] = [i for i in document[key] or [] if i.get("destination") == name]
    daemon = document.get("daemon")
    if isinstance(daemon, Mapping):
        narrowed["daemon"] = {
            **daemon,
            **{
                key: {k: v for k, v in (daemon.get(key) or {}).items() if k == name}
                for key in ("next_run", "next_verify")
                if key in daemon
            },
        }
    return narrowed
