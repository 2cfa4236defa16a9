"""Read Immich's database dump without PostgreSQL: the file paths it stores and who/what they
belong to. Pure: no I/O; the caller feeds the decompressed dump line by line.

**What Immich writes.** Immich's "backup database" job pipes a plain-SQL dump through
`gzip --rsyncable` into `<UPLOAD_LOCATION>/backups/` (server/src/services/backup.service.ts,
later server/src/utils/backups.ts, in github.com/immich-app/immich):

- v1.120 – v2.4: `pg_dumpall --clean --if-exists` (every database of the cluster, roles first;
  the Immich database is one `-- Database "immich" dump` section), named
  `immich-db-backup-<epoch ms>.sql.gz`, from v1.137 `immich-db-backup-<yyyymmddThhmmss>-v<Immich
  version>-pg<PostgreSQL version>.sql.gz`;
- v2.5 and later: `pg_dump --clean --if-exists` of the Immich database only (immich PR #23978),
  same name; restore points are `restore-point-immich-db-backup-…`, uploaded files `uploaded-…`.

A dump is complete only when it ends with pg_dump's `-- PostgreSQL database dump complete`
(pg_backup_archiver.c, RestoreArchive) or, for pg_dumpall, `-- PostgreSQL database cluster dump
complete` (pg_dumpall.c, main). PostgreSQL 14.19/15.14/16.10/17.6 and later (CVE-2025-8714)
wrap the script in `\\restrict KEY` … `\\unrestrict KEY`; an `\\unrestrict` line may follow the
completion line and is ignored.

**The tables read** (rows of every other table are skipped without being kept), by the name
they have had (server/src/schema/migrations/1752267649968-StandardizeNames.ts renamed the plural
tables to singular ones in July 2025, shipped by v1.137; older dumps, and every pg_dumpall dump
of v1.120 – v1.136, carry the plural names):

record      v1.137 and later / before        columns used
----------  -------------------------------  ---------------------------------------------------
Asset       asset / assets                   id, ownerId, libraryId, type, originalPath,
                                             originalFileName, encodedVideoPath, sidecarPath (1),
                                             fileCreatedAt, localDateTime, deletedAt, status,
                                             visibility, livePhotoVideoId
AssetFile   asset_file / asset_files         assetId, type (thumbnail, preview, fullsize,
                                             sidecar (1), …), path
User        user / users                     id, email, name, profileImagePath, storageLabel,
                                             deletedAt
Person      person / person                  id, ownerId, name, thumbnailPath, isHidden
Library     library / libraries              id, name, ownerId, importPaths, exclusionPatterns,
                                             deletedAt
Album       album / albums                   id, albumName, ownerId (2), deletedAt
AlbumAsset  album_asset /                    albumId or albumsId, assetId or assetsId (3)
            albums_assets_assets
AlbumUser   album_user /                     albumId or albumsId, userId or usersId (3), role
            albums_shared_users_users
AssetFace   asset_face / asset_faces         assetId, personId, deletedAt
(version)   version_history (v1.118+)        createdAt, version: DumpEnd.immich_version

(1) migration 1755984055382-SidecarInAssetFile moved `asset.sidecarPath` into `asset_file` rows
of type `sidecar` (Immich v2); both forms are read. (2) Immich v3 moves album ownership into
`album_user` rows with role `owner`; `Album.owner_id` is then None. (3) migration
1761755618862-FixColumnNames (Immich v2.2/v2.3) renamed the join columns. Dumps made before
v1.113 also stored thumbnails as `assets.thumbnailPath`/`previewPath`/`resizePath`/`webpPath`;
they are read as AssetFile records.

**Paths.** Immich stores container paths: `<media location>/<folder>/…`. Before v1.137 the
default media location was the relative `./upload` (stored as `upload/library/…`); v1.137's
migration 1752759108283-ConvertToAbsolutePaths rewrote those to `/usr/src/app/upload/…`, and
new installs from v1.137 mount UPLOAD_LOCATION at `/data` (server/src/services/storage.service.ts
picks whichever of `/data`, `/usr/src/app/upload` exists, unless IMMICH_MEDIA_LOCATION is set).
All of these (and a custom location passed in) are mapped to paths relative to UPLOAD_LOCATION;
anything else (an external library, another mount) stays as stored and is flagged as outside.

The COPY text format (PostgreSQL docs, "COPY … File Formats"): one row per line, columns
separated by tabs, `\\N` is NULL, backslash escapes `\\b \\f \\n \\r \\t \\v \\\\`, `\\ooo`
(octal) and `\\xhh` (hex) bytes, any other escaped character stands for itself; the data ends
with a line `\\.`.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

from photos_sync.core.immich_rules import Version

#: The six folders Immich keeps under UPLOAD_LOCATION.
IMMICH_FOLDERS = ("library", "upload", "profile", "thumbs", "encoded-video", "backups")
#: Where UPLOAD_LOCATION appears inside the container, in the paths Immich stores.
DEFAULT_MEDIA_LOCATIONS = ("/usr/src/app/upload", "/data", "upload", "./upload")

PG_DUMP_HEADER = "-- PostgreSQL database dump"
PG_DUMP_COMPLETE = "-- PostgreSQL database dump complete"
PG_DUMPALL_HEADER = "-- PostgreSQL database cluster dump"
PG_DUMPALL_COMPLETE = "-- PostgreSQL database cluster dump complete"


# -- records ------------------------------------------------------------------------------------
# Named tuples rather than frozen dataclasses: as immutable, and several times cheaper to build,
# which counts for the millions of rows of a large library.


class StoredPath(NamedTuple):
    """A file path as Immich stored it, and the same path relative to UPLOAD_LOCATION
    (`relative` is None when it lies outside: an external library, another mount)."""

    stored: str
    relative: str | None

    @property
    def outside(self) -> bool:
        return self.relative is None

    @property
    def folder(self) -> str | None:
        """The Immich folder (library, upload, thumbs, …) the path is in, if any."""
        if self.relative is None:
            return None
        head = self.relative.partition("/")[0]
        return head if head in IMMICH_FOLDERS else None


class Asset(NamedTuple):
    id: str
    owner_id: str | None
    library_id: str | None
    type: str | None
    original: StoredPath | None
    original_file_name: str | None
    encoded_video: StoredPath | None
    sidecar: StoredPath | None  # before Immich v2; later an AssetFile of type "sidecar"
    file_created_at: str | None  # as dumped: "2019-06-12 10:11:12.345+00"
    local_date_time: str | None
    deleted_at: str | None  # set while the asset is in the trash
    status: str | None  # active, trashed, deleted (v1.1xx+)
    visibility: str | None  # timeline, archive, hidden, locked (v1.133+)
    live_photo_video_id: str | None


class AssetFile(NamedTuple):
    asset_id: str
    type: str  # thumbnail, preview, fullsize, sidecar, encoded_video, …
    path: StoredPath


class User(NamedTuple):
    id: str
    email: str | None
    name: str | None
    profile_image: StoredPath | None
    storage_label: str | None
    deleted_at: str | None


class Person(NamedTuple):
    id: str
    owner_id: str | None
    name: str | None
    thumbnail: StoredPath | None
    hidden: bool


class Library(NamedTuple):
    id: str
    name: str | None
    owner_id: str | None
    import_paths: tuple[str, ...]
    exclusion_patterns: tuple[str, ...]
    deleted_at: str | None


class Album(NamedTuple):
    id: str
    name: str | None
    owner_id: str | None  # None from Immich v3 on: see AlbumUser with role "owner"
    deleted_at: str | None


class AlbumAsset(NamedTuple):
    album_id: str
    asset_id: str


class AlbumUser(NamedTuple):
    album_id: str
    user_id: str
    role: str | None  # editor, viewer, owner (v3)


class AssetFace(NamedTuple):
    asset_id: str
    person_id: str | None  # None: a face nobody was assigned to
    deleted_at: str | None


@dataclass(frozen=True, slots=True)
class DumpEnd:
    """The last record of every read: was the dump whole, and what it held.

    `complete` is True only for a dump that ends with pg_dump's (or pg_dumpall's) completion
    line, outside any COPY block, on a whole line, with every row of the tables read well
    formed. Otherwise `problem` says in one sentence what is wrong (`truncated` tells a dump
    that stops early from one that is not a dump at all or is damaged inside)."""

    complete: bool
    problem: str | None
    truncated: bool
    dump_format: str | None  # "pg_dump", "pg_dumpall", or None (not a dump)
    postgres_version: str | None  # "Dumped from database version …"
    immich_version: str | None  # the newest version_history row, e.g. "1.137.3"
    rows: tuple[tuple[str, int], ...]  # (table as named in the dump, rows read), tables read
    lines: int

    @property
    def has_immich_tables(self) -> bool:
        return any(table in ("asset", "assets") for table, _ in self.rows)


DumpRecord = (
    Asset
    | AssetFile
    | User
    | Person
    | Library
    | Album
    | AlbumAsset
    | AlbumUser
    | AssetFace
    | DumpEnd
)


# -- paths --------------------------------------------------------------------------------------


class PathMapper:
    """Maps stored container paths to paths relative to UPLOAD_LOCATION."""

    __slots__ = ("_cacheable", "_last", "_prefixes")

    def __init__(self, media_locations: Sequence[str] = DEFAULT_MEDIA_LOCATIONS) -> None:
        prefixes = {location.rstrip("/") + "/" for location in media_locations if location}
        # Longest first, so that a custom location inside another one wins.
        self._prefixes = tuple(sorted(prefixes, key=len, reverse=True))
        # A dump uses one prefix for nearly every path: the last one matched is tried first,
        # unless a longer prefix starts with it (then the order matters).
        self._cacheable = frozenset(
            p for p in prefixes if not any(q != p and q.startswith(p) for q in prefixes)
        )
        self._last = self._prefixes[0] if self._prefixes else "\0"

    def relative(self, stored: str) -> str | None:
        prefix = self._last
        if not stored.startswith(prefix):
            for prefix in self._prefixes:
                if stored.startswith(prefix):
                    if prefix in self._cacheable:
                        self._last = prefix
                    break
            else:
                return None
        rest = stored[len(prefix) :]
        if "/." in rest or "//" in rest or rest[:1] in "./":
            rest = posixpath.normpath(rest.lstrip("/"))
            if rest == "." or rest == ".." or rest.startswith("../"):
                return None
        return rest

    def __call__(self, stored: str | None) -> StoredPath | None:
        """None for NULL and for "" (Immich's default for "no file yet")."""
        if not stored:
            return None
        return tuple.__new__(StoredPath, (stored, self.relative(stored)))

    def from_text(self, value: str) -> StoredPath | None:
        """The same, from one field of a decoded COPY row (escapes not yet resolved)."""
        if value == _NULL_TEXT or not value:
            return None
        if "\\" in value:
            value = _unescape_text(value)
        prefix = self._last
        if value.startswith(prefix):  # the common case, inline
            rest = value[len(prefix) :]
            if not ("/." in rest or "//" in rest or rest[:1] in "./"):
                return tuple.__new__(StoredPath, (value, rest))
        return tuple.__new__(StoredPath, (value, self.relative(value)))


# -- the COPY text format -----------------------------------------------------------------------

_NULL = b"\\N"
_NULL_TEXT = "\\N"
_SIMPLE_ESCAPES = {
    ord("b"): b"\b",
    ord("f"): b"\f",
    ord("n"): b"\n",
    ord("r"): b"\r",
    ord("t"): b"\t",
    ord("v"): b"\v",
}
_ESCAPE = re.compile(rb"\\(?:([0-7]{1,3})|x([0-9A-Fa-f]{1,2})|(.))", re.S)


def _unescape_match(match: re.Match[bytes]) -> bytes:
    octal, hexa, other = match.groups()
    if octal is not None:
        return bytes((int(octal, 8) & 0xFF,))
    if hexa is not None:
        return bytes((int(hexa, 16),))
    return _SIMPLE_ESCAPES.get(other[0], other)


def _unescape_text(value: str) -> str:
    raw = _ESCAPE.sub(_unescape_match, value.encode("utf-8", "surrogateescape"))
    return raw.decode("utf-8", "surrogateescape")


def copy_field(raw: bytes) -> str | None:
    """One field of a COPY text row, decoded: None for `\\N`, escapes resolved, UTF-8 decoded
    (bytes that are not UTF-8 survive as surrogate escapes, like file names on Linux)."""
    if raw == _NULL:
        return None
    if b"\\" in raw:
        raw = _ESCAPE.sub(_unescape_match, raw)
    return raw.decode("utf-8", "surrogateescape")


def copy_line(values: Sequence[str | None]) -> str:
    """The COPY text row of `values` (None → `\\N`), newline included. Inverse of reading."""
    return "\t".join(_escape_value(value) for value in values) + "\n"


def _escape_value(value: str | None) -> str:
    if value is None:
        return "\\N"
    if "\\" in value:
        value = value.replace("\\", "\\\\")
    for char, escaped in (("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r")):
        if char in value:
            value = value.replace(char, escaped)
    return value


def parse_array(text: str | None) -> tuple[str, ...]:
    """A one-dimensional PostgreSQL array literal (`{a,"b c",NULL}`) as its non-NULL elements.

    Raises ValueError for text that is not an array literal."""
    if text is None:
        return ()
    body = text.strip()
    if body.startswith("[") and "=" in body:  # explicit bounds: [1:2]={…}
        body = body.partition("=")[2]
    if not (body.startswith("{") and body.endswith("}")):
        raise ValueError(f"not an array literal: {text[:60]!r}")
    body = body[1:-1]
    items: list[str] = []
    index, size = 0, len(body)
    while index < size:
        if body[index] == '"':
            index += 1
            chars: list[str] = []
            while index < size and body[index] != '"':
                if body[index] == "\\" and index + 1 < size:
                    index += 1
                chars.append(body[index])
                index += 1
            if index >= size:
                raise ValueError(f"unterminated quoted array element in {text[:60]!r}")
            items.append("".join(chars))
            index += 1  # the closing quote
            while index < size and body[index] != ",":
                index += 1
        else:
            end = body.find(",", index)
            end = size if end < 0 else end
            element = body[index:end].strip()
            if element.upper() != "NULL":
                items.append(element)
            index = end
        index += 1  # the comma
    return tuple(items)


_IDENTIFIER = re.compile(r'\s*(?:"((?:[^"]|"")*)"|([^\s,."()]+))\s*')


def _identifiers(text: str, separator: str) -> list[str] | None:
    """`a, "b""c", d` → ["a", 'b"c', "d"] (split on `separator`); None when malformed."""
    names: list[str] = []
    index = 0
    if not text.strip():
        return names
    while True:
        match = _IDENTIFIER.match(text, index)
        if match is None:
            return None
        quoted, plain = match.groups()
        names.append(quoted.replace('""', '"') if quoted is not None else plain.lower())
        index = match.end()
        if index >= len(text):
            return names
        if text[index] != separator:
            return None
        index += 1


_COPY_HEADER = re.compile(r"COPY\s+(.+?)\s*\((.*)\)\s+FROM\s+stdin\s*;\s*$", re.S)
_COPY_NO_COLUMNS = re.compile(r"COPY\s+(\S+)\s+FROM\s+stdin\s*;\s*$")


def parse_copy_header(line: str) -> tuple[str, str, tuple[str, ...]] | None:
    """`COPY public."user" (id, "profileImagePath") FROM stdin;` → ("public", "user",
    ("id", "profileImagePath")); None for any other statement."""
    match = _COPY_HEADER.match(line)
    if match is not None:
        target, columns_text = match.groups()
        columns = _identifiers(columns_text, ",")
    else:
        match = _COPY_NO_COLUMNS.match(line)
        if match is None:
            return None
        target, columns = match.group(1), []
    parts = _identifiers(target, ".")
    if columns is None or parts is None or not 1 <= len(parts) <= 2:
        return None
    schema = parts[0] if len(parts) == 2 else "public"
    return schema, parts[-1], tuple(columns)


# -- tables -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Field:
    columns: tuple[str, ...]  # the names this column has had, newest first
    kind: str  # "text", "path", "array", "bool"
    required: bool = False


@dataclass(frozen=True, slots=True)
class _TableSpec:
    record: type
    fields: tuple[_Field, ...]


def _f(*columns: str, kind: str = "text", required: bool = False) -> _Field:
    return _Field(columns, kind, required)


_ASSET = _TableSpec(
    Asset,
    (
        _f("id", required=True),
        _f("ownerId"),
        _f("libraryId"),
        _f("type"),
        _f("originalPath", kind="path"),
        _f("originalFileName"),
        _f("encodedVideoPath", kind="path"),
        _f("sidecarPath", kind="path"),
        _f("fileCreatedAt"),
        _f("localDateTime"),
        _f("deletedAt"),
        _f("status"),
        _f("visibility"),
        _f("livePhotoVideoId"),
    ),
)
_ASSET_FILE = _TableSpec(
    AssetFile,
    (
        _f("assetId", required=True),
        _f("type", required=True),
        _f("path", kind="path", required=True),
    ),
)
_USER = _TableSpec(
    User,
    (
        _f("id", required=True),
        _f("email"),
        _f("name"),
        _f("profileImagePath", kind="path"),
        _f("storageLabel"),
        _f("deletedAt"),
    ),
)
_PERSON = _TableSpec(
    Person,
    (
        _f("id", required=True),
        _f("ownerId"),
        _f("name"),
        _f("thumbnailPath", kind="path"),
        _f("isHidden", kind="bool"),
    ),
)
_LIBRARY = _TableSpec(
    Library,
    (
        _f("id", required=True),
        _f("name"),
        _f("ownerId"),
        _f("importPaths", kind="array"),
        _f("exclusionPatterns", kind="array"),
        _f("deletedAt"),
    ),
)
_ALBUM = _TableSpec(
    Album,
    (_f("id", required=True), _f("albumName"), _f("ownerId"), _f("deletedAt")),
)
_ALBUM_ASSET = _TableSpec(
    AlbumAsset,
    (_f("albumId", "albumsId", required=True), _f("assetId", "assetsId", required=True)),
)
_ALBUM_USER = _TableSpec(
    AlbumUser,
    (
        _f("albumId", "albumsId", required=True),
        _f("userId", "usersId", required=True),
        _f("role"),
    ),
)
_ASSET_FACE = _TableSpec(
    AssetFace,
    (_f("assetId", required=True), _f("personId"), _f("deletedAt")),
)

#: Table name in the dump (schema public) → what its rows become. Both name generations.
TABLES: dict[str, _TableSpec] = {
    "asset": _ASSET,
    "assets": _ASSET,
    "asset_file": _ASSET_FILE,
    "asset_files": _ASSET_FILE,
    "user": _USER,
    "users": _USER,
    "person": _PERSON,
    "library": _LIBRARY,
    "libraries": _LIBRARY,
    "album": _ALBUM,
    "albums": _ALBUM,
    "album_asset": _ALBUM_ASSET,
    "albums_assets_assets": _ALBUM_ASSET,
    "album_user": _ALBUM_USER,
    "albums_shared_users_users": _ALBUM_USER,
    "asset_face": _ASSET_FACE,
    "asset_faces": _ASSET_FACE,
}
VERSION_TABLE = "version_history"
#: Columns of the asset table before v1.113 that held generated files (→ AssetFile records).
_LEGACY_ASSET_FILES = (
    ("thumbnailPath", "thumbnail"),
    ("previewPath", "preview"),
    ("resizePath", "preview"),
    ("webpPath", "thumbnail"),
)


#: Builds a named tuple from a list without the checks of its `_make` (the lists are built
#: to the right length here).
_new_tuple = tuple.__new__


class _Malformed(ValueError):
    pass


def _bool(value: str) -> object:
    return value == "t"


def _array(value: str) -> object:
    try:
        return parse_array(_text(value))
    except ValueError as error:
        raise _Malformed(str(error)) from None


def _text(value: str) -> str | None:
    if value == _NULL_TEXT:
        return None
    return _unescape_text(value) if "\\" in value else value


class _RowReader:
    """Turns the rows of one COPY block into records of one kind."""

    def __init__(
        self,
        table: str,
        spec: _TableSpec,
        columns: Sequence[str],
        paths: PathMapper,
        wanted: frozenset[type],
    ):
        self.table = table
        self.width = len(columns)
        self.yields = spec.record in wanted
        position = {name: index for index, name in enumerate(columns)}
        converters: dict[str, Callable[[str], object]] = {
            "path": paths.from_text,
            "array": _array,
            "bool": _bool,
        }
        template: list[object] = []
        texts: list[tuple[int, int]] = []
        others: list[tuple[int, int, Callable[[str], object]]] = []
        for slot, field in enumerate(spec.fields):
            index = next((position[c] for c in field.columns if c in position), None)
            if index is None:
                if field.required:
                    raise _Malformed(f"table {table} has no column {field.columns[0]}")
                template.append(_ABSENT[field.kind])
                continue
            template.append(None)
            if field.kind == "text":
                texts.append((slot, index))
            else:
                others.append((slot, index, converters[field.kind]))
        self._template = template
        self._texts = tuple(texts)
        self._others = tuple(others)
        self._record = spec.record
        self._fields: list[str] = []
        #: Columns of the asset table before v1.113 that held generated files.
        self.legacy = tuple(
            (position[column], kind)
            for column, kind in (_LEGACY_ASSET_FILES if spec is _ASSET else ())
            if column in position and AssetFile in wanted
        )
        self._paths = paths

    def read(self, line: bytes) -> DumpRecord:
        # Tabs are never part of a UTF-8 sequence: decoding the line first is the same as
        # decoding each field, and much cheaper.
        fields = line.decode("utf-8", "surrogateescape").split("\t")
        fields[-1] = fields[-1].rstrip("\r\n")
        if len(fields) != self.width:
            raise _Malformed(
                f"a row of table {self.table} has {len(fields)} fields, expected {self.width}"
            )
        values = self._template.copy()
        for slot, index in self._texts:
            value = fields[index]
            if value != _NULL_TEXT:
                values[slot] = _unescape_text(value) if "\\" in value else value
        for slot, index, convert in self._others:
            values[slot] = convert(fields[index])
        self._fields = fields
        record: DumpRecord = _new_tuple(self._record, values)
        return record

    def legacy_files(self, asset: Asset) -> Iterator[AssetFile]:
        """The generated files the last row (an asset before v1.113) names in its own columns."""
        for index, kind in self.legacy:
            path = self._paths.from_text(self._fields[index])
            if path is not None:
                yield AssetFile(asset.id, kind, path)


_ABSENT: dict[str, object] = {"text": None, "path": None, "array": (), "bool": False}


# -- the reader ---------------------------------------------------------------------------------


#: Every kind of record read_dump can build.
ALL_RECORDS: frozenset[type] = frozenset(
    (Asset, AssetFile, User, Person, Library, Album, AlbumAsset, AlbumUser, AssetFace)
)


def read_dump(
    lines: Iterable[bytes],
    media_locations: Sequence[str] = DEFAULT_MEDIA_LOCATIONS,
    want: Collection[type] = ALL_RECORDS,
) -> Iterator[DumpRecord]:
    """Stream the records of a plain-SQL pg_dump/pg_dumpall of Immich's database.

    `lines` are the decompressed dump's lines, each with its newline (iterating a binary file
    gives exactly that). Records come out in dump order as their rows are read; nothing is
    kept but the current table's column layout, so memory does not grow with the dump. Only
    records of the kinds in `want` are built (the rows of the others are counted, not parsed:
    `want=()` only checks the dump). The last record is always a DumpEnd, also when the input
    stops early (the caller stops feeding lines when the file ends or cannot be read)."""
    paths = PathMapper(media_locations)
    wanted = frozenset(want)
    reader: _RowReader | None = None
    in_copy = False
    copy_table = ""
    copy_known = False  # the table is one of TABLES: its rows are counted
    copy_first = 0  # the line number of its first row
    dump_format: str | None = None
    postgres_version: str | None = None
    newest_version: tuple[str, str] | None = None  # (createdAt, version)
    version_columns: tuple[int, int, int] | None = None  # (createdAt, version, width)
    tail = ""  # the last line that is not blank, "--" or \unrestrict
    problem: str | None = None
    rows: dict[str, int] = {}
    count = 0
    line = b""
    source = iter(lines)
    for line in source:
        count += 1
        if not line.endswith(b"\n"):
            break
        text = line.decode("utf-8", "surrogateescape").rstrip("\r\n")
        if text.startswith("COPY "):
            header = parse_copy_header(text)
            if header is None:
                problem = f"line {count} is a COPY statement this reader does not understand"
                break
            tail = text
            schema, copy_table, columns = header
            in_copy = True
            version_columns = None
            spec = TABLES.get(copy_table) if schema == "public" else None
            copy_known = spec is not None
            copy_first = count + 1
            reader = None
            if spec is not None:
                try:
                    reader = _RowReader(copy_table, spec, columns, paths, wanted)
                except _Malformed as error:
                    problem = f"{error} (line {count}): not a dump of a known Immich version"
                    break
                if not reader.yields and not reader.legacy:
                    reader = None
            elif (
                schema == "public"
                and copy_table == VERSION_TABLE
                and "createdAt" in columns
                and "version" in columns
            ):
                version_columns = (
                    columns.index("createdAt"),
                    columns.index("version"),
                    len(columns),
                )
            # The block's rows, in loops of their own: most of a dump's lines are here.
            if reader is None and version_columns is None:
                for line in source:
                    count += 1
                    if line.startswith(b"\\.") and line.rstrip(b"\r\n") == b"\\.":
                        in_copy = False
                        break
            elif reader is not None and not reader.legacy:
                read = reader.read
                for line in source:
                    count += 1
                    if line.startswith(b"\\.") and line.rstrip(b"\r\n") == b"\\.":
                        in_copy = False
                        break
                    if not line.endswith(b"\n"):
                        break  # a row cut off by the end of the input
                    try:
                        record = read(line)
                    except _Malformed as error:
                        problem = f"{error} (line {count}): the dump is damaged"
                        break
                    yield record
            else:
                for line in source:
                    count += 1
                    if line.startswith(b"\\.") and line.rstrip(b"\r\n") == b"\\.":
                        in_copy = False
                        break
                    if not line.endswith(b"\n"):
                        break
                    if version_columns is not None:
                        newest_version = _newer_version(line, version_columns, newest_version)
                        continue
                    assert reader is not None
                    try:
                        record = reader.read(line)
                    except _Malformed as error:
                        problem = f"{error} (line {count}): the dump is damaged"
                        break
                    if reader.yields:
                        yield record
                    if isinstance(record, Asset):
                        yield from reader.legacy_files(record)
            if in_copy:
                break  # the input ended, or a row was cut or damaged, inside the block
            if copy_known:
                rows[copy_table] = rows.get(copy_table, 0) + count - copy_first
            continue
        if dump_format is None and text.startswith("-- PostgreSQL database"):
            if text == PG_DUMPALL_HEADER:
                dump_format = "pg_dumpall"
            elif text == PG_DUMP_HEADER:
                dump_format = "pg_dump"
        elif postgres_version is None and text.startswith("-- Dumped from database version "):
            postgres_version = text.removeprefix("-- Dumped from database version ").strip()
        if text and text != "--" and not text.startswith("\\unrestrict "):
            tail = text
    complete = False
    truncated = False
    if problem is None:
        if count == 0:
            problem = "the dump is empty"
            truncated = True
        elif dump_format is None:
            problem = (
                "this is not a pg_dump plain-SQL dump (no '-- PostgreSQL database dump' header)"
            )
        elif in_copy:
            problem = (
                f"the dump is truncated: it ends inside the data of table {copy_table} "
                f"(line {count}), before pg_dump's completion line"
            )
            truncated = True
        elif not line.endswith(b"\n"):
            problem = f"the dump is truncated: it ends in the middle of line {count}"
            truncated = True
        else:
            expected = PG_DUMPALL_COMPLETE if dump_format == "pg_dumpall" else PG_DUMP_COMPLETE
            if tail == expected:
                complete = True
            else:
                problem = (
                    f"the dump is truncated: it lacks {dump_format}'s completion line "
                    f"'{expected}' at its end (after line {count})"
                )
                truncated = True
    if in_copy and copy_known:
        whole = count if line.endswith(b"\n") else count - 1
        rows[copy_table] = rows.get(copy_table, 0) + max(0, whole - copy_first + 1)
    yield DumpEnd(
        complete=complete,
        problem=problem,
        truncated=truncated,
        dump_format=dump_format,
        postgres_version=postgres_version,
        immich_version=newest_version[1] if newest_version else None,
        rows=tuple(rows.items()),
        lines=count,
    )


def _newer_version(
    line: bytes, columns: tuple[int, int, int], newest: tuple[str, str] | None
) -> tuple[str, str] | None:
    created_index, version_index, width = columns
    fields = line.rstrip(b"\r\n").split(b"\t")
    if len(fields) != width:
        return newest
    created, version = copy_field(fields[created_index]), copy_field(fields[version_index])
    if created is None or version is None:
        return newest
    candidate = (created, version.removeprefix("v"))
    # "YYYY-MM-DD hh:mm:ss…" in one time zone sorts as text.
    return candidate if newest is None or candidate > newest else newest


# -- dump file names ----------------------------------------------------------------------------

_NAME_NEW = re.compile(
    r"^(?P<prefix>.*?)immich-db-backup-(?P<stamp>\d{8}T\d{6})-v(?P<version>.+?)"
    r"-pg(?P<pg>[^-]+?)(?P<suffix>-[^/]*)?\.sql(?:\.gz)?$"
)
_NAME_OLD = re.compile(r"^(?P<prefix>.*?)immich-db-backup-(?P<millis>\d{10,})\.sql(?:\.gz)?$")
_SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)")


@dataclass(frozen=True, slots=True)
class DumpName:
    """What an Immich dump's file name says. `created` is naive (the server's local time) for
    the v1.137+ names and UTC-aware for the older epoch-millisecond ones."""

    created: datetime | None
    immich_version: Version | None
    immich_version_text: str | None  # as written, e.g. "2.0.0-rc.1"
    postgres_version: str | None
    prefix: str  # "", "restore-point-", "uploaded-"


def parse_dump_name(name: str) -> DumpName | None:
    """`immich-db-backup-20250729T114018-v1.136.0-pg14.17.sql.gz` → its parts; the older
    `immich-db-backup-1732012345678.sql.gz` has no versions. None for another name."""
    match = _NAME_NEW.match(name)
    if match is not None:
        try:
            created: datetime | None = datetime.strptime(match["stamp"], "%Y%m%dT%H%M%S")
        except ValueError:
            created = None
        text = match["version"]
        semver = _SEMVER.match(text)
        version = (int(semver[1]), int(semver[2]), int(semver[3])) if semver is not None else None
        return DumpName(created, version, text, match["pg"], match["prefix"])
    match = _NAME_OLD.match(name)
    if match is not None:
        try:
            created = datetime.fromtimestamp(int(match["millis"]) / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            created = None
        return DumpName(created, None, None, None, match["prefix"])
    return None
