"""Collect what `--status` shows from the store (the daemon adds its live figures on top)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from photos_sync.cli.render import status_document
from photos_sync.core.config import Settings
from photos_sync.core.states import JobStatus, Staleness, stale_threshold
from photos_sync.storage.store import RestoreAndVerifyStore, Store
from photos_sync.system import procinfo


async def gather_status(settings: Settings, store: Store) -> dict[str, Any]:
    """The status document (see render.status_document) of every destination's latest run."""
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
