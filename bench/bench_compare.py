"""Benchmark (issue #7): photos-sync vs plain `rclone sync` vs restic vs borg, and a slow link.

Datasets (deterministic: names, sizes and bytes come from seeded generators):

- "media": an Immich tree from tests/immich_tree.py (~2,000 files, >= 1.5 GB of random bytes
  in backups/, library/, upload/, profile/), the default photos-sync selection;
- "many": >= 100,000 small files (2-10 KiB, like thumbnails) in thumbs/ plus profile/,
  backed up with BACKUP_INCLUDE_GENERATED=true (B: the same 6 folders).

Contenders, alternated A B R G in every round of every case:

A  `photos-sync backup` (foreground, fresh PHOTOS_SYNC_DATA_DIR, local crypt destination);
B  plain `rclone sync`, one per folder, with the argv photos-sync builds (sync_argv);
R  `restic backup` of the same folders into a local encrypted repository (RESTIC_PASSWORD);
G  `borg create` of the same folders into a local encrypted repository (BORG_PASSPHRASE).

Cases: full backup (empty destination); no-change rerun; rerun after 1 % of the files were
rewritten; resume: the run is killed (SIGKILL; for A its rclone child) once the destination
holds ~50 % of the bytes, then rerun: wall time and bytes sent twice.

Slow link: `rclone serve s3` on loopback behind bench/slowlink.py (delay per direction and a
token-bucket rate), plain rclone with photos-sync's s3 tuning (P) vs rclone's defaults (D).

    python bench/bench_compare.py              # full benchmark (~20 min), docs/BENCHMARKS.md
    python bench/bench_compare.py --scale 0.1  # small datasets, no doc update unless --doc
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c

from photos_sync.config import parse_settings
from photos_sync.destinations import destination_type
from photos_sync.planning import selected_folders
from photos_sync.rclone_args import (
    BASE_REMOTE,
    RemoteSpec,
    SyncOptions,
    archive_path,
    crypt_path,
    crypt_remote,
    remote_env,
    sync_argv,
)
from photos_sync.runner import Runner, _run_stamp
from photos_sync.store import utcnow
from tests.immich_tree import MARKER, TOP_FOLDERS, make_immich_tree

PASSWORD = "bench-password-0123456789abcdefXYZ"
SALT = "bench-salt-0123456789abcdefXYZ"
MIB = 1024**2
GIB = 1024**3
CLK_TCK = os.sysconf("SC_CLK_TCK")
NAMES = {"A": "photos-sync", "B": "plain rclone", "R": "restic", "G": "borg"}


# -- datasets ------------------------------------------------------------------------------


def make_media(root: Path, scale: float, seed: int) -> None:
    make_immich_tree(
        root,
        library_files=max(20, int(1200 * scale)),
        upload_files=max(10, int(800 * scale)),
        scale=0.15,
        seed=seed,
        thumbs=False,
    )


def make_many(root: Path, files: int, seed: int) -> None:
    """`files` small files: thumbs/<user>/<xx>/<yy>/<uuid>-thumbnail.webp (2-10 KiB) and 1 %
    profile/<user>/<uuid>.jpg (10-40 KiB); Immich markers in every top folder."""
    rng = random.Random(seed)
    for folder in TOP_FOLDERS:
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / MARKER).touch()
    users = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(2)]
    made: set[Path] = set()
    for n in range(files):
        user = users[n % 2]
        asset = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        if n % 100 == 99:
            path, size = root / "profile" / user / f"{asset}.jpg", rng.randint(10240, 40960)
        else:
            folder = root / "thumbs" / user / asset[:2] / asset[2:4]
            path, size = folder / f"{asset}-thumbnail.webp", rng.randint(2048, 10240)
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        with open(path, "wb") as handle:
            handle.write(rng.randbytes(size))


def make_slow(root: Path, scale: float, big_mib: int, seed: int) -> None:
    """The slow-link payload: small files, photos and (optionally) one video over rclone's
    200 MiB multipart cutoff, in an Immich library/ folder."""
    rng = random.Random(seed)
    lib = root / "library" / "user0" / "2024" / "01"
    lib.mkdir(parents=True)
    (root / "library" / MARKER).touch()
    for n in range(max(10, int(300 * scale))):
        (lib / f"IMG_{n:05d}_small.jpg").write_bytes(rng.randbytes(rng.randint(10240, 61440)))
    for n in range(max(3, int(25 * scale))):
        (lib / f"IMG_{n:05d}.jpg").write_bytes(rng.randbytes(int(rng.uniform(1, 6) * MIB)))
    if big_mib:
        (lib / "VID_00000.mp4").write_bytes(rng.randbytes(big_mib * MIB))


def tree_stats(root: Path, folders: list[str]) -> tuple[int, int]:
    files = size = 0
    for folder in folders:
        for dirpath, _dirs, names in os.walk(root / folder):
            for name in names:
                files += 1
                size += os.stat(os.path.join(dirpath, name)).st_size
    return files, size


def all_files(root: Path, folders: list[str]) -> list[Path]:
    out = []
    for folder in folders:
        for dirpath, _dirs, names in os.walk(root / folder):
            out += [Path(dirpath) / n for n in sorted(names) if n != MARKER]
    return sorted(out)


def change_one_percent(root: Path, folders: list[str], seed: int) -> tuple[int, int]:
    """Rewrite 1 % of the files (same size, new random bytes); returns (files, bytes)."""
    rng = random.Random(seed)
    files = all_files(root, folders)
    chosen = rng.sample(files, max(1, len(files) // 100))
    size = 0
    for path in chosen:
        n = path.stat().st_size
        path.write_bytes(rng.randbytes(n))
        size += n
    return len(chosen), size


def warm_up(root: Path, folders: list[str]) -> None:
    for path in all_files(root, folders):
        with open(path, "rb") as handle:
            while handle.read(8 * MIB):
                pass


def dir_bytes(path: Path, partial: bool = False) -> tuple[int, int]:
    """(files, bytes) under `path`; only `*.partial` files when `partial`, else the others."""
    files = size = 0
    for dirpath, _dirs, names in os.walk(path):
        for name in names:
            if name.endswith(".partial") != partial:
                continue
            try:
                size += os.stat(os.path.join(dirpath, name)).st_size
                files += 1
            except OSError:
                pass
    return files, size


# -- process measurement -------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            kids = [int(x) for x in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except (OSError, ValueError):
            kids = []
        found += kids
        todo += kids
    return found


def _proc(pid: int) -> tuple[str, float, float] | None:
    """(comm, own CPU seconds, VmHWM MiB) of a live process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    fields = stat.rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
    hwm = 0.0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) / 1024
    return comm, cpu, hwm


@dataclass
class Measure:
    wall: float = 0.0
    cpu_main: float = 0.0  # photos-sync's own process / restic / borg / (B: rclone total)
    rss_main: float = 0.0  # MiB
    cpu_rclone: float = 0.0
    rss_rclone: float = 0.0
    sent_bytes: int = 0
    sent_files: int = 0
    killed_at: float | None = None
    extra: dict[str, float] = field(default_factory=dict)


class Watcher(threading.Thread):
    """Samples a process tree (photos-sync + its rclone children) and kills at a threshold."""

    def __init__(
        self,
        pid: int,
        sample: bool,
        dest: Path | None,
        kill_at: int | None,
        kill_children: bool,
    ) -> None:
        super().__init__(daemon=True)
        self.pid, self.sample, self.dest = pid, sample, dest
        self.kill_at, self.kill_children = kill_at, kill_children
        self.stop = threading.Event()
        self.main_cpu = self.main_hwm = 0.0
        self.child_cpu: dict[int, float] = {}
        self.child_hwm: dict[int, float] = {}
        self.killed_at: float | None = None
        self.start_time = time.perf_counter()

    def run(self) -> None:
        while not self.stop.wait(0.1):
            if self.sample:
                own = _proc(self.pid)
                if own is not None:
                    self.main_cpu, self.main_hwm = own[1], max(self.main_hwm, own[2])
                for kid in _children(self.pid):
                    info = _proc(kid)
                    if info is not None and info[0] == "rclone":
                        self.child_cpu[kid] = info[1]
                        self.child_hwm[kid] = max(self.child_hwm.get(kid, 0), info[2])
            if self.kill_at is not None and self.killed_at is None and self.dest is not None:
                if dir_bytes(self.dest)[1] + dir_bytes(self.dest, True)[1] >= self.kill_at:
                    victims = (
                        [k for k in _children(self.pid) if (_proc(k) or ("",))[0] == "rclone"]
                        if self.kill_children
                        else [self.pid]
                    )
                    if victims:
                        for victim in victims:
                            with contextlib.suppress(OSError):
                                os.kill(victim, signal.SIGKILL)
                        self.killed_at = time.perf_counter() - self.start_time


def run_measured(
    argv: list[str] | tuple[str, ...],
    env: dict[str, str],
    cwd: Path,
    out: Path,
    *,
    sample: bool = False,
    dest: Path | None = None,
    kill_at: int | None = None,
    kill_children: bool = False,
    check: bool = True,
) -> tuple[int, float, os.struct_rusage if False else object, Watcher]:  # type: ignore[valid-type]
    """Run argv (stdout and stderr to `out`), wait4 it: (exit code, wall, rusage, watcher)."""
    with out.open("ab") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=log, stderr=log)
        watcher = Watcher(proc.pid, sample, dest, kill_at, kill_children)
        if sample or kill_at is not None:
            watcher.start()
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        watcher.stop.set()
        if watcher.is_alive():
            watcher.join()
    if check and proc.returncode != 0 and kill_at is None:
        raise SystemExit(f"{argv[:3]} failed with {proc.returncode}; see {out}")
    return proc.returncode, wall, usage, watcher


def cpu_of(usage: object) -> float:
    return usage.ru_utime + usage.ru_stime  # type: ignore[attr-defined]


def rss_of(usage: object) -> float:
    return usage.ru_maxrss / 1024  # type: ignore[attr-defined]


def last_rclone_stats(log: Path) -> dict[str, float]:
    """The last `stats` object rclone logged (JSON log) in `log`."""
    stats: dict[str, float] = {}
    with log.open("rb") as handle:
        handle.seek(max(0, log.stat().st_size - 400_000))
        for line in handle.read().decode(errors="replace").splitlines():
            if '"stats"' in line:
                with contextlib.suppress(ValueError, KeyError):
                    stats = json.loads(line[line.index("{") :])["stats"]
    return stats


# -- contenders ----------------------------------------------------------------------------


class Contender:
    key = "?"

    def __init__(self, work: Path, source: Path, folders: list[str]) -> None:
        self.work, self.source, self.folders = work, source, folders
        self.dest = work / f"dest-{self.key}"
        self.base = work / f"run-{self.key}"

    def fresh(self) -> None:
        """A new empty destination (untimed set-up)."""
        for path in (self.dest, self.base):
            shutil.rmtree(path, ignore_errors=True)
        self.base.mkdir(parents=True)
        self.prepare()

    def prepare(self) -> None:
        self.dest.mkdir(parents=True)

    def destroy(self) -> None:
        for path in (self.dest, self.base):
            shutil.rmtree(path, ignore_errors=True)

    def run(self, kill_at: int | None = None) -> Measure:
        raise NotImplementedError


class PhotosSyncC(Contender):
    key = "A"

    def __init__(self, work: Path, source: Path, folders: list[str], generated: bool) -> None:
        super().__init__(work, source, folders)
        self.generated = generated

    def env(self, retries: int | None = None) -> dict[str, str]:
        data = self.base / "data"
        extra = {
            "PHOTOS_SYNC_DATA_DIR": str(data),
            "PHOTOS_SYNC_SOCKET": str(data / "no-daemon.sock"),
            "BACKUP_IMMICH_PATH": str(self.source),
            "BACKUP_INCLUDE_GENERATED": "true" if self.generated else "false",
            "BACKUP_MAX_DELETE": "0",
            "PHOTOS_SYNC_ENCRYPTION_PASSWORD": PASSWORD,
            "PHOTOS_SYNC_ENCRYPTION_SALT": SALT,
        }
        if retries is not None:
            extra["BACKUP_MAX_RETRIES"] = str(retries)
        return c.clean_env(extra)

    def prepare(self) -> None:
        self.dest.mkdir(parents=True)
        argv = [c.PHOTOS_SYNC, "backup", "--setup", "local", "--name", "bench"]
        argv += ["--path", str(self.dest), "--yes"]
        done = subprocess.run(argv, env=self.env(), cwd=self.base, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"setup failed: {done.stdout}{done.stderr}")

    def run(self, kill_at: int | None = None) -> Measure:
        os.sync()
        env = self.env(0 if kill_at is not None else None)
        _rc, wall, usage, w = run_measured(
            [c.PHOTOS_SYNC, "backup"],
            env,
            self.base,
            self.base / "out.log",
            sample=True,
            dest=self.dest,
            kill_at=kill_at,
            kill_children=True,
        )
        total_cpu = cpu_of(usage)
        m = Measure(wall=wall, cpu_main=w.main_cpu, rss_main=w.main_hwm)
        m.cpu_rclone = max(0.0, total_cpu - w.main_cpu)
        m.rss_rclone = max(w.child_hwm.values(), default=0.0)
        m.killed_at = w.killed_at
        with contextlib.closing(sqlite3.connect(self.base / "data" / "backup.db")) as conn:
            run_id = conn.execute(
                "SELECT run_id FROM backup_jobs ORDER BY created_at DESC, id DESC LIMIT 1"
            ).fetchone()[0]
            sent, files = conn.execute(
                "SELECT SUM(bytes_transferred), SUM(files_transferred) FROM backup_jobs "
                "WHERE run_id = ?",
                (run_id,),
            ).fetchone()
        m.sent_bytes, m.sent_files = int(sent or 0), int(files or 0)
        return m


class PlainRcloneC(Contender):
    key = "B"

    def __init__(self, work: Path, source: Path, folders: list[str], generated: bool) -> None:
        super().__init__(work, source, folders)
        self.binary = c.rclone_binary()
        self.generated = generated
        settings = parse_settings(
            {"BACKUP_IMMICH_PATH": str(source), "BACKUP_MAX_DELETE": "0"},
            default_data_dir=work,
            runtime_dir=None,
        )
        options = Runner(settings, None)._sync_options(False, False)  # type: ignore[arg-type]
        self.options: SyncOptions = destination_type("local").tune(options)
        self.env = c.clean_env(
            remote_env(
                [
                    crypt_remote(
                        str(self.dest), obscure(self.binary, PASSWORD), obscure(self.binary, SALT)
                    )
                ]
            )
        )

    def argvs(self, stamp: str) -> list[tuple[str, ...]]:
        return [
            sync_argv(
                self.binary,
                str(self.source / folder.name),
                crypt_path(folder.name),
                archive_path(stamp, folder.name),
                self.options,
            )
            for folder in selected_folders(self.generated)
        ]

    def run(self, kill_at: int | None = None) -> Measure:
        os.sync()
        stamp = _run_stamp(utcnow())
        m = Measure()
        start = time.perf_counter()
        for n, argv in enumerate(self.argvs(stamp)):
            log = self.base / f"sync-{stamp}-{n}.log"
            rc, _wall, usage, w = run_measured(
                argv, self.env, self.base, log, dest=self.dest, kill_at=kill_at
            )
            m.cpu_rclone += cpu_of(usage)
            m.rss_rclone = max(m.rss_rclone, rss_of(usage))
            stats = last_rclone_stats(log)
            m.sent_bytes += int(stats.get("bytes", 0))
            m.sent_files += int(stats.get("transfers", 0))
            if w.killed_at is not None or (kill_at is not None and rc != 0):
                m.killed_at = time.perf_counter() - start
                break
        m.wall = time.perf_counter() - start
        time.sleep(1.1)  # a distinct --backup-dir stamp next time, as photos-sync would have
        return m


def obscure(binary: str, secret: str) -> str:
    return subprocess.run(
        [binary, "obscure", "-"], input=secret + "\n", capture_output=True, text=True, check=True
    ).stdout.strip()


class ResticC(Contender):
    key = "R"

    def env(self) -> dict[str, str]:
        return c.clean_env(
            {
                "RESTIC_REPOSITORY": str(self.dest),
                "RESTIC_PASSWORD": PASSWORD,
                "RESTIC_CACHE_DIR": str(self.base / "cache"),
            }
        )

    def prepare(self) -> None:
        subprocess.run(["restic", "init"], env=self.env(), check=True, capture_output=True)

    def run(self, kill_at: int | None = None) -> Measure:
        os.sync()
        out = self.base / f"backup-{time.time_ns()}.json"
        argv = ["restic", "backup", "--json", "--host", "bench", *self.folders]
        rc, wall, usage, w = run_measured(
            argv, self.env(), self.source, out, dest=self.dest, kill_at=kill_at
        )
        m = Measure(wall=wall, cpu_main=cpu_of(usage), rss_main=rss_of(usage))
        m.killed_at = w.killed_at
        for line in out.read_text(errors="replace").splitlines():
            if '"summary"' in line:
                with contextlib.suppress(ValueError):
                    doc = json.loads(line)
                    m.sent_bytes = int(doc.get("data_added", 0))
                    m.sent_files = int(doc.get("files_new", 0)) + int(doc.get("files_changed", 0))
        return m


class BorgC(Contender):
    key = "G"

    def env(self) -> dict[str, str]:
        return c.clean_env(
            {
                "BORG_PASSPHRASE": PASSWORD,
                "BORG_BASE_DIR": str(self.base / "borg"),
                "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes",
            }
        )

    def prepare(self) -> None:
        subprocess.run(
            ["borg", "init", "--encryption", "repokey-blake2", str(self.dest)],
            env=self.env(),
            check=True,
            capture_output=True,
        )

    def run(self, kill_at: int | None = None) -> Measure:
        os.sync()
        out = self.base / f"create-{time.time_ns()}.json"
        argv = ["borg", "create", "--json", f"{self.dest}::{{now:%Y%m%dT%H%M%S.%f}}"]
        rc, wall, usage, w = run_measured(
            [*argv, *self.folders], self.env(), self.source, out, dest=self.dest, kill_at=kill_at
        )
        m = Measure(wall=wall, cpu_main=cpu_of(usage), rss_main=rss_of(usage))
        m.killed_at = w.killed_at
        if rc == 0:
            text = out.read_text(errors="replace")
            doc = json.loads(text[text.index("{") :])
            stats = doc["archive"]["stats"]
            m.sent_bytes = int(stats.get("deduplicated_size", 0))
            m.sent_files = int(stats.get("nfiles", 0))
        return m


# -- cases ---------------------------------------------------------------------------------


def contenders(work: Path, source: Path, generated: bool) -> list[Contender]:
    folders = [f.name for f in selected_folders(generated) if (source / f.name).is_dir()]
    sub = work / "c"
    return [
        PhotosSyncC(sub, source, folders, generated),
        PlainRcloneC(sub, source, folders, generated),
        ResticC(sub, source, folders),
        BorgC(sub, source, folders),
    ]


Results = dict[str, dict[str, list[Measure]]]  # case -> contender key -> measures


def record(results: Results, case: str, key: str, m: Measure) -> None:
    results.setdefault(case, {}).setdefault(key, []).append(m)
    print(
        f"    {case:<12} {key} {NAMES[key]:<12} {m.wall:7.2f} s  sent {m.sent_bytes / MIB:8.1f} MiB"
        f" / {m.sent_files} files  cpu {m.cpu_main + m.cpu_rclone:6.1f} s",
        flush=True,
    )


def bench_dataset(
    name: str,
    source: Path,
    work: Path,
    generated: bool,
    rounds: int,
    full_rounds: int,
    resume: bool,
    seed: int,
) -> tuple[Results, dict[str, float]]:
    cs = contenders(work, source, generated)
    folders = cs[0].folders
    files, size = tree_stats(source, folders)
    info: dict[str, float] = {"files": files, "bytes": size}
    results: Results = {}
    print(f"[{name}] {files} files, {size / GIB:.2f} GiB", flush=True)
    for r in range(full_rounds):
        for contender in cs:
            contender.fresh()
            record(results, "full", contender.key, contender.run())
        if r < full_rounds - 1:
            continue
        for rr in range(rounds):
            for contender in cs:
                record(results, "no-change", contender.key, contender.run())
        for rr in range(rounds):
            n, b = change_one_percent(source, folders, seed * 100 + rr)
            info["changed_files"], info["changed_bytes"] = n, b
            for contender in cs:
                record(results, "1% changed", contender.key, contender.run())
    for contender in cs:
        contender.destroy()
    if resume:
        files, size = tree_stats(source, folders)
        for _r in range(rounds):
            for contender in cs:
                contender.fresh()
                before = dir_bytes(contender.dest)[1]
                first = contender.run(kill_at=before + size // 2)
                complete_files, complete = dir_bytes(contender.dest)
                partial_files, partial = dir_bytes(contender.dest, True)
                second = contender.run()
                m = Measure(
                    wall=second.wall,
                    cpu_main=second.cpu_main,
                    rss_main=second.rss_main,
                    cpu_rclone=second.cpu_rclone,
                    rss_rclone=second.rss_rclone,
                    sent_bytes=second.sent_bytes,
                    sent_files=second.sent_files,
                    killed_at=first.killed_at,
                )
                m.extra = {
                    "first_wall": first.wall,
                    "first_written": complete + partial - before,
                    "complete": complete - before,
                    "complete_files": complete_files,
                    "partial": partial,
                    "partial_files": partial_files,
                    "resent": complete + partial - before + second.sent_bytes - size,
                }
                record(results, "resume", contender.key, m)
                print(
                    f"      first run {first.wall:.1f} s (killed at {first.killed_at}), "
                    f"written {m.extra['first_written'] / MIB:.1f} MiB, partial "
                    f"{partial_files} files {partial / MIB:.1f} MiB, re-sent "
                    f"{m.extra['resent'] / MIB:.1f} MiB",
                    flush=True,
                )
                contender.destroy()
    return results, info


# -- slow link -----------------------------------------------------------------------------


@contextlib.contextmanager
def slow_proxy(target: str, delay_ms: float, rate_mbit: float, log: Path):  # type: ignore[no-untyped-def]
    proc = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).with_name("slowlink.py")),
            "--target",
            target,
            "--delay-ms",
            str(delay_ms),
            "--rate-mbit",
            str(rate_mbit),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line.startswith("READY"):
            raise SystemExit("the slow-link proxy did not start")
        yield int(line.split()[1])
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            tail = proc.communicate(timeout=10)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            tail = proc.communicate()[0]
        log.write_text(tail or "")


def bench_slow(work: Path, args: argparse.Namespace) -> dict[str, object]:
    from tests.support.s3server import serve_s3

    source = work / "slow"
    make_slow(source, args.slow_scale, args.slow_big_mib, args.seed + 5)
    files, size = tree_stats(source, ["library"])
    binary = c.rclone_binary()
    pw, salt = obscure(binary, PASSWORD), obscure(binary, SALT)
    settings = parse_settings(
        {"BACKUP_IMMICH_PATH": str(source)}, default_data_dir=work, runtime_dir=None
    )
    base_options = Runner(settings, None)._sync_options(False, False)  # type: ignore[arg-type]
    configs = {
        "P": destination_type("s3").tune(base_options),
        "D": base_options,
    }
    out: dict[str, list[Measure]] = {"P": [], "D": []}
    print(f"[slow link] {files} files, {size / MIB:.0f} MiB", flush=True)
    with serve_s3(work / "s3") as server:
        (server.root / "bench").mkdir()
        target = server.endpoint.removeprefix("http://")
        with slow_proxy(target, args.delay_ms, args.rate_mbit, work / "proxy.log") as port:
            for r in range(args.slow_rounds):
                for key, options in configs.items():
                    base_remote = RemoteSpec(
                        BASE_REMOTE,
                        "s3",
                        {
                            "provider": "Other",
                            "env_auth": "false",
                            "access_key_id": server.access_key_id,
                            "secret_access_key": server.secret_access_key,
                            "endpoint": f"http://127.0.0.1:{port}",
                        },
                    )
                    crypt = crypt_remote(f"{BASE_REMOTE}:bench/{key}{r}", pw, salt)
                    env = c.clean_env(remote_env([base_remote, crypt]))
                    argv = sync_argv(
                        binary,
                        str(source / "library"),
                        crypt_path("library"),
                        archive_path("x", "library"),
                        options,
                    )
                    log = work / f"slow-{key}{r}.log"
                    _rc, wall, usage, _w = run_measured(argv, env, work, log)
                    stats = last_rclone_stats(log)
                    m = Measure(wall=wall, cpu_rclone=cpu_of(usage), rss_rclone=rss_of(usage))
                    m.sent_bytes = int(stats.get("bytes", 0))
                    m.sent_files = int(stats.get("transfers", 0))
                    out[key].append(m)
                    mbit = m.sent_bytes * 8 / wall / 1e6
                    print(
                        f"    slow {key} round {r + 1}: {wall:6.2f} s, {mbit:5.1f} Mbit/s "
                        f"({mbit / args.rate_mbit:.0%} of the link), rclone RSS "
                        f"{m.rss_rclone:.0f} MiB",
                        flush=True,
                    )
                    shutil.rmtree(server.root / "bench" / f"{key}{r}", ignore_errors=True)
    return {
        "files": files,
        "bytes": size,
        "results": out,
        "argv": {k: sync_argv("rclone", "SRC", "DST", "ARCH", o)[6:] for k, o in configs.items()},
    }


# -- report --------------------------------------------------------------------------------


def fmt_s(values: list[float]) -> str:
    return f"{c.median(values):.2f} s ({min(values):.2f}–{max(values):.2f})"


def case_table(results: Results, title: str) -> tuple[str, dict[str, dict[str, float]]]:
    rows, ratios = [], {}
    for case, by_key in results.items():
        b = c.median([m.wall for m in by_key["B"]])
        ratios[case] = {}
        for key in ("A", "B", "R", "G"):
            ms = by_key.get(key, [])
            if not ms:
                continue
            walls = [m.wall for m in ms]
            ratio = c.median(walls) / b
            ratios[case][key] = ratio
            sent = c.median([m.sent_bytes for m in ms]) / MIB
            cpu = c.median([m.cpu_main + m.cpu_rclone for m in ms])
            rss = max(max(m.rss_main, m.rss_rclone) for m in ms)
            rows.append(
                (
                    f"{title} {case}",
                    NAMES[key],
                    str(len(ms)),
                    fmt_s(walls),
                    f"{ratio:.2f}x",
                    f"{sent:.1f} MiB / {int(c.median([m.sent_files for m in ms]))}",
                    f"{cpu:.1f} s",
                    f"{rss:.0f} MiB",
                )
            )
    headers = (
        "dataset / case",
        "tool",
        "n",
        "wall: median (min–max)",
        "vs plain rclone",
        "sent (median): bytes / files",
        "CPU (all processes)",
        "peak RSS",
    )
    return c.table(headers, rows), ratios


def resource_table(results: Results, title: str) -> str:
    rows = []
    for case in ("full", "no-change"):
        for key in ("A", "B"):
            ms = results.get(case, {}).get(key, [])
            if not ms:
                continue
            rows.append(
                (
                    f"{title} {case}",
                    NAMES[key],
                    f"{c.median([m.cpu_main for m in ms]):.2f} s" if key == "A" else "—",
                    f"{max(m.rss_main for m in ms):.0f} MiB" if key == "A" else "—",
                    f"{c.median([m.cpu_rclone for m in ms]):.2f} s",
                    f"{max(m.rss_rclone for m in ms):.0f} MiB",
                )
            )
    return c.table(
        (
            "dataset / case",
            "tool",
            "photos-sync process CPU",
            "photos-sync peak RSS",
            "rclone CPU (sum)",
            "rclone peak RSS",
        ),
        rows,
    )


def resume_table(results: Results) -> str:
    rows = []
    for key, ms in results.get("resume", {}).items():
        first = [m.extra["first_written"] / MIB for m in ms]
        resent = [m.extra["resent"] / MIB for m in ms]
        partial = [m.extra["partial_files"] for m in ms]
        rows.append(
            (
                NAMES[key],
                fmt_s([m.extra["first_wall"] for m in ms]),
                f"{c.median(first):.0f} MiB",
                fmt_s([m.wall for m in ms]),
                f"{c.median([m.sent_bytes / MIB for m in ms]):.0f} MiB",
                f"{c.median(resent):.1f} MiB ({min(resent):.1f}–{max(resent):.1f})",
                f"{c.median(partial):.0f}" if key in "AB" else "—",
            )
        )
    return c.table(
        (
            "tool",
            "killed run: wall",
            "written before the kill",
            "rerun: wall",
            "rerun sent",
            "sent twice (first + rerun − dataset)",
            "in-flight (.partial) files at the kill",
        ),
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="dataset size factor")
    parser.add_argument("--many-files", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2, help="rounds per case (default 2)")
    parser.add_argument("--many-full-rounds", type=int, default=1)
    parser.add_argument("--media-full-rounds", type=int, default=2)
    parser.add_argument("--rate-mbit", type=float, default=100.0)
    parser.add_argument("--delay-ms", type=float, default=20.0, help="per direction (RTT/2)")
    parser.add_argument("--slow-scale", type=float, default=1.0)
    parser.add_argument("--slow-big-mib", type=int, default=205)
    parser.add_argument("--slow-rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp"))
    parser.add_argument("--skip", default="", help="comma list of: media,many,slow")
    parser.add_argument("--doc", action="store_true", help="update docs even when --scale < 1")
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()
    write_doc = not args.no_doc and (args.scale >= 1 or args.doc)
    skip = set(filter(None, args.skip.split(",")))
    for tool in ("restic", "borg"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing: apt-get install -y restic borgbackup")

    load_start, started, t0 = c.loadavg(), c.now(), time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="photos-sync-bench-compare-", dir=args.workdir))
    report: dict[str, object] = {}
    try:
        media, many = work / "media", work / "many"
        if "media" not in skip:
            g = time.perf_counter()
            make_media(media, args.scale, args.seed)
            folders = [f.name for f in selected_folders(False)]
            warm_up(media, folders)
            report["media_gen"] = time.perf_counter() - g
            report["media"] = bench_dataset(
                "media",
                media,
                work / "m",
                False,
                args.rounds,
                args.media_full_rounds,
                True,
                args.seed,
            )
            shutil.rmtree(media, ignore_errors=True)
        if "many" not in skip:
            g = time.perf_counter()
            make_many(many, int(args.many_files * args.scale), args.seed)
            warm_up(many, [f.name for f in selected_folders(True)])
            report["many_gen"] = time.perf_counter() - g
            report["many"] = bench_dataset(
                "many",
                many,
                work / "n",
                True,
                args.rounds,
                args.many_full_rounds,
                False,
                args.seed,
            )
            shutil.rmtree(many, ignore_errors=True)
        if "slow" not in skip:
            report["slow"] = bench_slow(work, args)
        report["disk"] = c.machine(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["elapsed"] = time.perf_counter() - t0
    report["load_start"], report["load_end"], report["started"] = load_start, c.loadavg(), started
    text = render(args, report)
    print(text)
    if write_doc:
        c.update_doc("compare", text)
        print(f"updated {c.DOC}")


def render(args: argparse.Namespace, rep: dict) -> str:  # type: ignore[type-arg]
    parts = []
    for name in ("media", "many"):
        if name in rep:
            results, info = rep[name]
            parts.append(case_table(results, name)[0])
            parts.append(resource_table(results, name))
            if "resume" in results:
                parts.append(resume_table(results))
    return "\n\n".join(parts)


if __name__ == "__main__":
    main()
