"""Past runs: backup_jobs grouped by (destination, run_id). `summarise_runs` is pure;
`load_history` reads the rows (Store.job_history)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from photos_sync.core.states import JobStatus
from photos_sync.core.units import from_iso
from photos_sync.storage.store import Store


def _result(statuses: set[str]) -> str:
    if JobStatus.RUNNING in statuses:
        return "running"
    if statuses == {JobStatus.COMPLETED}:
        return "completed"
    if JobStatus.FAILED in statuses:
        return "failed"
    if JobStatus.INTERRUPTED in statuses:
        return "interrupted"
    return "pending"


def summarise_runs(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One dict per run, newest first: destination, run_id, started_at, finished_at,
    duration_seconds, bytes, files, folders, retries, result, errors."""
    runs: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for row in rows:
        runs.setdefault((str(row["name"]), str(row["run_id"])), []).append(row)
    summaries = []
    for (destination, run_id), jobs in runs.items():
        statuses = {str(j["status"]) for j in jobs}
        starts = [
            j["started_at"] or j["created_at"] for j in jobs if j["started_at"] or j["created_at"]
        ]
        ends = [j["completed_at"] or j["last_update"] for j in jobs]
        result = _result(statuses)
        started = min(starts) if starts else None
        finished = None
        if result not in ("running", "pending") and all(ends):
            finished = max(e for e in ends if e)
        begin, end = from_iso(started), from_iso(finished)
        summaries.append(
            {
                "destination": destination,
                "run_id": run_id,
                "started_at": started,
                "finished_at": finished,
                "duration_seconds": round((end - begin).total_seconds(), 1)
                if begin and end
                else None,
                "bytes": sum(int(j["bytes_transferred"] or 0) for j in jobs),
                "files": sum(int(j["files_transferred"] or 0) for j in jobs),
                "folders": len(jobs),
                "retries": sum(int(j["retry_count"] or 0) for j in jobs),
                "failed_jobs": sum(1 for j in jobs if j["status"] == JobStatus.FAILED),
                "result": result,
                "errors": [
                    f"{j['folder']}/: {j['error_message']}"
                    for j in jobs
                    if j["error_message"] and j["status"] != JobStatus.COMPLETED
                ],
            }
        )
    summaries.sort(key=lambda s: (s["started_at"] or "", s["run_id"]), reverse=True)
    return summaries


async def load_history(
    store: Store, destination: str | None = None, limit: int | None = 50
) -> list[dict[str, Any]]:
    """The latest `limit` runs (all when None), newest first, of one or every destination."""
    rows = await store.job_history(destination)
    runs = summarise_runs(rows)
    return runs if limit is None else runs[:limit]
