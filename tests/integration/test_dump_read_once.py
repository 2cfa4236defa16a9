"""One pass over the Immich dump per run: the people thumbnails' job (last of the run) reads
the dump for its list and for the consistency proof at once; the proof settles the people's
thumbnails after their job, and reads the dump again only when it changed since. Real dump
(tests/immich_tree.py), real rclone, real manifest; the reads are counted at the reader."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from photos_sync.core.consistency import NOT_COVERED
from photos_sync.core.events import RunRequest
from photos_sync.core.extra_paths import Coverage
from photos_sync.engine import consistency, people_thumbnails
from photos_sync.engine.consistency import ProofScope, prove_run, read_people_and_proof
from photos_sync.engine.runner import Runner
from photos_sync.engine.setup import setup_local
from photos_sync.storage.manifest_db import ManifestDB, manifest_path
from photos_sync.storage.settings_io import load_settings
from photos_sync.storage.store import Store
from tests.immich_tree import DUMP_V2_5, TreeStats, make_immich_tree


@pytest.fixture
def dump_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the dumps read, one entry per pass, by either reader."""
    reads: list[str] = []
    for module in (consistency, people_thumbnails):
        real = module.read_dump_file

        def counted(path: Path, *args: Any, _real: Any = real, **kwargs: Any) -> Iterator[Any]:
            reads.append(path.name)
            yield from _real(path, *args, **kwargs)

        monkeypatch.setattr(module, "read_dump_file", counted)
    return reads


@pytest.fixture
def tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_env: dict[str, str]
) -> TreeStats:
    root = tmp_path / "immich"
    stats = make_immich_tree(root, scale=0.01, sql_dump=DUMP_V2_5)
    monkeypatch.setenv("BACKUP_IMMICH_PATH", str(root))
    return stats


async def _store(tmp_path: Path) -> Store:
    settings = load_settings()
    store = await Store.open(settings.db_path)
    await setup_local(settings, store, name="nas", path=tmp_path / "dest")
    return store


async def test_a_run_with_people_thumbnails_reads_the_dump_once_and_proves_all(
    tree: TreeStats, tmp_path: Path, dump_reads: list[str]
) -> None:
    assert tree.db is not None
    root = tmp_path / "immich"
    people = sorted(p.thumbnail for p in tree.db.people)
    lost_face = people[0]  # named by the dump, gone at the source: the backup cannot hold it
    (root / lost_face).unlink()
    lost_photo = sorted(p for p in tree.db.referenced() if p.startswith("library/"))[0]
    (root / lost_photo).unlink()
    store = await _store(tmp_path)
    try:
        result = await Runner(load_settings(), store).run(RunRequest())
    finally:
        await store.close()
    assert [j.folder for j in result.jobs][-1] == "thumbs"
    assert dump_reads == [tree.dump_names[-1]]  # one pass for the thumbnails and the proof
    proof = result.consistency
    assert proof is not None and not result.ok
    # both kinds of reference are judged: the deferred people thumbnails after their job
    assert proof["missing"] == 2
    assert sorted(proof["missing_paths"]) == sorted([lost_face, lost_photo])
    in_backed_up = {
        p for p in tree.db.referenced() if p.split("/")[0] not in ("thumbs", "encoded-video")
    }
    assert proof["referenced"] == proof["present"] + 2 >= len(in_backed_up | set(people))
    assert proof["not_covered"][NOT_COVERED["thumbs"]] > 0

    # put back, the next run proves the backup whole, again from one pass
    dump_reads.clear()
    for path in (lost_face, lost_photo):
        (root / path).write_bytes(os.urandom(2048))
    store = await Store.open(load_settings().db_path)
    try:
        again = await Runner(load_settings(), store).run(RunRequest())
    finally:
        await store.close()
    assert again.ok and again.consistency is not None, again.as_dict()
    assert again.consistency["missing"] == 0
    assert dump_reads == [tree.dump_names[-1]]


async def test_the_proof_reads_the_dump_again_when_it_changed_or_its_scope_did(
    tree: TreeStats, tmp_path: Path, dump_reads: list[str]
) -> None:
    """A shared read is settled only for the very dump it read (name, size, mtime) and the
    same scope; else the proof reads the dump itself, and says the same as a fresh read."""
    root = tmp_path / "immich"
    store = await _store(tmp_path)
    try:
        assert (await Runner(load_settings(), store).run(RunRequest())).ok
    finally:
        await store.close()
    settings = load_settings()
    db = ManifestDB(manifest_path(settings.data_dir, 1))
    try:
        scope = ProofScope(
            frozenset({"backups", "library", "upload", "profile"}), True, Coverage(())
        )
        dump_reads.clear()
        shared = read_people_and_proof(db, root, scope)
        assert shared is not None and dump_reads == [tree.dump_names[-1]]
        assert len(shared.people.present) == len(tree.db.people if tree.db else [])

        async def prove(**changes: Any) -> dict[str, Any]:
            args: dict[str, Any] = {
                "covered_folders": scope.covered_folders,
                "person_thumbnails": True,
                "coverage": Coverage(()),
            }
            args.update(changes)
            proof = await prove_run(db, root, shared=shared, **args)
            assert proof is not None
            return proof.as_dict()

        dump_reads.clear()
        settled = await prove()
        assert dump_reads == [] and settled["ok"] and settled["missing"] == 0

        narrower = await prove(covered_folders=scope.covered_folders - {"profile"})
        assert dump_reads == [tree.dump_names[-1]]  # another scope: read anew
        assert narrower["referenced"] < settled["referenced"]

        dump_reads.clear()
        dump = root / "backups" / tree.dump_names[-1]
        stat = dump.stat()
        os.utime(dump, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        rewritten = await prove()
        assert dump_reads == [tree.dump_names[-1]]  # the dump changed: read anew
        assert rewritten == settled
    finally:
        db.close()
