"""verify_plan: rclone check output, objects without hashes, what a sampled verify downloads."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

from photos_sync.core.verify_plan import (
    ADDED,
    DEFAULT_SAMPLE_PERCENT,
    DELETED,
    MARKER,
    MODIFIED,
    SMALL_FILE,
    CheckOutcome,
    SourceProblem,
    choose_downloads,
    judge,
    listing_calls,
    nonce_reads,
    parse_check_errors,
    parse_combined,
    run_start,
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
    plain: list[dict[str, object]] = [
        {"Path": "u/a.jpg", "EncryptedPath": "e1/e2", "IsDir": False},
        {"Path": "u/b.mp4", "EncryptedPath": "e1/e3", "IsDir": False},
        {"Path": "u/c.mp4", "EncryptedPath": "e1/e4"},
        {"Path": "u", "EncryptedPath": "e1", "IsDir": True},
    ]
    stored: list[dict[str, object]] = [
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


# -- judging against the last backup -------------------------------------------------------------

BACKUP_STARTED = 1_000_000.0


def test_changes_after_the_backup_started_are_newer_not_problems() -> None:
    outcome = CheckOutcome(
        matched=["old.jpg"],
        missing=["new.jpg", "lost.jpg"],
        differ=["edited.jpg", "rotted.jpg"],
        extra=["immich-db-backup-1.sql.gz"],
    )
    verdict = judge(
        outcome,
        changed_at={
            "new.jpg": BACKUP_STARTED + 60,
            "lost.jpg": BACKUP_STARTED - 60,
            "edited.jpg": BACKUP_STARTED,  # the start itself counts as after
            "rotted.jpg": BACKUP_STARTED - 1,
        },
        since=BACKUP_STARTED,
    )
    assert verdict.missing == ["lost.jpg"]
    assert verdict.differ == ["rotted.jpg"]
    assert verdict.newer == [
        ("edited.jpg", MODIFIED),
        ("immich-db-backup-1.sql.gz", DELETED),
        ("new.jpg", ADDED),
    ]
    assert verdict.extra == ["immich-db-backup-1.sql.gz"]
    assert verdict.matched == ["old.jpg"] and not verdict.ok


def test_without_a_completed_backup_nothing_is_excused_by_time() -> None:
    outcome = CheckOutcome(missing=["a.jpg"], differ=["b.jpg"])
    changed = {"a.jpg": BACKUP_STARTED + 60, "b.jpg": BACKUP_STARTED + 60}
    verdict = judge(outcome, changed_at=changed, since=None)
    assert (verdict.missing, verdict.differ, verdict.newer) == (["a.jpg"], ["b.jpg"], [])


def test_a_file_whose_time_is_unknown_is_not_excused_and_a_vanished_one_is_deleted() -> None:
    outcome = CheckOutcome(missing=["unknown.jpg", "gone.jpg"], differ=["gone-too.jpg"])
    verdict = judge(
        outcome, changed_at={"gone.jpg": None, "gone-too.jpg": None}, since=BACKUP_STARTED
    )
    assert verdict.missing == ["unknown.jpg"]
    assert verdict.newer == [("gone-too.jpg", DELETED), ("gone.jpg", DELETED)]


def test_immich_markers_are_newer_whatever_their_time() -> None:
    outcome = CheckOutcome(differ=[".immich"], missing=["user/.immich"], extra=["x/.immich"])
    verdict = judge(
        outcome,
        changed_at={".immich": BACKUP_STARTED - 999, "user/.immich": BACKUP_STARTED - 999},
        since=BACKUP_STARTED,
    )
    assert verdict.ok
    assert verdict.newer == [(".immich", MARKER), ("user/.immich", MARKER), ("x/.immich", MARKER)]


def test_unreadable_source_files_and_folders_are_errors_that_hide_nothing_else() -> None:
    outcome = CheckOutcome(
        matched=["ok.jpg"],
        unchecked=["secret.jpg", "rotten-object.jpg"],
        extra=["locked/a.jpg", "locked/deep/b.jpg", "deleted.jpg"],
    )
    problems = [
        SourceProblem("locked/", "permission denied"),
        SourceProblem("secret.jpg", "permission denied"),
        SourceProblem("empty-locked/", "permission denied"),
    ]
    verdict = judge(outcome, changed_at={}, since=BACKUP_STARTED, source_problems=problems)
    assert verdict.unchecked == ["rotten-object.jpg"]  # the backup's side: a problem
    assert verdict.newer == [("deleted.jpg", DELETED)]  # not the files under locked/
    errors = dict(verdict.errors)
    assert set(errors) == {"locked/", "secret.jpg", "empty-locked/"}
    assert "source folder cannot be read (permission denied)" in errors["locked/"]
    assert "2 files below it in the backup not checked" in errors["locked/"]
    assert "not checked" not in errors["empty-locked/"]
    assert "source file cannot be read (permission denied)" in errors["secret.jpg"]
    assert "owner and mode" in errors["secret.jpg"]
    assert not verdict.ok


def test_an_unreadable_source_root_accounts_for_every_backup_file() -> None:
    outcome = CheckOutcome(extra=["a.jpg", "b/c.jpg"])
    verdict = judge(
        outcome,
        changed_at={},
        since=BACKUP_STARTED,
        source_problems=[SourceProblem("", "permission denied")],
    )
    assert verdict.newer == [] and verdict.extra == []
    assert verdict.errors[0][0] == "" and "2 files below it" in verdict.errors[0][1]


def test_a_file_or_folder_deleted_while_the_check_ran_is_newer() -> None:
    verdict = judge(
        CheckOutcome(unchecked=["x.jpg"], extra=["gone/a.jpg"]),
        changed_at={},
        since=BACKUP_STARTED,
        source_problems=[
            SourceProblem("x.jpg", "no such file or directory"),
            SourceProblem("gone/", "no such file or directory"),
        ],
    )
    assert verdict.ok
    assert verdict.newer == [("gone/a.jpg", DELETED), ("x.jpg", DELETED)]


def _log(level: str, msg: str, obj: str) -> str:
    return json.dumps({"time": "t", "level": level, "msg": msg, "object": obj})


def test_check_errors_are_sorted_by_side() -> None:
    # lines as rclone 1.75 `cryptcheck --use-json-log` prints them (recorded while developing)
    stderr = "\n".join(
        [
            _log(
                "error",
                'failed to open directory "b/sub": open /src/lib/b/sub: permission denied',
                "b/sub",
            ),
            _log("error", "file not in Local file system at /src/lib", "b/sub/f.txt"),
            _log(
                "error",
                "error computing hash: failed to open src: open /src/lib/a/f.txt: "
                "permission denied",
                "a/f.txt",
            ),
            _log(
                "error",
                "error computing hash: failed to open object to read nonce: not an encrypted "
                "file - bad magic string",
                "c/f.txt",
            ),
            _log("error", 'failed to open directory "": open /src/lib: input/output error', ""),
            _log(
                "error",
                "error reading hash from underlying x/y: hash: failed to open: open "
                "/src/library-backup/x/y: permission denied",
                "d/f.txt",
            ),
            _log("notice", "1 differences found", ""),
            "2026/11/25 12:00:00 ERROR : not json",
        ]
    )
    errors = parse_check_errors(stderr, "/src/lib/")
    assert errors.source == (
        SourceProblem("b/sub/", "permission denied"),
        SourceProblem("a/f.txt", "permission denied"),
        SourceProblem("", "input/output error"),
    )
    assert len(errors.other) == 2
    assert "bad magic" in errors.other[0] and "library-backup" in errors.other[1]


def test_nonce_reads_count_every_hashed_pair_and_listings_every_thousand_names() -> None:
    outcome = CheckOutcome(
        matched=["a", "b", "big"], differ=["c"], unchecked=["d"], missing=["e"], extra=["f"]
    )
    assert nonce_reads(outcome) == 5  # not the file only in the source or only in the backup
    assert nonce_reads(outcome, {"big"}) == 4  # objects without a hash are not opened
    assert listing_calls(0, cloud=True) == 3
    assert listing_calls(1000, cloud=True) == 3
    assert listing_calls(1_000_000, cloud=True) == 3000
    assert listing_calls(1_000_000, cloud=False) == 0


def test_a_run_started_when_its_jobs_were_created_or_else_at_its_stamp() -> None:
    created = datetime(2026, 11, 25, 3, 0, 0, 250000, tzinfo=UTC)
    assert run_start("20261125T030001Z", created) == created
    assert run_start("20261125T030001Z", None) == datetime(2026, 11, 25, 3, 0, 1, tzinfo=UTC)
    assert run_start("garbage", None) is None
