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
2. Reads it in a fresh child process per measurement, each timed (wall, CPU) with its peak RSS
   (`ru_maxrss` of the child, which is also /proc's VmHWM):
   - `inflate`: photos_sync.immich.dump_file.dump_file_lines only (gunzip and split lines):
     the floor any reader pays;
   - `read`: read_dump_file to the end, counting records (what `--status`/`--check` need for
     the truncation verdict);
   - `proof`: the same, keeping what a consistency proof keeps: the 64-bit hash of every
     referenced path relative to UPLOAD_LOCATION in an `array('q')` (8 bytes per path);
   - `proof-strings` (`--strings`): keeping the relative paths themselves in a `set[str]`,
     to show why the proof should not.

Run from the repository root: `.venv/bin/python bench/bench_dump.py [--assets 1000000]
[--dims 512] [--level 1] [--no-doc] [--quick]`. Needs ~4 GB free in the work folder for 1M
assets; takes a few minutes, most of it generating the dump.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from array import array
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import _common as c

from photos_sync.core.immich_dump import Asset, AssetFile, DumpEnd, Person, User
from photos_sync.immich.dump_file import dump_file_lines, read_dump_file
from tests.immich_tree import DUMP_V2_5, Row, dump_lines, version_rows, write_dump

TARGET_SECONDS = 30.0
TARGET_MIB = 200.0
MODES = ("inflate", "read", "proof")


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


def child(mode: str, path: Path) -> dict[str, Any]:
    started = time.perf_counter()
    cpu = time.process_time()
    result: dict[str, Any] = {"mode": mode}
    if mode == "inflate":
        lines = 0
        for _ in dump_file_lines(path):
            lines += 1
        result["lines"] = lines
    else:
        records = 0
        hashes = array("q")
        strings: set[str] = set()
        end: DumpEnd | None = None
        for record in read_dump_file(path):
            records += 1
            if mode == "read":
                if isinstance(record, DumpEnd):
                    end = record
                continue
            paths = []
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
            for stored in paths:
                if stored is not None and stored.relative is not None:
                    if mode == "proof":
                        hashes.append(hash(stored.relative))
                    else:
                        strings.add(stored.relative)
        assert end is not None
        result.update(
            records=records,
            complete=end.complete,
            problem=end.problem,
            rows=dict(end.rows),
            kept_paths=len(hashes) if mode == "proof" else len(strings),
        )
    result["seconds"] = time.perf_counter() - started
    result["cpu_seconds"] = time.process_time() - cpu
    result["maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["vm_hwm_mib"] = _vm_hwm_mib()
    return result


def _vm_hwm_mib() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def measure(mode: str, path: Path) -> dict[str, Any]:
    output = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=c.REPO,
    ).stdout
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return result


# -- the report ---------------------------------------------------------------------------------


def render(args: argparse.Namespace, info: dict[str, str], extra: dict[str, str],
           made: dict[str, Any], results: list[dict[str, Any]]) -> str:  # fmt: skip
    command = (
        f"`.venv/bin/python bench/bench_dump.py --assets {args.assets} --dims {args.dims} "
        f"--level {args.level}{' --strings' if args.strings else ''}`"
    )
    rows = []
    for result in results:
        seconds, rss = result["seconds"], result["maxrss_mib"]
        verdict = ""
        if result["mode"] in ("read", "proof"):
            ok = seconds <= TARGET_SECONDS and rss <= TARGET_MIB
            verdict = (
                f"{'met' if ok else 'MISSED'} (≤ {TARGET_SECONDS:.0f} s, ≤ {TARGET_MIB:.0f} MiB)"
            )
        kept = result.get("kept_paths")
        rows.append(
            (
                f"`{result['mode']}`",
                f"{seconds:.1f} s",
                f"{result['cpu_seconds']:.1f} s",
                f"{rss:.0f} MiB",
                f"{kept:,}" if kept is not None else "—",
                verdict or "—",
            )
        )
    table = c.table(("measurement", "wall", "CPU", "peak RSS", "paths kept", "target"), rows)
    read = next(r for r in results if r["mode"] == "read")
    rows_read = ", ".join(f"{table} {count:,}" for table, count in sorted(read["rows"].items()))
    inflate = next(r for r in results if r["mode"] == "inflate")
    text_mib = made["text_bytes"] / 2**20
    return f"""## #16 dump reading: a 1M-asset Immich dump, streaming

Command: {command}. Source: [bench/bench_dump.py](../bench/bench_dump.py).

{c.machine_block(info, extra)}

**Data.** One gzip'd plain-SQL dump in Immich v2.5's format (pg_dump, singular table names,
`/data` paths), generated by the script: {args.assets:,} assets with per asset an `asset`,
`asset_exif`, `asset_job_status` and `smart_search` row ({args.dims}-float embedding), two or
three `asset_file` rows, half a face (`asset_face` + `face_search` embedding) and a third of an
album membership; 4 users, 2,000 people, 500 albums, 1 % external-library assets.
**{made["gz_bytes"] / 2**30:.2f} GiB gzip'd (level {args.level}), {text_mib / 1024:.2f} GiB of
SQL**, {inflate.get("lines", 0):,} lines; generated in {made["seconds"]:.0f} s (not part of the
figures). Rows read by the reader: {rows_read}.

Each measurement runs in a fresh child process reading the file from the page cache (it was
just written); peak RSS is the child's `ru_maxrss` (equal to /proc's VmHWM).

{table}

**What the figures mean.** `inflate` is the floor: gunzip and line splitting, which every
reader pays and which grows with the embeddings, not with the paths. `read` is the whole
streaming reader (photos_sync.immich.dump_file.read_dump_file → core.immich_dump.read_dump):
the truncation verdict, every record built and dropped; its RSS does not grow with the dump.
`proof` also keeps one 64-bit hash per referenced path inside UPLOAD_LOCATION (originals,
sidecars, encoded videos, thumbnails, people, profiles): 8 bytes per path.
{_strings_note(results)}"""


def _strings_note(results: list[dict[str, Any]]) -> str:
    strings = next((r for r in results if r["mode"] == "proof-strings"), None)
    if strings is None:
        return (
            "Keeping the paths themselves in a `set[str]` instead costs about 150–200 bytes per "
            "path (`--strings` measures it): the consistency proof should keep hashes, or "
            "compare sorted streams, not strings."
        )
    return (
        f"`proof-strings` keeps the same paths as `str` in a `set`: "
        f"{strings['maxrss_mib']:.0f} MiB — the consistency proof should keep hashes (or "
        "compare sorted streams), not strings."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, default=1_000_000)
    parser.add_argument("--dims", type=int, default=512)
    parser.add_argument("--level", type=int, default=1, choices=range(1, 10))
    parser.add_argument("--strings", action="store_true", help="also measure a set[str] proof")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--wait-load", type=float, default=120.0)
    parser.add_argument("--no-doc", action="store_true")
    parser.add_argument("--quick", action="store_true", help="10,000 assets, docs untouched")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], Path(args.child[1]))))
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
        for mode in (*MODES, *(("proof-strings",) if args.strings else ())):
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
        body = render(args, info, extra, made, results)
        print(body)
        if not args.no_doc:
            c.update_doc("dump", body)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
