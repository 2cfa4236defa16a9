"""What the BACKUP_MAX_DELETE guard costs a nightly run (#18): a no-change `photos-sync backup`
with the guard (the default, a dry run per folder before each sync) and without it
(BACKUP_MAX_DELETE=0), A B A B, on a local destination. Prints medians and their ratio; the
figures are quoted in docs/BENCHMARKS.md by hand.

    .venv/bin/python bench/bench_guard.py [--files 1600] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.immich_tree import make_immich_tree  # noqa: E402

PHOTOS_SYNC = str(Path(sys.executable).parent / "photos-sync")


def timed(env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([PHOTOS_SYNC, "backup"], env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=1600)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-guard-"))
    try:
        tree = work / "immich"
        half = args.files // 2
        make_immich_tree(tree, library_files=half, upload_files=half, scale=0.01, thumbs=False)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKUP_", "PHOTOS_"))}
        env.update(
            PHOTOS_SYNC_DATA_DIR=str(work / "data"),
            PHOTOS_SYNC_SOCKET=str(work / "daemon.sock"),
            BACKUP_IMMICH_PATH=str(tree),
            BACKUP_SCHEDULE="off",
        )
        subprocess.run(
            [PHOTOS_SYNC, "backup", "--setup", "local", "--name", "bench", "--path",
             str(work / "dest"), "--yes"],
            env=env, check=True, capture_output=True,
        )  # fmt: skip
        timed(env)  # the first, full backup
        with_guard, without = [], []
        for _ in range(args.rounds):
            with_guard.append(timed(env))
            without.append(timed({**env, "BACKUP_MAX_DELETE": "0"}))
        a, b = statistics.median(with_guard), statistics.median(without)
        load = os.getloadavg()[0]
        print(f"no-change run, {args.files} files, {args.rounds} rounds A B A B, load {load:.1f}")
        print(f"  with the guard (default):      median {a:.2f} s  {sorted(with_guard)}")
        print(f"  without (BACKUP_MAX_DELETE=0): median {b:.2f} s  {sorted(without)}")
        print(f"  ratio {a / b:.2f}x, +{a - b:.2f} s per run")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
