"""engine.maintenance.reset_jobs: the `backup --reset` rule the CLI and the daemon share,
on a real SQLite store."""

from __future__ import annotations

from pathlib import Path

import pytest

from photos_sync.core.events import RunRefused, UsageProblem
from photos_sync.core.states import JobStatus
from photos_sync.engine.maintenance import reset_jobs
from photos_sync.storage.store import Store

OWNER = (4242, "host", None)


async def _store_with_two_destinations(tmp_path: Path) -> Store:
    store = await Store.open(tmp_path / "backup.db")
    for name in ("nas", "usb"):
        destination = await store.create_destination(
            name=name, type="local", secrets_ref=f"file:/{name}", remote_path=f"/{name}"
        )
        await store.create_jobs(
            destination.id,
            "20260101T000000Z",
            [("library", "/src/library", 1), ("upload", "/src/upload", 2)],
        )
    return store


async def test_reset_of_one_destination_leaves_the_others(tmp_path: Path) -> None:
    store = await _store_with_two_destinations(tmp_path)
    try:
        assert await reset_jobs(store, "nas") == 2
        nas = await store.get_destination("nas")
        usb = await store.get_destination("usb")
        assert nas is not None and usb is not None
        assert await store.all_jobs(nas.id) == []
        assert len(await store.all_jobs(usb.id)) == 2
        assert await reset_jobs(store, None) == 2
    finally:
        await store.close()


async def test_reset_is_refused_while_a_job_runs_and_names_its_pid(tmp_path: Path) -> None:
    store = await _store_with_two_destinations(tmp_path)
    try:
        usb = await store.get_destination("usb")
        assert usb is not None
        running = (await store.all_jobs(usb.id))[0]
        await store.set_status(running.id, JobStatus.RUNNING, owner=OWNER)
        with pytest.raises(RunRefused, match=r"a job is RUNNING \(pid 4242\); stop that backup"):
            await reset_jobs(store, "usb")
        with pytest.raises(RunRefused):
            await reset_jobs(store, None)  # every destination: the running one included
        assert await reset_jobs(store, "nas") == 2  # another destination is not blocked
        assert len(await store.all_jobs(usb.id)) == 2
    finally:
        await store.close()


async def test_an_unknown_destination_is_a_usage_problem_naming_known_ones(tmp_path: Path) -> None:
    store = await _store_with_two_destinations(tmp_path)
    try:
        with pytest.raises(UsageProblem, match="nas, usb"):
            await reset_jobs(store, "nope")
        assert len(await store.all_jobs()) == 4
    finally:
        await store.close()
