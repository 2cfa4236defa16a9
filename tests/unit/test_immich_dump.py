# ruff: noqa: E501  (the dumps below keep pg_dump's long COPY lines as they are)
"""The pure reader of Immich's database dump: COPY text decoding, both table-name generations,
both container prefixes, truncation, and streaming without keeping rows."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TypeVar

import pytest

from photos_sync.core.immich_dump import (
    Album,
    AlbumAsset,
    AlbumUser,
    Asset,
    AssetFace,
    AssetFile,
    DumpEnd,
    DumpRecord,
    Library,
    PathMapper,
    Person,
    StoredPath,
    User,
    copy_field,
    copy_line,
    parse_array,
    parse_copy_header,
    parse_dump_name,
    read_dump,
)

HEADER = """--
-- PostgreSQL database dump
--

\\restrict Q2xpPbXy

-- Dumped from database version 16.10 (Debian 16.10-1.pgdg120+1)
-- Dumped by pg_dump version 16.10 (Debian 16.10-1.pgdg120+1)

SET statement_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);

CREATE TABLE public.asset (
    id uuid NOT NULL,
    "originalPath" character varying NOT NULL
);

"""
R = TypeVar("R")

FOOTER = """
--
-- PostgreSQL database dump complete
--

\\unrestrict Q2xpPbXy

"""


def lines(text: str) -> list[bytes]:
    return text.encode().splitlines(keepends=True)


def read(text: str) -> list[DumpRecord]:
    return list(read_dump(lines(text)))


def end_of(records: list[DumpRecord]) -> DumpEnd:
    last = records[-1]
    assert isinstance(last, DumpEnd)
    assert all(not isinstance(record, DumpEnd) for record in records[:-1])
    return last


def of_type(records: list[DumpRecord], kind: type[R]) -> list[R]:
    return [record for record in records if isinstance(record, kind)]


# -- the COPY text format -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (b"\\N", None),
        (b"", ""),
        (b"plain", "plain"),
        (b"a\\tb", "a\tb"),
        (b"two\\nlines\\r", "two\nlines\r"),
        (b"back\\\\slash", "back\\slash"),
        (b"\\b\\f\\v", "\b\f\v"),
        (b"\\101\\x42", "AB"),  # octal and hexadecimal bytes
        (b"caf\\303\\251", "café"),  # octal bytes of one UTF-8 character
        (b"\\.dot\\q", ".dotq"),  # any other escaped character stands for itself
        (b"\\\\N", "\\N"),  # an escaped backslash then N: the text \N, not NULL
        ("Été".encode(), "Été"),
    ],
)
def test_copy_fields_are_decoded(raw: bytes, value: str | None) -> None:
    assert copy_field(raw) == value


def test_bytes_that_are_not_utf8_survive_as_surrogates() -> None:
    value = copy_field(b"IMG_\\351t\\351.jpg")
    assert value is not None
    assert value.encode("utf-8", "surrogateescape") == b"IMG_\xe9t\xe9.jpg"


def test_copy_line_is_read_back() -> None:
    values = ["tab\there", None, "new\nline", "back\\slash", "", "cr\r", "\\N"]
    raw = copy_line(values)
    assert raw.count("\n") == 1 and raw.endswith("\n")
    assert [copy_field(part) for part in raw[:-1].encode().split(b"\t")] == values


@pytest.mark.parametrize(
    ("text", "items"),
    [
        ("{}", ()),
        ("{/mnt/photos}", ("/mnt/photos",)),
        ('{/a,"/b c","x\\"y","back\\\\slash",NULL,"NULL"}', ("/a", "/b c", 'x"y', "back\\slash", "NULL")),
        ('{"with,comma","{braces}"}', ("with,comma", "{braces}")),
        ("[1:2]={/x,/y}", ("/x", "/y")),
        (None, ()),
    ],
)  # fmt: skip
def test_array_literals_are_parsed(text: str | None, items: tuple[str, ...]) -> None:
    assert parse_array(text) == items


@pytest.mark.parametrize("text", ["/not/an/array", '{"unterminated}', "{a"])
def test_a_malformed_array_literal_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_array(text)


def test_copy_headers_are_parsed() -> None:
    assert parse_copy_header(
        'COPY public."user" (id, "profileImagePath", "odd""name", email) FROM stdin;'
    ) == ("public", "user", ("id", "profileImagePath", 'odd"name', "email"))
    assert parse_copy_header("COPY public.assets (id) FROM stdin;") == (
        "public",
        "assets",
        ("id",),
    )
    assert parse_copy_header("COPY other.Things (ID) FROM stdin;") == ("other", "things", ("id",))
    assert parse_copy_header("COPY public.empty  FROM stdin;") == ("public", "empty", ())
    assert parse_copy_header("COPY public.asset (id) TO stdout;") is None
    assert parse_copy_header("SELECT 1;") is None


# -- paths --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stored", "relative"),
    [
        ("/usr/src/app/upload/library/admin/2019/IMG_1.jpg", "library/admin/2019/IMG_1.jpg"),
        ("/data/upload/u1/ab/cd/abcd.heic", "upload/u1/ab/cd/abcd.heic"),
        ("upload/thumbs/u1/ab/cd/x-preview.jpeg", "thumbs/u1/ab/cd/x-preview.jpeg"),
        ("./upload/profile/u1/p.jpg", "profile/u1/p.jpg"),
        ("/data//library/./a.jpg", "library/a.jpg"),
        ("/mnt/photos/2020/DSC_1.JPG", None),  # an external library
        ("/database/library/a.jpg", None),  # "/data" is a folder prefix, not a text prefix
        ("/data/../etc/passwd", None),
        ("/data/", None),
        ("upload", None),
    ],
)
def test_container_paths_map_to_upload_location(stored: str, relative: str | None) -> None:
    assert PathMapper().relative(stored) == relative


def test_a_custom_media_location_is_mapped_and_wins_over_a_shorter_one() -> None:
    mapper = PathMapper(("/data", "/data/immich"))
    assert mapper.relative("/data/immich/library/a.jpg") == "library/a.jpg"
    assert mapper.relative("/data/library/a.jpg") == "library/a.jpg"
    assert PathMapper(("/srv/photos",)).relative("/usr/src/app/upload/library/a.jpg") is None


def test_stored_paths_know_their_folder_and_whether_they_are_outside() -> None:
    mapper = PathMapper()
    inside = mapper("/data/thumbs/u/ab/cd/p.jpeg")
    assert inside == StoredPath("/data/thumbs/u/ab/cd/p.jpeg", "thumbs/u/ab/cd/p.jpeg")
    assert inside.folder == "thumbs" and not inside.outside
    outside = mapper("/mnt/ext/a.jpg")
    assert outside is not None and outside.outside and outside.folder is None
    elsewhere = mapper("/data/external/a.jpg")  # under the mount, but no Immich folder
    assert elsewhere is not None and elsewhere.relative == "external/a.jpg"
    assert elsewhere.folder is None
    assert mapper(None) is None and mapper("") is None


# -- whole dumps: the current generation --------------------------------------------------------

CURRENT = (
    HEADER
    + """COPY public.album (id, "ownerId", "albumName", "createdAt", "deletedAt", "order") FROM stdin;
al1	u1	Summer\\tin "Provence"	2025-01-01 00:00:00+00	\\N	desc
al2	u2	Gone	2025-01-01 00:00:00+00	2025-02-01 00:00:00+00	desc
\\.

COPY public.album_asset ("albumId", "assetId", "createdAt") FROM stdin;
al1	a1	2025-01-01 00:00:00+00
al1	a3	2025-01-01 00:00:00+00
\\.

COPY public.album_user ("albumId", "userId", role) FROM stdin;
al1	u2	editor
\\.

COPY public.asset (id, "ownerId", "deviceId", type, "originalPath", "fileCreatedAt", "encodedVideoPath", checksum, "originalFileName", "libraryId", "deletedAt", "localDateTime", status, visibility) FROM stdin;
a1	u1	phone	IMAGE	/data/library/admin/2019/06/IMG\\\\01 été.jpg	2019-06-12 10:11:12+00		\\\\x0a1b	IMG\\\\01 été.jpg	\\N	\\N	2019-06-12 12:11:12+00	active	timeline
a2	u1	phone	VIDEO	/data/upload/u1/ab/cd/abcd.mp4	2021-01-02 03:04:05+00	/data/encoded-video/u1/ab/cd/a2.mp4	\\\\x0a1c	clip.mp4	\\N	2026-11-01 10:00:00+00	2021-01-02 04:04:05+00	trashed	archive
a3	u1	library-import	IMAGE	/mnt/photos/2020/DSC_0001.JPG	2020-05-05 05:05:05+00		\\\\x0a1d	DSC_0001.JPG	lib1	\\N	2020-05-05 05:05:05+00	active	timeline
\\.

COPY public.asset_exif ("assetId", description) FROM stdin;
a1	COPY public.asset (id) FROM stdin;\\n\\\\.\\nnot a row
\\.

COPY public.asset_face (id, "assetId", "personId", "deletedAt") FROM stdin;
f1	a1	p1	\\N
f2	a1	\\N	\\N
\\.

COPY public.asset_file (id, "assetId", "createdAt", type, path) FROM stdin;
af1	a1	2025-01-01 00:00:00+00	thumbnail	/data/thumbs/u1/a1/a1-thumbnail.webp
af2	a1	2025-01-01 00:00:00+00	preview	/data/thumbs/u1/a1/a1-preview.jpeg
af3	a1	2025-01-01 00:00:00+00	sidecar	/data/library/admin/2019/06/IMG\\\\01 été.jpg.xmp
\\.

COPY public.library (id, name, "ownerId", "importPaths", "exclusionPatterns", "deletedAt") FROM stdin;
lib1	Family	u1	{/mnt/photos,"/mnt/with space"}	{**/@eaDir/**}	\\N
\\.

COPY public.person (id, "ownerId", name, "thumbnailPath", "isHidden") FROM stdin;
p1	u1	Alice	/data/thumbs/u1/p1/p1.jpeg	f
p2	u1		/data/thumbs/u1/p2/p2.jpeg	t
\\.

COPY public.smart_search ("assetId", embedding) FROM stdin;
a1	[0.0123,-0.0456,0.0789]
\\.

COPY public."user" (id, email, name, "profileImagePath", "storageLabel", "deletedAt") FROM stdin;
u1	admin@example.com	Admin	/data/profile/u1/me.jpg	admin	\\N
u2	bob@example.com	Bob		\\N	\\N
\\.

COPY public.version_history (id, "createdAt", version) FROM stdin;
v1	2025-03-01 12:00:00+00	1.129.0
v3	2025-12-01 12:00:00+00	v2.5.6
v2	2025-08-01 12:00:00+00	1.137.3
\\.
"""
    + FOOTER
)


def test_the_current_generation_is_read() -> None:
    records = read(CURRENT)
    end = end_of(records)
    assert end.complete and end.problem is None and not end.truncated
    assert end.dump_format == "pg_dump"
    assert end.postgres_version == "16.10 (Debian 16.10-1.pgdg120+1)"
    assert end.immich_version == "2.5.6"  # the newest row, not the last one
    assert end.has_immich_tables
    assert dict(end.rows) == {
        "album": 2,
        "album_asset": 2,
        "album_user": 1,
        "asset": 3,
        "asset_face": 2,
        "asset_file": 3,
        "library": 1,
        "person": 2,
        "user": 2,
    }
    a1, a2, a3 = of_type(records, Asset)
    assert a1.original == StoredPath(
        "/data/library/admin/2019/06/IMG\\01 été.jpg", "library/admin/2019/06/IMG\\01 été.jpg"
    )
    assert a1.original_file_name == "IMG\\01 été.jpg"
    assert (a1.owner_id, a1.type, a1.library_id) == ("u1", "IMAGE", None)
    assert a1.encoded_video is None and a1.sidecar is None  # "" is "no file"
    assert a1.file_created_at == "2019-06-12 10:11:12+00"
    assert a1.local_date_time == "2019-06-12 12:11:12+00"
    assert (a1.deleted_at, a1.status, a1.visibility) == (None, "active", "timeline")
    assert a2.encoded_video == StoredPath(
        "/data/encoded-video/u1/ab/cd/a2.mp4", "encoded-video/u1/ab/cd/a2.mp4"
    )
    assert (a2.deleted_at, a2.status, a2.visibility) == (
        "2026-11-01 10:00:00+00",
        "trashed",
        "archive",
    )
    assert a3.original is not None and a3.original.outside and a3.library_id == "lib1"
    assert [(f.asset_id, f.type, f.path.relative) for f in of_type(records, AssetFile)] == [
        ("a1", "thumbnail", "thumbs/u1/a1/a1-thumbnail.webp"),
        ("a1", "preview", "thumbs/u1/a1/a1-preview.jpeg"),
        ("a1", "sidecar", "library/admin/2019/06/IMG\\01 été.jpg.xmp"),
    ]
    assert of_type(records, Album) == [
        Album("al1", 'Summer\tin "Provence"', "u1", None),
        Album("al2", "Gone", "u2", "2025-02-01 00:00:00+00"),
    ]
    assert of_type(records, AlbumAsset) == [AlbumAsset("al1", "a1"), AlbumAsset("al1", "a3")]
    assert of_type(records, AlbumUser) == [AlbumUser("al1", "u2", "editor")]
    assert of_type(records, AssetFace) == [AssetFace("a1", "p1", None), AssetFace("a1", None, None)]
    assert of_type(records, Library) == [
        Library("lib1", "Family", "u1", ("/mnt/photos", "/mnt/with space"), ("**/@eaDir/**",), None)
    ]
    alice, unnamed = of_type(records, Person)
    assert (alice.name, alice.hidden, alice.thumbnail) == (
        "Alice",
        False,
        StoredPath("/data/thumbs/u1/p1/p1.jpeg", "thumbs/u1/p1/p1.jpeg"),
    )
    assert (unnamed.name, unnamed.hidden) == ("", True)
    admin, bob = of_type(records, User)
    assert admin == User(
        "u1",
        "admin@example.com",
        "Admin",
        StoredPath("/data/profile/u1/me.jpg", "profile/u1/me.jpg"),
        "admin",
        None,
    )
    assert bob.profile_image is None and bob.storage_label is None


def test_records_come_in_dump_order() -> None:
    kinds = [type(record).__name__ for record in read(CURRENT)]
    assert kinds.index("Album") < kinds.index("Asset") < kinds.index("User") < len(kinds) - 1


def test_only_the_wanted_records_are_built_and_every_table_is_still_counted() -> None:
    everything = end_of(read(CURRENT))
    files = list(read_dump(lines(CURRENT), want={AssetFile}))
    assert {type(record) for record in files[:-1]} == {AssetFile}
    assert len(files) == 4
    assert end_of(files) == everything
    verdict = list(read_dump(lines(CURRENT), want=()))
    assert verdict == [everything]


def test_a_truncated_dump_is_truncated_whatever_is_wanted() -> None:
    cut = CURRENT[: CURRENT.index("a3\tu1\tlibrary-import") + 10]
    (end,) = read_dump(lines(cut), want=())
    assert isinstance(end, DumpEnd) and end.truncated and dict(end.rows)["asset"] == 2


# -- whole dumps: the older generation (pg_dumpall, plural names) --------------------------------

OLD = """--
-- PostgreSQL database cluster dump
--

SET default_transaction_read_only = off;

--
-- Roles
--

CREATE ROLE postgres;

--
-- Database "template1" dump
--

--
-- PostgreSQL database dump
--

-- Dumped from database version 14.15

\\connect template1

--
-- PostgreSQL database dump complete
--

--
-- Database "immich" dump
--

--
-- PostgreSQL database dump
--

-- Dumped from database version 14.15

CREATE DATABASE immich WITH TEMPLATE = template0 ENCODING = 'UTF8';
\\connect immich

CREATE FUNCTION public.updated_at() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
    BEGIN
        -- PostgreSQL database dump complete
        new."updatedAt" = now();
        RETURN new;
    END;
$$;

COPY public.albums (id, "ownerId", "albumName", "deletedAt") FROM stdin;
al1	u1	Old album	\\N
\\.

COPY public.albums_assets_assets ("albumsId", "assetsId", "createdAt") FROM stdin;
al1	a1	2024-11-01 00:00:00+00
\\.

COPY public.albums_shared_users_users ("albumsId", "usersId", role) FROM stdin;
al1	u2	viewer
\\.

COPY public.asset_faces (id, "assetId", "personId") FROM stdin;
f1	a1	p1
\\.

COPY public.asset_files (id, "assetId", type, path) FROM stdin;
af1	a1	preview	/usr/src/app/upload/thumbs/u1/a1/a1-preview.jpeg
\\.

COPY public.assets (id, "ownerId", type, "originalPath", "sidecarPath", "encodedVideoPath", "libraryId", "isVisible", "isArchived", "fileCreatedAt", "localDateTime", "deletedAt") FROM stdin;
a1	u1	IMAGE	/usr/src/app/upload/upload/u1/a1/a1.jpg	/usr/src/app/upload/upload/u1/a1/a1.jpg.xmp	\\N	\\N	t	f	2019-01-01 00:00:00+00	2019-01-01 01:00:00+00	\\N
a2	u1	IMAGE	upload/library/admin/2018/b.jpg	\\N		\\N	t	f	2018-01-01 00:00:00+00	2018-01-01 01:00:00+00	\\N
\\.

COPY public.libraries (id, name, "ownerId", "importPaths", "exclusionPatterns") FROM stdin;
lib1	Old	u1	{/external}	{}
\\.

COPY public.person (id, "ownerId", name, "thumbnailPath", "isHidden") FROM stdin;
p1	u1	Carol	/usr/src/app/upload/thumbs/u1/p1/p1.jpeg	f
\\.

COPY public.users (id, email, name, "profileImagePath", "storageLabel", "deletedAt") FROM stdin;
u1	admin@example.com	Admin	/usr/src/app/upload/profile/u1/me.jpg	admin	\\N
u2	x@example.com	X		\\N	\\N
\\.

COPY public.version_history (id, "createdAt", version) FROM stdin;
v1	2024-11-20 12:00:00+00	1.120.0
v2	2024-12-20 12:00:00+00	1.123.0
\\.

--
-- PostgreSQL database dump complete
--

--
-- Database "postgres" dump
--

--
-- PostgreSQL database dump
--

\\connect postgres

--
-- PostgreSQL database dump complete
--

--
-- PostgreSQL database cluster dump complete
--

"""


def test_the_older_generation_is_read() -> None:
    records = read(OLD)
    end = end_of(records)
    assert end.complete and end.dump_format == "pg_dumpall" and end.immich_version == "1.123.0"
    assert end.postgres_version == "14.15"  # the first database section's
    assert dict(end.rows) == {
        "albums": 1,
        "albums_assets_assets": 1,
        "albums_shared_users_users": 1,
        "asset_faces": 1,
        "asset_files": 1,
        "assets": 2,
        "libraries": 1,
        "person": 1,
        "users": 2,
    }
    a1, a2 = of_type(records, Asset)
    assert a1.original is not None and a1.original.relative == "upload/u1/a1/a1.jpg"
    assert a1.sidecar == StoredPath(
        "/usr/src/app/upload/upload/u1/a1/a1.jpg.xmp", "upload/u1/a1/a1.jpg.xmp"
    )
    assert a1.status is None and a1.visibility is None  # columns this version lacks
    assert a2.original == StoredPath("upload/library/admin/2018/b.jpg", "library/admin/2018/b.jpg")
    assert of_type(records, AlbumAsset) == [AlbumAsset("al1", "a1")]
    assert of_type(records, AlbumUser) == [AlbumUser("al1", "u2", "viewer")]
    assert of_type(records, AssetFace) == [AssetFace("a1", "p1", None)]
    assert [f.path.relative for f in of_type(records, AssetFile)] == [
        "thumbs/u1/a1/a1-preview.jpeg"
    ]
    assert of_type(records, Album) == [Album("al1", "Old album", "u1", None)]
    assert of_type(records, Library)[0].import_paths == ("/external",)
    (person,) = of_type(records, Person)
    assert person.thumbnail is not None and person.thumbnail.relative == "thumbs/u1/p1/p1.jpeg"
    assert [u.profile_image.relative if u.profile_image else None for u in of_type(records, User)] == [
        "profile/u1/me.jpg",
        None,
    ]  # fmt: skip


def test_a_pg_dumpall_dump_needs_the_cluster_completion_line() -> None:
    cut = OLD[: OLD.index('--\n-- Database "postgres" dump')]
    end = end_of(read(cut))
    assert not end.complete and end.truncated
    assert end.problem is not None
    assert "-- PostgreSQL database cluster dump complete" in end.problem


def test_thumbnail_columns_of_assets_before_v1_113_become_asset_files() -> None:
    text = (
        HEADER
        + 'COPY public.assets (id, "ownerId", "originalPath", "resizePath", "webpPath", '
        + '"thumbnailPath", "previewPath") FROM stdin;\n'
        + "a1\tu1\tupload/upload/u1/a1.jpg\tupload/thumbs/u1/a1.jpeg\t\\N\t\\N\t\\N\n"
        + "a2\tu1\tupload/upload/u1/a2.jpg\t\\N\tupload/thumbs/u1/a2.webp\t\\N\t\\N\n"
        + "\\.\n"
        + FOOTER
    )
    records = read(text)
    assert end_of(records).complete
    assert [(r.asset_id, r.type, r.path.relative) for r in of_type(records, AssetFile)] == [
        ("a1", "preview", "thumbs/u1/a1.jpeg"),
        ("a2", "thumbnail", "thumbs/u1/a2.webp"),
    ]
    assert [type(r).__name__ for r in records[:-1]] == ["Asset", "AssetFile", "Asset", "AssetFile"]
    only_files = list(read_dump(lines(text), want={AssetFile}))
    assert [type(r).__name__ for r in only_files[:-1]] == ["AssetFile", "AssetFile"]


def test_albums_without_an_owner_column_have_their_owner_in_album_user() -> None:
    text = (
        HEADER
        + 'COPY public.album (id, "albumName", "deletedAt") FROM stdin;\nal1\tTrip\t\\N\n\\.\n'
        + 'COPY public.album_user ("albumId", "userId", role) FROM stdin;\n'
        + "al1\tu1\towner\nal1\tu2\tviewer\n\\.\n"
        + FOOTER
    )
    records = read(text)
    assert of_type(records, Album) == [Album("al1", "Trip", None, None)]
    assert of_type(records, AlbumUser) == [
        AlbumUser("al1", "u1", "owner"),
        AlbumUser("al1", "u2", "viewer"),
    ]


def test_tables_of_other_schemas_are_skipped() -> None:
    text = HEADER + 'COPY other.asset (id, "originalPath") FROM stdin;\nx\t/data/a\n\\.\n' + FOOTER
    records = read(text)
    assert len(records) == 1 and end_of(records).complete
    assert not end_of(records).has_immich_tables


# -- truncated, damaged, not a dump -------------------------------------------------------------


def test_a_dump_cut_inside_a_copy_block_is_truncated_after_yielding_the_whole_rows() -> None:
    cut = CURRENT[: CURRENT.index("a3\tu1\tlibrary-import") + 10]  # in the middle of a row
    records = read(cut)
    end = end_of(records)
    assert not end.complete and end.truncated
    assert end.problem is not None
    assert "truncated" in end.problem and "inside the data of table asset" in end.problem
    assert [asset.id for asset in of_type(records, Asset)] == ["a1", "a2"]
    assert dict(end.rows)["asset"] == 2


def test_a_dump_cut_between_rows_is_truncated() -> None:
    cut = CURRENT[: CURRENT.index("a3\tu1\tlibrary-import")]
    end = end_of(read(cut))
    assert end.truncated and end.problem is not None and "table asset" in end.problem


def test_a_dump_cut_between_statements_lacks_the_completion_line() -> None:
    cut = CURRENT[: CURRENT.index("COPY public.version_history")]
    end = end_of(read(cut))
    assert not end.complete and end.truncated
    assert end.problem is not None
    assert "-- PostgreSQL database dump complete" in end.problem


def test_a_dump_cut_inside_its_completion_line_is_truncated() -> None:
    cut = CURRENT[: CURRENT.index("dump complete") + 4]
    end = end_of(read(cut))
    assert end.truncated and end.problem is not None and "middle of line" in end.problem


def test_the_completion_line_inside_a_function_body_does_not_count() -> None:
    cut = OLD[: OLD.index("COPY public.albums ")]
    end = end_of(read(cut))
    assert not end.complete and end.truncated


def test_an_empty_input_is_truncated() -> None:
    end = end_of(read(""))
    assert not end.complete and end.truncated and end.problem == "the dump is empty"


def test_text_that_is_not_a_dump_is_said_so() -> None:
    end = end_of(read("hello\nworld\n"))
    assert not end.complete and not end.truncated and end.dump_format is None
    assert end.problem is not None and "not a pg_dump plain-SQL dump" in end.problem


def test_a_row_with_the_wrong_number_of_fields_makes_the_dump_damaged() -> None:
    text = HEADER + 'COPY public.asset (id, "originalPath") FROM stdin;\na1\n\\.\n' + FOOTER
    end = end_of(read(text))
    assert not end.complete and not end.truncated
    assert end.problem is not None
    assert "has 1 fields, expected 2" in end.problem and "damaged" in end.problem


def test_an_asset_table_without_an_id_is_refused() -> None:
    text = HEADER + 'COPY public.asset ("originalPath") FROM stdin;\n/data/a\n\\.\n' + FOOTER
    end = end_of(read(text))
    assert not end.complete and end.problem is not None and "no column id" in end.problem


def test_a_bad_array_literal_makes_the_dump_damaged() -> None:
    text = HEADER + 'COPY public.library (id, "importPaths") FROM stdin;\nl1\t/x\n\\.\n' + FOOTER
    end = end_of(read(text))
    assert not end.complete and end.problem is not None and "not an array literal" in end.problem


# -- streaming ----------------------------------------------------------------------------------


def _synthetic(assets: int, skipped: int, consumed: list[int]) -> Iterator[bytes]:
    """A large dump made on the fly; `consumed[0]` counts the lines handed out."""

    def emit(line: str) -> bytes:
        consumed[0] += 1
        return line.encode()

    for line in lines(HEADER):
        yield emit(line.decode())
    yield emit('COPY public.asset_exif ("assetId", description) FROM stdin;\n')
    for n in range(skipped):
        yield emit(f"{n:08d}-0000-4000-8000-000000000000\tA caption with\\ttabs, number {n}\n")
    yield emit("\\.\n")
    yield emit('COPY public.asset (id, "ownerId", "originalPath") FROM stdin;\n')
    for n in range(assets):
        yield emit(f"{n:08d}-0000-4000-8000-000000000000\tu1\t/data/upload/u1/{n:08d}.jpg\n")
    yield emit("\\.\n")
    for line in lines(FOOTER):
        yield emit(line.decode())


def test_a_large_dump_streams_without_keeping_rows() -> None:
    consumed = [0]
    records = read_dump(_synthetic(assets=50_000, skipped=50_000, consumed=consumed))
    first = next(records)
    # The first asset comes out as soon as its row is read, not after the whole input.
    assert isinstance(first, Asset) and first.id.startswith("00000000")
    assert consumed[0] < 50_000 + 30
    tracemalloc.start()
    try:
        count = 1
        end: DumpEnd | None = None
        for record in records:
            if isinstance(record, DumpEnd):
                end = record
            else:
                count += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert end is not None and end.complete
    assert count == 50_000
    assert dict(end.rows) == {"asset": 50_000}
    # 50,000 kept asset records would take over 20 MiB; reading them one by one, a few KiB.
    assert peak < 1024 * 1024, f"peak {peak} bytes"


# -- file names ---------------------------------------------------------------------------------


def test_the_version_is_read_from_a_dump_name() -> None:
    name = parse_dump_name("immich-db-backup-20250729T114018-v1.136.0-pg14.17.sql.gz")
    assert name is not None
    assert name.immich_version == (1, 136, 0) and name.immich_version_text == "1.136.0"
    assert name.postgres_version == "14.17" and name.prefix == ""
    assert name.created == datetime(2025, 7, 29, 11, 40, 18)


def test_prefixed_and_prerelease_dump_names_are_read() -> None:
    name = parse_dump_name(
        "restore-point-immich-db-backup-20260101T000000-v2.0.0-rc.1-pg16.4.sql.gz"
    )
    assert name is not None
    assert name.prefix == "restore-point-"
    assert name.immich_version == (2, 0, 0) and name.immich_version_text == "2.0.0-rc.1"
    assert name.postgres_version == "16.4"
    uploaded = parse_dump_name("uploaded-immich-db-backup-20260101T000000-v2.5.6-pg14.19.sql")
    assert uploaded is not None and uploaded.prefix == "uploaded-"


def test_older_dump_names_have_a_time_but_no_version() -> None:
    name = parse_dump_name("immich-db-backup-1732012345678.sql.gz")
    assert name is not None
    assert name.immich_version is None and name.postgres_version is None
    assert name.created == datetime(2024, 11, 19, 10, 32, 25, 678000, tzinfo=UTC)


@pytest.mark.parametrize(
    "name", ["dump.sql.gz", "immich-db-backup-123.sql.gz", "immich-db-backup-x.sql.gz.tmp"]
)
def test_other_names_are_not_dump_names(name: str) -> None:
    assert parse_dump_name(name) is None
