"""The consistency proof after each run (#16.2, #16.1's truncated dump as an error): a real
Immich dump written by tests/immich_tree.py, a real local backup, the manifest asked."""

from __future__ import annotations

from pathlib import Path

import pytest

from photos_sync.core.consistency import NOT_COVERED
from photos_sync.core.events import RunRequest, RunResult
from photos_sync.engine.check import check_consistency
from photos_sync.engine.runner import Runner
from photos_sync.engine.setup import setup_local
from photos_sync.reporting.metrics import collect
from photos_sync.reporting.notify import finished_notice
from photos_sync.reporting.status import gather_status
from photos_sync.storage.manifest_db import ManifestDB, manifest_path
from photos_sync.storage.settings_io import load_settings
from photos_sync.storage.store import Store
from tests.immich_tree import (
    DUMP_V1_137,
    DUMP_V2_5,
    DumpFlavour,
    TreeStats,
    cut_gzip_stream,
    cut_mid_copy,
    make_immich_tree,
)
from tests.support.destinations import clone_in_process


async def _run(tmp_path: Path) -> RunResult:
    settings = load_settings()
    dest = tmp_path / "dest"
    if not clone_in_process(settings, dest):
        store = await Store.open(settings.db_path)
        await setup_local(settings, store, name="nas", path=dest)
        await store.close()
    store = await Store.open(settings.db_path)
    try:
        return await Runner(settings, store).run(RunRequest("nas"))
    finally:
        await store.close()


def _tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flavour: DumpFlavour) -> TreeStats:
    root = tmp_path / "immich"
    stats = make_immich_tree(
        root, scale=0.01, sql_dump=flavour, external_root=tmp_path / "external"
    )
    monkeypatch.setenv("BACKUP_IMMICH_PATH", str(root))
    return stats


@pytest.mark.parametrize("flavour", [DUMP_V2_5, DUMP_V1_137], ids=lambda f: f.label)
async def test_every_file_the_database_needs_is_in_the_backup(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    isolated_env: dict[str, str],
    flavour: DumpFlavour,
) -> None:
    stats = _tree(tmp_path, monkeypatch, flavour)
    assert stats.db is not None
    result = await _run(tmp_path)
    proof = result.consistency
    assert proof is not None and result.ok, result.as_dict()
    assert proof["dump"] == stats.dump_names[-1] and proof["complete"]
    in_backed_up = {
        p for p in stats.db.referenced() if p.split("/")[0] not in ("thumbs", "encoded-video")
    }
    assert proof["present"] == proof["referenced"] >= len(in_backed_up) > 0
    assert proof["missing"] == 0
    outside = NOT_COVERED["outside"]
    assert proof["not_covered"][outside] == len(stats.db.external_originals())
    assert proof["not_covered"][NOT_COVERED["thumbs"]] > 0


async def test_a_file_the_database_needs_but_the_backup_lacks_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_env: dict[str, str]
) -> None:
    stats = _tree(tmp_path, monkeypatch, DUMP_V2_5)
    assert stats.db is not None
    gone = sorted(p for p in stats.db.referenced() if p.startswith("library/"))[0]
    (tmp_path / "immich" / gone).unlink()  # lost after the dump was taken: the DB needs it
    result = await _run(tmp_path)
    proof = result.consistency
    assert proof is not None
    assert proof["missing"] == 1 and proof["missing_paths"] == [gone]
    assert not result.ok  # the backup cannot restore a working Immich
    settings = load_settings()
    db = ManifestDB(manifest_path(settings.data_dir, 1))
    try:
        assert '"missing": 1' in (db.consistency() or "")  # kept for --status
    finally:
        db.close()


@pytest.mark.parametrize("cut", ["gzip", "mid-copy"])
async def test_a_truncated_dump_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_env: dict[str, str], cut: str
) -> None:
    stats = _tree(tmp_path, monkeypatch, DUMP_V2_5)
    newest = tmp_path / "immich" / "backups" / stats.dump_names[-1]
    if cut == "gzip":
        cut_gzip_stream(newest)
    else:
        cut_mid_copy(newest, "asset")
    result = await _run(tmp_path)
    proof = result.consistency
    assert proof is not None and proof["truncated"] and not proof["complete"], proof
    assert proof["problem"]
    assert not result.ok
    assert all(j.status.value == "COMPLETED" for j in result.jobs)  # the files went


async def test_a_truncated_dump_is_an_error_in_status_check_metrics_and_notifications(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_env: dict[str, str]
) -> None:
    stats = _tree(tmp_path, monkeypatch, DUMP_V2_5)
    cut_gzip_stream(tmp_path / "immich" / "backups" / stats.dump_names[-1])
    result = await _run(tmp_path)
    settings = load_settings()
    store = await Store.open(settings.db_path)
    try:
        status = await gather_status(settings, store)
        checks = await check_consistency(settings, await store.list_destinations())
        metrics = await collect(settings, store)
    finally:
        await store.close()
    proof = status["destinations"][0]["consistency"]
    assert proof["truncated"] and not proof["ok"] and proof["dump"] == stats.dump_names[-1]
    whole = next(c for c in checks if c.name == "Immich DB dump whole")
    assert whole.status == "fail" and stats.dump_names[-1] in whole.detail
    assert 'photos_sync_immich_dump_complete{destination="nas"} 0' in metrics
    notice = finished_notice("nas", result.as_dict(), 3.0)
    assert notice.level == "failure" and "truncated" in notice.title
    assert "ERROR" in notice.body


async def test_external_libraries_and_people_thumbnails_count_as_covered_when_backed_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_env: dict[str, str]
) -> None:
    stats = _tree(tmp_path, monkeypatch, DUMP_V2_5)
    assert stats.db is not None
    monkeypatch.setenv("BACKUP_EXTRA_PATHS", f"family={tmp_path / 'external'}")
    result = await _run(tmp_path)
    proof = result.consistency
    assert proof is not None and result.ok, result.as_dict()
    assert NOT_COVERED["outside"] not in proof["not_covered"]  # BACKUP_EXTRA_PATHS covers them
    people = {p.thumbnail for p in stats.db.people}
    assert people and proof["missing"] == 0
    # the people's thumbnails are referenced and present; the other thumbnails not covered
    in_backed_up = {
        p for p in stats.db.referenced() if p.split("/")[0] not in ("thumbs", "encoded-video")
    }
    externals = len(stats.db.external_originals())
    assert proof["referenced"] == proof["present"] >= len(in_backed_up | people) + externals
    assert proof["not_covered"][NOT_COVERED["thumbs"]] > 0
