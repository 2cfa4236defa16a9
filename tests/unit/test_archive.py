"""The archive's pure logic: listings, newest versions, point-in-time choice, retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from photos_sync.core.archive import (
    ArchivedFile,
    LiveFile,
    as_of,
    expired_stamps,
    newest_archived,
    parse_archive_listing,
    parse_modtime,
    parse_stamp,
    under,
)

T0 = datetime(2026, 11, 1, 3, 0, tzinfo=UTC)


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M%SZ")


def at(days: float) -> datetime:
    return T0 + timedelta(days=days)


def archived(days: float, path: str, modified_days: float | None = None) -> ArchivedFile:
    modified = at(modified_days) if modified_days is not None else at(-100)
    return ArchivedFile(stamp(at(days)), path, 10, modified)


def test_parse_stamp() -> None:
    assert parse_stamp("20261101T030000Z") == T0
    for bad in ("", "2026-11-01", "20261101T030000", "20261301T030000Z", "latest"):
        assert parse_stamp(bad) is None


def test_parse_modtime_takes_rclone_nanoseconds_and_offsets() -> None:
    assert parse_modtime("2026-11-01T03:00:00.123456789Z") == T0.replace(microsecond=123456)
    assert parse_modtime("2026-11-01T04:00:00+01:00") == T0
    assert parse_modtime("2026-11-01T03:00:00") == T0  # no zone: UTC
    for bad in (None, "", "yesterday", 5):
        assert parse_modtime(bad) is None


def test_parse_archive_listing_keeps_only_run_folders() -> None:
    entries: list[dict[str, object]] = [
        {"Path": "20261101T030000Z/library/u/a.jpg", "Size": 5, "ModTime": "2026-10-01T00:00:00Z"},
        {"Path": "20261101T030000Z", "Size": 0},  # no path below the stamp
        {"Path": "not-a-stamp/library/b.jpg", "Size": 1},
        {"Path": "20261102T030000Z/upload/c.jpg", "Size": "x"},
    ]
    files = parse_archive_listing(entries)
    assert files == [
        ArchivedFile("20261101T030000Z", "library/u/a.jpg", 5, datetime(2026, 10, 1, tzinfo=UTC)),
        ArchivedFile("20261102T030000Z", "upload/c.jpg", 0, None),
    ]


@pytest.mark.parametrize(
    ("path", "prefix", "expected"),
    [
        ("library/u/a.jpg", "", True),
        ("library/u/a.jpg", "library", True),
        ("library/u/a.jpg", "/library/u/", True),
        ("library/u/a.jpg", "library/u/a.jpg", True),
        ("library/u2/a.jpg", "library/u", False),  # a sibling with a longer name
        ("libraryX/a.jpg", "library", False),
        ("library", "library/u", False),
    ],
)
def test_under(path: str, prefix: str, expected: bool) -> None:
    assert under(path, prefix) is expected


def test_newest_archived_picks_the_latest_run_per_path() -> None:
    files = [
        archived(1, "library/a"),
        archived(5, "library/a"),
        archived(3, "library/a"),
        archived(2, "upload/b"),
    ]
    chosen = newest_archived(files, "library")
    assert list(chosen) == ["library/a"]
    assert chosen["library/a"].stamp == stamp(at(5))
    assert set(newest_archived(files, "")) == {"library/a", "upload/b"}


def test_as_of_uses_the_first_copy_archived_after_the_moment() -> None:
    # a.jpg replaced by the runs of day 2 and day 4; the live copy was written on day 3.5
    files = [archived(2, "library/a.jpg", -10), archived(4, "library/a.jpg", 1.5)]
    live = [LiveFile("library/a.jpg", 10, at(3.5))]
    assert as_of(files, live, "", at(1)).from_archive == {stamp(at(2)): ["library/a.jpg"]}
    assert as_of(files, live, "", at(3)).from_archive == {stamp(at(4)): ["library/a.jpg"]}
    now = as_of(files, live, "", at(5))
    assert now.from_archive == {} and now.from_live == ["library/a.jpg"]


def test_as_of_exactly_at_a_run_means_after_that_run() -> None:
    files = [archived(2, "library/a.jpg")]
    # a run archives what it replaced when it ran: at its own stamp the old copy is gone
    point = as_of(files, [], "", at(2))
    assert point.from_archive == {} and point.from_live == []
    point = as_of(files, [], "", at(2) - timedelta(seconds=1))
    assert point.from_archive == {stamp(at(2)): ["library/a.jpg"]}


def test_as_of_leaves_out_files_created_after_the_moment() -> None:
    # b.jpg was written on day 3 and deleted before the run of day 4: it did not exist on day 1
    files = [archived(4, "library/b.jpg", 3)]
    live = [
        LiveFile("library/new.jpg", 1, at(6)),
        LiveFile("library/old.jpg", 1, at(-1)),
        LiveFile("library/unknown.jpg", 1, None),
    ]
    point = as_of(files, live, "library", at(1))
    assert point.from_archive == {}
    assert point.from_live == ["library/old.jpg", "library/unknown.jpg"]


def test_as_of_keeps_a_file_deleted_after_the_moment_and_drops_one_deleted_before() -> None:
    files = [archived(0.5, "library/gone-early.jpg"), archived(3, "library/gone-late.jpg")]
    point = as_of(files, [], "library", at(1))
    assert point.from_archive == {stamp(at(3)): ["library/gone-late.jpg"]}


def test_as_of_respects_the_prefix_and_groups_by_run() -> None:
    files = [
        archived(2, "library/a"),
        archived(2, "library/b"),
        archived(3, "library/c"),
        archived(2, "upload/x"),
    ]
    live = [LiveFile("library/d", 1, at(-1)), LiveFile("upload/y", 1, at(-1))]
    point = as_of(files, live, "library", at(1))
    assert point.from_archive == {
        stamp(at(2)): ["library/a", "library/b"],
        stamp(at(3)): ["library/c"],
    }
    assert point.from_live == ["library/d"]


def test_as_of_ignores_folders_that_are_not_runs() -> None:
    files = [ArchivedFile("junk", "library/a", 1)]
    assert as_of(files, [], "", at(0)).from_archive == {}


NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def test_expired_stamps_boundary() -> None:
    exactly = stamp(NOW - timedelta(days=30))
    just_older = stamp(NOW - timedelta(days=30, seconds=1))
    just_newer = stamp(NOW - timedelta(days=29, hours=23, minutes=59, seconds=59))
    stamps = [exactly, just_older, just_newer, "not-a-run", stamp(NOW - timedelta(days=400))]
    assert expired_stamps(stamps, 30, NOW) == sorted([just_older, stamp(NOW - timedelta(days=400))])


def test_expired_stamps_zero_keeps_everything() -> None:
    old = stamp(NOW - timedelta(days=4000))
    assert expired_stamps([old], 0, NOW) == []
    assert expired_stamps([old], 1, NOW) == [old]
    assert expired_stamps([], 30, NOW) == []


def test_expired_stamps_oldest_first_and_future_stamps_kept() -> None:
    a, b = stamp(NOW - timedelta(days=90)), stamp(NOW - timedelta(days=60))
    future = stamp(NOW + timedelta(days=1))  # a clock that was ahead: keep it
    assert expired_stamps([b, future, a], 30, NOW) == [a, b]
