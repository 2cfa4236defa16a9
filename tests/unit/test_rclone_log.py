"""photos_sync.core.rclone_log: parsing real rclone JSON log lines, exit codes, failure hints.

The fixtures under fixtures/rclone/ are unedited stderr captures of the real rclone binary
(see fixtures/rclone/README.md for how each was produced).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from photos_sync.core.rclone_log import (
    ErrorLine,
    FileCopied,
    OtherLine,
    Outcome,
    Progress,
    StatsLine,
    classify_exit,
    explain_failure,
    parse_line,
    parse_stats,
)

FIXTURES = Path(__file__).parent / "fixtures" / "rclone"


def lines(name: str) -> list[str]:
    text = (FIXTURES / name).read_text(encoding="utf-8")
    return text.splitlines()


def events(name: str) -> list[object]:
    return [parse_line(line) for line in lines(name)]


def stats_of(name: str) -> list[Progress]:
    return [e.progress for e in events(name) if isinstance(e, StatsLine)]


def test_fixtures_are_real_json_lines() -> None:
    names = sorted(p.name for p in FIXTURES.glob("*.jsonl"))
    assert names == [
        "archive_replaced.jsonl",
        "dry_run.jsonl",
        "max_delete.jsonl",
        "missing_source.jsonl",
        "sync_bwlimit.jsonl",
        "sync_library_backup_dir.jsonl",
    ]
    for name in names:
        for line in lines(name):
            record = json.loads(line)
            assert {"time", "level", "msg", "source"} <= set(record)


# --- a successful, bandwidth-limited sync -----------------------------------------------------


def test_bwlimit_sync_event_kinds_in_order() -> None:
    kinds = [type(e).__name__ for e in events("sync_bwlimit.jsonl")]
    assert kinds == [
        "OtherLine",  # Starting bandwidth limiter
        "FileCopied",
        "StatsLine",  # mid-transfer
        "FileCopied",
        "StatsLine",  # mid-transfer
        "FileCopied",
        "OtherLine",  # Set directory modification time
        "StatsLine",  # final
    ]


def test_mid_transfer_stats_line() -> None:
    first = stats_of("sync_bwlimit.jsonl")[0]
    assert first == Progress(
        bytes=458755,
        total_bytes=900003,
        transfers=1,
        total_transfers=3,
        speed=458718.2346509292,
        eta=0.0,
        errors=0,
        checks=0,
        total_checks=0,
        deletes=0,
        renames=0,
        listed=4,
        elapsed=1.001107603,
        last_error=None,
        fatal=False,
    )
    assert first.bytes < first.total_bytes


def test_stats_progress_grows_to_the_total() -> None:
    snapshots = stats_of("sync_bwlimit.jsonl")
    assert [p.bytes for p in snapshots] == [458755, 824291, 900003]
    assert [p.transfers for p in snapshots] == [1, 2, 3]
    assert {p.total_bytes for p in snapshots} == {900003}
    assert {p.total_transfers for p in snapshots} == {3}
    assert snapshots[-1].elapsed == pytest.approx(2.196976808)
    assert snapshots[-1].speed == pytest.approx(412127.0623123131)


def test_copied_lines_carry_object_and_size() -> None:
    copied = [e for e in events("sync_bwlimit.jsonl") if isinstance(e, FileCopied)]
    assert copied == [
        FileCopied("c.txt", 3),
        FileCopied("sub/b.mp4", 300000),
        FileCopied("a.jpg", 600000),
    ]
    assert sum(c.size for c in copied) == stats_of("sync_bwlimit.jsonl")[-1].total_bytes


def test_other_info_lines_keep_level_and_message() -> None:
    evs = events("sync_bwlimit.jsonl")
    assert evs[0] == OtherLine("info", "Starting bandwidth limiter at 400Ki Byte/s")
    assert evs[6] == OtherLine(
        "info", "Set directory modification time (using DirSetModTime)", "sub"
    )


def test_unknown_eta_is_none_and_zero_sized_marker_is_copied() -> None:
    evs = events("sync_library_backup_dir.jsonl")
    assert evs[1] == FileCopied(".immich", 0)
    snapshots = stats_of("sync_library_backup_dir.jsonl")
    assert snapshots[0].eta is None  # rclone printed "ETA -"
    assert snapshots[0].speed == 0.0
    assert snapshots[0].bytes == 1077248
    assert snapshots[-1].eta == 0.0
    assert snapshots[-1].bytes == snapshots[-1].total_bytes == 2700000
    copied = [e for e in evs if isinstance(e, FileCopied)]
    assert [c.object for c in copied] == [".immich", "admin/IMG_0001.jpg", "admin/IMG_0002.heic"]


def test_archive_moves_are_not_counted_as_copies() -> None:
    evs = events("archive_replaced.jsonl")
    assert [e for e in evs if isinstance(e, FileCopied)] == [FileCopied("a.jpg", 1000)]
    others = [e for e in evs if isinstance(e, OtherLine)]
    assert others == [
        OtherLine("info", "Moved (server-side)", "a.jpg"),
        OtherLine("info", "Moved (server-side)", "c.txt"),
        OtherLine("info", "Moved into backup dir", "c.txt"),
    ]
    final = stats_of("archive_replaced.jsonl")[-1]
    assert (final.deletes, final.renames, final.checks, final.total_checks) == (1, 2, 6, 6)
    assert final.listed == 9


def test_dry_run_lines() -> None:
    evs = events("dry_run.jsonl")
    assert evs[0] == OtherLine(
        "notice", "Skipped move into backup dir as --dry-run is set (size 4)", "d.txt"
    )
    assert evs[1] == OtherLine("info", "There was nothing to transfer")
    final = stats_of("dry_run.jsonl")[-1]
    assert (final.total_transfers, final.total_bytes, final.deletes) == (0, 0, 1)


# --- failures ---------------------------------------------------------------------------------


def test_max_delete_error_lines() -> None:
    evs = events("max_delete.jsonl")
    errors = [e.message for e in evs if isinstance(e, ErrorLine)]
    assert errors == [
        "c.txt: Got fatal error on delete: --max-delete threshold reached",
        "Cancelling sync due to fatal error: failed to delete 1 files",
        "Local file system at dst: not deleting directories as there were IO errors",
        "Fatal error received - not attempting retries",
    ]
    final = stats_of("max_delete.jsonl")[-1]
    assert final.fatal is True
    assert final.errors == 2
    assert final.last_error == "failed to delete 1 files"
    assert final.eta is None
    assert evs[-1] == OtherLine(
        "notice", "Failed to sync with 2 errors: last error was: failed to delete 1 files"
    )


def test_missing_source_error_lines() -> None:
    evs = events("missing_source.jsonl")
    errors = [e.message for e in evs if isinstance(e, ErrorLine)]
    assert errors[0] == (
        "Local file system at nosuchdir: error reading source root directory: directory not found"
    )
    assert errors[-1] == "Attempt 1/1 failed with 1 errors and: directory not found"
    final = stats_of("missing_source.jsonl")[-1]
    assert final.fatal is False
    assert final.errors == 1
    assert final.last_error == "directory not found"
    assert final.listed == 4


def test_real_failures_classify_and_explain() -> None:
    # max_delete.jsonl came from an rclone that exited 7, missing_source.jsonl from exit 3.
    assert classify_exit(7) is Outcome.FATAL
    assert classify_exit(3) is Outcome.FATAL
    # What the runner keeps as the last error is the final stats line's lastError.
    max_delete_error = stats_of("max_delete.jsonl")[-1].last_error
    explained = explain_failure(7, max_delete_error)
    assert explained.startswith("failed to delete 1 files (")
    assert "BACKUP_MAX_DELETE" in explained
    assert "--force" in explained
    missing_error = stats_of("missing_source.jsonl")[-1].last_error
    assert explain_failure(3, missing_error) == "directory not found"


# --- parse_line on synthetic edge cases -------------------------------------------------------


@pytest.mark.parametrize("level", ["error", "critical", "fatal"])
def test_error_levels(level: str) -> None:
    line = json.dumps({"level": level, "msg": " boom \n", "object": "x/y.jpg"})
    assert parse_line(line) == ErrorLine("x/y.jpg: boom", "x/y.jpg", level)
    assert parse_line(json.dumps({"level": level, "msg": "boom"})) == ErrorLine("boom", None, level)
    assert parse_line(json.dumps({"level": level, "msg": "boom", "object": ""})) == ErrorLine(
        "boom", None, level
    )


def test_stats_win_over_level() -> None:
    line = json.dumps({"level": "error", "msg": "x", "stats": {"bytes": 5}})
    assert parse_line(line) == StatsLine(Progress(bytes=5))


def test_copied_needs_an_object() -> None:
    assert parse_line(json.dumps({"level": "info", "msg": "Copied (new)"})) == OtherLine(
        "info", "Copied (new)"
    )
    line = json.dumps({"level": "info", "msg": "Copied (replaced existing)", "object": "a"})
    assert parse_line(line) == FileCopied("a", 0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", OtherLine("text", "")),
        ("   ", OtherLine("text", "")),
        ("2025/01/01 12:00:00 NOTICE: plain text log", None),
        ("panic: runtime error: index out of range", None),
        ("{not json", None),
        ("[1, 2, 3]", None),
        ('"just a string"', None),
        ("42", None),
        ("null", None),
        ("\x00\xff garbage \ufffd", None),
    ],
)
def test_non_json_and_non_object_lines_are_text(text: str, expected: OtherLine | None) -> None:
    assert parse_line(text) == (expected or OtherLine("text", text.strip()))


def test_line_endings_are_stripped() -> None:
    line = lines("sync_bwlimit.jsonl")[1] + "\r\n"
    assert parse_line(line) == FileCopied("c.txt", 3)


def test_record_without_level_or_msg() -> None:
    assert parse_line("{}") == OtherLine("", "")
    assert parse_line('{"msg": 5}') == OtherLine("", "5")


def test_parse_stats_ignores_wrong_types() -> None:
    progress = parse_stats(
        {
            "bytes": "12",
            "totalBytes": None,
            "transfers": True,
            "speed": "fast",
            "eta": False,
            "errors": 2.0,
            "elapsedTime": 3,
            "lastError": "",
            "fatalError": 0,
        }
    )
    assert progress == Progress(errors=2, elapsed=3.0)
    assert isinstance(progress.errors, int)
    assert isinstance(progress.elapsed, float)


@pytest.mark.parametrize("number", ["Infinity", "-Infinity", "NaN", "1e400", "1" + "0" * 400])
def test_non_finite_and_huge_numbers_do_not_raise(number: str) -> None:
    """Python's json accepts these; parse_line must not crash the log reader on them."""
    keys = ("bytes", "totalBytes", "speed", "eta", "elapsedTime", "errors", "transfers")
    stats_line = '{"level":"notice","stats":{' + ",".join(f'"{k}":{number}' for k in keys) + "}}"
    event = parse_line(stats_line)
    assert isinstance(event, StatsLine)
    progress = event.progress
    assert progress.speed == 0.0
    assert progress.elapsed == 0.0
    assert progress.bytes == (int(number) if number.isdigit() else 0)
    assert progress.eta == 0.0
    copied = parse_line('{"level":"info","msg":"Copied (new)","object":"a","size":' + number + "}")
    assert isinstance(copied, FileCopied)
    assert copied.object == "a"


def test_float_counters_are_truncated_to_int() -> None:
    progress = parse_stats({"bytes": 10.9, "transfers": 2.0, "speed": 7})
    assert (progress.bytes, progress.transfers, progress.speed) == (10, 2, 7.0)
    assert isinstance(progress.speed, float)


def test_parse_stats_of_empty_object_is_all_zero() -> None:
    assert parse_stats({}) == Progress()
    assert Progress().eta is None and Progress().last_error is None


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_parse_line_never_raises_on_arbitrary_text(text: str) -> None:
    event = parse_line(text)
    assert isinstance(event, StatsLine | ErrorLine | FileCopied | OtherLine)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=10,
)
record_keys = st.sampled_from(
    ["level", "msg", "stats", "object", "size", "bytes", "eta", "lastError", "totalBytes"]
)
numbers = st.integers(min_value=-(10**30), max_value=10**30) | st.floats(allow_nan=True)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["bytes", "totalBytes", "speed", "eta", "elapsedTime", "errors"]),
        numbers,
    ),
    numbers,
)
def test_parse_line_never_raises_on_any_numbers(stats: dict[str, float], size: float) -> None:
    assert isinstance(parse_line(json.dumps({"stats": stats})), StatsLine)
    copied = json.dumps({"level": "info", "msg": "Copied (new)", "object": "o", "size": size})
    assert isinstance(parse_line(copied), FileCopied)


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(record_keys | st.text(max_size=8), json_values, max_size=6),
    st.dictionaries(record_keys, json_values, max_size=6),
)
def test_parse_line_never_raises_on_odd_json_records(
    record: dict[str, object], stats: dict[str, object]
) -> None:
    assert parse_line(json.dumps(record)) is not None
    assert parse_line(json.dumps({**record, "stats": stats})) is not None


# --- exit codes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        (0, Outcome.SUCCESS),
        (1, Outcome.RETRYABLE),  # error not otherwise categorised
        (2, Outcome.FATAL),  # syntax or usage error
        (3, Outcome.FATAL),  # directory not found
        (4, Outcome.RETRYABLE),  # file not found
        (5, Outcome.RETRYABLE),  # temporary error
        (6, Outcome.RETRYABLE),  # less serious (NoRetry) errors
        (7, Outcome.FATAL),  # fatal error, e.g. --max-delete
        (8, Outcome.RETRYABLE),  # transfer limit exceeded
        (9, Outcome.SUCCESS),  # no files transferred
        (10, Outcome.RETRYABLE),  # --max-duration reached
    ],
)
def test_documented_exit_codes(code: int, outcome: Outcome) -> None:
    assert classify_exit(code) is outcome


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL, signal.SIGINT, signal.SIGHUP])
def test_killed_by_a_signal_is_interrupted(sig: signal.Signals) -> None:
    assert classify_exit(-int(sig)) is Outcome.INTERRUPTED


@pytest.mark.parametrize("code", [128 + 2, 128 + 9, 128 + 15])
def test_shell_style_signal_codes_are_interrupted(code: int) -> None:
    assert classify_exit(code) is Outcome.INTERRUPTED


@pytest.mark.parametrize("code", [11, 42, 126, 127, 255])
def test_unknown_exit_codes_are_retryable(code: int) -> None:
    assert classify_exit(code) is Outcome.RETRYABLE


def test_outcome_values() -> None:
    assert [o.value for o in Outcome] == ["success", "retryable", "fatal", "interrupted"]


# --- explain_failure --------------------------------------------------------------------------


def test_explain_without_error_text() -> None:
    assert explain_failure(5, None) == "rclone exited with status 5"
    assert explain_failure(2, "") == "rclone exited with status 2"


def test_explain_passes_unknown_errors_through() -> None:
    assert explain_failure(2, "connection reset by peer") == "connection reset by peer"


def test_explain_max_delete_threshold() -> None:
    msg = "c.txt: Got fatal error on delete: --max-delete threshold reached"
    assert explain_failure(7, msg) == (
        f"{msg} (more files would be archived than BACKUP_MAX_DELETE allows; "
        "check the source, then rerun with --force or raise BACKUP_MAX_DELETE)"
    )


def test_failed_deletes_without_a_fatal_exit_get_no_max_delete_hint() -> None:
    assert explain_failure(2, "failed to delete 3 files") == "failed to delete 3 files"


def test_explain_disk_full() -> None:
    msg = "write /mnt/nas/x: No Space Left On Device"
    assert explain_failure(5, msg) == (
        f"{msg} (the destination disk is full: free space or use a larger disk, then run again)"
    )


def test_explain_permission_denied() -> None:
    msg = "mkdir /mnt/nas/immich: permission denied"
    assert explain_failure(2, msg) == (
        f"{msg} (photos-sync may not write there; check the destination's owner and mode)"
    )


def test_exit_codes_of_the_real_rclone(rclone: str, tmp_path: Path) -> None:
    """The mapping holds for what the bundled rclone really returns."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "keep.jpg").write_bytes(b"k")
    (src / "gone.jpg").write_bytes(b"g")
    dst = tmp_path / "dst"
    env = {**os.environ, "RCLONE_CONFIG": ""}

    def code(*args: str) -> int:
        argv = [rclone, *args, "--retries", "1"]
        return subprocess.run(argv, capture_output=True, env=env, timeout=60).returncode

    assert code("sync", str(src), str(dst)) == 0
    assert classify_exit(0) is Outcome.SUCCESS
    usage = code("sync", str(src), str(dst), "--bwlimit", "fast")
    assert (usage, classify_exit(usage)) == (2, Outcome.FATAL)
    missing = code("sync", str(tmp_path / "nowhere"), str(dst))
    assert (missing, classify_exit(missing)) == (3, Outcome.FATAL)
    (src / "gone.jpg").unlink()
    archive = str(tmp_path / "archive")
    max_delete = code("sync", str(src), str(dst), "--backup-dir", archive, "--max-delete", "0")
    assert (max_delete, classify_exit(max_delete)) == (7, Outcome.FATAL)
    assert (dst / "gone.jpg").exists()


def test_multi_thread_copies_are_counted_like_any_other() -> None:
    """rclone 1.75's own line for a file above --multi-thread-cutoff sent to a local disk."""
    line = json.dumps(
        {
            "time": "2026-11-30T10:34:28.955427438Z",
            "level": "info",
            "msg": "Multi-thread Copied (new)",
            "size": 5000000,
            "object": "big.mp4",
            "objectType": "*crypt.Object",
            "source": "operations/copy.go:382",
        }
    )
    assert parse_line(line) == FileCopied("big.mp4", 5000000)
