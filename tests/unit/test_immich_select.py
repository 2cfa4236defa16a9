"""Restore by meaning, the pure part: which files of Immich's database dump `--user`, `--album`,
`--person` and `--taken` choose, whatever order the dump's tables come in."""

from __future__ import annotations

import re
import tracemalloc

import pytest

from photos_sync.core.immich_dump import (
    Album,
    AlbumAsset,
    Asset,
    AssetFace,
    AssetFile,
    DumpEnd,
    DumpRecord,
    Person,
    StoredPath,
    User,
    read_dump,
)
from photos_sync.core.immich_select import (
    ASSETS,
    MEMBERS,
    NAMES,
    Criteria,
    Selection,
    Taken,
    UnknownName,
    parse_criteria,
    parse_taken,
    select,
    taken_day,
)
from tests.immich_tree import (
    DUMP_V1_123,
    DUMP_V2_5,
    DbAlbum,
    DbAsset,
    DbPerson,
    DbUser,
    DumpFlavour,
    ImmichDb,
    db_tables,
    dump_lines,
)

ANNA, BEN = "u-anna", "u-ben"


def inside(relative: str) -> StoredPath:
    return StoredPath(f"/data/{relative}", relative)


def asset(
    asset_id: str,
    owner: str = ANNA,
    *,
    taken: str | None = "2019-06-12 10:00:00+00",
    created: str | None = "2019-06-12 10:00:00+00",
    original: StoredPath | None = None,
    kind: str = "IMAGE",
    deleted_at: str | None = None,
    status: str | None = "active",
    visibility: str | None = "timeline",
    sidecar: str | None = None,
    video: str | None = None,
) -> Asset:
    return Asset(
        asset_id,
        owner,
        None,
        kind,
        original or inside(f"upload/{owner}/{asset_id}.jpg"),
        f"{asset_id}.jpg",
        None,
        inside(sidecar) if sidecar else None,
        created,
        taken,
        deleted_at,
        status,
        visibility,
        video,
    )


USERS = [
    User(ANNA, "anna@example.com", "Anna", None, None, None),
    User(BEN, "Ben@Example.com", "Ben", None, None, None),
]


def chosen(criteria: Criteria, records: list[DumpRecord]) -> tuple[str, ...]:
    return select(criteria, records).paths


# -- --taken -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "taken"),
    [("2019", Taken(2019)), ("2019-06", Taken(2019, 6)), (" 2019-06-12 ", Taken(2019, 6, 12))],
)
def test_taken_is_a_year_a_month_or_a_day(text: str, taken: Taken) -> None:
    assert parse_taken(text) == taken
    assert str(taken) == text.strip()


@pytest.mark.parametrize("text", ["19", "2019-6", "2019-13", "2019-02-30", "june", "2019/06"])
def test_anything_else_is_refused_with_the_forms_it_takes(text: str) -> None:
    with pytest.raises(ValueError, match=re.escape("use e.g. 2019, 2019-06 or 2019-06-12")):
        parse_taken(text)


@pytest.mark.parametrize(
    ("text", "day"),
    [
        ("2019-06-12 10:11:12.345+00", (2019, 6, 12)),
        ("2019-06-12 10:11:12+00", (2019, 6, 12)),
        # printed in another zone: the UTC day counts (localDateTime is wall time kept as UTC)
        ("2019-06-12 23:30:00-02", (2019, 6, 13)),
        ("2019-06-13 00:30:00+05:30", (2019, 6, 12)),
        ("infinity", None),
        ("0044-03-15 12:00:00+00 BC", None),
        (None, None),
        ("", None),
    ],
)
def test_the_day_of_a_timestamp_as_pg_dump_prints_it(text: str | None, day: object) -> None:
    assert taken_day(text) == day


def test_taken_uses_local_date_time_and_falls_back_to_file_created_at() -> None:
    records: list[DumpRecord] = [
        # taken 2019 where it was shot, but uploaded (file created) in 2020
        asset("a", taken="2019-12-31 23:00:00+00", created="2020-01-01 08:00:00+00"),
        asset("b", taken=None, created="2019-03-01 08:00:00+00"),
        asset("c", taken="2020-01-01 00:00:00+00", created="2019-12-31 10:00:00+00"),
    ]
    assert chosen(Criteria(taken=Taken(2019)), records) == (
        "upload/u-anna/a.jpg",
        "upload/u-anna/b.jpg",
    )
    assert chosen(Criteria(taken=Taken(2019, 3, 1)), records) == ("upload/u-anna/b.jpg",)


# -- criteria ------------------------------------------------------------------------------------


def test_criteria_travel_as_strings_and_describe_themselves() -> None:
    criteria = parse_criteria("anna@example.com", "Holidays", None, "2019-06")
    assert criteria.as_params() == {
        "user": "anna@example.com",
        "album": "Holidays",
        "taken": "2019-06",
    }
    assert parse_criteria(**criteria.as_params()) == criteria
    assert criteria.describe() == 'user anna@example.com, album "Holidays", taken 2019-06'
    assert parse_criteria().empty and not criteria.empty
    with pytest.raises(ValueError, match="--album needs a name"):
        parse_criteria(album="  ")


def test_each_pass_builds_only_the_records_it_needs() -> None:
    assert Selection(Criteria(taken=Taken(2019))).passes() == [ASSETS]
    assert Selection(Criteria(user="anna@example.com")).passes() == [NAMES, ASSETS]
    assert Selection(Criteria(album="A")).passes() == [NAMES, MEMBERS, ASSETS]
    assert Selection(Criteria(person="P", taken=Taken(2019))).passes() == [NAMES, MEMBERS, ASSETS]
    with pytest.raises(ValueError):
        Selection(Criteria())


# -- names ----------------------------------------------------------------------------------------


def test_an_album_is_found_even_when_its_entries_come_before_it() -> None:
    records: list[DumpRecord] = [
        AlbumAsset("al-1", "a"),
        AlbumAsset("al-2", "b"),
        asset("a"),
        asset("b"),
        asset("c"),
        Album("al-1", "Holidays", ANNA, None),
        Album("al-2", "Work", ANNA, None),
    ]
    selected = select(Criteria(album="Holidays"), records)
    assert selected.paths == ("upload/u-anna/a.jpg",)
    assert selected.assets == 1


def test_albums_of_one_name_are_all_taken_and_a_deleted_album_is_not() -> None:
    records: list[DumpRecord] = [
        Album("al-1", "Holidays", ANNA, None),
        Album("al-2", "Holidays", BEN, None),
        Album("al-3", "Holidays", BEN, "2026-01-01 00:00:00+00"),
        AlbumAsset("al-1", "a"),
        AlbumAsset("al-2", "b"),
        AlbumAsset("al-3", "c"),
        asset("a"),
        asset("b", BEN),
        asset("c", BEN),
    ]
    assert chosen(Criteria(album="Holidays"), records) == (
        "upload/u-anna/a.jpg",
        "upload/u-ben/b.jpg",
    )


def test_a_name_in_another_case_is_taken_when_it_is_the_only_one() -> None:
    records: list[DumpRecord] = [
        Album("al-1", "Holidays", ANNA, None),
        AlbumAsset("al-1", "a"),
        asset("a"),
    ]
    assert chosen(Criteria(album="holidays"), records) == ("upload/u-anna/a.jpg",)
    twice = [*records, Album("al-2", "HOLIDAYS", ANNA, None)]
    with pytest.raises(UnknownName, match='several differ only in case: "HOLIDAYS", "Holidays"'):
        chosen(Criteria(album="holidays"), twice)
    # an exact match wins over the others
    assert chosen(Criteria(album="Holidays"), twice) == ("upload/u-anna/a.jpg",)


def test_an_unknown_name_names_the_close_matches() -> None:
    records: list[DumpRecord] = [
        Album("al-1", "Holidays 2019", ANNA, None),
        Album("al-2", "Holidays 2020", ANNA, None),
        Album("al-3", "Work", ANNA, None),
        Person("p-1", ANNA, "Grandma", None, False),
        *USERS,
    ]
    with pytest.raises(UnknownName) as caught:
        chosen(Criteria(album="Holiday 2019"), records)
    message = str(caught.value)
    assert message.startswith('no album "Holiday 2019" in the database dump; close matches: ')
    assert '"Holidays 2019"' in message and '"Work"' not in message
    assert "\n" not in message
    with pytest.raises(UnknownName, match='close matches: "Grandma"'):
        chosen(Criteria(person="grandmother"), records)
    with pytest.raises(UnknownName, match=r'no person "Zed".*none close'):
        chosen(Criteria(person="Zed"), records)
    with pytest.raises(UnknownName, match=re.escape('no user (e-mail) "carl@example.com"')):
        chosen(Criteria(user="carl@example.com"), records)


def test_a_user_is_the_owner_by_e_mail_in_any_case() -> None:
    records: list[DumpRecord] = [asset("a"), asset("b", BEN), *USERS]
    assert chosen(Criteria(user="ben@example.COM"), records) == ("upload/u-ben/b.jpg",)


def test_a_person_is_in_the_assets_of_their_faces_that_are_not_deleted() -> None:
    records: list[DumpRecord] = [
        asset("a"),
        asset("b"),
        asset("c"),
        AssetFace("a", "p-1", None),
        AssetFace("b", "p-1", "2026-01-01 00:00:00+00"),  # a face removed by hand
        AssetFace("c", None, None),  # nobody's face
        AssetFace("c", "p-2", None),
        Person("p-1", ANNA, "Grandma", None, False),
        Person("p-2", ANNA, "Uncle", None, True),  # hidden people can be asked for by name
    ]
    assert chosen(Criteria(person="Grandma"), records) == ("upload/u-anna/a.jpg",)
    assert chosen(Criteria(person="Uncle"), records) == ("upload/u-anna/c.jpg",)


def test_criteria_combine_as_an_intersection() -> None:
    records: list[DumpRecord] = [
        Album("al-1", "Family", ANNA, None),
        AlbumAsset("al-1", "a"),
        AlbumAsset("al-1", "b"),
        AlbumAsset("al-1", "c"),
        asset("a", taken="2019-06-01 10:00:00+00"),
        asset("b", BEN, taken="2019-07-01 10:00:00+00"),
        asset("c", taken="2020-06-01 10:00:00+00"),
        AssetFace("a", "p-1", None),
        AssetFace("b", "p-1", None),
        Person("p-1", ANNA, "Grandma", None, False),
        *USERS,
    ]
    assert chosen(Criteria(album="Family", taken=Taken(2019)), records) == (
        "upload/u-anna/a.jpg",
        "upload/u-ben/b.jpg",
    )
    assert chosen(Criteria(album="Family", person="Grandma", user="anna@example.com"), records) == (
        "upload/u-anna/a.jpg",
    )
    assert chosen(Criteria(album="Family", taken=Taken(2019, 7)), records) == (
        "upload/u-ben/b.jpg",
    )


# -- what comes with an asset, and what is left out ---------------------------------------------


@pytest.mark.parametrize("files_first", [False, True], ids=["files-after", "files-before"])
def test_sidecars_come_with_their_asset_in_both_forms_and_either_table_order(
    files_first: bool,
) -> None:
    assets: list[DumpRecord] = [
        asset("a", sidecar="upload/u-anna/a.jpg.xmp"),  # before Immich v2: a column
        asset("b"),
        asset("z", taken="2001-01-01 00:00:00+00"),
        asset("c"),
    ]
    files: list[DumpRecord] = [
        AssetFile("b", "sidecar", inside("upload/u-anna/b.jpg.xmp")),
        AssetFile("z", "sidecar", inside("upload/u-anna/z.jpg.xmp")),  # not chosen
        AssetFile("a", "thumbnail", inside("thumbs/u-anna/a-thumbnail.webp")),  # not an original
        AssetFile("c", "sidecar", inside("upload/u-anna/c.jpg.xmp")),
    ]
    records = [*files, *assets] if files_first else [*assets, *files]
    selected = select(Criteria(taken=Taken(2019)), records)
    assert selected.paths == (
        "upload/u-anna/a.jpg",
        "upload/u-anna/a.jpg.xmp",
        "upload/u-anna/b.jpg",
        "upload/u-anna/b.jpg.xmp",
        "upload/u-anna/c.jpg",
        "upload/u-anna/c.jpg.xmp",
    )
    assert (selected.assets, selected.sidecars) == (3, 3)


def test_sidecars_of_assets_not_chosen_are_not_kept_once_the_assets_are_read() -> None:
    """As pg_dump orders them (asset, then asset_file), a selection keeps nothing of the
    sidecar rows of the assets it did not choose."""
    selection = Selection(Criteria(taken=Taken(2019)))
    selection.feed(asset("a"))
    selection.feed(asset("z", taken="2001-01-01 00:00:00+00"))
    tracemalloc.start()
    try:
        for n in range(50_000):
            path = f"upload/u-anna/{n:08d}-0000-4000-8000-000000000000.jpg.xmp"
            selection.feed(AssetFile(f"{n:08d}", "sidecar", inside(path)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    selection.end_pass()
    assert selection.result().paths == ("upload/u-anna/a.jpg",)
    # 50,000 kept paths would take several MiB
    assert peak < 512 * 1024, f"peak {peak} bytes"


def test_a_live_photo_brings_its_video_whether_its_row_comes_before_or_after() -> None:
    motion = {"visibility": "hidden", "kind": "VIDEO", "taken": "2024-01-01 00:00:00+00"}
    records: list[DumpRecord] = [
        asset("v1", **motion),  # type: ignore[arg-type]
        asset("p1", video="v1"),
        asset("p2", video="v2"),
        asset("v2", **motion),  # type: ignore[arg-type]
        asset("v3", **motion),  # type: ignore[arg-type]  # nobody's: not chosen
        # taken the same day, but hidden: it comes with its photo, which is in the trash
        asset("v4", **{**motion, "taken": "2019-06-12 10:00:00+00"}),  # type: ignore[arg-type]
        asset("p4", video="v4", deleted_at="2026-11-01 00:00:00+00", status="trashed"),
    ]
    selected = select(Criteria(taken=Taken(2019)), records)
    assert selected.paths == tuple(
        sorted(f"upload/u-anna/{name}.jpg" for name in ("p1", "p2", "v1", "v2"))
    )
    assert (selected.assets, selected.motion, selected.trashed) == (2, 2, 1)


def test_trashed_assets_and_external_originals_are_left_out_and_counted() -> None:
    records: list[DumpRecord] = [
        asset("a"),
        asset("b", deleted_at="2026-11-01 10:00:00+00", status="trashed"),
        asset("c", status="deleted"),
        asset("d", original=StoredPath("/mnt/photos/2019/d.jpg", None)),
        asset("e")._replace(original=None),  # no file yet
    ]
    selected = select(Criteria(taken=Taken(2019)), records)
    assert selected.paths == ("upload/u-anna/a.jpg",)
    assert (selected.assets, selected.trashed, selected.outside) == (1, 2, 1)
    assert selected.as_dict() == {
        "assets": 1,
        "files": 1,
        "sidecars": 0,
        "live_photo_videos": 0,
        "trashed": 2,
        "outside": 1,
    }


# -- real dumps ----------------------------------------------------------------------------------


def _small_db() -> ImmichDb:
    users = [
        DbUser(ANNA, "anna@example.com", "Anna", "anna", "profile/u-anna/p.jpg", True),
        DbUser(BEN, "ben@example.com", "Ben", "ben", "profile/u-ben/p.jpg", False),
    ]
    assets = [
        DbAsset("a1", ANNA, "library/anna/2019/06/a1.jpg", "IMAGE", "2019-06-12 10:00:00+00",
                sidecar="library/anna/2019/06/a1.jpg.xmp"),
        DbAsset("a2", ANNA, "library/anna/2021/01/a2.jpg", "IMAGE", "2021-01-02 10:00:00+00"),
        DbAsset("a3", ANNA, "library/anna/2019/07/a3.jpg", "IMAGE", "2019-07-01 10:00:00+00",
                deleted_at="2026-11-01 10:00:00+00"),
        DbAsset("b1", BEN, "upload/u-ben/b1/b1.mp4", "VIDEO", "2019-06-30 22:00:00+00"),
        DbAsset("x1", ANNA, "/mnt/external/x1.jpg", "IMAGE", "2019-05-05 05:00:00+00", "lib-1"),
    ]  # fmt: skip
    people = [DbPerson("p-1", ANNA, "Grandma", "thumbs/u-anna/p-1.jpeg")]
    albums = [
        DbAlbum("al-1", "Summer", ANNA, ["a1", "a3", "b1", "x1"]),
        DbAlbum("al-2", "Other", BEN, ["a2"]),
    ]
    faces: list[tuple[str, str | None]] = [("a1", "p-1"), ("a2", "p-1"), ("b1", None)]
    return ImmichDb(users, assets, people, faces, albums, [])


def _records(flavour: DumpFlavour) -> list[DumpRecord]:
    text = "".join(dump_lines(flavour, db_tables(_small_db(), flavour)))
    return list(read_dump(text.encode().splitlines(keepends=True)))


@pytest.mark.parametrize("flavour", [DUMP_V2_5, DUMP_V1_123], ids=lambda f: f.label)
def test_a_real_dump_of_either_generation_is_selected_from(flavour: DumpFlavour) -> None:
    records = _records(flavour)
    end = records[-1]
    assert isinstance(end, DumpEnd) and end.complete
    summer = select(Criteria(album="Summer"), records)
    # a3 is in the trash, x1 in an external library
    assert summer.paths == (
        "library/anna/2019/06/a1.jpg",
        "library/anna/2019/06/a1.jpg.xmp",
        "upload/u-ben/b1/b1.mp4",
    )
    assert (summer.trashed, summer.outside) == (1, 1)
    assert chosen(Criteria(person="Grandma", taken=Taken(2021)), records) == (
        "library/anna/2021/01/a2.jpg",
    )
    assert chosen(Criteria(user="BEN@example.com"), records) == ("upload/u-ben/b1/b1.mp4",)
    assert chosen(Criteria(album="Summer", taken=Taken(2019, 6, 30)), records) == (
        "upload/u-ben/b1/b1.mp4",
    )
