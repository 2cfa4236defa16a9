"""A fresh Immich DB dump before the file pass, in-process: a real HTTP server speaking
Immich's API on loopback, real rclone, real SQLite, a generated Immich tree."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from photos_sync.core.config import Settings
from photos_sync.core.events import RunEvent, RunRequest, RunResult
from photos_sync.core.states import JobStatus
from photos_sync.engine.runner import Runner
from photos_sync.engine.setup import key_file_path, setup_local
from photos_sync.immich import server as immich_io
from photos_sync.reporting.status import gather_status
from photos_sync.storage.store import Store
from tests.immich_tree import TreeStats
from tests.support import plain_rclone
from tests.support.fake_immich import closed_port_url, serve_immich

KEY = "immich-key-0123456789abcdefghijklmnopqrstuvwxyz"


def _settings(
    settings: Settings,
    url: str,
    immich_poll_interval: float = 0.05,
    immich_dump_timeout: float = 10.0,
) -> Settings:
    return dataclasses.replace(
        settings,
        immich_url=url,
        immich_poll_interval=immich_poll_interval,
        immich_dump_timeout=immich_dump_timeout,
    )


async def _run(
    settings: Settings, dest: Path, key: str | None = KEY
) -> tuple[RunResult, dict[str, Any], list[str]]:
    store = await Store.open(settings.db_path)
    await setup_local(settings, store, name="nas", path=dest)
    if key is not None:
        immich_io.store_api_key(settings, key)
    events: list[RunEvent] = []
    result = await Runner(settings, store, sink=events.append).run(RunRequest())
    status = await gather_status(settings, store)
    await store.close()
    texts = [str(e.data.get("text")) for e in events if e.kind == "message"]
    return result, status, texts


async def _prepare(
    settings: Settings, dest: Path, key: str | None = KEY
) -> tuple[immich_io.DumpOutcome, list[str]]:
    """Only the hook (no rclone run): set up, then ask for the dump as a run would."""
    store = await Store.open(settings.db_path)
    destination = await setup_local(settings, store, name="nas", path=dest)
    await store.close()
    if key is not None:
        immich_io.store_api_key(settings, key)
    texts: list[str] = []
    assert settings.immich_path is not None
    outcome = await immich_io.prepare_dump(
        settings, destination, settings.immich_path / "backups", texts.append
    )
    assert outcome is not None
    return outcome, texts


def _backed_up(settings: Settings, dest: Path) -> list[str]:
    env = plain_rclone.crypt_env(dest, key_file_path(settings, "nas"))
    return plain_rclone.run(["lsf", "check:backups"], env).stdout.split()


async def test_run_triggers_waits_for_a_stable_dump_and_uploads_it_first(
    immich: tuple[Path, TreeStats], tmp_path: Path, settings: Settings
) -> None:
    root, _ = immich
    dest = tmp_path / "dest"
    with serve_immich(root / "backups", KEY, dump_delay=0.6, grow_steps=3) as fake:
        live = _settings(settings, fake.url)
        result, status, texts = await _run(live, dest)
    assert result.ok, result.as_dict()
    assert result.jobs[0].folder == "backups"
    assert all(j.status is JobStatus.COMPLETED for j in result.jobs)
    assert len(fake.written) == 1
    new_name = fake.written[0].name
    assert result.immich is not None and result.immich["fresh"] is True
    assert result.immich["dump"]["name"] == new_name
    assert result.immich["endpoint"] == "POST /api/jobs"
    assert result.immich["warning"] is None and result.immich["error"] is None
    assert ("POST", "/api/jobs", True) in fake.requests
    assert not any(r[0] == "PUT" for r in fake.requests)
    # the new dump is in the backup, next to the old ones, and went with the first job
    assert new_name in _backed_up(live, dest)
    backups_job = result.jobs[0]
    assert backups_job.completed_at is not None
    assert all(backups_job.completed_at <= (j.started_at or "") for j in result.jobs[1:])
    assert any("new database dump" in t for t in texts)
    assert status["immich"]["last_request"]["fresh"] is True
    assert status["immich"]["dumps"]["newest"]["name"] == new_name
    assert status["immich"]["warning"] is None


async def test_older_server_gets_the_queue_command_and_in_place_dump(
    immich: tuple[Path, TreeStats], tmp_path: Path, settings: Settings
) -> None:
    root, _ = immich
    with serve_immich(
        root / "backups",
        KEY,
        version=(1, 132, 3),
        manual_backup_job=False,
        in_place=True,
        grow_steps=4,
        dump_delay=0.4,
    ) as fake:
        live = _settings(settings, fake.url, immich_poll_interval=0.08)
        result, _, _ = await _run(live, tmp_path / "dest")
    assert result.ok and result.immich is not None and result.immich["fresh"]
    assert result.immich["endpoint"] == "PUT /api/jobs/backupDatabase"
    assert result.immich["dump"]["size"] == fake.dump_size  # waited until it stopped growing
    assert [r[0] for r in fake.requests if r[1].startswith("/api/jobs")] == ["PUT"]


async def test_falls_back_when_the_first_endpoint_is_unknown(
    immich: tuple[Path, TreeStats], tmp_path: Path, settings: Settings
) -> None:
    root, _ = immich
    with serve_immich(root / "backups", KEY, version=(1, 130, 0), queue_command=False) as fake:
        outcome, _ = await _prepare(_settings(settings, fake.url), tmp_path / "dest")
    assert outcome.fresh and outcome.endpoint == "POST /api/jobs"
    assert [r[0] for r in fake.requests if r[1].startswith("/api/jobs")] == ["PUT", "POST"]


async def test_immich_down_the_run_goes_on_with_the_old_dump(
    immich: tuple[Path, TreeStats], tmp_path: Path, settings: Settings
) -> None:
    root, _ = immich
    newest_before = immich_newest(root)
    dest = tmp_path / "dest"
    live = _settings(settings, closed_port_url())
    result, status, texts = await _run(live, dest)
    assert result.ok  # files backed up; Immich being down is a warning
    assert all(j.status is JobStatus.COMPLETED for j in result.jobs)
    assert result.immich is not None and not result.immich["fresh"]
    assert "not reachable" in result.immich["warning"]
    assert result.immich["dump"]["name"] == newest_before
    assert newest_before in _backed_up(live, dest)
    assert any("going on with the newest existing dump" in t for t in texts)
    assert "not reachable" in status["immich"]["warning"]
    assert "not reachable" in result.as_dict()["immich"]["warning"]


async def test_hung_dump_times_out_with_a_warning(
    immich: tuple[Path, TreeStats], tmp_path: Path, settings: Settings
) -> None:
    root, _ = immich
    with serve_immich(root / "backups", KEY, write_dump=False) as fake:
        live = _settings(settings, fake.url, immich_dump_timeout=0.5)
        outcome, texts = await _prepare(live, tmp_path / "dest")
    assert not outcome.fresh and outcome.warning is not None and outcome.error is None
    assert "no new database dump within 0.5 s" in outcome.warning
    assert outcome.dump is not None and outcome.dump.name == immich_newest(root)
    assert any("going on with the newest existing dump" in t for t in texts)


async def test_wrong_key_is_a_clear_error_naming_where_the_key_is(
    immich: tuple[Path, TreeStats], tmp_path: Path, settings: Settings
) -> None:
    root, _ = immich
    with serve_immich(root / "backups", KEY) as fake:
        live = _settings(settings, fake.url)
        outcome, texts = await _prepare(live, tmp_path / "dest", key="not-the-right-key-123")
    error = outcome.error or ""
    assert "rejected the API key" in error and outcome.warning is None
    assert f"immich_api_key of key file {live.secrets_dir / 'immich.json'}" in error
    assert all("not-the-right-key-123" not in t for t in [error, *texts])
    section = immich_io.status_section(live)
    assert section is not None and "rejected the API key" in section["warning"]
    # (a whole run with a wrong key: tests/e2e/test_cli_immich.py)


async def test_missing_key_names_the_ways_to_add_one(
    immich: tuple[Path, TreeStats], tmp_path: Path, settings: Settings
) -> None:
    root, _ = immich
    with serve_immich(root / "backups", KEY) as fake:
        outcome, _ = await _prepare(_settings(settings, fake.url), tmp_path / "dest", key=None)
    assert outcome.error is not None and "--setup-immich" in outcome.error
    assert fake.requests == []


async def test_non_admin_key_is_refused_with_the_reason(
    immich: tuple[Path, TreeStats], tmp_path: Path, settings: Settings
) -> None:
    root, _ = immich
    with serve_immich(root / "backups", KEY, is_admin=False) as fake:
        outcome, _ = await _prepare(_settings(settings, fake.url), tmp_path / "dest")
    assert outcome.error is not None and "admin user" in outcome.error
    assert "job.create" in outcome.error and KEY not in outcome.error


async def test_a_key_without_job_create_is_refused_naming_that_permission(
    immich: tuple[Path, TreeStats], tmp_path: Path, settings: Settings
) -> None:
    root, _ = immich
    with serve_immich(root / "backups", KEY, permissions=("user.read",)) as fake:
        outcome, _ = await _prepare(_settings(settings, fake.url), tmp_path / "dest")
    assert outcome.error is not None and "lacks the job.create permission" in outcome.error
    assert KEY not in outcome.error and fake.written == []


async def test_key_in_the_destination_key_file_wins(
    immich: tuple[Path, TreeStats], tmp_path: Path, settings: Settings
) -> None:
    dest = tmp_path / "dest"
    store = await Store.open(settings.db_path)
    await setup_local(settings, store, name="nas", path=dest)
    destination = await store.get_destination("nas")
    await store.close()
    assert destination is not None
    keyfile = key_file_path(settings, "nas")
    from photos_sync.credentials.keyfile import read_key_file, write_key_file

    write_key_file(keyfile, {**read_key_file(keyfile), "immich_api_key": KEY})
    immich_io.store_api_key(settings, "another-key-that-is-not-used")
    found = await immich_io.resolve_api_key(settings, destination)
    assert found is not None and found.value == KEY and str(keyfile) in found.where
    assert KEY not in repr(found)


def immich_newest(root: Path) -> str:
    return immich_io.list_dumps(root / "backups")[-1].name


async def test_a_run_cancelled_while_waiting_for_the_dump_leaves_no_job_pending(
    immich: tuple[Path, TreeStats], tmp_path: Path, settings: Settings
) -> None:
    """A cancel before any job started (here: while Immich writes its dump) marks the run's
    jobs INTERRUPTED, not PENDING ("about to start"); the next run resumes them, no retry
    spent, and completes."""
    root, _ = immich
    dest = tmp_path / "dest"
    with serve_immich(root / "backups", KEY, write_dump=False) as fake:
        live = _settings(settings, fake.url, immich_dump_timeout=60.0)
        store = await Store.open(live.db_path)
        try:
            await setup_local(live, store, name="nas", path=dest)
            immich_io.store_api_key(live, KEY)
            asked = asyncio.Event()

            def sink(event: RunEvent) -> None:
                if event.kind == "message" and "asking" in str(event.data.get("text")):
                    asked.set()

            run = asyncio.create_task(Runner(live, store, sink=sink).run(RunRequest()))
            await asyncio.wait_for(asked.wait(), 30)
            run.cancel()
            with pytest.raises(asyncio.CancelledError):
                await run
            jobs = await store.all_jobs()
            assert jobs and {j.status for j in jobs} == {JobStatus.INTERRUPTED}
            assert {j.error_message for j in jobs} == {"cancelled before it started"}
            assert {j.retry_count for j in jobs} == {0}
            resumed = await Runner(_settings(live, closed_port_url()), store).run(RunRequest())
        finally:
            await store.close()
    assert resumed.ok and resumed.resumed, resumed.as_dict()
    assert {j.id for j in resumed.jobs} == {j.id for j in jobs}
    assert {j.status for j in resumed.jobs} == {JobStatus.COMPLETED}
