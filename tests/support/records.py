"""Domain records for tests that drive the runner's pieces without a store."""

from __future__ import annotations

from photos_sync.core.records import Job
from photos_sync.core.states import JobStatus


def running_job(folder: str = "library") -> Job:
    """A RUNNING job of destination 1 with no figures yet, as the runner holds it mid-sync."""
    return Job(
        id=1,
        destination_id=1,
        run_id="20261130T000000Z",
        folder=folder,
        source_path=f"/srv/immich/{folder}",
        status=JobStatus.RUNNING,
        bytes_total=0,
        bytes_transferred=0,
        bytes_confirmed=0,
        files_total=0,
        files_transferred=0,
        files_archived=0,
        transfer_speed=0.0,
        eta_seconds=None,
        created_at="",
        started_at=None,
        completed_at=None,
        last_update=None,
        error_message=None,
        retry_count=0,
        priority=2,
        owner_pid=None,
        owner_host=None,
        owner_token=None,
    )
