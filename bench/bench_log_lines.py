"""Issue #15 point 4: photos-sync's own CPU per file rclone sends.

rclone writes one JSON log line per file it sends (`--use-json-log --verbose`); photos-sync
follows every line. This benchmark

1. generates a tree of tiny files and runs the real rclone on it with the runner's own flags
   (`sync_argv`, `--stats 1s`) to a local crypt remote, keeping its stderr: a full sync, a dry
   run after 5 % of the files changed, 5 % were deleted and 5 % added, and the real second sync;
2. feeds those real lines to the line handlers before and after #15.4 (the old code is kept
   below, verbatim, as `Legacy*`), A B A B in one process, medians in µs per line, and checks
   that both end with the same figures;
3. with `--backup`, times whole `photos-sync backup` runs of a "many"-like tree (tiny files)
   before (the tree of git commit BEFORE_COMMIT, put first on PYTHONPATH) and after, against
   plain `rclone sync` with the same flags: wall time, photos-sync's own process CPU (sampled
   from /proc) and rclone's CPU (wait4 rusage of the tree minus photos-sync's own).

Run from the repository root: `.venv/bin/python bench/bench_log_lines.py [--files 20000]
[--rounds 5] [--backup] [--no-doc]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import _common as c

from photos_sync.core.destinations import destination_type
from photos_sync.core.guards import PreviewCollector, encrypted_size
from photos_sync.core.rclone_args import (
    SyncOptions,
    archive_path,
    crypt_path,
    crypt_remote,
    remote_env,
    sync_argv,
)
from photos_sync.core.rclone_log import (
    _SKIPPED_NOTICES,
    ErrorLine,
    FileCopied,
    LogEvent,
    OtherLine,
    SkippedName,
    StatsLine,
    _int,
    activity_marker,
    parse_stats,
)
from photos_sync.core.skips import classify, is_consequence
from photos_sync.engine.runner import _JobTracker
from photos_sync.system.execute import StreamingProcess, _child_umask, _die_with_parent
from tests.support.records import running_job

#: The commit before #15.4: the "before" of the whole-backup comparison.
BEFORE_COMMIT = "ceb0637"
PASSWORD = "bench-password-0123456789abcdefXYZ"
SALT = "bench-salt-0123456789abcdefXYZ"


# -- the code before #15.4, verbatim (the "A" of A B A B) -------------------------------------


def legacy_parse_line(line: str) -> LogEvent:
    text = line.strip()
    try:
        record = json.loads(text)
    except ValueError:
        return OtherLine("text", text)
    if not isinstance(record, dict):
        return OtherLine("text", text)
    level = str(record.get("level", ""))
    message = str(record.get("msg", "")).strip()
    stats = record.get("stats")
    if isinstance(stats, dict):
        return StatsLine(parse_stats(stats))
    obj = record.get("object") or None
    if level in ("error", "critical", "fatal"):
        return ErrorLine(
            f"{obj}: {message}" if obj else message, str(obj) if obj is not None else None, level
        )
    if message.startswith(("Copied", "Multi-thread Copied")) and obj is not None:
        return FileCopied(str(obj), _int(record.get("size")))
    if message in _SKIPPED_NOTICES and obj is not None:
        return SkippedName(str(obj), _SKIPPED_NOTICES[message])
    return OtherLine(level, message, str(obj) if obj is not None else None)


class LegacyTracker(_JobTracker):
    def on_line(self, line: str) -> None:
        event = legacy_parse_line(line)
        if isinstance(event, StatsLine):
            self.progress = event.progress
            self.peak_total_bytes = max(self.peak_total_bytes, event.progress.total_bytes)
            self.peak_total_files = max(self.peak_total_files, event.progress.total_transfers)
            marker = activity_marker(event.progress)
            if marker != self._marker:
                self._marker = marker
                self.active_at = time.monotonic()
            if event.progress.last_error:
                self._note_error(event.progress.last_error)
        elif isinstance(event, FileCopied):
            self.confirmed_bytes += event.size
            self.confirmed_files += 1
            self.active_at = time.monotonic()
            return
        elif isinstance(event, ErrorLine):
            reason = classify(event.level, event.message, event.object)
            if reason is not None and event.object is not None:
                self.skip(event.object, reason)
            elif not is_consequence(event.message):
                self.other_errors += 1
            self._note_error(event.message)
            return
        elif isinstance(event, SkippedName):
            self.skipped[event.path] = event.is_directory
        elif event.object is not None and event.level == "notice":
            reason = classify(event.level, event.message, event.object)
            if reason is not None:
                self.skip(event.object, reason)
            return
        else:
            return
        self._on_change()


class LegacyPreviewCollector(PreviewCollector):
    def on_line(self, line: str) -> None:
        try:
            record = json.loads(line)
        except ValueError:
            return
        if not isinstance(record, dict):
            return
        stats = record.get("stats")
        if isinstance(stats, dict):
            progress = parse_stats(stats)
            self.files_to_send = progress.total_transfers
            self.bytes_to_send = progress.total_bytes
            self.deletes = progress.deletes
            self.replaced = progress.renames
            return
        message = str(record.get("msg", ""))
        level = str(record.get("level", ""))
        obj = record.get("object")
        if level in ("error", "critical", "fatal"):
            self.errors.append(f"{obj}: {message}" if obj else message)
        elif obj is not None and record.get("skipped") == "copy":
            self._copies += 1
            size = record.get("size")
            if isinstance(size, int) and size >= 0:
                self._copy_bytes += encrypted_size(size)
        elif obj is not None and message.startswith("Skipped move as --dry-run"):
            self._replaced_paths.add(str(obj))
        elif (
            obj is not None
            and message.startswith(
                (
                    "Skipped move into backup dir as --dry-run is set",
                    "Skipped delete as --dry-run is set",
                )
            )
            and len(self._archived) < 20
        ):
            self._archived.append(str(obj))


class LegacyStreamingProcess(StreamingProcess):
    """The stderr reading before #15.4: one `readline` (one event-loop wake-up) per line."""

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            *self._argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=self._env,
            start_new_session=True,
            umask=_child_umask(),
            preexec_fn=_die_with_parent,
            limit=4 * 1024 * 1024,
        )

    async def _pump(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        stream = self._proc.stderr
        while True:
            try:
                raw = await stream.readline()
            except ValueError:
                await stream.read(4 * 1024 * 1024)
                continue
            if not raw:
                return
            result = self._on_line(raw.decode("utf-8", "replace"))
            if result is not None:
                await result


# -- real rclone logs ---------------------------------------------------------------------------


def make_tree(root: Path, files: int, seed: int) -> list[Path]:
    """`files` tiny files (64-1024 random bytes), 100 per folder, like Immich thumbnails."""
    rng = random.Random(seed)
    made = []
    for n in range(files):
        path = root / f"u{n % 2}" / f"{(n // 100):04x}" / f"{rng.getrandbits(64):016x}.webp"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(rng.randint(64, 1024)))
        made.append(path)
    return made


def change_tree(root: Path, files: list[Path], seed: int) -> None:
    """5 % rewritten (new size), 5 % deleted, 5 % added."""
    rng = random.Random(seed)
    picked = rng.sample(files, len(files) // 10)
    half = len(picked) // 2
    for path in picked[:half]:
        path.write_bytes(rng.randbytes(rng.randint(1100, 2048)))
    for path in picked[half:]:
        path.unlink()
    for n in range(len(files) // 20):
        path = root / "u0" / "new" / f"{n:06d}.webp"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(rng.randint(64, 1024)))


def capture_logs(work: Path, files: int) -> tuple[dict[str, list[str]], dict[str, float]]:
    """The real rclone's stderr lines for the three syncs, and rclone's CPU seconds each."""
    binary = c.rclone_binary()
    source, dest = work / "src" / "thumbs", work / "dest"
    dest.mkdir(parents=True)
    tree = make_tree(source, files, seed=15)
    env = c.clean_env(
        remote_env([crypt_remote(str(dest), obscure(binary, PASSWORD), obscure(binary, SALT))])
    )
    options = destination_type("local").tune(SyncOptions(stats_interval=1))
    logs: dict[str, list[str]] = {}
    cpu: dict[str, float] = {}

    def sync(name: str, stamp: str, dry_run: bool) -> None:
        argv = sync_argv(
            binary,
            str(source),
            crypt_path("thumbs"),
            archive_path(stamp, "thumbs"),
            SyncOptions(**{**_fields(options), "dry_run": dry_run}),
        )
        out = work / f"{name}.jsonl"
        with out.open("wb") as err:
            proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=err)
            _pid, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"rclone {name} failed; see {out}")
        cpu[name] = usage.ru_utime + usage.ru_stime
        logs[name] = out.read_text(encoding="utf-8").splitlines(keepends=True)

    sync("full", "20261201T000000Z", False)
    change_tree(source, tree, seed=16)
    sync("dry_run", "20261202T000000Z", True)
    sync("second", "20261202T000000Z", False)
    return logs, cpu


def _fields(options: SyncOptions) -> dict[str, Any]:
    return {name: getattr(options, name) for name in options.__dataclass_fields__}


def obscure(binary: str, secret: str) -> str:
    done = subprocess.run(
        [binary, "obscure", "-"], input=secret, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


# -- the handlers, A B A B ------------------------------------------------------------------------


def tracker_outcome(make: Callable[[], _JobTracker], lines: Sequence[str]) -> tuple[float, Any]:
    """(CPU seconds to feed `lines`, what the tracker reports afterwards)."""
    tracker = make()
    handle = tracker.on_line
    start = time.process_time()
    for line in lines:
        handle(line)
    spent = time.process_time() - start
    return spent, (tracker.fields(), tracker.last_error, tracker.other_errors, tracker.skipped)


def collector_outcome(
    make: Callable[[], PreviewCollector], lines: Sequence[str]
) -> tuple[float, Any]:
    collector = make()
    handle = collector.on_line
    start = time.process_time()
    for line in lines:
        handle(line)
    spent = time.process_time() - start
    return spent, collector.preview(0)


def compare_handlers(logs: dict[str, list[str]], rounds: int) -> dict[str, dict[str, Any]]:
    """Per log: µs per line before (A) and after (B), A B A B, and whether they agree."""
    results: dict[str, dict[str, Any]] = {}
    for name, lines in logs.items():
        if name == "dry_run":
            contenders: dict[str, Callable[[], Any]] = {
                "A": LegacyPreviewCollector,
                "B": PreviewCollector,
            }
            feed: Callable[..., tuple[float, Any]] = collector_outcome
        else:
            contenders = {
                "A": lambda: LegacyTracker(running_job(), (), lambda: None),
                "B": lambda: _JobTracker(running_job(), (), lambda: None),
            }
            feed = tracker_outcome
        times: dict[str, list[float]] = {"A": [], "B": []}
        seen: dict[str, Any] = {}
        for n in range(rounds):
            for key in ("A", "B") if n % 2 == 0 else ("B", "A"):
                spent, outcome = feed(contenders[key], lines)
                times[key].append(spent / len(lines) * 1e6)
                seen[key] = outcome
        results[name] = {
            "lines": len(lines),
            "copied": sum('"msg":"Copied' in line for line in lines),
            "A": times["A"],
            "B": times["B"],
            "same": seen["A"] == seen["B"],
        }
    return results


#: A child that writes the lines of a log file to stderr one write(2) each, as rclone does,
#: at `rate` lines a second.
REPLAY = r"""
import os, sys, time
lines = open(sys.argv[1], "rb").read().splitlines(keepends=True)
rate = float(sys.argv[2])
start = time.monotonic()
for n, line in enumerate(lines):
    os.write(2, line)
    ahead = n / rate - (time.monotonic() - start)
    if ahead > 0:
        time.sleep(ahead)
"""


def replay_cost(
    process_class: type[StreamingProcess], handler: Callable[[str], None], log: Path, rate: float
) -> tuple[float, int]:
    """(CPU seconds of this process, lines) to follow a replay of `log` at `rate` lines/s."""
    count = 0

    def counted(line: str) -> None:
        nonlocal count
        count += 1
        handler(line)

    async def follow() -> int:
        process = process_class([sys.executable, "-c", REPLAY, str(log), str(rate)], {}, counted)
        await process.start()
        return await process.wait()

    before = resource.getrusage(resource.RUSAGE_SELF)
    asyncio.run(follow())
    after = resource.getrusage(resource.RUSAGE_SELF)
    spent = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return spent, count


def compare_pumps(log: Path, rounds: int, rate: float) -> dict[str, Any]:
    """µs of this process's CPU per line, following a replay of the full sync's log through
    the stderr reading and line handler before (A) and after (B), A B A B."""
    contenders: dict[str, tuple[type[StreamingProcess], type[_JobTracker]]] = {
        "A": (LegacyStreamingProcess, LegacyTracker),
        "B": (StreamingProcess, _JobTracker),
    }
    times: dict[str, list[float]] = {"A": [], "B": []}
    lines = 0
    for n in range(rounds):
        for key in ("A", "B") if n % 2 == 0 else ("B", "A"):
            process_class, tracker_class = contenders[key]
            tracker = tracker_class(running_job(), (), lambda: None)
            spent, lines = replay_cost(process_class, tracker.on_line, log, rate)
            times[key].append(spent / lines * 1e6)
    return {"lines": lines, "rate": rate, **times}


def compare_in_situ(work: Path, files: int, rounds: int) -> dict[str, list[tuple[float, ...]]]:
    """The real rclone syncing `files` tiny files to a fresh local crypt remote, followed by
    the old (A) or new (B) reading and tracker, A B / B A: (wall, this process's CPU,
    rclone's CPU, files counted) per run."""
    binary = c.rclone_binary()
    source = work / "src"
    make_tree(source, files, seed=17)
    password = obscure(binary, PASSWORD)
    options = destination_type("local").tune(SyncOptions(stats_interval=1))
    runs: dict[str, list[tuple[float, ...]]] = {"A": [], "B": []}
    classes: dict[str, tuple[type[StreamingProcess], type[_JobTracker]]] = {
        "A": (LegacyStreamingProcess, LegacyTracker),
        "B": (StreamingProcess, _JobTracker),
    }
    for n in range(rounds):
        for key in ("A", "B") if n % 2 == 0 else ("B", "A"):
            dest = work / "dest"
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir()
            env = c.clean_env(remote_env([crypt_remote(str(dest), password, None)]))
            argv = sync_argv(
                binary, str(source), crypt_path("t"), archive_path("20261201T000000Z", "t"), options
            )
            process_class, tracker_class = classes[key]
            tracker = tracker_class(running_job(), (), lambda: None)

            async def follow(
                process_class: type[StreamingProcess] = process_class,
                tracker: _JobTracker = tracker,
                env: dict[str, str] = env,
                argv: tuple[str, ...] = argv,
            ) -> int:
                process = process_class(argv, env, tracker.on_line)
                await process.start()
                return await process.wait()

            own0 = resource.getrusage(resource.RUSAGE_SELF)
            kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            asyncio.run(follow())
            wall = time.perf_counter() - start
            own1 = resource.getrusage(resource.RUSAGE_SELF)
            kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            own = own1.ru_utime - own0.ru_utime + own1.ru_stime - own0.ru_stime
            rclone = kids1.ru_utime - kids0.ru_utime + kids1.ru_stime - kids0.ru_stime
            runs[key].append((wall, own, rclone, float(tracker.confirmed_files)))
    return runs


def render_in_situ(files: int, rounds: int, runs: dict[str, list[tuple[float, ...]]]) -> str:
    rows = []
    for key, label in (("A", "A: before"), ("B", "B: after")):
        r = runs[key]
        own = [x[1] for x in r]
        rows.append(
            (
                label,
                f"{med([x[0] for x in r]):.2f} s",
                f"{med(own):.2f} s ({min(own):.2f}–{max(own):.2f})",
                f"{med(own) / files * 1e6:.0f}",
                f"{med([x[2] for x in r]):.2f} s",
                f"{int(r[0][3]):,}",
            )
        )
    return "\n".join(
        [
            "## #15.4 per-file cost, in situ: the real rclone followed by the old and new reading",
            "",
            f"Measured {c.now()}, load average {c.loadavg()} at the end. Command: "
            f"`.venv/bin/python bench/bench_log_lines.py --in-situ-only --files {files} "
            f"--rounds {rounds}`",
            "",
            f"The real rclone syncs {files:,} tiny files to a fresh local crypt remote with the "
            "runner's flags, its stderr followed by this process: A the reading and tracker "
            "before #15.4, B after; A B / B A, medians. This process's CPU from "
            "`getrusage(RUSAGE_SELF)`, rclone's from `RUSAGE_CHILDREN`.",
            "",
            c.table(
                ("", "wall", "this process's CPU", "µs per file", "rclone's CPU", "files counted"),
                rows,
            ),
        ]
    )


# -- whole backups ------------------------------------------------------------------------------


def compare_backups(work: Path, files: int, rounds: int) -> dict[str, Any]:
    """photos-sync backup (before / after) vs plain rclone, full backups of a tiny-file tree."""
    from bench_compare import PhotosSyncC, PlainRcloneC, make_many

    source = work / "immich"
    make_many(source, files, seed=7)
    before_tree = work / "before"
    before_tree.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", BEFORE_COMMIT, "photos_sync"],
        cwd=c.REPO,
        capture_output=True,
        check=True,
    ).stdout
    with tempfile.TemporaryFile() as handle:
        handle.write(archive)
        handle.seek(0)
        with tarfile.open(fileobj=handle) as tar:
            tar.extractall(before_tree, filter="data")

    class Before(PhotosSyncC):
        key = "A0"

        def env(self, retries: int | None = None) -> dict[str, str]:
            return {**super().env(retries), "PYTHONPATH": str(before_tree)}

    folders: list[str] = []
    probe = subprocess.run(
        [sys.executable, "-c", "import photos_sync.system.execute as e; print(e.__file__)"],
        env={**os.environ, "PYTHONPATH": str(before_tree)},
        cwd=work,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if not probe.startswith(str(before_tree)):
        raise SystemExit(f"the 'before' tree is not the one imported: {probe}")
    contenders = {
        "before": Before(work, source, folders, True),
        "after": PhotosSyncC(work, source, folders, True),
        "rclone": PlainRcloneC(work, source, folders, True),
    }
    figures: dict[str, dict[str, list[float]]] = {
        k: {"wall": [], "own": [], "rclone": []} for k in contenders
    }
    order = list(contenders)
    for n in range(rounds):
        for key in order if n % 2 == 0 else reversed(order):
            contender = contenders[key]
            contender.fresh()
            m = contender.run()
            figures[key]["wall"].append(m.wall)
            figures[key]["own"].append(m.cpu_main if key != "rclone" else 0.0)
            figures[key]["rclone"].append(m.cpu_rclone)
            contender.destroy()
    return {"files": files, "figures": figures}


# -- report -------------------------------------------------------------------------------------


def med(values: Sequence[float]) -> float:
    return statistics.median(values)


def render(
    args: argparse.Namespace,
    info: dict[str, str],
    handlers: dict[str, dict[str, Any]],
    pumps: dict[str, Any],
    rclone_cpu: dict[str, float],
    backups: dict[str, Any] | None,
    load: tuple[str, str],
) -> str:
    what = {
        "full": "full sync (every file new)",
        "dry_run": "dry run after 5 % changed / deleted / added (BACKUP_MAX_DELETE preview)",
        "second": "second sync (5 % replaced, 5 % archived, 5 % new)",
    }
    rows = []
    for name, r in handlers.items():
        a, b = med(r["A"]), med(r["B"])
        rows.append(
            (
                what[name],
                f"{r['lines']:,} ({r['copied']:,} copied)",
                f"{a:.2f} ({min(r['A']):.2f}–{max(r['A']):.2f})",
                f"{b:.2f} ({min(r['B']):.2f}–{max(r['B']):.2f})",
                f"{b / a:.2f}×",
                f"{(a - b) * r['lines'] / args.files * 100_000 / 1e6:.1f} s",
                f"{rclone_cpu[name] / r['lines'] * 1e6:.0f}",
                "yes" if r["same"] else "**NO**",
            )
        )
    text = [
        "## #15.4 per-file cost: photos-sync's handling of rclone's per-file log lines",
        "",
        f"Measured {c.now()}; load average (1/5/15 min) {load[0]} at the start, {load[1]} at "
        "the end.",
        "",
        c.machine_block(info, {}),
        "",
        f"Command: `.venv/bin/python bench/bench_log_lines.py --files {args.files} "
        f"--rounds {args.rounds}{' --backup' if args.backup else ''}`",
        "",
        f"The real rclone synced {args.files:,} tiny files (64–1,024 bytes, 100 a folder) to a "
        "local crypt remote with the runner's own flags (`sync_argv`: `--use-json-log --verbose "
        "--stats 1s --stats-log-level NOTICE --no-unicode-normalization --retries 2 "
        "--low-level-retries 10 --backup-dir …`), and its stderr was kept. Those lines were then "
        "fed to the line handler that follows a sync (`_JobTracker.on_line`; for the dry run "
        "`PreviewCollector.on_line`) before #15.4 (A: `json.loads` of every line) and after "
        f"(B: the per-file lines read by `rclone_log.copied_file` / `would_copy`, other INFO "
        f"lines skipped by `is_quiet_info`, the rest parsed as before), {args.rounds} rounds "
        "A B A B in one process, CPU time (`time.process_time`), µs per line: median "
        '(min–max). "Same result": both handlers end with identical figures (job fields, '
        "errors, skips, preview).",
        "",
        c.table(
            (
                "log",
                "lines",
                "A: before, µs/line",
                "B: after, µs/line",
                "B/A",
                "saved per 100k files",
                "rclone's own CPU, µs/line",
                "same result",
            ),
            rows,
        ),
    ]
    pa, pb = med(pumps["A"]), med(pumps["B"])
    text += [
        "",
        "### Reading rclone's stderr and handling each line, in a process",
        "",
        f"A child writes the full sync's {pumps['lines']:,} real lines to its stderr one "
        f"`write(2)` each, as rclone does, at {pumps['rate']:,.0f} lines/s; this process follows "
        "it with `StreamingProcess` and the tracker's `on_line`: before #15.4 (A: one "
        "`readline`, so one event-loop wake-up, per line; JSON-parsed) and after (B: the pipe "
        f"left to fill for `_BATCH_WINDOW` = 20 ms between reads, lines cut by `LineSplitter`, "
        f"fast paths). CPU of this process (`getrusage(RUSAGE_SELF)`: user + sys) per line, "
        f"{args.rounds} rounds A B A B, median (min–max).",
        "",
        c.table(
            ("", "µs per line", "per 100k files"),
            [
                (
                    "A: before",
                    f"{pa:.1f} ({min(pumps['A']):.1f}–{max(pumps['A']):.1f})",
                    f"{pa / 10:.1f} s",
                ),
                (
                    "B: after",
                    f"{pb:.1f} ({min(pumps['B']):.1f}–{max(pumps['B']):.1f})",
                    f"{pb / 10:.1f} s",
                ),
                ("B/A", f"{pb / pa:.2f}×", ""),
            ],
        ),
    ]
    if backups is not None:
        figures = backups["figures"]
        brows = []
        plain = med(figures["rclone"]["wall"])
        plain_cpu = med(figures["rclone"]["rclone"])
        for key, label in (
            ("before", f"photos-sync backup, before (`{BEFORE_COMMIT}`)"),
            ("after", "photos-sync backup, after"),
            ("rclone", "plain `rclone sync`, same flags"),
        ):
            f = figures[key]
            total = med([o + r for o, r in zip(f["own"], f["rclone"], strict=True)])
            brows.append(
                (
                    label,
                    f"{med(f['wall']):.2f} s ({c.spread(f['wall'])})",
                    f"{med(f['wall']) / plain:.3f}×",
                    f"{med(f['own']):.2f} s" if key != "rclone" else "–",
                    f"{med(f['own']) / backups['files'] * 1e6:.0f}" if key != "rclone" else "–",
                    f"{med(f['rclone']):.2f} s",
                    f"{total:.2f} s ({total / plain_cpu:.3f}×)",
                )
            )
        text += [
            "",
            f'### Whole full backups, {backups["files"]:,} tiny files ("many"-like tree)',
            "",
            f"{args.backup_rounds} rounds A B C / C B A in one run, each a full backup to a "
            "fresh local "
            "destination; photos-sync's own CPU sampled from /proc (its process only), "
            "rclone's from `wait4` of the tree minus that (plain rclone: its own `wait4`). "
            "Medians (min–max).",
            "",
            c.table(
                (
                    "",
                    "wall",
                    "wall vs plain rclone",
                    "photos-sync's own CPU",
                    "own CPU µs/file",
                    "rclone CPU",
                    "CPU in all (vs plain)",
                ),
                brows,
            ),
        ]
    if backups is not None:
        figures = backups["figures"]
        plain_wall, plain_cpu = med(figures["rclone"]["wall"]), med(figures["rclone"]["rclone"])

        def ratios(key: str) -> tuple[float, float]:
            f = figures[key]
            total = med([o + r for o, r in zip(f["own"], f["rclone"], strict=True)])
            return med(f["wall"]) / plain_wall, total / plain_cpu

        (wall_a, cpu_a), (wall_b, cpu_b) = ratios("before"), ratios("after")
        text += [
            "",
            f"Against #15's targets for a full backup, on this {backups['files']:,}-file tree: "
            f"CPU in all {cpu_b:.3f}× plain rclone (target ≤ 1.10×; before {cpu_a:.3f}×), wall "
            f"{wall_b:.3f}× (target ≤ 1.05×; before {wall_a:.3f}×). On this shared machine "
            "rclone's own CPU and every wall time move by up to ±25 % between rounds (the "
            "other engineers' load), more than photos-sync's whole share: of these figures only "
            "photos-sync's own CPU is firm (before → after).",
        ]
    text += ["", WHERE_LINES_GO, "", WHAT_IS_LEFT]
    return "\n".join(text)


WHAT_IS_LEFT = """### What is left per file (not changed here)

- A whole backup still costs photos-sync more of its own CPU per file than reading rclone's
  lines (the whole-backup table against the replay table): the fixed start-up of a run
  (~1–1.5 s) and the source walk for file names (`system/source_names.scan_names` →
  `core/names.find_name_problems`): 0.6–0.8 s of CPU for a "many"-like tree of 20,000 files
  (cProfile, 2026-11-30: `os.walk`, one `lstat` and one `os.path.relpath` per folder; that tree
  has ~19,000 folders for 20,000 files).
- rclone's own CPU under photos-sync and alone is the same within the noise."""


WHERE_LINES_GO = """### Where each rclone line goes, and what #15.4 changed

- **Reading** (`system/execute.StreamingProcess`): rclone writes every log line with its own
  `write(2)`. Read with one `readline` per line, each line cost one event-loop wake-up (epoll,
  `read`, the transport's and the stream's callbacks, the task's resumption): on this machine
  ~50 µs of CPU, by far the largest share, and no JSON parse involved (the replay table: a
  no-op handler costs nearly as much as the real one). Now the pipe is left to fill for 20 ms
  between reads (1 MiB pipe buffer on Linux, so rclone never waits on a full pipe); one read
  takes hundreds of lines, and `core/rclone_log.LineSplitter` cuts them exactly as `readline`
  did (checked by a property test on any chunking). No line is handled more than 20 ms late;
  stats lines come once a second.
- **Classifying** (`engine/runner._JobTracker.on_line`, `core/rclone_log`): a "Copied" INFO
  line (nearly every line of a full backup) is read by `copied_file`, a regular expression
  that accepts only rclone's exact key order with plain strings and JSON integers, so it
  returns the same `FileCopied` as the full parse (property test over the real rclone corpus in
  tests/unit/fixtures/rclone/ and 600 mutations of it). Other INFO lines ("Set directory
  modification time", "Moved into backup dir", …) are recognised by `is_quiet_info` and
  dropped unparsed, as before they were parsed and then ignored. Stats, errors, notices (skips,
  symbolic links, Unicode twins) and anything unusual still get `json.loads`.
- **Dry run** (`core/guards.PreviewCollector`, the BACKUP_MAX_DELETE preview): one "Skipped
  copy" notice per file to send, read by `would_copy`; deletions and replacements as before.
- **Counting, stall watcher, DB** (unchanged, already cheap): a copied file adds to two
  counters and stamps `active_at` for the stall watchdog; watchers get one progress event per
  stats tick, the DB one write per stats tick (a timer), nothing is logged per file.
- **Not changed**: what rclone is asked for. `--verbose` stays: the per-file lines are what
  `files_transferred` and `bytes_confirmed` (the resume point) count, file by file; taking them
  from rclone's stats instead could change a count or a report. Every count and report is as
  before."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--backup", action="store_true", help="also time whole backups")
    parser.add_argument("--backup-rounds", type=int, default=2)
    parser.add_argument(
        "--replay-rate", type=float, default=4000.0, help="lines/s of the stderr replay"
    )
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--no-doc", action="store_true")
    parser.add_argument("--keep-logs", type=Path, default=None, help="copy the rclone logs here")
    parser.add_argument(
        "--in-situ-only", action="store_true", help="only the real rclone, old vs new reading"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-lines-", dir=args.workdir))
    if args.in_situ_only:
        try:
            runs = compare_in_situ(work, args.files, args.rounds)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        body = render_in_situ(args.files, args.rounds, runs)
        print(body)
        if not args.no_doc:
            c.update_doc("log_lines_in_situ", body)
        return
    start_load = c.loadavg()
    try:
        info = c.machine(work)
        logs, rclone_cpu = capture_logs(work / "logs", args.files)
        if args.keep_logs is not None:
            args.keep_logs.mkdir(parents=True, exist_ok=True)
            for name in logs:
                shutil.copy(work / "logs" / f"{name}.jsonl", args.keep_logs / f"{name}.jsonl")
        handlers = compare_handlers(logs, args.rounds)
        pumps = compare_pumps(work / "logs" / "full.jsonl", args.rounds, args.replay_rate)
        backups = (
            compare_backups(work / "backup", args.files, args.backup_rounds)
            if args.backup
            else None
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    body = render(args, info, handlers, pumps, rclone_cpu, backups, (start_load, c.loadavg()))
    print(body)
    if not args.no_doc:
        c.update_doc("log_lines", body)


if __name__ == "__main__":
    main()
