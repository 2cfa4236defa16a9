"""Fault 1: power cuts. SIGKILL the daemon and its rclone (all at once) at random points of a
multi-folder backup to a real S3 server — while rclone lists, mid-file, between two jobs,
while the daemon is inside a DB write, or at a random moment — then start a fresh daemon
and check that the run finishes by itself, plain `rclone cryptcheck` is clean, the DB passes
`PRAGMA integrity_check`, and the only data sent twice is files that were in flight.

A SIGKILL keeps the page cache; the last test also loses every DB write that was not synced
(harness.DurableImages), as a real power cut may, and checks that no state change the daemon
had reported is lost (#18: under synchronous=NORMAL the whole run record went).
"""

from __future__ import annotations

import contextlib
import random
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.immich_tree import TreeStats
from tests.reliability.harness import (
    BACKED_UP,
    DurableImages,
    RcloneRecorder,
    S3Service,
    assert_cryptcheck_clean,
    build_durable_images,
    crypt_env_s3,
    integrity_ok,
    jobs,
    power_cut,
    setup_s3,
)
from tests.support.daemon import DaemonPool, DaemonProcess

pytestmark = pytest.mark.reliability

SLOW = {"BACKUP_BWLIMIT": "600k", "BACKUP_STATS_INTERVAL": "1"}
KINDS = ("listing", "mid-file", "between-jobs", "db-write", "random-time")
#: The CI order: a cut of each kind, spread over the first folders.
CI_KINDS = ("mid-file", "between-jobs", "listing", "db-write")


def _cut_at(daemon: DaemonProcess, kind: str, db_path: Path, rng: random.Random) -> str | None:
    """Follow the running (or next) run and power-cut at `kind`; return what was hit.

    None when the run ended before the point came (nothing left to cut).
    """
    lock: sqlite3.Connection | None = None
    progress_seen = 0
    began = time.monotonic()
    delay = rng.uniform(0.0, 3.0)
    try:
        with daemon.connect(timeout=60) as conn:
            for note in conn.follow(wait=True):
                if note["method"] == "run_ended":
                    return None
                event = note["params"]
                data = event["data"]
                hit: str | None = None
                if kind == "listing" and event["kind"] == "job_started":
                    hit = f"listing {data['folder']}/"
                elif kind == "mid-file" and event["kind"] == "job_progress":
                    if 0 < data["bytes_done"] < data["bytes_total"]:
                        hit = f"mid-file in {data['folder']}/ ({data['bytes_done']} B)"
                elif kind == "between-jobs" and event["kind"] == "job_finished":
                    hit = f"between jobs, after {data['folder']}/"
                elif kind == "db-write" and event["kind"] == "job_progress":
                    if lock is None:
                        # Hold SQLite's write lock: the daemon's next progress write (once a
                        # stats tick) blocks inside the DB call, where the cut then lands.
                        lock = sqlite3.connect(db_path, timeout=5, isolation_level=None)
                        lock.execute("BEGIN IMMEDIATE")
                    progress_seen += 1
                    if progress_seen >= 3:  # two ticks later: the write is waiting on the lock
                        hit = f"during a DB write ({data['folder']}/)"
                elif kind == "random-time" and time.monotonic() - began >= delay:
                    hit = f"at random, {delay:.2f} s into the run ({event['kind']})"
                if hit is not None:
                    power_cut(daemon)
                    return hit
    finally:
        if lock is not None:
            with contextlib.suppress(sqlite3.Error):
                lock.execute("ROLLBACK")
            lock.close()
    return None


def _resent_outside_flight(recorder: RcloneRecorder) -> dict[str, list[str]]:
    """Objects reported fully copied by one rclone call and copied again by a later one."""
    seen: dict[str, Counter[str]] = {}
    again: dict[str, list[str]] = {}
    for pid, argv in recorder.syncs():
        folder = recorder.sync_folder(argv)
        copied = recorder.copied(pid)
        before = seen.setdefault(folder, Counter())
        repeated = [name for name in copied if before[name]]
        if repeated:
            again.setdefault(folder, []).extend(repeated)
        before.update(copied)
    return again


def power_cuts(
    daemons: DaemonPool,
    tmp_path: Path,
    s3: S3Service,
    recorder: RcloneRecorder,
    source: Path,
    data_dir: Path,
    cuts: int,
    seed: int,
) -> list[str]:
    rng = random.Random(seed)
    setup_s3(s3)
    db_path = data_dir / "backup.db"
    hits: list[str] = []
    daemon = daemons.start(SLOW)
    daemon.call("start", {"destination": "cloud"})
    kinds = list(CI_KINDS[:cuts]) if seed == 0 else []
    while len(kinds) < cuts:
        kinds.append(rng.choice(KINDS))
    for kind in kinds:
        hit = _cut_at(daemon, kind, db_path, rng)
        if hit is None:
            break
        hits.append(hit)
        assert integrity_ok(db_path) == "ok"
        daemon = daemons.start(SLOW)  # resumes the run by itself
    # Last start at full speed; nothing asks it to run: it resumes by itself.
    if daemon.proc.poll() is None:
        power_cut(daemon)
    final = daemons.start()
    end = final.wait_run_end()
    if end["run"]["reason"] != "resume" or not end["ok"]:
        raise AssertionError(f"{end}\n{final.stderr_text()[-3000:]}")
    rows = jobs(db_path)
    assert {j["status"] for j in rows} == {"COMPLETED"}, rows
    assert len({j["run_id"] for j in rows}) == 1, "a resumed run keeps its run id"
    assert integrity_ok(db_path) == "ok"
    env = crypt_env_s3(s3, data_dir / "secrets" / "cloud.json")
    assert_cryptcheck_clean(source, env, BACKED_UP)
    assert _resent_outside_flight(recorder) == {}
    copied = Counter[str]()
    for pid, _argv in recorder.syncs():
        copied.update(recorder.copied(pid))
    assert len(copied) >= 20, "the recorder must see rclone's Copied lines"
    return hits


def test_power_cut_at_four_points_heals_by_itself(
    daemons: DaemonPool,
    tmp_path: Path,
    s3: S3Service,
    recorder: RcloneRecorder,
    big_immich: tuple[Path, TreeStats],
    isolated_env: dict[str, str],
) -> None:
    data_dir = Path(isolated_env["PHOTOS_SYNC_DATA_DIR"])
    hits = power_cuts(daemons, tmp_path, s3, recorder, big_immich[0], data_dir, 4, seed=0)
    print("power cuts:", hits)
    assert len(hits) >= 3, hits


@pytest.mark.soak
@pytest.mark.timeout(900)
@pytest.mark.parametrize("seed", range(1, 5))
def test_power_cut_soak(
    daemons: DaemonPool,
    tmp_path: Path,
    s3: S3Service,
    recorder: RcloneRecorder,
    big_immich: tuple[Path, TreeStats],
    isolated_env: dict[str, str],
    seed: int,
) -> None:
    data_dir = Path(isolated_env["PHOTOS_SYNC_DATA_DIR"])
    hits = power_cuts(daemons, tmp_path, s3, recorder, big_immich[0], data_dir, 5, seed=seed)
    print(f"seed {seed} power cuts:", hits)
    assert len(hits) >= 3, hits


# -- power cuts that lose the writes not yet synced -------------------------------------------


@pytest.fixture
def durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_env: dict[str, str]
) -> DurableImages:
    """Every photos-sync process of the test records what it syncs of backup.db."""
    library = build_durable_images(tmp_path / "libdurable.so")
    if library is None:
        pytest.skip("needs a C compiler on Linux to build the fsync recorder durable_images.c")
    db = Path(isolated_env["PHOTOS_SYNC_DATA_DIR"]) / "backup.db"
    images = DurableImages(library, tmp_path / "durable", db)
    for key, value in images.env().items():
        monkeypatch.setenv(key, value)
    return images


@dataclass
class Reported:
    """What the daemon had told its subscribers before the cut: state changes it made."""

    hit: str = ""
    run_id: str | None = None
    started: set[str] = field(default_factory=set)
    completed: set[str] = field(default_factory=set)


def _cut_losing_unsynced(
    daemon: DaemonProcess, kind: str, durable: DurableImages, rng: random.Random
) -> Reported | None:
    """Follow the run and cut the power at `kind` (listing, mid-file, between-jobs or
    random-time), losing every DB write not yet synced; None when the run ended first."""
    seen = Reported()
    began = time.monotonic()
    delay = rng.uniform(0.0, 3.0)
    with daemon.connect(timeout=60) as conn:
        for note in conn.follow(wait=True):
            if note["method"] == "run_ended":
                return None
            event = note["params"]
            data = event["data"]
            if event["kind"] == "run_started":
                seen.run_id = data["run_id"]
            elif event["kind"] == "job_started":
                seen.run_id = data["run_id"]
                seen.started.add(data["folder"])
            elif event["kind"] == "job_finished" and data["status"] == "COMPLETED":
                seen.completed.add(data["folder"])
            if kind == "listing" and event["kind"] == "job_started":
                seen.hit = f"listing {data['folder']}/"
            elif kind == "mid-file" and event["kind"] == "job_progress":
                if 0 < data["bytes_done"] < data["bytes_total"]:
                    seen.hit = f"mid-file in {data['folder']}/"
            elif kind == "between-jobs" and event["kind"] == "job_finished":
                seen.hit = f"between jobs, after {data['folder']}/"
            elif kind == "random-time" and time.monotonic() - began >= delay:
                seen.hit = f"at random, {delay:.2f} s in ({event['kind']})"
            if seen.hit:
                durable.power_cut(daemon)
                return seen
    return None


def lossy_power_cuts(
    daemons: DaemonPool,
    s3: S3Service,
    recorder: RcloneRecorder,
    source: Path,
    durable: DurableImages,
    kinds: list[str],
    seed: int,
) -> list[str]:
    """Cut the power at each of `kinds`, losing what was not synced; after each cut, every
    state change the daemon had reported must be in the DB. Returns the cuts made."""
    rng = random.Random(seed)
    setup_s3(s3)
    db = durable.db
    daemon = daemons.start(SLOW)
    daemon.call("start", {"destination": "cloud"})
    survived: list[str] = []
    done_before: list[tuple[int, set[str]]] = []  # (rclone syncs so far, folders COMPLETED)
    for kind in kinds:
        seen = _cut_losing_unsynced(daemon, kind, durable, rng)
        if seen is None:
            break
        if seen.run_id is None:  # cut before the run said which it is: nothing reported yet
            durable.settle()
            daemon = daemons.start(SLOW)
            continue
        rows = {j["folder"]: j["status"] for j in jobs(db) if j["run_id"] == seen.run_id}
        assert rows, f"power cut {seen.hit}: the run {seen.run_id} is gone from the DB"
        for folder in seen.completed:
            assert rows[folder] == "COMPLETED", (seen.hit, folder, rows)
        for folder in seen.started - seen.completed:
            assert rows[folder] != "PENDING", (seen.hit, folder, rows)
        assert integrity_ok(db) == "ok"
        durable.settle()
        survived.append(seen.hit)
        done = {f for f, status in rows.items() if status == "COMPLETED"}
        done_before.append((len(recorder.syncs()), done))
        daemon = daemons.start(SLOW)  # resumes the run by itself
    if daemon.proc.poll() is None:
        durable.power_cut(daemon)
    final = daemons.start()
    end = final.wait_run_end()
    if end["run"]["reason"] != "resume" or not end["ok"]:
        raise AssertionError(f"{end}\n{final.stderr_text()[-3000:]}")
    rows_end = jobs(db)
    assert {j["status"] for j in rows_end} == {"COMPLETED"}, rows_end
    assert len({j["run_id"] for j in rows_end}) == 1, "a resumed run keeps its run id"
    # a folder recorded COMPLETED before a cut is never synced again
    syncs = recorder.syncs()
    for count, done in done_before:
        again = [recorder.sync_folder(argv) for _pid, argv in syncs[count:]]
        assert not done & set(again), (done, again)
    env = crypt_env_s3(s3, db.parent / "secrets" / "cloud.json")
    assert_cryptcheck_clean(source, env, BACKED_UP)
    return survived


def test_power_cut_losing_unsynced_writes_keeps_every_reported_state(
    daemons: DaemonPool,
    s3: S3Service,
    recorder: RcloneRecorder,
    big_immich: tuple[Path, TreeStats],
    durable: DurableImages,
) -> None:
    kinds = ["between-jobs", "listing", "mid-file", "between-jobs"]
    survived = lossy_power_cuts(daemons, s3, recorder, big_immich[0], durable, kinds, seed=0)
    print(f"power cuts losing un-synced writes: {len(survived)} survived: {survived}")
    assert len(survived) >= 3, survived


@pytest.mark.soak
@pytest.mark.timeout(900)
@pytest.mark.parametrize("seed", range(1, 5))
def test_power_cut_losing_unsynced_writes_soak(
    daemons: DaemonPool,
    s3: S3Service,
    recorder: RcloneRecorder,
    big_immich: tuple[Path, TreeStats],
    durable: DurableImages,
    seed: int,
) -> None:
    rng = random.Random(seed)
    kinds = [rng.choice(("listing", "mid-file", "between-jobs", "random-time")) for _ in range(5)]
    survived = lossy_power_cuts(daemons, s3, recorder, big_immich[0], durable, kinds, seed)
    print(f"seed {seed} power cuts losing un-synced writes: {len(survived)}: {survived}")
    assert len(survived) >= 3, survived
