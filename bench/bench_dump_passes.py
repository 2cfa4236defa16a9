"""Issue #15/#16: what a run spends reading its Immich dump, one pass against two.

A run with a people-thumbnails job (thumbs/ not backed up in full: the default) reads the
newest dump for the thumbnails' list and, after every job, for the consistency proof. Since
the people thumbnails run last, their read serves both (engine/consistency.py,
`read_people_and_proof`), and the proof only settles the people's own references.

Generates one dump with bench_dump.py's generator (Immich v2.5's layout, CLIP embeddings
included), into `<work>/immich/backups/`, and a manifest (SQLite) holding every file the dump
references but a hundred, then times in a fresh child process each, A B A B:
- `two passes` (before): `find_people_thumbnails` then `prove_run` reading the dump itself;
- `one pass` (now): `read_people_and_proof` then `prove_run` settling that read.
Both must give the same proof. CPU seconds are the figure to go by on a shared machine.

Run from the repository root: `.venv/bin/python bench/bench_dump_passes.py [--assets 300000]
[--rounds 2] [--no-doc]`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import _common as c
from bench_dump import generate

from photos_sync.core.consistency import PROOF_RECORDS, referenced_paths
from photos_sync.core.extra_paths import Coverage
from photos_sync.core.manifest import FileState
from photos_sync.engine.consistency import ProofScope, prove_run, read_people_and_proof
from photos_sync.engine.people_thumbnails import find_people_thumbnails
from photos_sync.immich.dump_file import read_dump_file
from photos_sync.storage.manifest_db import ManifestDB
from tests.immich_tree import DUMP_V2_5

SCOPE = ProofScope(frozenset({"backups", "library", "upload", "profile"}), True, Coverage(()))
LEFT_OUT = 100  # references the manifest lacks: the proof must name them either way


def build_manifest(immich: Path, db_path: Path) -> int:
    """A manifest holding every covered file the dump references but LEFT_OUT of them."""
    dump = next((immich / "backups").iterdir())
    by_folder: dict[str, set[bytes]] = {}
    covered = SCOPE.covered()
    references = 0
    for record in read_dump_file(dump, want=PROOF_RECORDS):
        for path, kind in referenced_paths(record):
            if path.relative is None or covered(path, kind) is not None:
                continue
            references += 1
            if references <= LEFT_OUT:
                continue
            folder, _, rest = path.relative.partition("/")
            by_folder.setdefault(folder, set()).add(os.fsencode(rest))
    db = ManifestDB(db_path)
    try:
        for folder, paths in by_folder.items():
            db.replace_folder(folder, (FileState(p, 1, 0) for p in sorted(paths)), "bench")
    finally:
        db.close()
    return references


async def _two_passes(db: ManifestDB, immich: Path) -> dict[str, Any] | None:
    find_people_thumbnails(immich)
    proof = await prove_run(
        db, immich, SCOPE.covered_folders, person_thumbnails=True, coverage=SCOPE.coverage
    )
    return proof.as_dict() if proof else None


async def _one_pass(db: ManifestDB, immich: Path) -> dict[str, Any] | None:
    shared = read_people_and_proof(db, immich, SCOPE)
    assert shared is not None
    proof = await prove_run(
        db,
        immich,
        SCOPE.covered_folders,
        person_thumbnails=True,
        coverage=SCOPE.coverage,
        shared=shared,
    )
    return proof.as_dict() if proof else None


def child(mode: str, immich: Path, db_path: Path) -> dict[str, Any]:
    import asyncio

    db = ManifestDB(db_path)
    started, cpu = time.perf_counter(), time.process_time()
    way = _one_pass if mode == "one pass" else _two_passes
    proof = asyncio.run(way(db, immich))
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    db.close()
    return {
        "mode": mode,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        # VmHWM: ru_maxrss would report the parent's size (it built the manifest)
        "maxrss_mib": c.vm_hwm_mib() or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "proof": proof,
    }


def measure(mode: str, immich: Path, db_path: Path) -> dict[str, Any]:
    return c.run_child(__file__, mode, str(immich), str(db_path))


def render(
    args: argparse.Namespace,
    info: dict[str, str],
    extra: dict[str, str],
    made: dict[str, Any],
    references: int,
    results: list[dict[str, Any]],
) -> str:
    def figures(mode: str, key: str) -> list[float]:
        return [r[key] for r in results if r["mode"] == mode]

    rows = []
    for mode, what in (
        ("two passes", "before: `find_people_thumbnails`, then `prove_run` reads the dump"),
        ("one pass", "now: `read_people_and_proof`, then `prove_run` settles it"),
    ):
        rows.append(
            f"| {mode} | {what} | {c.median(figures(mode, 'seconds')):.1f} s | "
            f"{c.median(figures(mode, 'cpu_seconds')):.1f} s | "
            f"{max(figures(mode, 'maxrss_mib')):.0f} MiB |"
        )
    two_cpu = c.median(figures("two passes", "cpu_seconds"))
    one_cpu = c.median(figures("one pass", "cpu_seconds"))
    two_wall = c.median(figures("two passes", "seconds"))
    one_wall = c.median(figures("one pass", "seconds"))
    proof = results[0]["proof"]
    order = ", ".join(r["mode"] for r in results)
    return "\n".join(
        [
            "## #15/#16 one pass over the Immich dump per run",
            "",
            f"Command: `.venv/bin/python bench/bench_dump_passes.py --assets {args.assets} "
            f"--rounds {args.rounds}` (source: [bench/bench_dump_passes.py]"
            "(../bench/bench_dump_passes.py)).",
            "",
            c.machine_block(info, extra),
            "",
            f"**Data.** One gzip'd dump of {args.assets:,} assets in Immich v2.5's layout "
            f"(bench_dump.py's generator, 512-dim embeddings; {made['gz_bytes'] / 2**20:.0f} "
            f"MiB), and a manifest holding {references - LEFT_OUT:,} of the "
            f"{references:,} covered files it references. Order: {order}; medians.",
            "",
            "| mode | what | wall | CPU | peak RSS |",
            "|---|---|---:|---:|---:|",
            *rows,
            "",
            f"**Result.** One pass: {one_cpu:.1f} s CPU against {two_cpu:.1f} s "
            f"({one_cpu / two_cpu:.2f}x; {two_cpu - one_cpu:.1f} s saved per run and "
            f"destination), wall {one_wall:.1f} s against {two_wall:.1f} s "
            f"({one_wall / two_wall:.2f}x). Both gave the same proof "
            f"({proof['referenced']:,} referenced, {proof['missing']} missing). The saving "
            "grows with the dump: it is the people thumbnails' own gunzip of it, most of "
            "a pass (see the dump-reading figures above).",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--assets", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--wait-load", type=float, default=60.0)
    parser.add_argument("--no-doc", action="store_true")
    parser.add_argument(
        "--data",
        type=Path,
        help="reuse DIR/immich and DIR/manifest.sqlite3 of an earlier run (--keep) instead of "
        "generating them",
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, immich, db_path = args.child
        print(json.dumps(child(mode, Path(immich), Path(db_path))))
        return
    work = args.data or Path(tempfile.mkdtemp(prefix="bench-passes-", dir=args.workdir))
    try:
        immich = work / "immich"
        db_path = work / "manifest.sqlite3"
        if args.data is None:
            (immich / "backups").mkdir(parents=True)
            (immich / "thumbs").mkdir()
            path = immich / "backups" / DUMP_V2_5.dump_name(datetime.now().replace(microsecond=0))
            print(f"generating {args.assets:,} assets into {path} …", flush=True)
            made = generate(path, args.assets, 512, 1)
            references = build_manifest(immich, db_path)
            (work / "made.json").write_text(json.dumps({**made, "references": references}))
        else:
            made = json.loads((work / "made.json").read_text())
            references = made["references"]
        waited = c.wait_for_low_load(args.wait_load)
        extra = {"Date": c.now(), "Load average at start (1/5/15 min)": f"{c.loadavg()} ({waited})"}
        results = []
        for _ in range(args.rounds):
            for mode in ("two passes", "one pass"):
                result = measure(mode, immich, db_path)
                print(
                    f"  {mode:11} {result['seconds']:6.1f} s wall {result['cpu_seconds']:6.1f} s"
                    f" CPU {result['maxrss_mib']:5.0f} MiB",
                    flush=True,
                )
                results.append(result)
        proofs = {json.dumps(r["proof"], sort_keys=True) for r in results}
        assert len(proofs) == 1, "the two ways gave different proofs"
        extra["Load average at end"] = c.loadavg()
        info = c.machine(work)
        info.pop("rclone", None)
        body = render(args, info, extra, made, references, results)
        print(body)
        if not args.no_doc:
            c.update_doc("dump-passes", body)
    finally:
        if not args.keep and args.data is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
