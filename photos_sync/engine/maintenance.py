"""`backup --reset`: the rule for clearing job state, one place for the command line (no daemon)
and the daemon's `reset` method."""

from __future__ import annotations

from photos_sync.core.destinations import unknown_destination_message
from photos_sync.core.events import RunRefused, UsageProblem
from photos_sync.storage.store import Store


async def reset_jobs(store: Store, destination: str | None) -> int:
    """Delete the job history of `destination` (of every destination when None); return how
    many jobs went. The backed-up files are never touched.

    Raises UsageProblem for an unknown destination, and RunRefused while a job of it (any job,
    when `destination` is None) is RUNNING, whichever process runs it.
    """
    destination_id = None
    if destination is not None:
        found = await store.get_destination(destination)
        if found is None:
            known = [d.name for d in await store.list_destinations()]
            raise UsageProblem(unknown_destination_message(destination, known))
        destination_id = found.id
    running = await store.active_job(destination_id)
    if running is not None:
        raise RunRefused(
            f"a job is RUNNING (pid {running.owner_pid}); stop that backup before --reset"
        )
    return await store.reset(destination_id)
