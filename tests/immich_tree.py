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

With `sql_dump=DUMP_V2_5` (or another of DUMP_FLAVOURS) the dumps in backups/ are real: the
gzip'd plain SQL that Immich's pg_dump/pg_dumpall writes, holding a database consistent with the
tree (users, assets, asset files, albums, people with their thumbnails in thumbs/, external-
library assets, version history), described by `TreeStats.db`; `dump_lines` and `write_dump`
write such dumps from any rows (bench/bench_dump.py makes a 1M-asset one), and `cut_mid_copy`,
`cut_before_completion`, `cut_gzip_stream` and `corrupt_gzip` break them as a full disk or a
bad copy would. `python tests/immich_tree.py ROOT --sql-dump v2.5` writes one from the shell.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import hashlib
import io
import random
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from photos_sync.core.immich_dump import copy_line

MARKER = ".immich"
TOP_FOLDERS = ("library", "upload", "profile", "thumbs", "encoded-video", "backups")
MIB = 1024 * 1024


@dataclass
class TreeStats:
    files: int = 0
    bytes: int = 0
    by_folder: dict[str, int] = field(default_factory=dict)
    #: The database the dumps in backups/ hold (make_immich_tree(sql_dump=...)).
    db: ImmichDb | None = None
    #: Their names, oldest first.
    dump_names: list[str] = field(default_factory=list)

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
    sql_dump: DumpFlavour | None = None,
    external_root: Path | None = None,
) -> TreeStats:
    """Create an Immich-like tree under `root` and return what was written.

    Without `sql_dump`, backups/ holds `dumps` files of random bytes (named like dumps). With
    it, backups/ holds `dumps` real gzip'd pg_dump/pg_dumpall dumps in that flavour (see
    DumpFlavour), consistent with the tree: every path they reference exists (external-library
    originals under `external_root` when given, else nowhere), and the tree gains what such a
    database references: person thumbnails in thumbs/, a few XMP sidecars in library/ and two
    originals with unusual names. `stats.db` describes the database. The files written without
    `sql_dump` are the same either way (the database uses its own random stream)."""
    rng = random.Random(seed)
    stats = TreeStats()
    for folder in TOP_FOLDERS:
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / MARKER).touch()
    user_ids = [_uuid(rng) for _ in range(users)]
    user_names = [f"user{n}" for n in range(users)]
    written = _Written()
    for n in range(library_files):
        user = user_names[n % users]
        year, month = rng.choice((2019, 2021, 2023, 2024)), rng.randint(1, 12)
        ext, size = _media(rng, scale)
        relative = f"library/{user}/{year}/{month:02d}/IMG_{n:05d}{ext}"
        _write(root / relative, size, rng, stats, "library")
        written.library.append((n % users, year, month, relative))
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
        written.upload.append((user_ids.index(user), asset, ext, thumbs))
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
        profile = f"profile/{user}/{_uuid(rng)}.jpg"
        _write(root / profile, int(rng.uniform(20, 200) * 1024 * scale) + 1, rng, stats, "profile")
        written.profiles.append(profile)
    if sql_dump is not None:
        stats.db = _make_db(root, user_ids, user_names, written, seed, scale, stats, external_root)
        stats.dump_names = _write_dumps(root, stats.db, sql_dump, dumps, stats)
        return stats
    for n in range(dumps):
        name = f"immich-db-backup-202611{20 + n:02d}T020000-v2.3.1-pg14.19.sql.gz"
        _write_filler_dump(
            root / "backups" / name, int(rng.uniform(2, 8) * MIB * scale) + 1, rng, stats
        )
    return stats


def _write_filler_dump(path: Path, size: int, rng: random.Random, stats: TreeStats) -> None:
    """A dump of about `size` bytes that reads as whole (gzip'd, pg_dump's first and last
    lines) but holds no table: random filler in SQL comments, stored uncompressed so the
    file stays incompressible like a real dump. For trees whose dumps only need to exist."""
    lines = [b"--\n-- PostgreSQL database dump\n--\n\n"]
    remaining = max(0, size // 2 - 120)
    while remaining > 0:
        chunk = min(remaining, 4096)
        lines.append(b"-- " + rng.randbytes(chunk).hex().encode() + b"\n")
        remaining -= chunk
    lines.append(b"--\n-- PostgreSQL database dump complete\n--\n\n")
    data = gzip.compress(b"".join(lines), compresslevel=0, mtime=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    stats.add("backups", len(data))


# -- the database and its dumps (make_immich_tree(sql_dump=...)) --------------------------------


@dataclass(frozen=True)
class DumpFlavour:
    """How one Immich version writes its dump (see photos_sync/core/immich_dump.py)."""

    label: str
    immich_version: str
    postgres_version: str
    tool: str  # "pg_dump" (Immich v2.5+) or "pg_dumpall" (v1.120 – v2.4)
    media_location: str  # "/data" (new installs from v1.137), "/usr/src/app/upload", "upload"
    plural_tables: bool  # table names before v1.137 ("assets", "albums_assets_assets", …)
    sidecar_in_asset_file: bool  # Immich v2: sidecars are asset_file rows, no sidecarPath
    join_columns: tuple[str, str, str]  # album_asset's album and asset, album_user's user
    versioned_name: bool  # v1.137+: immich-db-backup-<stamp>-v<version>-pg<pg>.sql.gz
    restrict: bool  # PostgreSQL 14.19+: \restrict / \unrestrict around the script

    def table(self, logical: str) -> str:
        return _PLURAL.get(logical, logical) if self.plural_tables else logical

    def container_path(self, relative: str) -> str:
        return f"{self.media_location}/{relative}"

    def dump_name(self, stamp: datetime) -> str:
        if self.versioned_name:
            return (
                f"immich-db-backup-{stamp:%Y%m%dT%H%M%S}-v{self.immich_version}"
                f"-pg{self.postgres_version}.sql.gz"
            )
        millis = int(stamp.replace(tzinfo=UTC).timestamp() * 1000)
        return f"immich-db-backup-{millis}.sql.gz"


_PLURAL = {
    "asset": "assets",
    "asset_file": "asset_files",
    "asset_exif": "exif",
    "asset_face": "asset_faces",
    "user": "users",
    "library": "libraries",
    "album": "albums",
    "album_asset": "albums_assets_assets",
    "album_user": "albums_shared_users_users",
}

#: Immich v2.5+ (pg_dump, singular names, /data, sidecars in asset_file, PostgreSQL 14.19).
DUMP_V2_5 = DumpFlavour(
    "v2.5", "2.5.6", "14.19", "pg_dump", "/data", False, True, ("albumId", "assetId", "userId"),
    True, True,
)  # fmt: skip
#: Immich v1.137 upgraded from an older install (pg_dumpall, singular names, old prefix).
DUMP_V1_137 = DumpFlavour(
    "v1.137", "1.137.3", "14.17", "pg_dumpall", "/usr/src/app/upload", False, False,
    ("albumsId", "assetsId", "usersId"), True, False,
)  # fmt: skip
#: Immich v1.123 (pg_dumpall, plural names, epoch-millisecond file name) with its default
#: media location, the relative `./upload`: paths are stored as `upload/library/…`.
DUMP_V1_123 = DumpFlavour(
    "v1.123", "1.123.0", "14.15", "pg_dumpall", "upload", True, False,
    ("albumsId", "assetsId", "usersId"), False, False,
)  # fmt: skip
#: The same with IMMICH_MEDIA_LOCATION=/usr/src/app/upload: the old absolute prefix.
DUMP_V1_123_ABSOLUTE = dataclasses.replace(
    DUMP_V1_123, label="v1.123-absolute", media_location="/usr/src/app/upload"
)
DUMP_FLAVOURS = {
    flavour.label: flavour
    for flavour in (DUMP_V2_5, DUMP_V1_137, DUMP_V1_123, DUMP_V1_123_ABSOLUTE)
}


@dataclass
class DbUser:
    id: str
    email: str
    name: str
    storage_label: str
    profile: str  # relative to the tree's root
    is_admin: bool


@dataclass
class DbAsset:
    id: str
    owner_id: str
    original: str  # relative to the tree's root; absolute (a host path) for external ones
    type: str
    taken: str  # "2019-06-12 10:11:12+00"
    library_id: str | None = None
    sidecar: str | None = None
    encoded_video: str | None = None
    files: list[tuple[str, str]] = field(default_factory=list)  # (type, relative path)
    deleted_at: str | None = None

    @property
    def external(self) -> bool:
        return self.library_id is not None


@dataclass
class DbPerson:
    id: str
    owner_id: str
    name: str
    thumbnail: str  # relative
    hidden: bool = False


@dataclass
class DbAlbum:
    id: str
    name: str
    owner_id: str
    asset_ids: list[str]
    shared_with: list[str] = field(default_factory=list)


@dataclass
class DbLibrary:
    id: str
    name: str
    owner_id: str
    import_paths: list[str]


@dataclass
class ImmichDb:
    users: list[DbUser]
    assets: list[DbAsset]
    people: list[DbPerson]
    faces: list[tuple[str, str | None]]  # (asset id, person id or None)
    albums: list[DbAlbum]
    libraries: list[DbLibrary]

    def referenced(self) -> set[str]:
        """Every path (relative to the tree) the database references inside the tree."""
        paths = {user.profile for user in self.users}
        paths |= {person.thumbnail for person in self.people}
        for asset in self.assets:
            if not asset.external:
                paths.add(asset.original)
            for path in (asset.sidecar, asset.encoded_video):
                if path:
                    paths.add(path)
            paths |= {path for _, path in asset.files}
        return paths

    def external_originals(self) -> list[str]:
        return [asset.original for asset in self.assets if asset.external]

    def asset(self, asset_id: str) -> DbAsset:
        return next(asset for asset in self.assets if asset.id == asset_id)


@dataclass
class _Written:
    library: list[tuple[int, int, int, str]] = field(default_factory=list)  # user, y, m, path
    upload: list[tuple[int, str, str, bool]] = field(default_factory=list)  # user, id, ext, thumbs
    profiles: list[str] = field(default_factory=list)


_TYPES = {".jpg": "IMAGE", ".heic": "IMAGE", ".mp4": "VIDEO"}
#: Two originals whose names need escaping or decoding (a backslash, spaces, non-ASCII).
_ODD_NAMES = ("Été à la plage #1.jpg", "scan\\02 (copy).jpg")


def _moment(rng: random.Random, year: int | None = None, month: int | None = None) -> str:
    year = year or rng.randint(2015, 2025)
    month = month or rng.randint(1, 12)
    return (
        f"{year}-{month:02d}-{rng.randint(1, 28):02d} "
        f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}+00"
    )


def _nested(folder: str, owner: str, name: str) -> str:
    return f"{folder}/{owner}/{name[:2]}/{name[2:4]}/{name}"


def _make_db(
    root: Path,
    user_ids: list[str],
    user_names: list[str],
    written: _Written,
    seed: int,
    scale: float,
    stats: TreeStats,
    external_root: Path | None,
) -> ImmichDb:
    """The database of the tree just written; writes the files it adds (see make_immich_tree)."""
    rng = random.Random(f"immich-db-{seed}")
    users = [
        DbUser(uid, f"user{n}@example.com", f"User {n}", user_names[n], written.profiles[n], n == 0)
        for n, uid in enumerate(user_ids)
    ]
    assets: list[DbAsset] = []
    for user_index, year, month, relative in written.library:
        ext = relative[relative.rindex(".") :]
        assets.append(
            DbAsset(
                _uuid(rng), user_ids[user_index], relative, _TYPES[ext], _moment(rng, year, month)
            )
        )
    for number, asset in enumerate(assets[:2]):
        asset.sidecar = f"{asset.original}.xmp"
        xmp = f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rating>{number + 3}</rating></x:xmpmeta>\n'
        (root / asset.sidecar).write_text(xmp)
        stats.add("library", len(xmp.encode()))
    if len(assets) >= 3:
        assets[-1].deleted_at = "2026-11-01 10:00:00+00"  # in Immich's trash: the file stays
    for name in _ODD_NAMES:
        relative = f"library/{user_names[0]}/2021/07/{name}"
        _write(root / relative, int(rng.uniform(1, 3) * MIB * scale) + 1, rng, stats, "library")
        assets.append(DbAsset(_uuid(rng), user_ids[0], relative, "IMAGE", _moment(rng, 2021, 7)))
    for user_index, asset_id, ext, has_thumbs in written.upload:
        owner = user_ids[user_index]
        asset = DbAsset(
            asset_id, owner, _nested("upload", owner, f"{asset_id}{ext}"), _TYPES[ext], _moment(rng)
        )
        if has_thumbs:
            asset.files = [
                ("preview", _nested("thumbs", owner, f"{asset_id}-preview.jpeg")),
                ("thumbnail", _nested("thumbs", owner, f"{asset_id}-thumbnail.webp")),
            ]
            if ext == ".mp4":
                asset.encoded_video = _nested("encoded-video", owner, f"{asset_id}.mp4")
        assets.append(asset)
    import_path = str(external_root) if external_root else "/mnt/external-photos"
    library = DbLibrary(_uuid(rng), "Family archive", user_ids[0], [import_path])
    for number in range(3):
        original = f"{import_path}/2020/DSC_{number:04d}.JPG"
        if external_root is not None:
            target = Path(original)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(rng.randbytes(int(rng.uniform(1, 3) * MIB * scale) + 1))
        assets.append(
            DbAsset(_uuid(rng), user_ids[0], original, "IMAGE", _moment(rng, 2020), library.id)
        )
    people: list[DbPerson] = []
    faces: list[tuple[str, str | None]] = []
    for user in users:
        own = [asset for asset in assets if asset.owner_id == user.id and not asset.external]
        names = [f"{user.name} friend", "", *(["Hidden stranger"] if user.is_admin else [])]
        for name in names:
            person_id = _uuid(rng)
            thumbnail = _nested("thumbs", user.id, f"{person_id}.jpeg")
            _write(
                root / thumbnail, int(rng.uniform(5, 30) * 1024 * scale) + 1, rng, stats, "thumbs"
            )
            people.append(DbPerson(person_id, user.id, name, thumbnail, name == "Hidden stranger"))
            for asset in rng.sample(own, min(len(own), rng.randint(1, 3))):
                faces.append((asset.id, person_id))
        if own:
            faces.append((own[0].id, None))  # a face nobody was named for
    albums: list[DbAlbum] = []
    for user in users:
        ids = [asset.id for asset in assets if asset.owner_id == user.id and not asset.deleted_at]
        if ids:
            picked = rng.sample(ids, min(len(ids), 4))
            albums.append(DbAlbum(_uuid(rng), f"Holidays of {user.name}", user.id, picked))
    if len(users) > 1:
        family = [assets[0].id, *[a.id for a in assets if a.owner_id == users[1].id][:1]]
        albums.append(DbAlbum(_uuid(rng), "Family", users[0].id, family, [u.id for u in users[1:]]))
    return ImmichDb(users, assets, people, faces, albums, [library])


def _write_dumps(
    root: Path, db: ImmichDb, flavour: DumpFlavour, dumps: int, stats: TreeStats
) -> list[str]:
    names = []
    for number in range(dumps):
        name = flavour.dump_name(datetime(2026, 11, 20 + number, 2, 0, 0))
        size = write_dump(root / "backups" / name, dump_lines(flavour, db_tables(db, flavour)))
        stats.add("backups", size)
        names.append(name)
    return names


# -- the SQL: pg_dump's plain format --------------------------------------------------------------

_VERSION_HISTORY = ("1.120.0", "1.123.0", "1.132.3", "1.137.3", "2.3.1", "2.5.6")
_T0 = "2026-11-20 02:00:00+00"

Row = Mapping[str, "str | None"]


def _columns(logical: str, flavour: DumpFlavour) -> list[tuple[str, str]]:
    """(column, SQL type) of a table as this flavour's Immich has it (a realistic subset)."""
    album_col, asset_col, user_col = flavour.join_columns
    ts, vc = "timestamp with time zone", "character varying"
    if logical == "asset":
        columns = [
            ("id", "uuid"), ("deviceAssetId", vc), ("ownerId", "uuid"), ("deviceId", vc),
            ("type", vc), ("originalPath", vc), ("fileCreatedAt", ts), ("fileModifiedAt", ts),
            ("isFavorite", "boolean"), ("duration", vc), ("encodedVideoPath", vc),
            ("checksum", "bytea"), ("livePhotoVideoId", "uuid"), ("updatedAt", ts),
            ("createdAt", ts), ("originalFileName", vc),
        ]  # fmt: skip
        if not flavour.sidecar_in_asset_file:
            columns.append(("sidecarPath", vc))
        columns += [
            ("thumbhash", "bytea"), ("isOffline", "boolean"), ("libraryId", "uuid"),
            ("isExternal", "boolean"), ("deletedAt", ts), ("localDateTime", ts),
            ("stackId", "uuid"), ("duplicateId", "uuid"), ("status", "public.assets_status_enum"),
        ]  # fmt: skip
        if flavour.plural_tables:
            columns += [("isVisible", "boolean"), ("isArchived", "boolean")]
        else:
            columns.append(("visibility", "public.asset_visibility_enum"))
        return [*columns, ("updateId", "uuid")]
    tables: dict[str, list[tuple[str, str]]] = {
        "asset_file": [
            ("id", "uuid"), ("assetId", "uuid"), ("createdAt", ts), ("updatedAt", ts),
            ("type", vc), ("path", vc), ("updateId", "uuid"),
        ],
        "user": [
            ("id", "uuid"), ("email", vc), ("password", vc), ("createdAt", ts),
            ("profileImagePath", vc), ("isAdmin", "boolean"), ("shouldChangePassword", "boolean"),
            ("deletedAt", ts), ("oauthId", vc), ("updatedAt", ts), ("storageLabel", vc),
            ("name", vc), ("quotaSizeInBytes", "bigint"), ("quotaUsageInBytes", "bigint"),
            ("status", vc), ("profileChangedAt", ts), ("updateId", "uuid"),
        ],
        "person": [
            ("id", "uuid"), ("createdAt", ts), ("updatedAt", ts), ("ownerId", "uuid"),
            ("name", vc), ("thumbnailPath", vc), ("isHidden", "boolean"), ("birthDate", "date"),
            ("faceAssetId", "uuid"), ("isFavorite", "boolean"), ("color", vc),
            ("updateId", "uuid"),
        ],
        "library": [
            ("id", "uuid"), ("name", vc), ("ownerId", "uuid"), ("importPaths", "text[]"),
            ("exclusionPatterns", "text[]"), ("createdAt", ts), ("updatedAt", ts),
            ("deletedAt", ts), ("refreshedAt", ts), ("updateId", "uuid"),
        ],
        "album": [
            ("id", "uuid"), ("ownerId", "uuid"), ("albumName", vc), ("createdAt", ts),
            ("albumThumbnailAssetId", "uuid"), ("updatedAt", ts), ("description", "text"),
            ("deletedAt", ts), ("isActivityEnabled", "boolean"), ("order", vc),
            ("updateId", "uuid"),
        ],
        "album_asset": [(album_col, "uuid"), (asset_col, "uuid"), ("createdAt", ts)],
        "album_user": [(album_col, "uuid"), (user_col, "uuid"), ("role", vc)],
        "asset_face": [
            ("id", "uuid"), ("assetId", "uuid"), ("personId", "uuid"), ("imageWidth", "integer"),
            ("imageHeight", "integer"), ("boundingBoxX1", "integer"),
            ("boundingBoxY1", "integer"), ("boundingBoxX2", "integer"),
            ("boundingBoxY2", "integer"), ("sourceType", "public.sourcetype"),
            ("deletedAt", ts), ("updatedAt", ts), ("updateId", "uuid"), ("isVisible", "boolean"),
        ],
        "asset_exif": [
            ("assetId", "uuid"), ("make", vc), ("model", vc), ("exifImageWidth", "integer"),
            ("exifImageHeight", "integer"), ("fileSizeInByte", "bigint"),
            ("dateTimeOriginal", ts), ("timeZone", vc), ("city", vc), ("country", vc),
            ("description", "text"), ("lensModel", vc), ("updatedAt", ts), ("updateId", "uuid"),
        ],
        "asset_job_status": [
            ("assetId", "uuid"), ("facesRecognizedAt", ts), ("metadataExtractedAt", ts),
            ("duplicatesDetectedAt", ts), ("ocrAt", ts),
        ],
        "smart_search": [("assetId", "uuid"), ("embedding", "public.vector(512)")],
        "face_search": [("faceId", "uuid"), ("embedding", "public.vector(512)")],
        "system_metadata": [("key", vc), ("value", "jsonb")],
        "version_history": [("id", "uuid"), ("createdAt", ts), ("version", vc)],
    }  # fmt: skip
    return tables[logical]


def _default(column: str, sql_type: str) -> str | None:
    """What Immich puts in a column the rows leave out (NULL for the nullable ones)."""
    if sql_type == "boolean":
        return "f"
    if column in ("createdAt", "updatedAt", "profileChangedAt"):
        return _T0
    return None


def _quote(identifier: str) -> str:
    """As pg_dump's fmtId: quoted unless lower-case and not a reserved word."""
    plain = identifier.islower() and identifier.replace("_", "").isalnum()
    if plain and identifier not in ("user", "order"):
        return identifier
    return '"' + identifier.replace('"', '""') + '"'


def _array_literal(items: Sequence[str]) -> str:
    def element(item: str) -> str:
        if item and not any(c in item for c in ' ,{}"\\') and item.upper() != "NULL":
            return item
        return '"' + item.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return "{" + ",".join(element(item) for item in items) + "}"


def db_tables(db: ImmichDb, flavour: DumpFlavour) -> dict[str, Iterable[Row]]:
    """The rows of `db` per logical table, as this flavour's Immich stores them."""
    where = flavour.container_path
    album_col, asset_col, user_col = flavour.join_columns
    assets: list[dict[str, str | None]] = []
    files: list[dict[str, str | None]] = []
    for n, asset in enumerate(db.assets):
        row: dict[str, str | None] = {
            "id": asset.id,
            "deviceAssetId": f"IMG-{n}",
            "ownerId": asset.owner_id,
            "deviceId": "photos-sync-tests",
            "type": asset.type,
            "originalPath": asset.original if asset.external else where(asset.original),
            "fileCreatedAt": asset.taken,
            "fileModifiedAt": asset.taken,
            "encodedVideoPath": where(asset.encoded_video) if asset.encoded_video else "",
            "checksum": "\\x" + hashlib.sha1(asset.original.encode()).hexdigest(),
            "originalFileName": asset.original.rpartition("/")[2],
            "thumbhash": "\\x" + hashlib.md5(asset.id.encode()).hexdigest()[:20],
            "libraryId": asset.library_id,
            "isExternal": "t" if asset.external else "f",
            "deletedAt": asset.deleted_at,
            "localDateTime": asset.taken,
            "status": "trashed" if asset.deleted_at else "active",
            "visibility": "timeline",
            "isVisible": "t",
            "updateId": asset.id,
        }
        if asset.sidecar and not flavour.sidecar_in_asset_file:
            row["sidecarPath"] = where(asset.sidecar)
        assets.append(row)
        kinds = list(asset.files)
        if asset.sidecar and flavour.sidecar_in_asset_file:
            kinds.append(("sidecar", asset.sidecar))
        for kind, path in kinds:
            files.append({"id": _stable_uuid(asset.id + kind), "assetId": asset.id,
                          "type": kind, "path": where(path)})  # fmt: skip
    people = [
        {"id": p.id, "ownerId": p.owner_id, "name": p.name, "thumbnailPath": where(p.thumbnail),
         "isHidden": "t" if p.hidden else "f", "faceAssetId": None}
        for p in db.people
    ]  # fmt: skip
    faces = [
        {"id": _stable_uuid(f"{asset_id}{person_id}{n}"), "assetId": asset_id,
         "personId": person_id, "imageWidth": "1920", "imageHeight": "1080",
         "boundingBoxX1": "10", "boundingBoxY1": "20", "boundingBoxX2": "110",
         "boundingBoxY2": "140", "sourceType": "machine-learning", "isVisible": "t"}
        for n, (asset_id, person_id) in enumerate(db.faces)
    ]  # fmt: skip
    users = [
        {"id": u.id, "email": u.email, "password": "$2b$10$notarealhash", "name": u.name,
         "profileImagePath": where(u.profile), "isAdmin": "t" if u.is_admin else "f",
         "storageLabel": u.storage_label, "oauthId": "", "quotaUsageInBytes": "0",
         "status": "active"}
        for u in db.users
    ]  # fmt: skip
    libraries = [
        {"id": lib.id, "name": lib.name, "ownerId": lib.owner_id,
         "importPaths": _array_literal(lib.import_paths),
         "exclusionPatterns": _array_literal(["**/@eaDir/**", "**/._*", "**/#recycle/**"])}
        for lib in db.libraries
    ]  # fmt: skip
    albums = [
        {"id": a.id, "ownerId": a.owner_id, "albumName": a.name, "description": "",
         "albumThumbnailAssetId": a.asset_ids[0] if a.asset_ids else None, "order": "desc",
         "isActivityEnabled": "t"}
        for a in db.albums
    ]  # fmt: skip
    album_assets = [
        {album_col: a.id, asset_col: asset_id} for a in db.albums for asset_id in a.asset_ids
    ]
    album_users = [
        {album_col: a.id, user_col: user_id, "role": "editor"}
        for a in db.albums
        for user_id in a.shared_with
    ]
    exif = [
        {"assetId": asset.id, "make": "Canon", "model": "EOS R6", "exifImageWidth": "6000",
         "exifImageHeight": "4000", "fileSizeInByte": "123456",
         "dateTimeOriginal": asset.taken, "timeZone": "Europe/Paris",
         "city": "Saint-Étienne", "country": "France",
         # escaped on the way out: a tab, a newline and a backslash inside one field
         "description": "Day one\n\tby the lake \\ sunset" if n % 3 == 0 else "",
         "lensModel": "RF24-105mm F4 L IS USM"}
        for n, asset in enumerate(db.assets)
    ]  # fmt: skip
    rng = random.Random(len(db.assets))
    smart = [
        {"assetId": asset.id,
         "embedding": "[" + ",".join(f"{rng.uniform(-0.2, 0.2):.7f}" for _ in range(8)) + "]"}
        for asset in db.assets
    ]  # fmt: skip
    return {
        "album": albums,
        "album_asset": album_assets,
        "album_user": album_users,
        "asset": assets,
        "asset_exif": exif,
        "asset_face": faces,
        "asset_file": files,
        "library": libraries,
        "person": people,
        "smart_search": smart,
        "system_metadata": [
            {"key": "system-flags", "value": '{"mountChecks": {"thumbs": true, "upload": true}}'},
            {"key": "version-check-state", "value": '{"checkedAt": "2026-11-19T02:00:00.000Z"}'},
        ],
        "user": users,
        "version_history": version_rows(flavour),
    }


def version_rows(flavour: DumpFlavour) -> list[dict[str, str | None]]:
    """version_history up to the flavour's version, as Immich records each upgrade."""
    rows: list[dict[str, str | None]] = []
    target = tuple(int(part) for part in flavour.immich_version.split("."))
    for n, version in enumerate(_VERSION_HISTORY):
        if tuple(int(part) for part in version.split(".")) > target:
            break
        rows.append({"id": _stable_uuid(version), "createdAt": f"2025-{n + 1:02d}-01 12:00:00+00",
                     "version": version})  # fmt: skip
    if rows[-1]["version"] != flavour.immich_version:
        rows.append(
            {
                "id": _stable_uuid(flavour.immich_version),
                "createdAt": "2026-06-01 12:00:00+00",
                "version": flavour.immich_version,
            }
        )
    return rows


def _stable_uuid(text: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, text))


_SETS = """SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

"""

_FUNCTION = """--
-- Name: updated_at(); Type: FUNCTION; Schema: public; Owner: postgres
--

CREATE FUNCTION public.updated_at() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
    DECLARE
        clock_timestamp TIMESTAMP := clock_timestamp();
    BEGIN
        -- the body of a function is copied as written, blank lines and all

        new."updatedAt" = clock_timestamp;
        RETURN new;
    END;
$$;


ALTER FUNCTION public.updated_at() OWNER TO postgres;

"""


def _header(flavour: DumpFlavour, key: str) -> Iterator[str]:
    version = f"{flavour.postgres_version} (Debian {flavour.postgres_version}-1.pgdg120+1)"
    yield "--\n-- PostgreSQL database dump\n--\n\n"
    if flavour.restrict:
        yield f"\\restrict {key}\n\n"
    yield f"-- Dumped from database version {version}\n"
    yield f"-- Dumped by pg_dump version {version}\n\n"
    yield _SETS


def _footer(flavour: DumpFlavour, key: str) -> Iterator[str]:
    yield "--\n-- PostgreSQL database dump complete\n--\n\n"
    if flavour.restrict:
        yield f"\\unrestrict {key}\n\n"


def _database(
    flavour: DumpFlavour, data: Mapping[str, Iterable[Row]] | None, name: str, key: str
) -> Iterator[str]:
    """One database as pg_dump writes it (inside pg_dumpall: with its CREATE DATABASE)."""
    yield from _header(flavour, key)
    if flavour.tool == "pg_dumpall":
        yield f"--\n-- Name: {name}; Type: DATABASE; Schema: -; Owner: postgres\n--\n\n"
        yield (
            f"CREATE DATABASE {name} WITH TEMPLATE = template0 ENCODING = 'UTF8' "
            "LOCALE = 'en_US.utf8';\n\n\n"
        )
        yield f"ALTER DATABASE {name} OWNER TO postgres;\n\n"
        if flavour.restrict:
            yield f"\\unrestrict {key}\n"
        yield f"\\connect {name}\n"
        if flavour.restrict:
            yield f"\\restrict {key}\n"
        yield "\n" + _SETS
    if data is None:
        yield from _footer(flavour, key)
        return
    tables = sorted(data, key=flavour.table)
    for logical in reversed(tables):
        yield f"DROP TABLE IF EXISTS public.{_quote(flavour.table(logical))};\n"
    yield "DROP FUNCTION IF EXISTS public.updated_at();\n\n"
    yield _FUNCTION
    yield "SET default_tablespace = '';\n\nSET default_table_access_method = heap;\n\n"
    for logical in tables:
        table = _quote(flavour.table(logical))
        yield f"--\n-- Name: {flavour.table(logical)}; Type: TABLE; Schema: public; "
        yield "Owner: postgres\n--\n\n"
        columns = _columns(logical, flavour)
        body = ",\n".join(f"    {_quote(column)} {sql_type}" for column, sql_type in columns)
        yield f"CREATE TABLE public.{table} (\n{body}\n);\n\n\n"
        yield f"ALTER TABLE public.{table} OWNER TO postgres;\n\n"
    for logical in tables:
        table_name = flavour.table(logical)
        columns = _columns(logical, flavour)
        names = [column for column, _ in columns]
        defaults = [_default(column, sql_type) for column, sql_type in columns]
        yield f"--\n-- Data for Name: {table_name}; Type: TABLE DATA; Schema: public; "
        yield "Owner: postgres\n--\n\n"
        quoted = ", ".join(_quote(column) for column in names)
        yield f"COPY public.{_quote(table_name)} ({quoted}) FROM stdin;\n"
        for row in data[logical]:
            yield copy_line([row.get(c, d) for c, d in zip(names, defaults, strict=True)])
        yield "\\.\n\n\n"
    for logical in tables:
        if _columns(logical, flavour)[0][0] == "id":
            table_name = flavour.table(logical)
            yield f"--\n-- Name: {table_name} {table_name}_pkey; Type: CONSTRAINT; "
            yield "Schema: public; Owner: postgres\n--\n\n"
            yield f"ALTER TABLE ONLY public.{_quote(table_name)}\n"
            yield f"    ADD CONSTRAINT {table_name}_pkey PRIMARY KEY (id);\n\n\n"
    yield from _footer(flavour, key)


def dump_lines(flavour: DumpFlavour, data: Mapping[str, Iterable[Row]]) -> Iterator[str]:
    """The whole dump as Immich's `pg_dump`/`pg_dumpall --clean --if-exists` writes it.

    `data` maps logical table names (asset, asset_file, user, …, see _columns) to rows: dicts
    from column name to COPY value (a string; None is NULL); missing columns get a default."""
    key = hashlib.sha256(flavour.label.encode()).hexdigest()[:40]
    if flavour.tool == "pg_dump":
        yield from _database(flavour, data, "immich", key)
        return
    yield "--\n-- PostgreSQL database cluster dump\n--\n\n"
    if flavour.restrict:
        yield f"\\restrict {key}\n\n"
    yield "SET default_transaction_read_only = off;\n\n"
    yield "SET client_encoding = 'UTF8';\nSET standard_conforming_strings = on;\n\n"
    yield "--\n-- Drop databases (except postgres and template1)\n--\n\n"
    yield "DROP DATABASE IF EXISTS immich;\n\n\n\n\n"
    yield "--\n-- Roles\n--\n\nCREATE ROLE postgres;\n"
    yield (
        "ALTER ROLE postgres WITH SUPERUSER INHERIT CREATEROLE CREATEDB LOGIN REPLICATION "
        "BYPASSRLS PASSWORD 'SCRAM-SHA-256$4096:not-a-real-salt$not:a-real-key';\n\n"
    )
    yield "--\n-- User Configurations\n--\n\n\n\n\n\n\n\n"
    if flavour.restrict:
        yield f"\\unrestrict {key}\n\n"
    yield "--\n-- Databases\n--\n\n"
    for name, content in (("template1", None), ("immich", data), ("postgres", None)):
        yield f'--\n-- Database "{name}" dump\n--\n\n'
        yield from _database(flavour, content, name, key)
    yield "--\n-- PostgreSQL database cluster dump complete\n--\n\n"


def write_dump(path: Path, lines: Iterable[str], *, level: int = 6) -> int:
    """gzip `lines` into `path` (as Immich's `gzip --rsyncable`, at gzip's default level 6;
    the header carries no time, so the bytes depend only on the content). Returns the size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with (
        open(path, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=level) as gz,
        io.TextIOWrapper(gz, encoding="utf-8", newline="\n", write_through=False) as text,
    ):
        text.writelines(lines)
    return path.stat().st_size


def dump_text(path: Path) -> str:
    return gzip.decompress(path.read_bytes()).decode()


def cut_mid_copy(path: Path, table: str, *, keep_rows: int = 1) -> None:
    """Rewrite the dump at `path` as valid gzip holding its text only up to the middle of the
    row after the first `keep_rows` rows of `table` (as named in the dump): what a full disk
    leaves when the writer is still closed properly."""
    text = dump_text(path)
    header = re.search(rf"^COPY public\.\"?{re.escape(table)}\"? \(.*\n", text, re.M)
    assert header is not None, f"no COPY block for {table} in {path.name}"
    position = header.end()
    for _ in range(keep_rows):
        position = text.index("\n", position) + 1
    cut = position + max(1, (text.index("\n", position) - position) // 2)
    path.write_bytes(gzip.compress(text[:cut].encode(), mtime=0))


def cut_before_completion(path: Path) -> None:
    """Rewrite the dump without its final completion block(s): it ends between statements."""
    text = dump_text(path)
    cut = text.rindex("--\n-- PostgreSQL database dump complete")
    path.write_bytes(gzip.compress(text[:cut].encode(), mtime=0))


def cut_gzip_stream(path: Path, fraction: float = 0.5) -> None:
    """Truncate the compressed file itself (the gzip stream then ends early)."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


def corrupt_gzip(path: Path) -> None:
    """Flip bytes inside the deflate data (gzip reports bad data or a failed CRC check)."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    for offset in range(middle, min(middle + 16, len(data) - 8)):
        data[offset] ^= 0x5A
    path.write_bytes(bytes(data))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--library-files", type=int, default=12)
    parser.add_argument("--upload-files", type=int, default=12)
    parser.add_argument("--scale", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--sql-dump",
        choices=[*sorted(DUMP_FLAVOURS), "none"],
        default="v2.5",
        help="write real dumps of a consistent database in this Immich version's format "
        "(default v2.5; 'none': whole dumps without tables)",
    )
    parser.add_argument("--external-root", type=Path, help="where external-library files go")
    args = parser.parse_args()
    stats = make_immich_tree(
        args.root,
        library_files=args.library_files,
        upload_files=args.upload_files,
        scale=args.scale,
        seed=args.seed,
        sql_dump=DUMP_FLAVOURS.get(args.sql_dump),
        external_root=args.external_root,
    )
    print(f"{stats.files} files, {stats.bytes} bytes: {stats.by_folder}")


if __name__ == "__main__":
    main()
