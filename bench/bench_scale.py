"""Benchmark (issue #15): the manifest and incremental runs at scale.

Five parts, each alternating its contenders (A B A B, then B A B A) and reporting medians,
min–max and ratios. Sizes are options (defaults fit ~15 min on the shared 2-core machine);
docs/BENCHMARKS.md records the sizes a run used.

1. many  — a many-small-files tree (`tests/immich_tree.py`, originals only, upload/): full
   backup and no-change rerun of `photos-sync backup` (A; its no-change runs are incremental),
   photos-sync's periodic reconcile (F: the manifest's last full sync aged by 30 days, as
   BACKUP_RECONCILE_EVERY makes one due; the old full sync), plain
   `rclone sync` with photos-sync's flags (B), restic (R) and borg (G), to a local disk.
2. small — no-change run of a ~1,600-file tree: A vs B (and F).
3. s3    — S3 requests per run through the counting proxy in front of `rclone serve s3`:
   photos-sync's full run, incremental no-change run, run after 10 new + 5 deleted files;
   plain rclone's full, no-change and changed runs for comparison.
4. migrate — storage-template migration: N originals in upload/<uuid>/..., backed up to S3,
   every file moved to library/<user>/<yyyy>/<mm>/IMG_n.ext (os.rename, times kept), run
   again: bytes uploaded and wall time; then `restore` and `restore --as-of` a time between
   the runs compared byte for byte with the tree after/before the move. Baseline: plain
   rclone sync of the same move (what every run did before #15).
5. tiny  — N tiny files: the source walk's time (photos_sync.system.source_scan.walk_files)
   vs `rclone lsf -R`, the manifest's size (SQLite and its gzip'd copy), and the wall time,
   CPU and peak RSS of a real `photos-sync backup` incremental no-change run over them.

    python bench/bench_scale.py                       # defaults, rewrites the "scale" section
    python bench/bench_scale.py --many-files 100000 --tiny-files 1000000
    python bench/bench_scale.py --quick               # tiny sizes, docs untouched
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c
import bench_compare as bc
from s3_counting import CountingS3, CountSnapshot, Kind, counted_s3

from photos_sync.core.destinations import destination_type
from photos_sync.core.planning import selected_folders
from photos_sync.core.rclone_args import (
    BASE_REMOTE,
    RemoteSpec,
    archive_path,
    crypt_path,
    crypt_remote,
    remote_env,
    sync_argv,
)
from photos_sync.core.records import utcnow
from photos_sync.engine.runner import _run_stamp
from photos_sync.storage.manifest_db import ManifestDB
from tests.immich_tree import MARKER, make_immich_tree
from tests.support.s3server import serve_s3

MIB = bc.MIB
GIB = bc.GIB
Measure = bc.Measure
NAMES = {**bc.NAMES, "F": "photos-sync reconcile"}
#: per-file size factor of tests/immich_tree.py for "originals" of ~11 KiB on average
#: (70 % JPEG 2–12 KiB, 22 % HEIC 1–6 KiB, 8 % MP4 20–120 KiB): 100k files ≈ 1.1 GB
SMALL_ORIGINALS = 0.002
FULL_SYNC_SAID = "full sync of"


# -- contenders ----------------------------------------------------------------------------


class PhotosSync(bc.PhotosSyncC):
    """photos-sync with extra settings (F: a forced reconcile) and a look at what it said."""

    def __init__(self, work: Path, source: Path, folders: list[str]) -> None:
        super().__init__(work, source, folders, generated=False)
        self.extra: dict[str, str] = {}

    def env(self, retries: int | None = None) -> dict[str, str]:
        return {**super().env(retries), **self.extra}

    def run(self, kill_at: int | None = None, *, flags: tuple[str, ...] = ()) -> Measure:
        """`photos-sync backup FLAGS` measured as bench_compare's contender does."""
        os.sync()
        before = self.jobs()
        _rc, wall, usage, w = bc.run_measured(
            [c.PHOTOS_SYNC, "backup", *flags], self.env(), self.base, self.base / "out.log"
        )
        m = Measure(wall=wall, cpu_main=w.main_cpu, rss_main=w.main_hwm)
        m.cpu_rclone = max(0.0, bc.cpu_of(usage) - w.main_cpu)
        m.rss_rclone = max(w.child_hwm.values(), default=0.0)
        for job_id, (_status, sent, files) in self.jobs().items():
            if before.get(job_id, ("",))[0] != "COMPLETED":
                m.sent_bytes += sent
                m.sent_files += files
        return m

    @property
    def data(self) -> Path:
        return self.base / "data"

    def run_said(
        self, reconcile: bool = False, no_head: bool = False, flags: tuple[str, ...] = ()
    ) -> tuple[Measure, str]:
        """One `photos-sync backup` (with `reconcile`, the periodic reconcile: the manifest's
        last full sync is aged by 30 days first, as BACKUP_RECONCILE_EVERY makes one due) and
        its output.

        `no_head`: the first run to an S3 destination, with BACKUP_FOLLOW_SYMLINKS=true (the
        tree has no links): photos-sync 225cd44 reads the manifest's head with `rclone
        copyto`, which on S3 exits 0 without a file when there is none, and the run then dies
        on FileNotFoundError; a run that follows links reconciles without reading the head
        (and writes it at its end, so the next runs find it)."""
        log = self.base / "out.log"
        offset = log.stat().st_size if log.exists() else 0
        # aged, not BACKUP_RECONCILE_EVERY=1s: on the small tree two reconciles can follow
        # each other within a second, and the second then rightly runs incrementally; not
        # `--full` either, which also previews each folder with an rclone dry run (the
        # periodic one judges its guards by the manifest)
        if reconcile:
            self.age_manifest(days=30)
        self.extra = {}
        if no_head:
            self.extra["BACKUP_FOLLOW_SYMLINKS"] = "true"
        try:
            m = self.run(flags=flags)
        finally:
            self.extra = {}
        with log.open("rb") as handle:
            handle.seek(offset)
            said = handle.read().decode(errors="replace")
        return m, said

    def age_manifest(self, days: int) -> None:
        """Date the manifest's last full sync `days` back (the next run's reconcile is due)."""
        for path in (self.data / "manifests").glob("*.sqlite"):
            db = ManifestDB(path)
            try:
                db.mark_reconciled(datetime.now(UTC) - timedelta(days=days))
            finally:
                db.close()

    def manifest_bytes(self) -> int:
        """Size of the manifest (SQLite file and its WAL) in the data dir."""
        folder = self.data / "manifests"
        return sum(p.stat().st_size for p in folder.glob("*.sqlite*")) if folder.exists() else 0


class PhotosSyncS3(PhotosSync):
    """photos-sync with an S3 destination (`--setup s3 --yes`) on the counting proxy."""

    def __init__(self, work: Path, source: Path, folders: list[str], s3: CountingS3, name: str):
        self.name = name
        super().__init__(work / name, source, folders)
        self.s3 = s3

    def env(self, retries: int | None = None) -> dict[str, str]:
        return {
            **super().env(retries),
            "PHOTOS_SYNC_ACCESS_KEY_ID": self.s3.access_key_id,
            "PHOTOS_SYNC_SECRET_ACCESS_KEY": self.s3.secret_access_key,
        }

    def prepare(self) -> None:
        self.dest.mkdir(parents=True)
        argv = [c.PHOTOS_SYNC, "backup", "--setup", "s3", "--name", self.name]
        argv += ["--bucket", self.s3.bucket, "--endpoint", self.s3.endpoint]
        argv += ["--region", "us-east-1", "--path", self.name, "--secrets", "file", "--yes"]
        done = subprocess.run(argv, env=self.env(), cwd=self.base, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"s3 setup failed: {done.stdout}{done.stderr}")

    def restore(self, target: Path, as_of: str | None = None) -> float:
        argv = [c.PHOTOS_SYNC, "restore", "--from", self.name, "--to", str(target)]
        if as_of:
            argv += ["--as-of", as_of]
        start = time.perf_counter()
        done = subprocess.run(argv, env=self.env(), cwd=self.base, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"restore failed: {done.stdout}{done.stderr}")
        return time.perf_counter() - start


class PlainRcloneS3:
    """Plain `rclone sync` per folder with photos-sync's S3 flags, crypt over the proxy."""

    def __init__(self, work: Path, source: Path, s3: Any, prefix: str) -> None:
        """`s3`: a CountingS3, or anything with its endpoint, bucket and keys."""
        self.work, self.source = work / f"plain-{prefix}", source
        self.work.mkdir(parents=True, exist_ok=True)
        binary = c.rclone_binary()
        self.binary = binary
        base = RemoteSpec(
            BASE_REMOTE,
            "s3",
            {
                "provider": "Other",
                "env_auth": "false",
                "access_key_id": s3.access_key_id,
                "secret_access_key": s3.secret_access_key,
                "endpoint": s3.endpoint,
                "region": "us-east-1",
            },
        )
        crypt = crypt_remote(
            f"{BASE_REMOTE}:{s3.bucket}/{prefix}",
            bc.obscure(binary, bc.PASSWORD),
            bc.obscure(binary, bc.SALT),
        )
        self.env = c.clean_env({"RCLONE_CONFIG": "", **remote_env([base, crypt])})
        from photos_sync.core.config import parse_settings
        from photos_sync.engine.runner import Runner

        settings = parse_settings(
            {"BACKUP_IMMICH_PATH": str(source), "BACKUP_MAX_DELETE": "0"},
            default_data_dir=work,
            runtime_dir=None,
        )
        base_options = Runner(settings, None)._sync_options(False, False)  # type: ignore[arg-type]
        self.options = destination_type("s3").tune(base_options)

    def run(self) -> Measure:
        stamp = _run_stamp(utcnow())
        m = Measure()
        start = time.perf_counter()
        for n, folder in enumerate(selected_folders(False)):
            argv = sync_argv(
                self.binary,
                str(self.source / folder.name),
                crypt_path(folder.name),
                archive_path(stamp, folder.name),
                self.options,
            )
            log = self.work / f"sync-{stamp}-{n}.log"
            _rc, _wall, usage, _w = bc.run_measured(argv, self.env, self.work, log)
            m.cpu_rclone += bc.cpu_of(usage)
            stats = bc.last_rclone_stats(log)
            m.sent_bytes += int(stats.get("bytes", 0))
            m.sent_files += int(stats.get("transfers", 0))
            # rclone's "bytes" include server-side copies (its archive moves on S3)
            for key in ("serverSideCopies", "serverSideCopyBytes"):
                m.extra[key] = m.extra.get(key, 0) + float(stats.get(key, 0))
        m.extra["uploaded"] = m.sent_bytes - m.extra.get("serverSideCopyBytes", 0)
        m.wall = time.perf_counter() - start
        time.sleep(1.1)  # a distinct --backup-dir stamp next time
        return m


# -- helpers -------------------------------------------------------------------------------


def say(text: str) -> None:
    print(text, flush=True)


def show(part: str, key: str, m: Measure, note: str = "") -> None:
    say(
        f"    {part:<16} {key} {NAMES[key]:<22} {m.wall:7.2f} s  cpu "
        f"{m.cpu_main + m.cpu_rclone:6.1f} s (own {m.cpu_main:5.2f})  rss {m.rss_main:5.0f} MiB"
        f"  sent {m.sent_bytes / MIB:7.1f} MiB / {m.sent_files} {note}"
    )


def check_mode(said: str, reconcile: bool, what: str) -> None:
    """Fail loudly if photos-sync did not take the way the measurement is about."""
    full = FULL_SYNC_SAID in said
    if full != reconcile:
        raise SystemExit(
            f"{what}: expected {'a full sync' if reconcile else 'an incremental run'}, "
            f"photos-sync said:\n{said[-3000:]}"
        )


def originals_tree(root: Path, files: int, seed: int, scale: float = SMALL_ORIGINALS) -> int:
    """`files` originals in upload/<user>/<xx>/<yy>/<uuid>.ext (plus the two avatars and the
    markers of tests/immich_tree.py); each file's mtime set to a distinct photo time, as
    Immich sets an original's mtime to the asset's own modification time. Returns bytes."""
    stats = make_immich_tree(
        root, library_files=0, upload_files=files, thumbs=False, scale=scale, seed=seed, dumps=0
    )
    rng = random.Random(seed + 1)
    base = 1_500_000_000 * 10**9
    for n, path in enumerate(sorted((root / "upload").rglob("*.*"))):
        if path.name == MARKER:
            continue
        moment = base + n * 60 * 10**9 + rng.randrange(10**9)
        os.utime(path, ns=(moment, moment))
    return stats.bytes


def files_of(root: Path, folders: list[str]) -> dict[str, Path]:
    out = {}
    for folder in folders:
        for dirpath, _dirs, names in os.walk(root / folder):
            for name in names:
                path = Path(dirpath) / name
                out[str(path.relative_to(root))] = path
    return out


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_digest(root: Path, folders: list[str]) -> dict[str, str]:
    return {rel: digest(p) for rel, p in files_of(root, folders).items()}


def compare(expected: dict[str, str], restored: Path, folders: list[str]) -> dict[str, int]:
    got = tree_digest(restored, folders)
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    differ = sorted(k for k in set(expected) & set(got) if expected[k] != got[k])
    return {
        "expected": len(expected),
        "restored": len(got),
        "missing": len(missing),
        "extra": len(extra),
        "differ": len(differ),
        "ok": int(not (missing or extra or differ)),
        "examples": [*missing[:3], *extra[:3], *differ[:3]],  # type: ignore[dict-item]
    }


def run_py(code: str, *args: str) -> tuple[dict[str, Any], float, float]:
    """Run Python `code` in a child (the project's venv): (its JSON answer on the last
    stdout line, wall seconds, its peak RSS in MiB from /proc VmHWM sampled by a Watcher)."""
    out = Path(tempfile.mkstemp(prefix="bench-scale-py-", suffix=".log")[1])
    try:
        _rc, wall, _usage, w = bc.run_measured(
            [sys.executable, "-c", code, *args], c.clean_env({}), c.REPO, out
        )
        text = out.read_text()
    finally:
        out.unlink(missing_ok=True)
    # the child reports its own VmHWM at its end (more exact than the 50 ms samples)
    answer = json.loads(text.strip().splitlines()[-1])
    return answer, wall, max(w.main_hwm, float(answer.get("hwm_mib", 0)))


HWM = """
def hwm():
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM:'):
            return int(line.split()[1]) / 1024
"""

WALK = (
    HWM
    + """
import json, sys, time
from pathlib import Path
from photos_sync.system.source_scan import WalkProblems, walk_files
start = time.perf_counter()
cpu = time.process_time()
problems = WalkProblems()
n = sum(1 for _ in walk_files(Path(sys.argv[1]), problems))
print(json.dumps({"files": n, "seconds": time.perf_counter() - start, "hwm_mib": hwm(),
                  "cpu": time.process_time() - cpu, "unreadable": len(problems.unreadable)}))
"""
)

WALK_NAMED = (
    HWM
    + """
import json, sys, time
from pathlib import Path
from photos_sync.core.names import NameCheck
from photos_sync.system.source_scan import WalkProblems, walk_files
start = time.perf_counter()
cpu = time.process_time()
problems = WalkProblems()
check = NameCheck("upload", 255)
n = sum(1 for _ in walk_files(Path(sys.argv[1]), problems, check))
print(json.dumps({"files": n, "problems": len(check.problems()),
                  "seconds": time.perf_counter() - start,
                  "cpu": time.process_time() - cpu, "hwm_mib": hwm()}))
"""
)

INJECT = (
    HWM
    + """
import json, sys, time
from pathlib import Path
from photos_sync.storage.manifest_db import ManifestDB
from photos_sync.system.source_scan import WalkProblems, walk_files
db = ManifestDB(Path(sys.argv[1]))
folder, source = sys.argv[2], Path(sys.argv[3])
run = db._conn.execute("SELECT run FROM files LIMIT 1").fetchone()[0]
start = time.perf_counter()
staged = db.stage(folder, walk_files(source, WalkProblems()))
entries = db.commit_staged(folder, [], run)
seconds = time.perf_counter() - start
db._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
packed = Path(sys.argv[4])
start = time.perf_counter()
db.export(packed)
export_seconds = time.perf_counter() - start
total = db.count()
db.close()
print(json.dumps({"staged": staged, "entries": entries, "files": total, "seconds": seconds,
                  "export_seconds": export_seconds, "hwm_mib": hwm()}))
"""
)


# -- part 1: many small files --------------------------------------------------------------


def part_many(work: Path, args: argparse.Namespace, rep: dict[str, Any]) -> None:
    source = work / "many-src"
    t0 = time.perf_counter()
    size = originals_tree(source, args.many_files, args.seed)
    folders = [f.name for f in selected_folders(False)]
    bc.warm_up(source, folders)
    files, size = bc.tree_stats(source, folders)
    say(f"[many] {files:,} files, {size / GIB:.2f} GiB (built in {time.perf_counter() - t0:.0f} s)")
    cw = work / "many"
    a = PhotosSync(cw, source, folders)
    others: list[bc.Contender] = [bc.PlainRcloneC(cw, source, folders, False)]
    if not args.no_restic_borg:
        others += [bc.ResticC(cw, source, folders), bc.BorgC(cw, source, folders)]
    everyone: list[bc.Contender] = [a, *others]
    res: dict[str, dict[str, list[dict[str, Any]]]] = {"full": {}, "no-change": {}}

    def keep(case: str, key: str, m: Measure) -> None:
        res[case].setdefault(key, []).append(asdict(m))
        show(f"many {case}", key, m)

    for r in range(args.full_rounds):
        for contender in everyone if r % 2 == 0 else everyone[::-1]:
            contender.fresh()
            if contender is a:
                m, said = a.run_said()
                check_mode(said, True, "first photos-sync run")
            else:
                m = contender.run()
            keep("full", contender.key, m)
    manifest_full = a.manifest_bytes()
    order = ["A", *(o.key for o in others), "F"]
    by_key = {o.key: o for o in others}
    for r in range(args.rounds):
        for key in order if r % 2 == 0 else order[::-1]:
            if key in ("A", "F"):
                m, said = a.run_said(reconcile=key == "F")
                check_mode(said, key == "F", f"photos-sync {key} no-change")
            else:
                m = by_key[key].run()
            keep("no-change", key, m)
    rep["many"] = {
        "files": files,
        "bytes": size,
        "results": res,
        "manifest_bytes": manifest_full,
        "manifest_bytes_after": a.manifest_bytes(),
        "tools": {k: NAMES[k] for k in ("A", "F", *by_key)},
    }
    for contender in everyone:
        contender.destroy()
    shutil.rmtree(source, ignore_errors=True)


# -- part 2: no-change run of a small tree -------------------------------------------------


def small_tree(root: Path, seed: int) -> None:
    make_immich_tree(
        root, library_files=900, upload_files=700, thumbs=False, scale=0.01, seed=seed, dumps=4
    )


def part_small(work: Path, args: argparse.Namespace, rep: dict[str, Any]) -> None:
    source = work / "small-src"
    small_tree(source, args.seed + 2)
    folders = [f.name for f in selected_folders(False)]
    bc.warm_up(source, folders)
    files, size = bc.tree_stats(source, folders)
    say(f"[small] {files:,} files, {size / MIB:.0f} MiB")
    cw = work / "small"
    a = PhotosSync(cw, source, folders)
    b = bc.PlainRcloneC(cw, source, folders, False)
    a.fresh()
    b.fresh()
    m, said = a.run_said()
    check_mode(said, True, "first photos-sync run")
    b.run()
    res: dict[str, list[dict[str, Any]]] = {}
    order = ["A", "B", "F"]
    for r in range(args.small_rounds):
        for key in order if r % 2 == 0 else order[::-1]:
            if key == "B":
                m = b.run()
            else:
                m, said = a.run_said(reconcile=key == "F")
                check_mode(said, key == "F", f"photos-sync {key} no-change (small)")
            res.setdefault(key, []).append(asdict(m))
            show("small no-change", key, m)
    rep["small"] = {"files": files, "bytes": size, "results": res}
    a.destroy()
    b.destroy()


# -- part 3: S3 requests -------------------------------------------------------------------


def change_tree(root: Path, seed: int, new: int, deleted: int) -> tuple[list[str], list[str]]:
    """Add `new` photos to library/ and delete `deleted` originals from upload/."""
    rng = random.Random(seed)
    added = []
    folder = root / "library" / "user0" / "2026" / "11"
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(new):
        path = folder / f"IMG_NEW_{n:03d}.jpg"
        path.write_bytes(rng.randbytes(rng.randint(20_000, 200_000)))
        added.append(str(path.relative_to(root)))
    candidates = sorted(p for p in (root / "upload").rglob("*.*") if p.name != MARKER)
    gone = rng.sample(candidates, deleted)
    for path in gone:
        path.unlink()
    return added, [str(p.relative_to(root)) for p in gone]


def counted(s3: CountingS3, run: Any) -> tuple[Any, CountSnapshot]:
    s3.counter.reset()
    result = run()
    return result, s3.counter.snapshot()


def snap_dict(snap: CountSnapshot, detail: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "counts": {str(k): snap[k] for k in Kind},
        "put_bytes": snap.put_bytes,
        "total": snap.total,
    }
    if detail:
        out["requests"] = [str(r) for r in snap.requests]
    return out


def part_s3(work: Path, args: argparse.Namespace, rep: dict[str, Any], s3: CountingS3) -> None:
    source = work / "s3-src"
    small_tree(source, args.seed + 3)
    folders = [f.name for f in selected_folders(False)]
    files, size = bc.tree_stats(source, folders)
    say(f"[s3] {files:,} files, {size / MIB:.0f} MiB, endpoint {s3.endpoint}")
    a = PhotosSyncS3(work / "s3c", source, folders, s3, "counted")
    a.fresh()
    b = PlainRcloneS3(work, source, s3, "plain")
    runs: dict[str, Any] = {}

    def photos(name: str, reconcile: bool) -> None:
        (m, said), snap = counted(s3, lambda: a.run_said(no_head=reconcile))
        check_mode(said, reconcile, f"s3 {name}")
        runs[f"photos-sync {name}"] = {**snap_dict(snap, not reconcile), "wall": m.wall}
        say(f"    s3 photos-sync {name:<22} {m.wall:6.2f} s  {snap.nonzero()}")

    def plain(name: str) -> None:
        m, snap = counted(s3, b.run)
        runs[f"plain rclone {name}"] = {**snap_dict(snap, False), "wall": m.wall}
        say(f"    s3 plain rclone {name:<21} {m.wall:6.2f} s  {snap.nonzero()}")

    photos("full (first run)", True)
    plain("full (first run)")
    photos("no change (incremental)", False)
    plain("no change")
    added, gone = change_tree(source, args.seed + 4, args.s3_new, args.s3_deleted)
    photos(f"{len(added)} new + {len(gone)} deleted", False)
    plain(f"{len(added)} new + {len(gone)} deleted")
    rep["s3"] = {"files": files, "bytes": size, "runs": runs}
    a.destroy()


# -- part 4: storage-template migration ----------------------------------------------------


def migrate(root: Path, seed: int) -> dict[str, str]:
    """Move every original of upload/<user>/<xx>/<yy>/<uuid>.ext to
    library/<user>/<yyyy>/<mm>/IMG_<n>.ext (os.rename keeps the times). Returns new -> old."""
    rng = random.Random(seed)
    moved = {}
    originals = sorted(p for p in (root / "upload").rglob("*.*") if p.name != MARKER)
    for n, path in enumerate(originals):
        user = path.relative_to(root / "upload").parts[0]
        year, month = rng.choice((2019, 2021, 2023, 2024)), rng.randint(1, 12)
        target = root / "library" / user / str(year) / f"{month:02d}" / f"IMG_{n:05d}{path.suffix}"
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(path, target)
        moved[str(target.relative_to(root))] = str(path.relative_to(root))
    for dirpath, dirs, names in sorted(os.walk(root / "upload"), reverse=True):
        if not dirs and not names:
            os.rmdir(dirpath)  # Immich removes the emptied folders too
    return moved


def part_migrate(work: Path, args: argparse.Namespace, rep: dict[str, Any], s3: CountingS3) -> None:
    source = work / "mig-src"
    originals_tree(source, args.migrate_files, args.seed + 5)
    folders = [f.name for f in selected_folders(False)]
    files, size = bc.tree_stats(source, folders)
    say(f"[migrate] {files:,} files, {size / MIB:.0f} MiB")
    a = PhotosSyncS3(work / "migc", source, folders, s3, "migrated")
    a.fresh()
    (first, said), snap_first = counted(s3, lambda: a.run_said(no_head=True))
    check_mode(said, True, "migration: first run")
    # the baseline writes to its own server (no proxy: its figures come from rclone's own
    # stats), so that the counted server holds only photos-sync's backup
    direct = contextlib.ExitStack()
    server = direct.enter_context(serve_s3(work / "s3-direct"))
    (server.root / "bench").mkdir()
    b = PlainRcloneS3(work, source, _Direct(server), "plain-mig")
    plain_first = None if args.no_baseline else b.run()
    before = tree_digest(source, folders)
    time.sleep(1.1)
    between = datetime.now(UTC).replace(microsecond=0)
    time.sleep(1.1)
    t0 = time.perf_counter()
    moved = migrate(source, args.seed + 6)
    move_seconds = time.perf_counter() - t0
    after = tree_digest(source, folders)
    assert all(after[new] == before[old] for new, old in moved.items())
    # --force: every original left upload/, and photos-sync refuses a run whose source
    # folder is empty while its backup is not (the unmounted-volume guard)
    (second, said), snap_second = counted(s3, lambda: a.run_said(flags=("--force",)))
    check_mode(said, False, "migration: run after the move")
    moved_said = [line for line in said.splitlines() if "inside the backup" in line]
    say(
        f"    migrate photos-sync: {second.wall:.2f} s, {snap_second.nonzero()}, "
        f"PUT bytes {snap_second.put_bytes:,}; {moved_said[:1]}"
    )
    plain_second = None if args.no_baseline else b.run()
    direct.close()
    if plain_second is not None:
        say(
            f"    migrate plain rclone: {plain_second.wall:.2f} s, uploaded "
            f"{plain_second.extra['uploaded']:,.0f} B, server-side copies "
            f"{plain_second.extra['serverSideCopies']:.0f}"
        )
    restore_now = work / "restore-now"
    restore_before = work / "restore-before"
    wall_now = a.restore(restore_now)
    wall_before = a.restore(restore_before, between.isoformat())
    cmp_now = compare(after, restore_now, folders)
    cmp_before = compare(before, restore_before, folders)
    say(f"    restore: now {cmp_now}, as-of {cmp_before}")
    puts = [r for r in snap_second.requests if r.kind is Kind.PUT]
    plain_names = decrypt_names(s3, a.name, [r.target for r in puts])
    put_files: list[dict[str, Any]] = [
        {"path": plain_names.get(r.target, r.target), "bytes": r.body_bytes} for r in puts
    ]
    content = sum(
        int(p["bytes"])
        for p in put_files
        if not str(p["path"]).startswith((".photos-sync/", ".deleted/"))
    )
    rep["migrate"] = {
        "files": files,
        "bytes": size,
        "originals_moved": len(moved),
        "move_seconds": move_seconds,
        "between": between.isoformat(),
        "first": {**snap_dict(snap_first, False), "wall": first.wall},
        "second": {
            **snap_dict(snap_second, False),
            "wall": second.wall,
            "said": moved_said,
            "put_files": put_files[:50],
            "content_bytes": content,
        },
        "plain_first": asdict(plain_first) if plain_first else None,
        "plain_second": asdict(plain_second) if plain_second else None,
        "restore_now": {**cmp_now, "wall": wall_now},
        "restore_as_of": {**cmp_before, "wall": wall_before},
        "manifest_copy_bytes": _manifest_copy_size(a),
    }
    a.destroy()
    for path in (source, restore_now, restore_before, b.work):
        shutil.rmtree(path, ignore_errors=True)


def decrypt_names(s3: CountingS3, prefix: str, targets: list[str]) -> dict[str, str]:
    """Plain names of request targets `/BUCKET/PREFIX/<encrypted path>` (rclone cryptdecode
    with the benchmark's keys), so PUTs can be told apart: file content or photos-sync's
    own metadata (`.photos-sync/`, `.deleted/<run>/` records)."""
    if not targets:
        return {}
    binary = c.rclone_binary()
    crypt = crypt_remote(
        f"{BASE_REMOTE}:{s3.bucket}/{prefix}",
        bc.obscure(binary, bc.PASSWORD),
        bc.obscure(binary, bc.SALT),
    )
    env = c.clean_env({"RCLONE_CONFIG": "", **remote_env([crypt])})
    head = f"/{s3.bucket}/{prefix}/"
    encrypted = {unquote(urlsplit(t).path).removeprefix(head): t for t in targets}
    done = subprocess.run(
        [binary, "cryptdecode", f"{crypt.name}:", *encrypted],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    out = {}
    for line in done.stdout.splitlines():
        enc, _, plain = line.partition(" \t ")
        if enc in encrypted:
            out[encrypted[enc]] = plain.strip()
    return out


class _Direct:
    """The S3 server itself, shaped like a CountingS3 for PlainRcloneS3."""

    def __init__(self, server: Any) -> None:
        self.endpoint, self.bucket = server.endpoint, "bench"
        self.access_key_id, self.secret_access_key = server.access_key_id, server.secret_access_key


def _manifest_copy_size(a: PhotosSync) -> int:
    """What the manifest's gzip'd copy weighs (exported again, as the run does)."""
    code = (
        "import sys; from pathlib import Path; "
        "from photos_sync.storage.manifest_db import ManifestDB; "
        "db = ManifestDB(Path(sys.argv[1])); db.export(Path(sys.argv[2])); db.close()"
    )
    manifest = next((a.data / "manifests").glob("*.sqlite"))
    packed = a.base / "copy.gz"
    subprocess.run([sys.executable, "-c", code, str(manifest), str(packed)], check=True)
    size = packed.stat().st_size
    packed.unlink()
    return size


# -- part 5: many tiny files ---------------------------------------------------------------


def tiny_tree(root: Path, files: int, seed: int) -> None:
    """`files` tiny files (1-64 bytes) in upload/<user>/<xx>/<yy>/<uuid>.jpg (Immich's
    layout: 256 x 256 folders per user, two users)."""
    rng = random.Random(seed)
    users = [f"{rng.getrandbits(128):032x}" for _ in range(2)]
    made: set[str] = set()
    for n in range(files):
        name = f"{rng.getrandbits(128):032x}"
        folder = os.path.join(root, "upload", users[n % 2], name[:2], name[2:4])
        if folder not in made:
            os.makedirs(folder, exist_ok=True)
            made.add(folder)
        fd = os.open(os.path.join(folder, name + ".jpg"), os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, rng.randbytes(rng.randint(1, 64)))
        os.close(fd)


def part_tiny(work: Path, args: argparse.Namespace, rep: dict[str, Any]) -> None:
    source = work / "tiny-src"
    make_immich_tree(source, library_files=0, upload_files=0, thumbs=False, seed=9, dumps=0)
    folders = [f.name for f in selected_folders(False)]
    a = PhotosSync(work / "tiny", source, folders)
    a.fresh()
    _m, said = a.run_said()  # the real first run (markers and avatars): a real head and state
    check_mode(said, True, "tiny: first run")
    t0 = time.perf_counter()
    tiny_tree(source, args.tiny_files, args.seed + 7)
    made = time.perf_counter() - t0
    files, size = bc.tree_stats(source, folders)
    say(f"[tiny] {files:,} files, {size / MIB:.1f} MiB (made in {made:.0f} s)")
    walks = []
    for _ in range(args.tiny_rounds):
        answer, wall, hwm = run_py(WALK, str(source / "upload"))
        walks.append({**answer, "wall": wall, "hwm": hwm})
        say(
            f"    walk_files: {answer['files']:,} files in {answer['seconds']:.2f} s, {hwm:.0f} MiB"
        )
    names = []
    for _ in range(args.tiny_rounds):
        # the run's one walk of a folder: the manifest's, checking the file names on the way
        answer, wall, hwm = run_py(WALK_NAMED, str(source / "upload"))
        names.append({**answer, "wall": wall, "hwm": hwm})
        say(f"    walk_files + NameCheck: {answer['seconds']:.2f} s (cpu {answer['cpu']:.2f} s)")
    lsf = []
    for _ in range(args.tiny_rounds):
        log = work / "lsf.out"
        _rc, wall, usage, w = bc.run_measured(
            [c.rclone_binary(), "lsf", "-R", "--files-only", "--format", "pst",
             str(source / "upload")],
            c.clean_env({"RCLONE_CONFIG": ""}),
            work,
            log,
        )  # fmt: skip
        lsf.append({"wall": wall, "cpu": bc.cpu_of(usage), "hwm": w.main_hwm})
        log.unlink()
        say(f"    rclone lsf -R: {wall:.2f} s, cpu {bc.cpu_of(usage):.1f} s, {w.main_hwm:.0f} MiB")
    manifest = next((a.data / "manifests").glob("*.sqlite"))
    packed = work / "tiny-manifest.gz"
    answer, wall, hwm = run_py(INJECT, str(manifest), "upload", str(source / "upload"), str(packed))
    sqlite_bytes = sum(p.stat().st_size for p in manifest.parent.glob("*.sqlite*"))
    inject = {**answer, "wall": wall, "hwm": hwm, "sqlite_bytes": sqlite_bytes}
    inject["gz_bytes"] = packed.stat().st_size
    packed.unlink()
    say(
        f"    manifest: {answer['files']:,} entries, SQLite {sqlite_bytes / MIB:.1f} MiB, "
        f"gzip'd copy {inject['gz_bytes'] / MIB:.1f} MiB (written in {answer['seconds']:.1f} s)"
    )
    runs = []
    for _ in range(args.tiny_rounds):
        m, said = a.run_said()
        check_mode(said, False, "tiny: incremental no-change")
        if "files_transferred" in said:
            pass
        runs.append(asdict(m))
        show("tiny no-change", "A", m)
    rep["tiny"] = {
        "files": files,
        "bytes": size,
        "made_seconds": made,
        "walks": walks,
        "names": names,
        "lsf": lsf,
        "manifest": inject,
        "runs": runs,
    }
    a.destroy()
    shutil.rmtree(source, ignore_errors=True)


# -- report --------------------------------------------------------------------------------


def meds(ms: list[dict[str, Any]], attr: str) -> float:
    return c.median([m[attr] for m in ms])


def fmt_s(values: list[float]) -> str:
    return f"{c.median(values):.2f} s ({min(values):.2f}–{max(values):.2f})"


def cpu(m: dict[str, Any]) -> float:
    return float(m["cpu_main"] + m["cpu_rclone"])


def render(args: argparse.Namespace, rep: dict[str, Any]) -> str:
    parts = [f"## #15 scale: manifest and incremental runs ({rep['date']})"]
    runs = rep.get("runs") or [
        {"command": rep["command"], "what": "all parts", "date": rep["date"],
         "minutes": rep["minutes"], "load_start": rep["load_start"], "load_end": rep["load_end"]}
    ]  # fmt: skip
    parts.append(
        "Commands (from the repository root, with the project's venv; data in `--workdir`, "
        "default /tmp, deleted at the end):\n\n"
        + "\n".join(
            f"- `{r['command']}` — {r['what']}: {r['date']}, {r['minutes']:.1f} min, load "
            f"average (1/5/15 min) {r['load_start']} at the start, {r['load_end']} at the end"
            for r in runs
        )
        + "\n\nA shared 2-core VM with other engineers' processes running (see the load "
        "averages), so absolute times are inflated and noisy; every part alternates its "
        "contenders (A B …, then … B A) so drift hits all alike."
    )
    parts.append(c.machine_block(rep["machine"], {"restic / borg": rep.get("tools", "—")}))
    targets: list[tuple[str, str, str]] = []
    if "many" in rep:
        parts.append(render_many(rep["many"], args, targets))
    if "small" in rep:
        parts.append(render_small(rep["small"], args, targets))
    if "s3" in rep:
        parts.append(render_s3(rep["s3"], args, targets))
    if "migrate" in rep:
        parts.append(render_migrate(rep["migrate"], args, targets))
    if "tiny" in rep:
        parts.append(render_tiny(rep["tiny"], rep.get("many"), args, targets))
    parts.append("### Targets (issue #15)\n\n" + c.table(("target", "measured", "met?"), targets))
    parts.append(render_analysis(rep))
    parts.append(FINDINGS)
    return "\n\n".join(parts)


def render_analysis(rep: dict[str, Any]) -> str:
    """Why the figures are what they are, from this run's own numbers."""
    lines = ["### Reading the figures"]
    many, small, tiny = rep.get("many"), rep.get("small"), rep.get("tiny")
    if many:
        full, nc = many["results"]["full"], many["results"]["no-change"]
        n = many["files"]
        a_min = min(m["wall"] for m in full["A"]) / min(m["wall"] for m in full["B"])
        own = meds(full["A"], "cpu_main")
        rclone_extra = meds(full["A"], "cpu_rclone") - c.median([cpu(m) for m in full["B"]])
        lines.append(
            f"- **Full backup** ({n:,} files): the wall-time ratio moves with the machine's load "
            f"(fastest photos-sync run / fastest plain run = {a_min:.2f}×). The robust signal is "
            f"CPU: photos-sync's own process used {own:.1f} s ({own / n * 1e6:.0f} µs per "
            f"file: rclone's log lines, the walk staged into the manifest, its commit and "
            f"gzip'd export), its rclone {rclone_extra:+.1f} s against plain rclone. The walk "
            "comes before each folder's sync and cannot overlap it (a file that appears during "
            "the sync must not be recorded as sent), so its part of that CPU (~2 s per 100k "
            "files in Immich's nearly empty `<xx>/<yy>/` folders, mostly the kernel's "
            "directory reads and stats) adds to the wall time on a 2-core machine that rclone "
            "already keeps busy. restic and borg pack small files into few repository files; "
            "one crypt object per file (what makes the backup restorable with plain rclone) "
            "costs rclone ~0.7 ms of CPU per file here (encryption included)."
        )
        a_own = meds(nc["A"], "cpu_main")
        f_wall, b_wall = meds(nc["F"], "wall"), meds(nc["B"], "wall")
        slope = ""
        if small:
            s_own = meds(small["results"]["A"], "cpu_main")
            per = (a_own - s_own) / max(1, n - small["files"]) * 1e6
            slope = (
                f" Against the {small['files']:,}-file tree ({s_own:.2f} s, the fixed start-up) "
                f"that is **{per:.0f} µs per file**"
            )
            if tiny and tiny.get("names"):
                tn = tiny["files"]
                walk = c.median([w["cpu"] for w in tiny["walks"] if "cpu" in w] or [0]) / tn
                names = c.median([x["cpu"] for x in tiny["names"]]) / tn
                run_cpu = meds(tiny["runs"], "cpu_main") / tn
                slope += (
                    f" (about 1.5 files per folder: Immich's `<xx>/<yy>/` folders are nearly "
                    f"empty at this size, and the walks pay per folder). At {tn:,} tiny files "
                    f"(~8 per folder) the incremental run costs {run_cpu * 1e6:.0f} µs of "
                    f"photos-sync CPU per file, of which the source's one walk is "
                    f"{names * 1e6:.0f} µs/file: `walk_files` for the manifest "
                    f"({walk * 1e6:.0f} µs/file alone) checking the file names on the way "
                    "(`NameCheck`; before 9aa6c4f a second walk, `scan_names`, did that)"
                )
            slope += "."
        lines.append(
            f"- **No-change, incremental**: photos-sync's own CPU {a_own:.2f} s.{slope} "
            "Nothing else grows with the file count: no listing, no rclone sync, RSS flat."
        )
        lines.append(
            f"- **Reconcile** (every `BACKUP_RECONCILE_EVERY`, 7 days by default): "
            f"{f_wall:.1f} s vs plain rclone's {b_wall:.1f} s ({f_wall / b_wall:.2f}×): the "
            "same sync plus the walk staged into the manifest, its commit, and the manifest's "
            "copy exported and uploaded."
        )
    s3 = rep.get("s3")
    if s3:
        plain = s3["runs"].get("plain rclone no change")
        if plain:
            lines.append(
                f"- **S3, plain rclone / reconcile**: a no-change `rclone sync` with photos-sync's "
                f"flags makes {plain['counts']['HEAD']:,} HEAD requests for {s3['files']:,} "
                "files (one per object, to read the modification time rclone keeps in each "
                "object's metadata) besides its LISTs: what a reconcile costs on S3 every 7 days."
            )
    mig = rep.get("migrate")
    if mig:
        sec = mig["second"]
        moved = max(1, mig["originals_moved"])
        per = (sec["counts"]["HEAD"] + sec["counts"]["COPY"] + sec["counts"]["DELETE"]) / moved
        lines.append(
            f"- **Migration**: each move is one `operations/movefile` in `rclone rcd`: "
            f"{sec['counts']['HEAD'] / moved:.0f} HEAD + 1 COPY + 1 DELETE ({per:.0f} requests "
            f"per file), 8 at a time (`PARALLEL_MOVES`): {sec['wall']:.0f} s for "
            f"{moved:,} files on loopback through the proxy. On a real S3 link with ~30 ms per "
            "request that is ≈ 5 × 30 ms / 8 ≈ 19 ms per file: ~5 h for 1M moved files — still "
            "nothing uploaded, but more parallel moves (S3 and B2 take 16–32 at once) would "
            "cut it. The moves record (one JSON line per move) is the only sizeable upload "
            f"({sec['put_bytes'] / moved:.0f} B per moved file with the manifest's copy)."
        )
    return "\n".join(lines)


FINDINGS = """### What the benchmark ran into (photos-sync at 225cd44; for the engine's owner)

- *(Fixed since: `CryptRemote.download` now says "none" when rclone copied nothing; tested
  by tests/integration/test_incremental.py.)* **The first run to a new S3 (or B2)
  destination died** with a `FileNotFoundError` traceback:
  `ManifestRun.open` reads the manifest's head with `CryptRemote.download` (`rclone copyto`),
  and on a bucket remote `rclone copyto REMOTE:missing-file LOCAL` exits 0 without writing
  anything — it finds no object (HEAD → 404), takes the name for a folder, lists it (one LIST:
  `GET /bench?delimiter=/&prefix=…/manifest-head.json/`) and copies nothing; `download`
  returns True and `_read_small` reads a file that is not there. Reproduce:
  `.venv/bin/python bench/s3_counting.py -- rclone copyto s3:bench/nope/x.json /tmp/x` (exit 0,
  no /tmp/x, 1 HEAD + 1 LIST). A local destination says "not found" and is not affected. The
  benchmark's first S3 runs set `BACKUP_FOLLOW_SYMLINKS=true` (no links in its trees), which
  reconciles without reading the head; later runs find the head the first one wrote.
- *(Fixed since: a folder whose every file is found again elsewhere is not "emptied";
  tested by `test_a_storage_template_migration_that_empties_upload_is_not_refused`.)*
  **After a storage-template migration the next run was refused** without `--force`: every
  original left `upload/`, and the emptied-source guard ("upload/ is empty at the source but
  not in the backup") fires although the manifest knows the files were moved, not lost. The
  benchmark's run after the move uses `--force`.
- Deleting `<data dir>/manifests/` no longer forces a full sync: the next run adopts the
  manifest's copy from the destination (by design, #15 point 5). The benchmark makes the
  periodic reconcile due instead (the manifest's last full sync aged by 30 days).
- Test tooling, not photos-sync: `tests/support/s3server.py` started `rclone serve s3` with
  its stderr on a pipe nobody read. rclone logs an ERROR line for each directory it fails to
  remove after an S3 delete ("Dir.Remove not empty"); after ~400 deletes the 64 KiB pipe was
  full and the server blocked on its log, answering no request (seen twice: plain rclone's
  archive moves, photos-sync's 10,000 renames — 8 requests waiting for minutes). Fixed in
  this branch: the server's stderr goes to /dev/null."""


def render_many(d: dict[str, Any], args: argparse.Namespace, targets: list[Any]) -> str:
    res = d["results"]
    rows = []
    for case, by_key in res.items():
        b_wall = meds(by_key["B"], "wall")
        b_cpu = c.median([cpu(m) for m in by_key["B"]])
        for key in ("A", "F", "B", "R", "G"):
            ms = by_key.get(key)
            if not ms:
                continue
            cpus = [cpu(m) for m in ms]
            rows.append(
                (
                    case,
                    NAMES[key],
                    str(len(ms)),
                    fmt_s([m["wall"] for m in ms]),
                    f"{meds(ms, 'wall') / b_wall:.2f}×",
                    f"{c.median(cpus):.1f} s",
                    f"{c.median(cpus) / b_cpu:.2f}×",
                    f"{meds(ms, 'cpu_main'):.2f} s" if key in "AF" else "—",
                    f"{max(m['rss_main'] for m in ms):.0f} MiB" if key in "AF" else "—",
                    f"{max(m['rss_rclone'] for m in ms):.0f} MiB" if key in "ABF" else "—",
                    f"{meds(ms, 'sent_bytes') / MIB:.1f} MiB / {int(meds(ms, 'sent_files')):,}",
                )
            )
    full, nc = res["full"], res["no-change"]
    fa = meds(full["A"], "wall") / meds(full["B"], "wall")
    fc = c.median([cpu(m) for m in full["A"]]) / c.median([cpu(m) for m in full["B"]])
    na = meds(nc["A"], "wall") / meds(nc["B"], "wall")
    faster = all(meds(full["A"], "wall") < meds(full[k], "wall") for k in ("R", "G") if k in full)
    nfaster = all(meds(nc["A"], "wall") < meds(nc[k], "wall") for k in ("R", "G") if k in nc)
    n = f"{d['files']:,} files"
    targets += [
        (f"full backup ({n}): ≤ 1.05× plain rclone wall", f"{fa:.2f}×", _yes(fa <= 1.05)),
        (f"full backup ({n}): ≤ 1.10× plain rclone CPU", f"{fc:.2f}×", _yes(fc <= 1.10)),
        (
            f"full backup ({n}): faster than restic and borg",
            _vs(full, ("R", "G")),
            _yes(faster) if "R" in full else "not measured",
        ),
        (f"no-change ({n}): ≤ 0.3× plain rclone wall", f"{na:.2f}×", _yes(na <= 0.3)),
        (
            f"no-change ({n}): faster than restic and borg",
            _vs(nc, ("R", "G")),
            _yes(nfaster) if "R" in nc else "not measured",
        ),
    ]
    headers = (
        "case", "tool", "n", "wall: median (min–max)", "vs plain rclone", "CPU (user+sys, all)",
        "CPU vs plain", "photos-sync own CPU", "photos-sync peak RSS", "rclone peak RSS",
        "sent (median)",
    )  # fmt: skip
    return f"""### 1. Many small files to a local disk: full and no-change

Tree: `tests/immich_tree.py` originals only — **{d["files"]:,} files, {d["bytes"] / GIB:.2f} GiB**
(`upload/<user>/<xx>/<yy>/<uuid>.jpg|.heic|.mp4`, size factor {SMALL_ORIGINALS}: JPEG 2–12 KiB,
HEIC 1–6 KiB, MP4 20–120 KiB; plus 2 avatars and the `.immich` markers), default selection
(library, upload, profile, backups). {args.full_rounds} full round(s) (each into a new, empty
destination), then {args.rounds} no-change rounds on the last one.

- **photos-sync** — `photos-sync backup` (foreground; fresh data dir; destination from
  `photos-sync backup --setup local --name bench --path DIR --yes`; keys from
  `PHOTOS_SYNC_ENCRYPTION_PASSWORD`/`_SALT`). Its first run reconciles (full sync, builds the
  manifest); its no-change runs are incremental (checked in its output: no "full sync of").
- **photos-sync reconcile** — the same data dir, the manifest's last full sync aged by 30
  days first: the periodic reconcile (a full `rclone sync`, its guards judged by the
  manifest, plus the manifest's rebuild), i.e. the no-change run before #15 and what runs
  every 7 days.
- **plain rclone** — `rclone sync` per folder, crypt over local from `RCLONE_CONFIG_*`, with
  the argv photos-sync builds (bench/bench_compare.py `PlainRcloneC`).
- **restic** 0.14.0 / **borg** 1.2.4 — `restic backup` / `borg create` of the same folders into
  a local encrypted repository (Debian packages).

CPU = user+system of the whole process tree from `wait4` (the `RUSAGE_CHILDREN` delta);
photos-sync's own CPU and peak RSS (VmHWM) are sampled from /proc every 0.05 s. Manifest after
the full run: **{d["manifest_bytes"] / MIB:.1f} MiB** SQLite for {d["files"]:,} files
({d["manifest_bytes"] / max(1, d["files"]):.0f} B per file).

{c.table(headers, rows)}"""


def _vs(by_key: dict[str, list[dict[str, Any]]], keys: tuple[str, ...]) -> str:
    a = meds(by_key["A"], "wall")
    return ", ".join(
        f"{NAMES[k]} {meds(by_key[k], 'wall'):.2f} s (photos-sync {a:.2f} s)"
        for k in keys
        if k in by_key
    )


def _yes(ok: bool) -> str:
    return "**yes**" if ok else "**no**"


def render_small(d: dict[str, Any], args: argparse.Namespace, targets: list[Any]) -> str:
    res = d["results"]
    b = meds(res["B"], "wall")
    rows = [
        (
            NAMES[k],
            str(len(res[k])),
            fmt_s([m["wall"] for m in res[k]]),
            f"{meds(res[k], 'wall') - b:+.2f} s",
            f"{c.median([cpu(m) for m in res[k]]):.2f} s",
            f"{meds(res[k], 'cpu_main'):.2f} s" if k != "B" else "—",
            f"{max(m['rss_main'] for m in res[k]):.0f} MiB" if k != "B" else "—",
        )
        for k in ("A", "F", "B")
        if k in res
    ]
    gap = meds(res["A"], "wall") - b
    targets.append(
        (
            f"no-change, {d['files']:,} files: ≤ plain rclone + 0.3 s",
            f"{gap:+.2f} s ({meds(res['A'], 'wall'):.2f} s vs {b:.2f} s)",
            _yes(gap <= 0.3),
        )
    )
    return f"""### 2. No-change run of a small tree (local disk)

`tests/immich_tree.py` with 900 library/ + 700 upload/ originals, 4 dumps, size factor 0.01:
**{d["files"]:,} files, {d["bytes"] / MIB:.0f} MiB**. {args.small_rounds} rounds of A B F /
F B A after one full run of each.

{c.table(("tool", "n", "wall: median (min–max)", "vs plain rclone",
          "CPU (all)", "photos-sync own CPU", "photos-sync peak RSS"), rows)}"""  # fmt: skip


def render_s3(d: dict[str, Any], args: argparse.Namespace, targets: list[Any]) -> str:
    rows = {name: run for name, run in d["runs"].items()}
    headers = ["run", *(str(k) for k in Kind), "PUT bytes", "requests", "wall*"]
    body = [
        [
            name,
            *(f"{run['counts'][str(k)]:,}" for k in Kind),
            f"{run['put_bytes']:,}",
            f"{run['total']:,}",
            f"{run['wall']:.2f} s",
        ]
        for name, run in rows.items()
    ]
    incremental = {n: r for n, r in rows.items() if n.startswith("photos-sync") and "full" not in n}
    lists = {n: r["counts"]["LIST"] for n, r in incremental.items()}
    targets.append(
        (
            "0 LIST requests in an incremental run (S3, counting proxy)",
            ", ".join(f"{n.removeprefix('photos-sync ')}: {v}" for n, v in lists.items()),
            _yes(all(v == 0 for v in lists.values())),
        )
    )
    detail = []
    for name, run in incremental.items():
        reqs = run.get("requests", [])
        shown = reqs[:12] + ([f"… {len(reqs) - 12} more"] if len(reqs) > 12 else [])
        detail.append(f"{name} — requests in order:\n\n```\n" + "\n".join(shown) + "\n```")
    return f"""### 3. Requests per run against S3 (counting proxy)

`rclone serve s3` on loopback behind tests/support/s3_counting.py's counting proxy
(bench/s3_counting.py `counted_s3`); photos-sync's destination from
`photos-sync backup --setup s3 --name counted --bucket bench --endpoint <proxy> --region
us-east-1 --path counted --secrets file --yes` (keys in `PHOTOS_SYNC_ACCESS_KEY_ID` /
`_SECRET_ACCESS_KEY`); plain rclone = `rclone sync` per folder with photos-sync's S3 flags into
crypt over the same server (another prefix). Tree: the small tree of part 2
(**{d["files"]:,} files, {d["bytes"] / MIB:.0f} MiB**); "changed" = {args.s3_new} new photos
in library/ + {args.s3_deleted} originals deleted from upload/. Counts are the requests
answered (LIST = ListObjects(V2)/ListBuckets/…; COPY = server-side copies, how S3 moves;
DELETE includes batch deletes). photos-sync's first run sets `BACKUP_FOLLOW_SYMLINKS=true`
(see the findings below: without it the first run to S3 fails), so it reads no manifest head.
*wall includes the proxy, which runs in the benchmark's own
Python: not a speed figure.

{c.table(headers, body)}

{chr(10).join(detail)}"""


def render_migrate(d: dict[str, Any], args: argparse.Namespace, targets: list[Any]) -> str:
    first, second = d["first"], d["second"]
    pf, ps = d.get("plain_first"), d.get("plain_second")
    rows = [
        ("photos-sync first backup", first),
        ("photos-sync run after the move", second),
    ]
    headers = ["run", *(str(k) for k in Kind), "PUT bytes", "wall*"]
    body = [
        [
            n,
            *(f"{r['counts'][str(k)]:,}" for k in Kind),
            f"{r['put_bytes']:,}",
            f"{r['wall']:.2f} s",
        ]
        for n, r in rows
    ]
    plain = ""
    if pf and ps:
        plain = c.table(
            ("plain `rclone sync` (no proxy)", "uploaded (rclone's bytes − server-side copies)",
             "server-side copies", "wall"),
            [(n, f"{r['extra']['uploaded']:,.0f} B", f"{r['extra']['serverSideCopies']:,.0f}",
              f"{r['wall']:.2f} s") for n, r in (("first sync", pf), ("sync after the move", ps))],
        )  # fmt: skip
    copy = d["manifest_copy_bytes"]
    content = second["content_bytes"]
    rn, rb = d["restore_now"], d["restore_as_of"]
    targets += [
        (
            f"storage-template migration of {d['originals_moved']:,} files: 0 bytes of content "
            "uploaded",
            f"{content:,} B of file content; {second['put_bytes']:,} PUT bytes in "
            f"{second['counts']['PUT']} PUTs, all photos-sync's own records"
            + (f"; plain rclone: {ps['extra']['uploaded']:,.0f} B uploaded" if ps else ""),
            _yes(content == 0),
        ),
        (
            "restore after and `--as-of` before the move byte-identical",
            f"after: {_cmp(rn)}; as-of: {_cmp(rb)}",
            _yes(bool(rn["ok"] and rb["ok"])),
        ),
    ]
    return f"""### 4. Storage-template migration ({d["originals_moved"]:,} originals)

`tests/immich_tree.py` originals in `upload/<user>/<xx>/<yy>/<uuid>.ext` (size factor
{SMALL_ORIGINALS}; each file's mtime set to a distinct photo time with `os.utime`, as Immich
does): **{d["files"]:,} files, {d["bytes"] / MIB:.0f} MiB**, backed up to S3 through the
counting proxy; then every original moved with `os.rename` to
`library/<user>/<yyyy>/<mm>/IMG_<n>.ext` ({d["move_seconds"]:.1f} s; emptied folders removed)
and `photos-sync backup` run again. photos-sync said: {"; ".join(d["second"]["said"]) or "—"}.
Baseline: plain `rclone sync` (photos-sync's argv, S3 flags) of the same trees into another
server (no proxy; bytes from rclone's own stats): what every run did before #15.

{c.table(headers, body)}

{plain}

PUTs of the run after the move (names decrypted with `rclone cryptdecode`):
{", ".join(f"`{p['path']}` {p['bytes']:,} B" for p in second["put_files"])} — the moves record
(one JSON line per move, for `restore --as-of`), the manifest's gzip'd copy ({copy:,} B
exported again after the run) and its head. *wall through the proxy (the benchmark's own
Python).

Restores (`photos-sync restore --from migrated --to DIR`, then `--as-of {d["between"]}`, a
moment between the two runs), compared file by file (SHA-256) with the tree after / before the
move: after — {_cmp(rn)} ({rn["wall"]:.1f} s); as-of — {_cmp(rb)} ({rb["wall"]:.1f} s)."""


def _cmp(r: dict[str, Any]) -> str:
    verdict = "identical" if r["ok"] else "DIFFERENT"
    out = f"{verdict} ({r['restored']:,} of {r['expected']:,} files"
    if not r["ok"]:
        out += f"; missing {r['missing']}, extra {r['extra']}, differ {r['differ']}: "
        out += ", ".join(r["examples"])
    return out + ")"


def render_tiny(
    d: dict[str, Any], many: dict[str, Any] | None, args: argparse.Namespace, targets: list[Any]
) -> str:
    n = d["files"]
    walk = c.median([w["seconds"] for w in d["walks"]])
    walk_hwm = max(w["hwm"] for w in d["walks"])
    lsf = c.median([x["wall"] for x in d["lsf"]])
    names = c.median([x["seconds"] for x in d["names"]]) if d.get("names") else 0.0
    man = d["manifest"]
    runs = d["runs"]
    rss = max(m["rss_main"] for m in runs)
    wall = meds(runs, "wall")
    per_file = man["sqlite_bytes"] / max(1, man["files"])
    gz_per_file = man["gz_bytes"] / max(1, man["files"])
    scale = 2_000_000 / n
    targets.append(
        (
            f"{n:,} files: photos-sync RSS ≤ 200 MiB in an incremental run",
            f"{rss:.0f} MiB",
            _yes(rss <= 200),
        )
    )
    rows = [
        ("files (upload/, 1–64 B each)", f"{n:,}", "2,000,000"),
        ("`walk_files` (median)", f"{walk:.1f} s ({walk / n * 1e6:.1f} µs/file)",
         f"≈ {walk * scale:.0f} s"),
        *(
            [("`walk_files` with the file-name check (`NameCheck`): the run's one walk",
              f"{names:.1f} s ({names / n * 1e6:.1f} µs/file)", f"≈ {names * scale:.0f} s")]
            if names else []
        ),
        ("`rclone lsf -R --format pst` of the same folder", f"{lsf:.1f} s",
         f"≈ {lsf * scale:.0f} s"),
        ("walk's peak RSS (child Python)", f"{walk_hwm:.0f} MiB", "same (one listing per level)"),
        ("manifest SQLite", f"{man['sqlite_bytes'] / MIB:.1f} MiB ({per_file:.0f} B/file)",
         f"≈ {per_file * 2e6 / MIB:.0f} MiB"),
        ("manifest's gzip'd copy (uploaded after a run that changed it)",
         f"{man['gz_bytes'] / MIB:.1f} MiB ({gz_per_file:.0f} B/file)",
         f"≈ {gz_per_file * 2e6 / MIB:.0f} MiB"),
        ("incremental no-change `photos-sync backup`: wall (median)",
         fmt_s([m["wall"] for m in runs]), f"≈ {wall * scale:.0f} s"),
        ("— CPU (all processes)", f"{c.median([cpu(m) for m in runs]):.1f} s", ""),
        ("— photos-sync peak RSS", f"{rss:.0f} MiB", "see below"),
        ("— rclone peak RSS (reads the head, no listing)",
         f"{max(m['rss_rclone'] for m in runs):.0f} MiB", ""),
    ]  # fmt: skip
    rss_line = ""
    if many and "A" in many["results"]["no-change"]:
        mr = max(m["rss_main"] for m in many["results"]["no-change"]["A"])
        rss_line = (
            f" The same run over the {many['files']:,}-file tree of part 1 peaked at "
            f"{mr:.0f} MiB: RSS does not grow with the number of files (the walk and the "
            "manifest are merged as two sorted streams)."
        )
    return f"""### 5. Many tiny files: scan, manifest, RSS

{n:,} tiny files (1–64 bytes, `upload/<user>/<xx>/<yy>/<uuid>.jpg`; made in
{d["made_seconds"]:.0f} s). A real first `photos-sync backup` (markers and avatars) gave the
data dir, the destination and the manifest's head; then the tiny files were written and their
manifest entries recorded with the engine's own `ManifestDB.stage` + `commit_staged` (exactly
what a reconcile does after its sync: {man["seconds"]:.1f} s for the walk and the rows) instead
of a real full backup of {n:,} files (rclone writes one crypt object per file: well over
20 min on this machine). The incremental no-change runs below are real
`photos-sync backup` runs over that tree (checked incremental), {args.tiny_rounds} rounds.
Extrapolation to 2M files is linear in the file count; a 20 TB library does not change any
of these figures (nothing here reads file contents).

{c.table(("", f"measured ({n:,} files)", "2M files (extrapolated)"), rows)}
{rss_line}"""


# -- main ----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--many-files", type=int, default=20_000, help="part 1 (20000)")
    parser.add_argument("--full-rounds", type=int, default=2, help="part 1 full backups (2)")
    parser.add_argument("--rounds", type=int, default=2, help="part 1 no-change rounds (2)")
    parser.add_argument("--small-rounds", type=int, default=4, help="part 2 rounds (4)")
    parser.add_argument("--s3-new", type=int, default=10)
    parser.add_argument("--s3-deleted", type=int, default=5)
    parser.add_argument("--migrate-files", type=int, default=10_000, help="part 4 (10000)")
    parser.add_argument("--no-baseline", action="store_true", help="part 4 without plain rclone")
    parser.add_argument("--tiny-files", type=int, default=300_000, help="part 5 (300000)")
    parser.add_argument("--tiny-rounds", type=int, default=2)
    parser.add_argument("--no-restic-borg", action="store_true")
    parser.add_argument("--only", default="", help="comma list of: many,small,s3,migrate,tiny")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp"))
    parser.add_argument("--wait-load", type=float, default=0, help="wait up to S s for load < 1")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, docs untouched")
    parser.add_argument("--no-doc", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (debugging)")
    parser.add_argument("--save", type=Path, help="also write the raw figures to this JSON file")
    parser.add_argument("--render-from", type=Path, help="only re-render a --save file")
    args = parser.parse_args()
    c.byte_compile()
    if args.render_from:
        saved = json.loads(args.render_from.read_text())
        for k, v in saved["args"].items():
            if k not in ("render_from", "no_doc", "save"):
                setattr(args, k, Path(v) if k == "workdir" else v)
        text = render(args, saved)
        print(text)
        if not args.no_doc:
            c.update_doc("scale", text)
        return
    if args.quick:
        args.many_files, args.full_rounds, args.rounds, args.small_rounds = 500, 1, 1, 1
        args.migrate_files, args.tiny_files, args.tiny_rounds = 200, 2000, 1
        args.no_doc = True
    if not args.no_restic_borg and not (shutil.which("restic") and shutil.which("borg")):
        raise SystemExit("restic/borg missing: apt-get install -y restic borgbackup, "
                         "or --no-restic-borg")  # fmt: skip
    only = set(filter(None, args.only.split(","))) or {"many", "small", "s3", "migrate", "tiny"}
    waited = c.wait_for_low_load(args.wait_load) if args.wait_load else "no wait"
    rep: dict[str, Any] = {
        "date": c.now(),
        "load_start": c.loadavg(),
        "waited": waited,
        "command": " ".join(["python", "bench/bench_scale.py", *sys.argv[1:]]),
    }
    work = Path(tempfile.mkdtemp(prefix="photos-sync-bench-scale-", dir=args.workdir))
    rep["machine"] = c.machine(work)
    if shutil.which("restic") and shutil.which("borg"):
        rep["tools"] = " / ".join(
            subprocess.run([t, "version" if t == "restic" else "--version"], capture_output=True,
                           text=True).stdout.split("\n")[0].strip()
            for t in ("restic", "borg")
        )  # fmt: skip
    t0 = time.perf_counter()
    try:
        if "many" in only:
            part_many(work, args, rep)
        if "small" in only:
            part_small(work, args, rep)
        if only & {"s3", "migrate"}:
            with counted_s3(work / "s3", bucket="bench") as s3:
                if "s3" in only:
                    part_s3(work, args, rep, s3)
                if "migrate" in only:
                    part_migrate(work, args, rep, s3)
        if "tiny" in only:
            part_tiny(work, args, rep)
    finally:
        rep["minutes"] = (time.perf_counter() - t0) / 60
        rep["load_end"] = c.loadavg()
        rep["args"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        if args.save:
            args.save.write_text(json.dumps(rep, indent=1, default=str))
        if not args.keep:
            with contextlib.suppress(OSError):
                shutil.rmtree(work)
    text = render(args, rep) if only == {"many", "small", "s3", "migrate", "tiny"} else ""
    if text:
        print(text)
        if not args.no_doc:
            c.update_doc("scale", text)
    else:
        print(
            json.dumps({k: v for k, v in rep.items() if k != "machine"}, indent=1, default=str)[
                :20000
            ]
        )


if __name__ == "__main__":
    main()
