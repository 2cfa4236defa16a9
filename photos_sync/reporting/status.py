"""Collect what `--status` shows from the store (the daemon adds its live figures on top).

`status_document` and `percent` are pure: they shape the `--status --json` contract.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from photos_sync.core.config import Settings
from photos_sync.core.records import Destination, Job
from photos_sync.core.states import JobStatus, Staleness, stale_threshold
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
    names = {d.id: d.name for d in destinations}
    document["restores"] = [
        {**job.as_dict(), "destination": names.get(job.destination_id)}
        for job in await verifies.recent_restores()
    ]
    from photos_sync.immich.server import status_section

    document["immich"] = status_section(settings)  # DB dump health and the last request (#9)
    return document


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
