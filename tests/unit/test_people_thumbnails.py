"""Which files of thumbs/ the people-thumbnails job copies, and what its backup then holds
(#16.4, photos_sync.core.people_thumbnails)."""

from __future__ import annotations

from photos_sync.core.immich_dump import PathMapper, Person
from photos_sync.core.manifest import FileState
from photos_sync.core.people_thumbnails import overlay, thumbnail_paths

MAPPER = PathMapper()


def _person(thumbnail: str | None, number: int = 0) -> Person:
    return Person(f"id{number}", "owner", f"person {number}", MAPPER(thumbnail), False)


def test_the_thumbnails_below_thumbs_in_byte_order_each_once() -> None:
    people = [
        _person("/data/thumbs/u1/ab/cd/b.jpeg", 1),
        _person("/usr/src/app/upload/thumbs/u1/ab/cd/a.jpeg", 2),
        _person("/data/thumbs/u1/ab/cd/b.jpeg", 3),  # shared (merged people)
        _person("/data/thumbs/u2/É.jpeg", 4),
    ]
    assert thumbnail_paths(people) == [
        b"u1/ab/cd/a.jpeg",
        b"u1/ab/cd/b.jpeg",
        "u2/É.jpeg".encode(),
    ]


def test_people_without_a_thumbnail_in_thumbs_are_left_out() -> None:
    people = [
        _person(None),  # not yet made
        _person(""),  # Immich's "none yet"
        _person("/mnt/elsewhere/face.jpeg"),  # outside UPLOAD_LOCATION
        _person("/data/library/u1/face.jpeg"),  # not in thumbs/
        _person("/data/thumbs/"),  # the folder itself
    ]
    assert thumbnail_paths(people) == []


def test_a_copy_keeps_what_the_backup_held_with_the_copied_files_replacing_theirs() -> None:
    recorded = [FileState(b"a", 1, 1), FileState(b"b", 2, 2), FileState(b"d", 4, 4)]
    copied = [FileState(b"b", 20, 20), FileState(b"c", 3, 3), FileState(b"e", 5, 5)]
    assert list(overlay(recorded, copied)) == [
        FileState(b"a", 1, 1),
        FileState(b"b", 20, 20),
        FileState(b"c", 3, 3),
        FileState(b"d", 4, 4),
        FileState(b"e", 5, 5),
    ]
    assert list(overlay([], copied)) == copied
    assert list(overlay(recorded, [])) == recorded
