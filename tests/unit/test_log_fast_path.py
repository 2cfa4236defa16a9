"""The per-file lines of rclone read without a JSON parse (#15.4) read exactly as the full
parse reads them.

The corpus is the real rclone's own output (fixtures/rclone/*.jsonl and
fixtures/rclone/per_file/*.jsonl, produced by per_file/make.sh): names with quotes,
backslashes, invalid UTF-8, tabs, leading spaces, HTML characters, a multi-thread copy, a name
too long, a symbolic link, a dry run. Hypothesis then mutates those lines (repeated keys,
escapes, other levels, odd numbers, truncation) to look for a line the fast paths misread.
"""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from photos_sync.core.guards import PreviewCollector, encrypted_size
from photos_sync.core.rclone_log import (
    FileCopied,
    OtherLine,
    copied_file,
    is_quiet_info,
    parse_json_line,
    parse_line,
    would_copy,
)
from photos_sync.engine.runner import _JobTracker
from tests.support.records import running_job

FIXTURES = Path(__file__).parent / "fixtures" / "rclone"
PER_FILE = FIXTURES / "per_file"


def corpus() -> list[str]:
    found = []
    for path in sorted([*FIXTURES.glob("*.jsonl"), *PER_FILE.glob("*.jsonl")]):
        found += path.read_text(encoding="utf-8").splitlines(keepends=True)
    return found


CORPUS = corpus()


def agree(line: str) -> None:
    """What each fast path says of `line` is what the full JSON parse says."""
    reference = parse_json_line(line)
    copied = copied_file(line)
    if copied is not None:
        assert copied == reference
    assert parse_line(line) == reference
    if is_quiet_info(line):
        assert isinstance(reference, OtherLine) and reference.level in ("info", "text")
    pair = would_copy(line)
    if pair is not None:
        record = json.loads(line)
        assert record["level"] == "notice" and record["skipped"] == "copy"
        assert "stats" not in record
        assert (record["object"], record["size"]) == pair
        assert isinstance(record["size"], int) and not isinstance(record["size"], bool)


def test_the_corpus_is_the_real_rclone_s_and_covers_the_per_file_lines() -> None:
    assert len(CORPUS) > 100
    messages = {str(json.loads(line).get("msg")) for line in CORPUS}
    for expected in (
        "Copied (new)",
        "Multi-thread Copied (new)",
        "Moved into backup dir",
        "Can't follow symlink without -L/--copy-links",
    ):
        assert expected in messages
    assert any(m.startswith("Skipped copy as --dry-run is set") for m in messages)


def test_every_real_line_reads_the_same_through_the_fast_paths() -> None:
    for line in CORPUS:
        agree(line)


def test_the_fast_paths_take_the_plain_per_file_lines_and_leave_escaped_names_to_json() -> None:
    copied = [line for line in CORPUS if isinstance(parse_json_line(line), FileCopied)]
    fast = [line for line in copied if copied_file(line) is not None]
    escaped = [line for line in copied if '\\"' in line or "\\\\" in line or "\\u" in line]
    assert escaped, "the corpus names a file with a quote, a backslash and invalid UTF-8"
    assert sorted(fast) == sorted(set(copied) - set(escaped))
    assert all(copied_file(line) is None for line in escaped)
    info = [line for line in CORPUS if json.loads(line).get("level") == "info"]
    quiet = [line for line in info if not isinstance(parse_json_line(line), FileCopied)]
    assert quiet and all(is_quiet_info(line) for line in quiet)
    would = [line for line in CORPUS if json.loads(line).get("skipped") == "copy"]
    assert would and all(would_copy(line) is not None for line in would)


#: What a mutation puts into a real line: JSON's structure, escapes, keys the paths look for.
_PIECES = st.sampled_from(
    [
        '"',
        "\\",
        "\\u0043",
        "\\n",
        " ",
        "\t",
        ",",
        ":",
        "}",
        "{",
        "0",
        "-1",
        "1.5",
        "01",
        "true",
        "null",
        '"level":"error"',
        '"level":"info"',
        '"msg":"Copied (new)"',
        '"msg":"Duplicate object found in source - ignoring"',
        '"stats":{"bytes":5}',
        '"object":""',
        '"object":"x"',
        '"size":7',
        '"skipped":"copy"',
        "Copied",
        "Multi-thread ",
        "notice",
        "\x01",
        "é",
    ]
)


@st.composite
def mutated_lines(draw: st.DrawFn) -> str:
    line = draw(st.sampled_from(CORPUS))
    for _ in range(draw(st.integers(1, 3))):
        start = draw(st.integers(0, len(line)))
        end = draw(st.integers(start, min(len(line), start + 12)))
        piece = "".join(draw(st.lists(_PIECES, min_size=0, max_size=3)))
        line = line[:start] + piece + line[end:]
    return line


_SET_MODTIME = (
    '{"time":"2026-11-30T13:48:51.1Z","level":"info","msg":"Set directory modification time '
    '(using SetModTime)","object":"a","objectType":"*fs.DirWrapper","source":"x.go:1"}\n'
)


@settings(max_examples=600, deadline=None)
@given(mutated_lines())
@example(_SET_MODTIME.replace(',"source"', ',"level":"error","source"'))
@example(_SET_MODTIME.replace(',"source"', ',"msg":"Copied (new)","source"'))
@example(_SET_MODTIME.replace(',"source"', ',"stats":{"bytes":1},"source"'))
@example(_SET_MODTIME.replace('"object":"a"', '"object":"a","size":1'))
def test_a_mutated_real_line_is_never_misread_by_a_fast_path(line: str) -> None:
    agree(line)


def test_the_tracker_counts_every_sent_file_and_names_every_skip_of_a_real_sync() -> None:
    lines = (PER_FILE / "full_sync.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    changes: list[int] = []
    tracker = _JobTracker(running_job(), (), lambda: changes.append(1))
    for line in lines:
        tracker.on_line(line)
    copied = [e for e in map(parse_json_line, lines) if isinstance(e, FileCopied)]
    assert tracker.confirmed_files == len(copied) == 15
    assert tracker.confirmed_bytes == sum(e.size for e in copied)
    assert {(s.path, s.reason.value) for s in tracker.skips.named()} == {
        ("library/a/link.jpg", "symlink"),
        ("library/a/" + "n" * 200 + ".jpg", "name_too_long"),
    }
    assert tracker.only_skips
    assert changes, "stats lines still reach the watchers"


def test_the_preview_of_a_real_dry_run() -> None:
    collector = PreviewCollector()
    for line in (PER_FILE / "dry_run_changes.jsonl").read_text(encoding="utf-8").splitlines():
        collector.on_line(line)
    preview = collector.preview(0)
    assert preview.files_to_send == 3  # f7 (new), f1 (changed), the name too long
    assert preview.bytes_to_send == encrypted_size(3) + encrypted_size(16) + encrypted_size(1)
    assert (preview.deletes, preview.replaced) == (2, 1)
    assert preview.deleted_examples == ("a/f2.jpg", 'a/quote"d.jpg')
