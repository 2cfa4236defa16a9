"""The pure guards: a dry run's preview, the BACKUP_MAX_DELETE refusal, crypt sizes."""

from __future__ import annotations

import json

from photos_sync.core.guards import PreviewCollector, encrypted_size, max_delete_refusal


def _notice(msg: str, obj: str, **extra: object) -> str:
    return json.dumps({"level": "notice", "msg": msg, "object": obj, **extra})


#: What rclone 1.75.2 logs for `sync --dry-run --backup-dir` with 3 files deleted at the
#: source, one changed (f4: 1000 -> 500 bytes) and one new (new1, 500 bytes).
DRY_RUN = [
    _notice("Skipped move as --dry-run is set (size 1000)", "f4", skipped="move", size=1000),
    _notice("Skipped copy as --dry-run is set (size 500)", "new1", skipped="copy", size=500),
    _notice("Skipped copy as --dry-run is set (size 500)", "f4", skipped="copy", size=500),
    *(
        _notice(
            "Skipped move into backup dir as --dry-run is set (size 1000)",
            f"f{i}",
            skipped="move into backup dir",
            size=1000,
        )
        for i in (1, 2, 3)
    ),
    json.dumps(
        {
            "level": "notice",
            "msg": "stats",
            "stats": {
                "bytes": 2000,
                "totalBytes": 2000,
                "deletes": 3,
                "renames": 1,
                "transfers": 2,
                "totalTransfers": 2,
            },
        }
    ),
]


def test_preview_counts_deletions_replacements_and_what_a_run_would_send() -> None:
    collector = PreviewCollector()
    for line in DRY_RUN:
        collector.on_line(line)
    preview = collector.preview(0)
    assert (preview.deletes, preview.replaced) == (3, 1)
    assert preview.deleted_examples == ("f1", "f2", "f3")
    assert preview.files_to_send == 2
    # rclone's own total (2000) counts the old f4 archived server-side; a real run sends the
    # two new files' encrypted forms
    assert preview.bytes_to_send == 2 * encrypted_size(500)


def test_encrypted_size_matches_rclone_crypt() -> None:
    assert encrypted_size(0) == 32
    assert encrypted_size(1) == 32 + 1 + 16
    assert encrypted_size(65536) == 32 + 65536 + 16
    assert encrypted_size(65537) == 32 + 65537 + 32


def test_refusal_only_above_the_limit_and_never_with_no_limit() -> None:
    collector = PreviewCollector()
    for line in DRY_RUN:
        collector.on_line(line)
    preview = collector.preview(0)
    assert max_delete_refusal("library", preview, 3) is None
    assert max_delete_refusal("library", preview, 0) is None
    assert max_delete_refusal("library", preview, None) is None
    refusal = max_delete_refusal("library", preview, 2)
    assert refusal is not None
    assert "3 files of library/ were deleted" in refusal
    assert "library/f1" in refusal and "nothing was archived" in refusal
