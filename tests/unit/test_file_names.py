"""photos_sync.core.names (pure), the rclone notices it relies on, and the raw listing parser (#18,
point 8: file names that were lost or garbled without a word)."""

from __future__ import annotations

import json
import os
import unicodedata
from pathlib import Path

from photos_sync.core.archive import parse_raw_listing
from photos_sync.core.names import (
    DISK_NAME_LIMIT,
    NameCheck,
    NameHazard,
    NameProblem,
    decode_raw,
    display_path,
    encrypted_name_length,
    find_name_problems,
    is_utf8,
    longest_name,
    raw_bytes,
    spelled,
    summary_note,
    twin_paths,
    with_skipped,
)
from photos_sync.core.rclone_log import OtherLine, SkippedName, parse_line
from photos_sync.system.source_names import scan_names
from photos_sync.system.source_scan import WalkProblems, walk_files

NFC = unicodedata.normalize("NFC", "café.jpg")
NFD = unicodedata.normalize("NFD", "café.jpg")
BAD = os.fsdecode(b"bad\xff.jpg")  # as os.walk gives it: the byte as U+DCFF

# Lines exactly as the bundled rclone 1.75 writes them with --use-json-log (recorded from a
# sync of a folder holding NFC and NFD café.jpg, two such folders, and b"bad\xff.jpg").
DUPLICATE_FILE = (
    '{"time":"2026-11-30T09:55:39.240755571Z","level":"notice","msg":"Duplicate object found '
    'in source - ignoring","object":"café.jpg","objectType":"*local.Object",'
    '"source":"march/march.go:350"}'
)
DUPLICATE_FOLDER = (
    '{"time":"2026-11-30T09:57:53.640883666Z","level":"notice","msg":"Duplicate directory '
    'found in source - ignoring","object":"Café","objectType":"*local.Directory",'
    '"source":"march/march.go:350"}'
)
INVALID_UTF8 = (
    '{"time":"2026-11-30T09:55:39.240465159Z","level":"notice","msg":"Replacing invalid UTF-8 '
    'characters in \\"bad\\\\xff.jpg\\"","object":"Local file system at src/u",'
    '"objectType":"*local.Fs","source":"local/local.go:820"}'
)


# -- names as bytes --------------------------------------------------------------------------


def test_undecodable_bytes_survive_the_round_trip_and_are_shown_escaped() -> None:
    assert is_utf8(NFC) and is_utf8(NFD) and is_utf8("plain.jpg")
    assert not is_utf8(BAD)
    assert raw_bytes(f"library/{BAD}") == b"library/bad\xff.jpg"
    assert decode_raw(b"library/bad\xff.jpg") == f"library/{BAD}"
    assert display_path(f"library/{BAD}") == "library/bad\\xff.jpg"
    assert display_path(NFD) == NFD  # valid names are never changed
    json.dumps(display_path(BAD)).encode("utf-8")  # printable and JSON-safe
    # a lone surrogate written as bytes (CESU-8) is not UTF-8 either
    cesu = os.fsdecode(b"lone\xed\xa0\x80.jpg")
    assert not is_utf8(cesu)
    assert display_path(cesu) == "lone\\xed\\xa0\\x80.jpg"


# -- finding hazards in a listing ------------------------------------------------------------


def test_unicode_twins_are_each_named_with_their_form() -> None:
    problems = find_name_problems("library", [("trip", [], [NFC, NFD, "other.jpg"])])
    assert sorted((p.hazard, p.path) for p in problems) == sorted(
        [
            (NameHazard.UNICODE_TWIN, f"library/trip/{NFC}"),
            (NameHazard.UNICODE_TWIN, f"library/trip/{NFD}"),
        ]
    )
    assert all(p.backed_up for p in problems)
    nfc = next(p for p in problems if p.path.endswith(NFC))
    assert nfc.detail.startswith(
        "this name, 'caf\\xe9.jpg' (NFC), differs from 'cafe\\u0301.jpg' (NFD) only in Unicode"
    )
    assert "macOS" in nfc.detail


def test_twin_folders_and_singleton_decompositions_count_too() -> None:
    kelvin = "\u212a.jpg"  # KELVIN SIGN: its NFC form is the ASCII "K.jpg"
    problems = find_name_problems(
        "upload",
        [("", ["Été", unicodedata.normalize("NFD", "Été")], []), ("x", [], ["K.jpg", kelvin])],
    )
    assert {p.path for p in problems} == {
        "upload/Été",
        "upload/" + unicodedata.normalize("NFD", "Été"),
        "upload/x/K.jpg",
        f"upload/x/{kelvin}",
    }
    folders = [p for p in problems if p.is_directory]
    assert len(folders) == 2 and all(p.shown().endswith("/") for p in folders)


def test_undecodable_names_are_named_once_not_every_file_below() -> None:
    bad_folder = os.fsdecode(b"trip\xe9")  # Latin-1 é
    problems = find_name_problems(
        "library",
        [("", [bad_folder], [BAD]), (bad_folder, [], ["a.jpg", "b.jpg"])],
    )
    assert [(p.hazard, display_path(p.path), p.is_directory) for p in problems] == [
        (NameHazard.NOT_UTF8, "library/bad\\xff.jpg", False),
        (NameHazard.NOT_UTF8, "library/trip\\xe9", True),
    ]
    assert problems[0].as_dict() == {
        "kind": "not-utf8",
        "path": "library/bad\\xff.jpg",
        "is_directory": False,
        "backed_up": True,
        "detail": problems[0].detail,
    }


def test_plain_and_merely_accented_names_are_not_problems() -> None:
    listing = [("", ["2024"], ["IMG_1.jpg", NFC]), ("2024", [], [NFD, "ok.heic"])]
    assert find_name_problems("library", listing) == []


def test_names_too_long_once_encrypted_are_named_when_the_destination_limits_names() -> None:
    assert [encrypted_name_length(n) for n in (0, 15, 16, 143, 144)] == [26, 26, 52, 231, 256]
    assert longest_name(DISK_NAME_LIMIT) == 143
    fits, ascii_long = "y" * 139 + ".jpg", "x" * 140 + ".jpg"  # 143 and 144 bytes
    accented = "é" * 70 + ".jpg"  # 74 characters, 144 bytes
    listing = [("", ["d" * 144], [fits, ascii_long, accented])]
    assert find_name_problems("library", listing) == []  # cloud storage: no per-name limit
    problems = find_name_problems("library", listing, name_limit=DISK_NAME_LIMIT)
    assert sorted((p.hazard, p.path, p.is_directory, p.backed_up) for p in problems) == sorted(
        [
            (NameHazard.TOO_LONG, f"library/{'d' * 144}", True, False),
            (NameHazard.TOO_LONG, f"library/{ascii_long}", False, False),
            (NameHazard.TOO_LONG, f"library/{accented}", False, False),
        ]
    )
    assert "shorten it to 143 bytes or fewer" in problems[0].detail


def test_twins_in_a_listing_are_found_per_group_and_spelled_out() -> None:
    entries = [("run1", f"a/{NFC}"), ("run1", f"a/{NFD}"), ("run2", f"a/{NFC}"), ("run1", "b")]
    assert twin_paths(entries) == {("run1", f"a/{NFC}"), ("run1", f"a/{NFD}")}
    assert twin_paths([("run1", "x"), ("run1", "x")]) == set()  # the same path twice: no twin
    assert spelled(NFD) == "'cafe\\u0301.jpg'" and spelled(BAD) == "'bad\\\\xff.jpg'"


# -- what rclone said it skipped -------------------------------------------------------------


def test_rclone_duplicate_notices_are_parsed_and_the_utf8_notice_is_not_a_loss() -> None:
    assert parse_line(DUPLICATE_FILE) == SkippedName("café.jpg", False)
    assert parse_line(DUPLICATE_FOLDER) == SkippedName("Café", True)
    assert isinstance(parse_line(INVALID_UTF8), OtherLine)  # the bytes are kept as they are


def test_a_skipped_twin_is_marked_not_backed_up() -> None:
    twins = find_name_problems("library", [("trip", [], [NFC, NFD])])
    corrected = with_skipped("library", twins, {f"trip/{NFC}": False})
    assert [p.backed_up for p in corrected] == [False, False]  # rclone does not say which
    assert all(p.hazard is NameHazard.UNICODE_TWIN for p in corrected)
    assert "may be missing from the backup" in corrected[0].detail
    assert with_skipped("library", twins, {}) == twins


def test_anything_else_rclone_skipped_gets_its_own_line() -> None:
    corrected = with_skipped("upload", [], {"a/b": True, "c.jpg": False})
    assert [(p.hazard, p.shown(), p.backed_up) for p in corrected] == [
        (NameHazard.SKIPPED, "upload/a/b/", False),
        (NameHazard.SKIPPED, "upload/c.jpg", False),
    ]
    assert corrected[0].line().startswith("file name: upload/a/b/ — NOT backed up; ")


def test_summary_note() -> None:
    assert summary_note(0, 0) == ""
    assert summary_note(3, 0) == "; 3 file names need attention (listed above)"
    assert (
        summary_note(1, 1)
        == "; 1 file name needs attention (listed above), 1 of them NOT backed up"
    )
    assert summary_note(3, 1).endswith(", 1 of them NOT backed up")


# -- the raw listing (restore) ---------------------------------------------------------------


def test_raw_listing_keeps_exact_names_through_csv_quoting() -> None:
    output = (
        b"library/bad\xff.jpg,12,2026-11-30T09:55:38.316634530Z\n"
        b'"library/com,ma.jpg",10,2026-11-30T09:57:10.386365734Z\n'
        b'"library/quo""te.jpg",10,2026-11-30T09:57:10.386438310Z\n'
        b"library/new\xe2\x90\x8aline.jpg,12,2026-11-30T09:57:10.386283621Z\n"
    )
    entries = parse_raw_listing(decode_raw(output))
    assert [e["Path"] for e in entries] == [
        f"library/{BAD}",
        "library/com,ma.jpg",
        'library/quo"te.jpg',
        "library/new\u240aline.jpg",  # rclone's own escape for a line break, which it reads back
    ]
    assert [e["Size"] for e in entries] == [12, 10, 10, 12]
    assert entries[0]["ModTime"] == "2026-11-30T09:55:38.316634530Z"
    assert raw_bytes(str(entries[0]["Path"])) == b"library/bad\xff.jpg"


# -- the walk --------------------------------------------------------------------------------


def test_scan_names_walks_a_real_tree(tmp_path: Path) -> None:
    root = tmp_path / "library"
    (root / "trip").mkdir(parents=True)
    (root / "trip" / NFC).write_bytes(b"nfc")
    (root / "trip" / NFD).write_bytes(b"nfd")
    with open(os.path.join(os.fsencode(root), b"bad\xff.jpg"), "wb") as handle:
        handle.write(b"bad")
    (root / "fine.jpg").write_bytes(b"fine")
    problems = scan_names(root, "library")
    assert sorted((p.hazard.value, display_path(p.path)) for p in problems) == sorted(
        [
            ("not-utf8", "library/bad\\xff.jpg"),
            ("unicode-twin", f"library/trip/{NFC}"),
            ("unicode-twin", f"library/trip/{NFD}"),
        ]
    )
    assert all(isinstance(p, NameProblem) for p in problems)


def _hazardous_tree(root: Path) -> None:
    """Twins in a folder and in a sub-folder's name, an undecodable file and folder, a name
    too long for a disk once encrypted, a link to a folder and a dangling link."""
    (root / "trip" / "Café").mkdir(parents=True)
    (root / "trip" / NFC).write_bytes(b"nfc")
    (root / "trip" / NFD).write_bytes(b"nfd")
    (root / "trip" / unicodedata.normalize("NFD", "Café")).mkdir()
    base = os.fsencode(root)
    with open(os.path.join(base, b"bad\xff.jpg"), "wb") as handle:
        handle.write(b"bad")
    os.mkdir(os.path.join(base, b"dir\xfe"))
    with open(os.path.join(base, b"dir\xfe", b"inside.jpg"), "wb") as handle:
        handle.write(b"inside")
    (root / ("x" * 150 + ".jpg")).write_bytes(b"long")
    (root / "deep" / "er").mkdir(parents=True)
    (root / "deep" / "er" / "plain.jpg").write_bytes(b"plain")
    (root / "link-to-trip").symlink_to(root / "trip", target_is_directory=True)
    (root / "dangling").symlink_to(root / "nowhere")


def test_the_manifest_walk_finds_the_same_names_as_the_name_scan(tmp_path: Path) -> None:
    """One walk per run: the manifest's walk (walk_files with a NameCheck) reports exactly
    what scan_names' own walk does, with and without a name limit."""
    root = tmp_path / "library"
    _hazardous_tree(root)
    for limit in (None, DISK_NAME_LIMIT):
        names = NameCheck("library", limit)
        problems = WalkProblems()
        walked = list(walk_files(root, problems, names))
        assert not problems.unreadable
        assert len(walked) == 6  # regular files only: the links are left out
        expected = scan_names(root, "library", limit)
        assert names.problems() == expected
        kinds = {p.hazard for p in expected}
        assert kinds == (
            {NameHazard.UNICODE_TWIN, NameHazard.NOT_UTF8}
            | ({NameHazard.TOO_LONG} if limit else set())
        )


def test_name_check_skips_plain_directories_without_decoding() -> None:
    check = NameCheck("upload", DISK_NAME_LIMIT)
    check.add(b"", [b"a", b"b"], [b"x.jpg", b"y.jpg"])
    check.add(b"a", [], [b"z" * 144])
    check.add(b"b", [], [NFC.encode(), NFD.encode()])
    assert [(p.hazard, p.path) for p in check.problems()] == [
        (NameHazard.TOO_LONG, "upload/a/" + "z" * 144),
        *sorted((NameHazard.UNICODE_TWIN, f"upload/b/{name}") for name in (NFC, NFD)),
    ]
