"""BACKUP_EXTRA_PATHS and BACKUP_EXTERNAL_LIBRARY_MAP (#16.3): parsing, and where a stored
path is kept in the backup (`Coverage.cover`, for the consistency proof)."""

from __future__ import annotations

import pytest

from photos_sync.core.extra_paths import (
    Coverage,
    ExtraPath,
    ExtraPathError,
    LibraryMount,
    parse_extra_paths,
    parse_library_map,
)


def test_paths_get_their_folder_name_or_the_one_given() -> None:
    extras = parse_extra_paths("/mnt/photos/family: scans=/srv/scans/ :")
    assert extras == (ExtraPath("family", "/mnt/photos/family"), ExtraPath("scans", "/srv/scans"))
    assert [e.folder for e in extras] == ["extra/family", "extra/scans"]


def test_blank_means_none() -> None:
    assert parse_extra_paths("") == ()
    assert parse_extra_paths(" : ") == ()


def test_paths_are_normalised() -> None:
    (extra,) = parse_extra_paths("/mnt//photos/./family/../family/")
    assert extra == ExtraPath("family", "/mnt/photos/family")


def test_a_path_may_hold_an_equals_sign() -> None:
    assert parse_extra_paths("x=/mnt/a=b") == (ExtraPath("x", "/mnt/a=b"),)
    with pytest.raises(ExtraPathError, match=r"give it one, e\.g\. photos=/mnt/a=b"):
        parse_extra_paths("/mnt/a=b")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("photos/family", "not an absolute path"),
        ("family=photos", "not an absolute path"),
        ("/", "'/' cannot be backed up"),
        ("/mnt/My Photos", "give it one, e.g. photos=/mnt/My Photos"),
        ("/mnt/.hidden", "give it one"),
        ("my photos=/mnt/x", "'my photos' (in 'my photos=/mnt/x') is not a usable name"),
        ("../x=/mnt/x", "is not a usable name"),
        ("a/b=/mnt/x", "is not a usable name"),
        (f"{'n' * 65}=/mnt/x", "at most 64 characters"),
        ("/a/photos:/b/photos", "would both be kept as extra/photos/: give them different"),
        ("x=/a:X=/b", "would both be kept as extra/X/"),
        ("/mnt/photos:/mnt/photos/family", "overlap (one is inside the other)"),
        ("a=/mnt/photos:b=/mnt/photos", "overlap"),
    ],
)
def test_malformed_values_say_what_is_wrong(raw: str, expected: str) -> None:
    with pytest.raises(ExtraPathError) as info:
        parse_extra_paths(raw)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("path", ["/srv/immich/library", "/srv/immich", "/srv"])
def test_a_folder_inside_or_around_immich_is_refused(path: str) -> None:
    with pytest.raises(ExtraPathError, match="overlaps BACKUP_IMMICH_PATH"):
        parse_extra_paths(f"x={path}", "/srv/immich/")


def test_a_sibling_of_immich_with_a_common_prefix_is_fine() -> None:
    assert parse_extra_paths("/srv/immich-external", "/srv/immich")[0].name == "immich-external"


def test_library_map_entries() -> None:
    assert parse_library_map("/mnt/media=/srv/photos/ : /data2=/srv/two") == (
        LibraryMount("/mnt/media", "/srv/photos"),
        LibraryMount("/data2", "/srv/two"),
    )
    assert parse_library_map("") == ()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/mnt/media", "is not CONTAINER=HOST"),
        ("/mnt/media=srv", "is not CONTAINER=HOST"),
        ("media=/srv", "is not CONTAINER=HOST"),
        ("/a=/x:/a/=/y", "/a is mapped twice"),
    ],
)
def test_library_map_malformed(raw: str, expected: str) -> None:
    with pytest.raises(ExtraPathError, match=expected):
        parse_library_map(raw)


# -- cover --------------------------------------------------------------------------------------

EXTRAS = parse_extra_paths("family=/srv/photos/family:all=/srv/scans")
MOUNTS = parse_library_map("/mnt/media=/srv/photos:/mnt/media/scans=/srv/scans")


def test_cover_maps_a_container_path_to_its_folder_in_the_backup() -> None:
    coverage = Coverage(EXTRAS, MOUNTS)
    assert coverage.cover("/mnt/media/family/2020/DSC_0001.JPG") == (
        "extra/family",
        "2020/DSC_0001.JPG",
    )


def test_cover_takes_the_longest_mapping_and_the_innermost_folder() -> None:
    coverage = Coverage(EXTRAS, MOUNTS)
    # /mnt/media/scans is its own mount (to /srv/scans), not /srv/photos/scans
    assert coverage.cover("/mnt/media/scans/a/b.tif") == ("extra/all", "a/b.tif")
    nested = Coverage(parse_extra_paths("outer=/srv/p:inner=/srv/q"), ())
    assert nested.cover("/srv/q/x.jpg") == ("extra/inner", "x.jpg")


def test_cover_takes_an_unmapped_path_as_a_host_path() -> None:
    coverage = Coverage(EXTRAS)
    assert coverage.cover("/srv/photos/family/x.jpg") == ("extra/family", "x.jpg")
    assert coverage.cover("/mnt/media/family/x.jpg") is None


@pytest.mark.parametrize(
    "stored",
    [
        "/mnt/media/other/x.jpg",  # mapped, but into no extra folder
        "/srv/photos/family",  # the folder itself, not a file in it
        "/srv/photos/familyx/a.jpg",  # a sibling sharing a prefix
        "/mnt/media/family/../../../etc/passwd",  # climbs out
        "library/user/x.jpg",  # not absolute
        "",
    ],
)
def test_cover_finds_no_folder(stored: str) -> None:
    assert Coverage(EXTRAS, MOUNTS).cover(stored) is None


def test_cover_keeps_names_as_stored() -> None:
    coverage = Coverage(EXTRAS, MOUNTS)
    assert coverage.cover("/mnt/media/family/Été à la plage #1.jpg") == (
        "extra/family",
        "Été à la plage #1.jpg",
    )
    assert coverage.host_path("/mnt/media") == "/srv/photos"
