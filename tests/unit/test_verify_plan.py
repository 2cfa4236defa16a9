"""verify_plan: rclone check output, objects without hashes, what a sampled verify downloads."""

from __future__ import annotations

import random

from photos_sync.verify_plan import (
    DEFAULT_SAMPLE_PERCENT,
    SMALL_FILE,
    CheckOutcome,
    choose_downloads,
    parse_combined,
    unhashed_paths,
)

MIB = 1024 * 1024


def test_parse_combined_sorts_every_verdict() -> None:
    text = "\n".join(
        [
            "= library/a.jpg",
            "+ library/only in source.jpg",
            "- upload/only-in-backup.jpg",
            "* library/differs.jpg",
            "! library/unreadable.jpg",
            "",
            "2026/11/25 NOTICE: something else",
            "?? weird",
            "=",
        ]
    )
    outcome = parse_combined(text)
    assert outcome.matched == ["library/a.jpg"]
    assert outcome.missing == ["library/only in source.jpg"]  # spaces kept
    assert outcome.extra == ["upload/only-in-backup.jpg"]
    assert outcome.differ == ["library/differs.jpg"]
    assert outcome.unchecked == ["library/unreadable.jpg"]


def test_merge_prefixes_paths() -> None:
    total = CheckOutcome(matched=["backups/x"])
    total.merge(CheckOutcome(matched=["a"], missing=["b"], extra=["c"], differ=["d"]), "library/")
    assert total.matched == ["backups/x", "library/a"]
    assert (total.missing, total.extra, total.differ) == (
        ["library/b"],
        ["library/c"],
        ["library/d"],
    )


def test_unhashed_paths_joins_plain_and_stored_listings() -> None:
    plain = [
        {"Path": "u/a.jpg", "EncryptedPath": "e1/e2", "IsDir": False},
        {"Path": "u/b.mp4", "EncryptedPath": "e1/e3", "IsDir": False},
        {"Path": "u/c.mp4", "EncryptedPath": "e1/e4"},
        {"Path": "u", "EncryptedPath": "e1", "IsDir": True},
    ]
    stored = [
        {"Path": "e1/e2", "Hashes": {"md5": "abc"}},  # has a hash
        {"Path": "e1/e3"},  # no Hashes at all (S3 multipart, B2 large file)
        {"Path": "e1/e4", "Hashes": {"sha1": ""}},  # an empty hash
        {"Path": "e1", "IsDir": True},
        {"Path": "e9/unknown"},  # not in the plain listing (a stray object)
    ]
    assert unhashed_paths(plain, stored) == {"u/b.mp4", "u/c.mp4"}
    assert unhashed_paths([], stored) == set()


def test_full_downloads_everything() -> None:
    sizes = {"a": 1, "b": 10 * SMALL_FILE, "c": SMALL_FILE}
    download, skip = choose_downloads(
        ["c", "a", "b", "a"], sizes, full=True, sample_percent=0, rng=random.Random(1)
    )
    assert download == ["a", "b", "c"] and skip == []


def test_default_sample_takes_all_small_files_and_one_percent_of_large() -> None:
    small = {f"s{i}": SMALL_FILE - 1 for i in range(50)}
    large = {f"l{i:03d}": SMALL_FILE for i in range(300)}  # the boundary counts as large
    sizes = {**small, **large}
    download, skip = choose_downloads(
        sizes, sizes, full=False, sample_percent=DEFAULT_SAMPLE_PERCENT, rng=random.Random(7)
    )
    assert set(small) <= set(download)
    picked = [p for p in download if p in large]
    assert len(picked) == 3  # 1 % of 300
    assert sorted(picked + skip) == sorted(large)


def test_sample_takes_at_least_one_large_file_unless_zero() -> None:
    sizes = {"big1": 100 * MIB, "big2": 200 * MIB}
    download, skip = choose_downloads(
        sizes, sizes, full=False, sample_percent=1, rng=random.Random(1)
    )
    assert len(download) == 1 and len(skip) == 1
    download, skip = choose_downloads(
        sizes, sizes, full=False, sample_percent=0, rng=random.Random(1)
    )
    assert download == [] and skip == ["big1", "big2"]
    download, skip = choose_downloads(
        sizes, sizes, full=False, sample_percent=500, rng=random.Random(1)
    )
    assert download == ["big1", "big2"] and skip == []


def test_sample_varies_with_the_random_source_and_small_limit_is_adjustable() -> None:
    sizes = {f"f{i:03d}": 1000 for i in range(200)}
    picks = {
        tuple(
            choose_downloads(
                sizes, sizes, full=False, sample_percent=5, rng=random.Random(seed), small_file=1
            )[0]
        )
        for seed in range(5)
    }
    assert len(picks) > 1 and all(len(p) == 10 for p in picks)
    download, _ = choose_downloads(sizes, sizes, full=False, sample_percent=5, rng=random.Random(1))
    assert len(download) == 200  # all small with the default limit


def test_unknown_size_counts_as_small() -> None:
    download, skip = choose_downloads(
        ["gone"], {}, full=False, sample_percent=0, rng=random.Random(1)
    )
    assert download == ["gone"] and skip == []
