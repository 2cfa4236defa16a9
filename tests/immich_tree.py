"""Build a directory tree that looks like an Immich UPLOAD_LOCATION, for tests and benchmarks.

Layout (as Immich writes it, each top folder with its empty `.immich` marker):

    library/<user>/<yyyy>/<mm>/IMG_<n>.jpg|.heic|.mp4      originals (storage template)
    upload/<user-uuid>/<xx>/<yy>/<uuid>.jpg|.heic|.mp4     originals (no template)
    profile/<user-uuid>/<uuid>.jpg                         avatars
    thumbs/<user-uuid>/<xx>/<yy>/<uuid>-preview.jpeg|-thumbnail.webp
    encoded-video/<user-uuid>/<xx>/<yy>/<uuid>.mp4
    backups/immich-db-backup-<yyyymmddThhmmss>-v<version>-pg<pg>.sql.gz

Contents are random bytes (incompressible, like media). Sizes follow a photo/video mix scaled
by `scale`: at scale 1.0 photos are 1-6 MiB, HEICs 0.5-3 MiB and videos 10-60 MiB.
Deterministic for a given seed.
"""

from __future__ import annotations

import argparse
import random
import uuid
from dataclasses import dataclass, field
from pathlib import Path

MARKER = ".immich"
TOP_FOLDERS = ("library", "upload", "profile", "thumbs", "encoded-video", "backups")
MIB = 1024 * 1024


@dataclass
class TreeStats:
    files: int = 0
    bytes: int = 0
    by_folder: dict[str, int] = field(default_factory=dict)

    def add(self, folder: str, size: int) -> None:
        self.files += 1
        self.bytes += size
        self.by_folder[folder] = self.by_folder.get(folder, 0) + size


def _write(path: Path, size: int, rng: random.Random, stats: TreeStats, folder: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(rng.randbytes(size))
    stats.add(folder, size)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _media(rng: random.Random, scale: float) -> tuple[str, int]:
    roll = rng.random()
    if roll < 0.70:
        return ".jpg", int(rng.uniform(1, 6) * MIB * scale) + 1
    if roll < 0.92:
        return ".heic", int(rng.uniform(0.5, 3) * MIB * scale) + 1
    return ".mp4", int(rng.uniform(10, 60) * MIB * scale) + 1


def make_immich_tree(
    root: Path,
    *,
    users: int = 2,
    library_files: int = 12,
    upload_files: int = 12,
    thumbs: bool = True,
    scale: float = 0.01,
    seed: int = 1,
    dumps: int = 2,
) -> TreeStats:
    """Create an Immich-like tree under `root` and return what was written."""
    rng = random.Random(seed)
    stats = TreeStats()
    for folder in TOP_FOLDERS:
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / MARKER).touch()
    user_ids = [_uuid(rng) for _ in range(users)]
    user_names = [f"user{n}" for n in range(users)]
    for n in range(library_files):
        user = user_names[n % users]
        year, month = rng.choice((2019, 2021, 2023, 2024)), rng.randint(1, 12)
        ext, size = _media(rng, scale)
        _write(
            root / "library" / user / str(year) / f"{month:02d}" / f"IMG_{n:05d}{ext}",
            size,
            rng,
            stats,
            "library",
        )
    for _ in range(upload_files):
        user = rng.choice(user_ids)
        asset = _uuid(rng)
        ext, size = _media(rng, scale)
        _write(
            root / "upload" / user / asset[:2] / asset[2:4] / f"{asset}{ext}",
            size,
            rng,
            stats,
            "upload",
        )
        if thumbs:
            base = root / "thumbs" / user / asset[:2] / asset[2:4]
            _write(
                base / f"{asset}-preview.jpeg",
                int(rng.uniform(100, 400) * 1024 * scale) + 1,
                rng,
                stats,
                "thumbs",
            )
            _write(
                base / f"{asset}-thumbnail.webp",
                int(rng.uniform(5, 30) * 1024 * scale) + 1,
                rng,
                stats,
                "thumbs",
            )
            if ext == ".mp4":
                _write(
                    root / "encoded-video" / user / asset[:2] / asset[2:4] / f"{asset}.mp4",
                    size // 3 + 1,
                    rng,
                    stats,
                    "encoded-video",
                )
    for user in user_ids:
        _write(
            root / "profile" / user / f"{_uuid(rng)}.jpg",
            int(rng.uniform(20, 200) * 1024 * scale) + 1,
            rng,
            stats,
            "profile",
        )
    for n in range(dumps):
        name = f"immich-db-backup-202611{20 + n:02d}T020000-v2.3.1-pg14.19.sql.gz"
        _write(
            root / "backups" / name, int(rng.uniform(2, 8) * MIB * scale) + 1, rng, stats, "backups"
        )
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--library-files", type=int, default=12)
    parser.add_argument("--upload-files", type=int, default=12)
    parser.add_argument("--scale", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    stats = make_immich_tree(
        args.root,
        library_files=args.library_files,
        upload_files=args.upload_files,
        scale=args.scale,
        seed=args.seed,
    )
    print(f"{stats.files} files, {stats.bytes} bytes: {stats.by_folder}")


if __name__ == "__main__":
    main()
