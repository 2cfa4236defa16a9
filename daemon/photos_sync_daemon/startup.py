"""Start-up recovery: settle the RUNNING jobs a previous process left, then resume unfinished work.

A RUNNING job whose owner is gone becomes INTERRUPTED. One whose owner lives (a foreground
backup, another host's daemon) is left alone and reported in `status` ("foreign_jobs"); when
it has gone silent for too long, the notifiers hear of it. Every other destination whose
latest run has a resumable job gets a run queued.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from photos_sync.core.config import Settings
from photos_sync.core.records import Job
from photos_sync.core.states import JobStatus, Staleness, is_resumable, stale_threshold
from photos_sync.storage.store import Store
from photos_sync.system import procinfo
from photos_sync.system.logs import get_logger

from .queue import RunQueue

log = get_logger("photos_sync.daemon")

#: Tells the notifiers about a silent job: (destination, folder, owner pid, silent seconds).
StaleJobNotice = Callable[[str, str, int | None, float], None]


@dataclass
class RunningElsewhere:
    """RUNNING jobs owned by a live process: their destinations are not resumed."""

    destination_ids: set[int] = field(default_factory=set)
    #: One entry per job, as `status` shows them under "foreign_jobs".
    jobs: list[dict[str, Any]] = field(default_factory=list)


async def settle_running_jobs(
    store: Store, settings: Settings, stale_job: StaleJobNotice
) -> RunningElsewhere:
    """Mark orphaned RUNNING jobs INTERRUPTED; return those whose owner still lives."""
    threshold = stale_threshold(settings.stats_interval)
    elsewhere = RunningElsewhere()
    for job in await store.jobs_with_status(JobStatus.RUNNING):
        verdict, silence = procinfo.job_staleness(job, threshold)
        if verdict is Staleness.ORPHANED:
            await store.mark_interrupted(job.id, "the process running it stopped")
            log.info("job_orphaned", job_id=job.id, folder=job.folder, pid=job.owner_pid)
            continue
        elsewhere.destination_ids.add(job.destination_id)
        stale = verdict is Staleness.STALE
        if stale:
            name = await _destination_name(store, job.destination_id)
            stale_job(name, job.folder, job.owner_pid, silence)
        elsewhere.jobs.append(_foreign_entry(job, stale, silence))
        log.warning(
            "job_running_elsewhere",
            job_id=job.id,
            pid=job.owner_pid,
            host=job.owner_host,
            stale=stale,
        )
    return elsewhere


async def resume_unfinished(
    store: Store, queue: RunQueue, settings: Settings, skip: set[int]
) -> list[str]:
    """Queue a run for each destination (not in `skip`) whose latest run has a resumable job;
    return their names. They are queued together: one Immich dump for those whose resumed run
    still has backups/ to do."""
    resumed = []
    for destination in await store.list_destinations():
        if destination.id in skip:
            continue
        jobs = await store.latest_run_jobs(destination.id)
        if any(
            is_resumable(j.status, j.retry_count, settings.max_retries, j.refused) for j in jobs
        ):
            resumed.append(destination.name)
    for entry in await queue.submit_each(resumed, reason="resume"):
        if "error" in entry:
            log.warning(
                "run_resume_refused", destination=entry["destination"], error=entry["error"]
            )
        else:
            log.info("run_resumed", destination=entry["run"]["destination"])
    return resumed


def _foreign_entry(job: Job, stale: bool, silence: float) -> dict[str, Any]:
    return {
        "job_id": job.id,
        "folder": job.folder,
        "owner_pid": job.owner_pid,
        "owner_host": job.owner_host,
        "stale": stale,
        "silent_seconds": round(silence, 1),
    }


async def _destination_name(store: Store, destination_id: int) -> str:
    for destination in await store.list_destinations():
        if destination.id == destination_id:
            return destination.name
    return str(destination_id)
