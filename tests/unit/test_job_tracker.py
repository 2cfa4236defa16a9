"""The runner's per-attempt tracker: figures a failed job shows, skips it names."""

from __future__ import annotations

import json

from photos_sync.engine.runner import _JobTracker
from tests.support.records import running_job

MIB = 1024 * 1024


def _stats(sent: int, total: int, transfers: int, total_transfers: int) -> str:
    return json.dumps(
        {
            "level": "notice",
            "msg": "stats",
            "stats": {
                "bytes": sent,
                "totalBytes": total,
                "transfers": transfers,
                "totalTransfers": total_transfers,
            },
        }
    )


def test_a_transfer_that_fails_half_way_does_not_show_as_complete() -> None:
    """rclone drops a failed file from its final total: 48.5 of 188.7 MiB must not read
    "48.5 MiB/48.5 MiB" (100 %) on a FAILED job."""
    tracker = _JobTracker(running_job(), (), lambda: None)
    tracker.on_line(_stats(10 * MIB, int(188.7 * MIB), 1, 4))
    tracker.on_line(_stats(int(48.5 * MIB), int(188.7 * MIB), 2, 4))
    tracker.on_line(_stats(int(48.5 * MIB), int(48.5 * MIB), 2, 2))  # after the failure
    fields = tracker.fields()
    assert fields["bytes_transferred"] == int(48.5 * MIB)
    assert fields["bytes_total"] == int(188.7 * MIB)
    assert fields["files_total"] == 4


def test_skips_are_counted_once_and_consequences_are_not_errors() -> None:
    tracker = _JobTracker(running_job(), (), lambda: None)
    lines = [
        {
            "level": "notice",
            "msg": "Can't follow symlink without -L/--copy-links",
            "object": "user9",
        },
        {
            "level": "error",
            "msg": "Failed to copy: failed to open source object: open /x/a.jpg: permission denied",
            "object": "a.jpg",
        },
        {
            "level": "error",
            "msg": "not deleting files as there were IO errors",
            "object": "Local file system at /d",
        },
        {"level": "error", "msg": "Attempt 1/2 failed with 1 errors and: permission denied"},
    ]
    for _ in range(2):  # rclone's second pass repeats every line
        for line in lines:
            tracker.on_line(json.dumps(line))
    assert tracker.skips.count == 2
    assert tracker.only_skips
    tracker.on_line(json.dumps({"level": "error", "msg": "connection reset", "object": "b.jpg"}))
    assert not tracker.only_skips
