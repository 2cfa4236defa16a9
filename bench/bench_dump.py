"""Issue #16 point 1: reading a 1M-asset Immich database dump, streaming, without PostgreSQL.

1. Generates, into a temporary folder, the gzip'd plain-SQL dump an Immich v2.5 server with
   `--assets` assets would write (tests/immich_tree.py's pg_dump format and table layout; only
   the dump, no media files): per asset one `asset`, `asset_exif`, `asset_job_status` and
   `smart_search` row (a CLIP embedding of `--dims` floats, as pgvecto.rs/VectorChord print
   them), two `asset_file` rows (preview, thumbnail; 5 % also a sidecar), 0.5 face
   (`asset_face` + `face_search` embedding), 0.3 album membership; 4 users, 2,000 people, 500
   albums, 1 % external-library assets. The embeddings make up most of the bytes, as in a real
   dump. Written with gzip level `--level` (Immich's own `gzip` uses 6; 1 is the default here
   only to make the generation quicker; reading costs about the same).
2. Reads it in a fresh child process per mode, each timed (wall, CPU) with its peak RSS
   (`ru_maxrss` of the child, which is also /proc's VmHWM):
   - `inflate-zlib`, `inflate`: photos_sync.immich.dump_file.dump_file_lines alone (gunzip and
     split lines), with zlib and with the default inflater (`isal` when installed): the floor;
   - `check`: read_dump_file(want=()) to the end: the truncation verdict, no record built
     (what `--status`/`--check` need);
   - `read`: read_dump_file building every record and dropping it;
   - `proof`, `proof-zlib`: read_dump_file building the records with paths and keeping what a
     consistency proof keeps: the 64-bit hash of every referenced path relative to
     UPLOAD_LOCATION in an `array('q')` (8 bytes per path);
   - `proof-strings` (`--strings`): keeping the relative paths themselves in a `set[str]`,
     to show why the proof should not.
   The `-zlib` modes are left out when `isal` is not installed (zlib is then the default).

Run from the repository root: `.venv/bin/python bench/bench_dump.py [--assets 1000000]
[--dims 512] [--level 1] [--no-doc] [--quick]`. Needs ~4 GB free in the work folder for 1M
assets; takes a few minutes, most of it generating the dump.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import tempfile
import time
import uuid
import zlib
from array import array
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import _common as c

from photos_sync.core.immich_dump import (
    ALL_RECORDS,
    Asset,
    AssetFile,
    DumpEnd,
    Person,
    StoredPath,
    User,
)
from photos_sync.immich import dump_file
from photos_sync.immich.dump_file import dump_file_lines, read_dump_file
from tests.immich_tree import DUMP_V2_5, Row, dump_lines, version_rows, write_dump

TARGET_SECONDS = 30.0
TARGET_MIB = 200.0
#: The records a consistency proof needs: every file path Immich stores.
PATH_RECORDS: frozenset[type] = frozenset((Asset, AssetFile, Person, User))


# -- the dump -----------------------------------------------------------------------------------


def _uuids(rng: random.Random, count: int) -> list[str]:
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(count)]


def _embedding_pool(rng: random.Random, dims: int, size: int = 64) -> list[str]:
    """Distinct embeddings, more than gzip's 32 KiB window apart when cycled."""
    return [
        "[" + ",".join(repr(round(rng.gauss(0, 0.045), 8)) for _ in range(dims)) + "]"
        for _ in range(size)
    ]


class SyntheticLibrary:
    """The rows of a large Immich library, made on the fly (nothing is kept per asset)."""

    def __init__(self, assets: int, dims: int, seed: int = 16) -> None:
        self.assets = assets
        self.rng = random.Random(seed)
        self.users = _uuids(self.rng, 4)
        self.people = _uuids(self.rng, 2000)
        self.albums = _uuids(self.rng, 500)
        self.library_id = _uuids(self.rng, 1)[0]
        self.embeddings = _embedding_pool(self.rng, dims)
        self.counts: dict[str, int] = {}

    def _asset_id(self, n: int) -> str:
        return str(uuid.UUID(int=(n * 0x9E3779B97F4A7C15 + 0x1234) % (1 << 128), version=4))

    def _original(self, n: int, owner: str) -> tuple[str, str | None]:
        """(originalPath, libraryId) of asset n."""
        asset = self._asset_id(n)
        if n % 100 == 99:
            return f"/mnt/photos/archive/{2000 + n % 25}/DSC_{n:07d}.JPG", self.library_id
        if n % 10 < 3:
            return (
                f"/data/library/user{self.users.index(owner)}/{2010 + n % 16}/"
                f"{1 + n % 12:02d}/IMG_{n:07d}.jpg",
                None,
            )
        ext = ".mp4" if n % 12 == 0 else ".heic" if n % 5 == 0 else ".jpg"
        return f"/data/upload/{owner}/{asset[:2]}/{asset[2:4]}/{asset}{ext}", None

    def _count(self, table: str) -> None:
        self.counts[table] = self.counts.get(table, 0) + 1

    def asset(self) -> Iterator[Row]:
        for n in range(self.assets):
            owner = self.users[n % 4]
            asset_id = self._asset_id(n)
            original, library = self._original(n, owner)
            taken = f"{2010 + n % 16}-{1 + n % 12:02d}-{1 + n % 28:02d} 12:{n % 60:02d}:00+00"
            video = original.endswith(".mp4")
            self._count("asset")
            yield {
                "id": asset_id,
                "deviceAssetId": f"{n}",
                "ownerId": owner,
                "deviceId": "phone",
                "type": "VIDEO" if video else "IMAGE",
                "originalPath": original,
                "fileCreatedAt": taken,
                "fileModifiedAt": taken,
                "duration": "0:00:12.000000" if video else None,
                "encodedVideoPath": (
                    f"/data/encoded-video/{owner}/{asset_id[:2]}/{asset_id[2:4]}/{asset_id}.mp4"
                    if video
                    else ""
                ),
                "checksum": "\\x" + asset_id.replace("-", "")[:40].ljust(40, "0"),
                "originalFileName": original.rpartition("/")[2],
                "thumbhash": "\\x" + asset_id.replace("-", "")[:24],
                "libraryId": library,
                "isExternal": "t" if library else "f",
                "localDateTime": taken,
                "status": "active",
                "visibility": "timeline",
                "updateId": asset_id,
            }

    def asset_file(self) -> Iterator[Row]:
        for n in range(self.assets):
            owner = self.users[n % 4]
            asset_id = self._asset_id(n)
            base = f"/data/thumbs/{owner}/{asset_id[:2]}/{asset_id[2:4]}/{asset_id}"
            kinds = [("preview", f"{base}-preview.jpeg"), ("thumbnail", f"{base}-thumbnail.webp")]
            if n % 20 == 0:
                kinds.append(("sidecar", self._original(n, owner)[0] + ".xmp"))
            for kind, path in kinds:
                self._count("asset_file")
                yield {"id": asset_id[:-4] + f"{len(kind):04d}", "assetId": asset_id,
                       "type": kind, "path": path}  # fmt: skip

    def asset_exif(self) -> Iterator[Row]:
        for n in range(self.assets):
            yield {"assetId": self._asset_id(n), "make": "Apple", "model": "iPhone 15 Pro",
                   "exifImageWidth": "4032", "exifImageHeight": "3024",
                   "fileSizeInByte": str(1_000_000 + n % 5_000_000),
                   "dateTimeOriginal": "2021-06-01 12:00:00+00", "timeZone": "Europe/Paris",
                   "city": "Lyon", "country": "France", "lensModel": "back camera"}  # fmt: skip

    def asset_job_status(self) -> Iterator[Row]:
        for n in range(self.assets):
            yield {"assetId": self._asset_id(n), "facesRecognizedAt": "2021-06-01 12:00:00+00",
                   "metadataExtractedAt": "2021-06-01 12:00:00+00",
                   "duplicatesDetectedAt": "2021-06-01 12:00:00+00"}  # fmt: skip

    def smart_search(self) -> Iterator[Row]:
        pool = self.embeddings
        for n in range(self.assets):
            yield {"assetId": self._asset_id(n), "embedding": pool[n % len(pool)]}

    def asset_face(self) -> Iterator[Row]:
        for n in range(0, self.assets, 2):
            self._count("asset_face")
            yield {"id": self._asset_id(n + self.assets), "assetId": self._asset_id(n),
                   "personId": self.people[n % len(self.people)], "imageWidth": "4032",
                   "imageHeight": "3024", "boundingBoxX1": "100", "boundingBoxY1": "200",
                   "boundingBoxX2": "400", "boundingBoxY2": "600",
                   "sourceType": "machine-learning", "isVisible": "t"}  # fmt: skip

    def face_search(self) -> Iterator[Row]:
        pool = self.embeddings
        for n in range(0, self.assets, 2):
            yield {
                "faceId": self._asset_id(n + self.assets),
                "embedding": pool[(n + 7) % len(pool)],
            }

    def person(self) -> Iterator[Row]:
        for n, person in enumerate(self.people):
            owner = self.users[n % 4]
            self._count("person")
            thumbnail = f"/data/thumbs/{owner}/{person[:2]}/{person[2:4]}/{person}.jpeg"
            yield {"id": person, "ownerId": owner, "name": f"Person {n}" if n % 3 else "",
                   "thumbnailPath": thumbnail, "isHidden": "f"}  # fmt: skip

    def user(self) -> Iterator[Row]:
        for n, user in enumerate(self.users):
            self._count("user")
            yield {"id": user, "email": f"user{n}@example.com", "name": f"User {n}",
                   "profileImagePath": f"/data/profile/{user}/{user}.jpg",
                   "storageLabel": f"user{n}", "isAdmin": "t" if n == 0 else "f"}  # fmt: skip

    def album(self) -> Iterator[Row]:
        for n, album in enumerate(self.albums):
            yield {"id": album, "ownerId": self.users[n % 4], "albumName": f"Album {n}"}

    def album_asset(self) -> Iterator[Row]:
        for n in range(0, self.assets, 3):
            yield {"albumId": self.albums[n % len(self.albums)], "assetId": self._asset_id(n)}

    def library(self) -> Iterator[Row]:
        yield {"id": self.library_id, "name": "Archive", "ownerId": self.users[0],
               "importPaths": "{/mnt/photos/archive}", "exclusionPatterns": "{}"}  # fmt: skip

    def tables(self) -> dict[str, Any]:
        return {
            "album": self.album(),
            "album_asset": self.album_asset(),
            "asset": self.asset(),
            "asset_exif": self.asset_exif(),
            "asset_face": self.asset_face(),
            "asset_file": self.asset_file(),
            "asset_job_status": self.asset_job_status(),
            "face_search": self.face_search(),
            "library": self.library(),
            "person": self.person(),
            "smart_search": self.smart_search(),
            "user": self.user(),
            "version_history": version_rows(DUMP_V2_5),
        }


def generate(path: Path, assets: int, dims: int, level: int) -> dict[str, Any]:
    library = SyntheticLibrary(assets, dims)
    started = time.perf_counter()
    text_bytes = 0

    def counted(lines: Iterator[str]) -> Iterator[str]:
        nonlocal text_bytes
        for line in lines:
            text_bytes += len(line)  # characters; the dump is ASCII but for a few names
            yield line

    size = write_dump(path, counted(dump_lines(DUMP_V2_5, library.tables())), level=level)
    return {
        "seconds": time.perf_counter() - started,
        "gz_bytes": size,
        "text_bytes": text_bytes,
        "rows": library.counts,
    }


# -- the measurements (one child process each) ---------------------------------------------------

#: mode → (what it does, records built, inflater forced to zlib)
MODES: dict[str, tuple[str, frozenset[type] | None, bool]] = {
    "inflate-zlib": ("gunzip and split lines (zlib)", None, True),
    "inflate": ("gunzip and split lines (default inflater)", None, False),
    "check": ("read_dump_file(want=()): the verdict only", frozenset(), False),
    "read": ("read_dump_file: every record built", ALL_RECORDS, False),
    "proof": ("read_dump_file(want=paths) + a hash per path", PATH_RECORDS, False),
    "proof-zlib": ("the same, zlib forced", PATH_RECORDS, True),
    "proof-strings": ("the same, the paths kept as str in a set", PATH_RECORDS, False),
}
#: Modes held to the target (≤ 30 s, ≤ 200 MiB).
TARGET_MODES = ("check", "proof", "proof-zlib")


def child(mode: str, path: Path) -> dict[str, Any]:
    _, want, force_zlib = MODES[mode]
    if force_zlib:
        dump_file.INFLATER = zlib
    started = time.perf_counter()
    cpu = time.process_time()
    result: dict[str, Any] = {"mode": mode, "inflater": dump_file.INFLATER.__name__}
    if want is None:
        lines = 0
        for _ in dump_file_lines(path):
            lines += 1
        result["lines"] = lines
    else:
        records = 0
        hashes = array("q")
        strings: set[str] = set()
        end: DumpEnd | None = None
        for record in read_dump_file(path, want=want):
            records += 1
            paths: list[StoredPath | None] = []
            if isinstance(record, Asset):
                paths = [record.original, record.sidecar, record.encoded_video]
            elif isinstance(record, AssetFile):
                paths = [record.path]
            elif isinstance(record, Person):
                paths = [record.thumbnail]
            elif isinstance(record, User):
                paths = [record.profile_image]
            elif isinstance(record, DumpEnd):
                end = record
            if mode.startswith("proof"):
                for stored in paths:
                    if stored is not None and stored.relative is not None:
                        if mode == "proof-strings":
                            strings.add(stored.relative)
                        else:
                            hashes.append(hash(stored.relative))
        assert end is not None
        result.update(
            records=records - 1,
            complete=end.complete,
            problem=end.problem,
            rows=dict(end.rows),
            kept_paths=len(strings) if mode == "proof-strings" else len(hashes),
        )
    result["seconds"] = time.perf_counter() - started
    result["cpu_seconds"] = time.process_time() - cpu
    result["maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["vm_hwm_mib"] = c.vm_hwm_mib()
    return result


def measure(mode: str, path: Path) -> dict[str, Any]:
    return c.run_child(__file__, mode, str(path))


# -- the report ---------------------------------------------------------------------------------


def render(
    args: argparse.Namespace,
    info: dict[str, str],
    extra: dict[str, str],
    made: dict[str, Any],
    results: list[dict[str, Any]],
) -> str:
    command = (
        f"`.venv/bin/python bench/bench_dump.py --assets {args.assets} --dims {args.dims} "
        f"--level {args.level}{' --strings' if args.strings else ''}`"
    )
    rows = []
    for result in results:
        seconds, rss = result["seconds"], result["maxrss_mib"]
        verdict = "—"
        if result["mode"] in TARGET_MODES:
            ok = seconds <= TARGET_SECONDS and rss <= TARGET_MIB
            verdict = "met" if ok else "MISSED"
        kept = result.get("kept_paths")
        rows.append(
            (
                f"`{result['mode']}`",
                MODES[result["mode"]][0],
                f"`{result['inflater']}`",
                f"{seconds:.1f} s",
                f"{result['cpu_seconds']:.1f} s",
                f"{rss:.0f} MiB",
                f"{kept:,}" if kept else "—",
                verdict,
            )
        )
    table = c.table(
        ("mode", "what", "inflater", "wall", "CPU", "peak RSS", "paths kept", "≤ 30 s, ≤ 200 MiB"),
        rows,
    )
    read = next(r for r in results if r["mode"] == "check")
    rows_read = ", ".join(f"{name} {count:,}" for name, count in sorted(read["rows"].items()))
    lines = next(r for r in results if "lines" in r)["lines"]
    gz_gib, text_gib = made["gz_bytes"] / 2**30, made["text_bytes"] / 2**30
    return f"""## #16 dump reading: a 1M-asset Immich dump, streaming

Command: {command} (source: [bench/bench_dump.py](../bench/bench_dump.py); `--quick` for a
10,000-asset smoke run).

{c.machine_block(info, extra)}

**Data.** One gzip'd plain-SQL dump in Immich v2.5's format (pg_dump, singular table names,
`/data` paths) generated by the script: {args.assets:,} assets, each with an `asset`,
`asset_exif`, `asset_job_status` and `smart_search` row ({args.dims}-float CLIP embedding), two
`asset_file` rows (5 % three: a sidecar), half a face (`asset_face` + `face_search` embedding)
and a third of an album membership; 4 users, 2,000 people, 500 albums, 1 % external-library
assets. {gz_gib:.2f} GiB gzip'd at level {args.level}, {text_gib:.2f} GiB of SQL in
{lines:,} lines (generated in {made["seconds"]:.0f} s, not part of the figures). The
embeddings are most of the bytes, as in a real dump. Rows counted: {rows_read}.

Each mode runs once, in a fresh child process, reading the file from the page cache (it was
just written); peak RSS is the child's `ru_maxrss` (= /proc's VmHWM). The target (issue #16:
the consistency proof of a 1M-asset dump in ≤ 30 s and ≤ 200 MiB) applies to `check` and the
`proof` modes.

{table}

**What the figures mean.** Inflating the gzip stream is the floor (`inflate`) and most of
every figure: it grows with the embeddings, not with the paths. `isal.isal_zlib` (the `isal`
package, Intel ISA-L; photos_sync.immich.dump_file uses it when it is installed, it is not a
dependency yet) inflates about twice as fast as zlib. `check` is what `--status`/`--check` need
(the truncation verdict; no record built). `read` builds every record (albums, faces, …) and
drops it: RSS stays flat whatever the dump's size. `proof` builds only the records with paths
(assets, asset files, people, users) and keeps one 64-bit hash per path inside UPLOAD_LOCATION
in an `array('q')`: 8 bytes per path. {_strings_note(results)}

{_verdict(results, made, extra)}"""


def _verdict(results: list[dict[str, Any]], made: dict[str, Any], extra: dict[str, str]) -> str:
    """The target, met or not, and where the time goes, from the figures."""
    by_mode = {result["mode"]: result for result in results}
    proof, check, inflate = by_mode["proof"], by_mode["check"], by_mode["inflate"]
    zlib_floor = by_mode.get("inflate-zlib", inflate)
    rows = proof["rows"]
    built = sum(rows.get(table, 0) for table in ("asset", "asset_file", "person", "user"))
    own = proof["cpu_seconds"] - inflate["cpu_seconds"]
    sql_mib = made["text_bytes"] / 2**20
    met = proof["seconds"] <= TARGET_SECONDS and proof["maxrss_mib"] <= TARGET_MIB
    return (
        f"**Target: {'met' if met else 'MISSED'}.** The proof pass took "
        f"{proof['seconds']:.1f} s wall and {proof['cpu_seconds']:.1f} s of CPU, at "
        f"{proof['maxrss_mib']:.0f} MiB peak RSS (memory: met with room). Load average "
        f"{extra['Load average at start (1/5/15 min)'].split(' (')[0]} at the start, "
        f"{extra['Load average at end']} at the end, on {os.cpu_count()} cores: other jobs "
        "shared the CPU, so wall time ran well above CPU time; on an idle core the CPU figure is "
        f"the better estimate. Where the CPU goes: gunzip alone "
        f"{inflate['cpu_seconds']:.1f} s with `{inflate['inflater']}` "
        f"({sql_mib / inflate['cpu_seconds']:.0f} MiB of SQL per CPU second), "
        f"{zlib_floor['cpu_seconds']:.1f} s with `{zlib_floor['inflater']}`; the loop over "
        f"the {inflate.get('lines', 0):,} lines "
        f"{check['cpu_seconds'] - inflate['cpu_seconds']:.1f} s more (`check`); building the "
        f"{built:,} records with paths and hashing their paths {own:.1f} s over gunzip "
        f"({own / max(built, 1) * 1e6:.1f} µs per record). A 1M-asset dump carrying its "
        "embeddings is mostly gunzip: with zlib the floor alone is over the 30 s on this "
        "machine; `isal` halves it, and the reader's own cost is what is left to cut (the "
        "proof builds only the four record kinds it needs)."
    )


def _strings_note(results: list[dict[str, Any]]) -> str:
    strings = next((r for r in results if r["mode"] == "proof-strings"), None)
    proof = next((r for r in results if r["mode"] == "proof"), None)
    if strings is None or proof is None:
        return ""
    return (
        f"`proof-strings` keeps the same paths as `str` in a `set`: "
        f"{strings['maxrss_mib']:.0f} MiB against {proof['maxrss_mib']:.0f} MiB — the "
        "consistency proof should keep hashes (or compare sorted streams), not strings."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, default=1_000_000)
    parser.add_argument("--dims", type=int, default=512)
    parser.add_argument("--level", type=int, default=1, choices=range(1, 10))
    parser.add_argument(
        "--strings", action="store_true", help="also measure a proof keeping str paths"
    )
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--wait-load", type=float, default=120.0)
    parser.add_argument("--no-doc", action="store_true")
    parser.add_argument("--quick", action="store_true", help="10,000 assets, docs untouched")
    parser.add_argument("--save", type=Path, help="also write the raw figures to this JSON file")
    parser.add_argument(
        "--render-from", type=Path, help="re-render the section from saved figures (no run)"
    )
    parser.add_argument("--child", nargs=2, metavar=("MODE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], Path(args.child[1]))))
        return
    if args.render_from:
        saved = json.loads(args.render_from.read_text())
        for key in ("assets", "dims", "level", "strings"):
            setattr(args, key, saved["args"][key])
        body = render(args, saved["info"], saved["extra"], saved["made"], saved["results"])
        print(body)
        if not args.no_doc:
            c.update_doc("dump", body)
        return
    if args.quick:
        args.assets, args.no_doc = 10_000, True
    work = Path(tempfile.mkdtemp(prefix="bench-dump-", dir=args.workdir))
    try:
        path = work / DUMP_V2_5.dump_name(datetime.now().replace(microsecond=0))
        print(f"generating {args.assets:,} assets into {path} …", flush=True)
        made = generate(path, args.assets, args.dims, args.level)
        print(f"  {made['gz_bytes'] / 2**20:.0f} MiB gzip'd in {made['seconds']:.0f} s", flush=True)
        waited = c.wait_for_low_load(args.wait_load)
        extra = {"Date": c.now(), "Load average at start (1/5/15 min)": f"{c.loadavg()} ({waited})"}
        results = []
        modes = [mode for mode in MODES if mode != "proof-strings" or args.strings]
        if dump_file.INFLATER is zlib:
            modes = [mode for mode in modes if not mode.endswith("-zlib")]
        for mode in modes:
            result = measure(mode, path)
            print(
                f"  {mode:14} {result['seconds']:6.1f} s wall {result['cpu_seconds']:6.1f} s CPU"
                f" {result['maxrss_mib']:6.0f} MiB peak RSS",
                flush=True,
            )
            results.append(result)
        extra["Load average at end"] = c.loadavg()
        info = c.machine(work)
        info.pop("rclone", None)
        if args.save:
            figures = {key: getattr(args, key) for key in ("assets", "dims", "level", "strings")}
            args.save.write_text(
                json.dumps(
                    {"args": figures, "info": info, "extra": extra, "made": made,
                     "results": results},
                    indent=1,
                )
            )  # fmt: skip
        body = render(args, info, extra, made, results)
        print(body)
        if not args.no_doc:
            c.update_doc("dump", body)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
