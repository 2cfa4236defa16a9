"""Safety guards decided before rclone changes anything in the backup. Pure: no I/O.

A guard looks at a preview of a folder's sync (an `rclone sync --dry-run` with the run's own
flags, followed line by line by `PreviewCollector`) and says whether the real sync may run.
rclone's own `--max-delete` counts as it goes: by the time it stops, it has archived that
many files, and a rerun then sees fewer deletions and passes. Counting first means a refused
folder is refused whole, every run, until the source is back or the user says `--force`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from photos_sync.core.rclone_log import parse_stats, would_copy

#: How many example paths a refusal names.
EXAMPLES = 5

#: rclone's NOTICE texts in a dry run (rclone 1.6x–1.7x, operations.go / sync.go).
_WOULD_ARCHIVE = "Skipped move into backup dir as --dry-run is set"
_WOULD_DELETE = "Skipped delete as --dry-run is set"


@dataclass(frozen=True, slots=True)
class FolderPreview:
    """What a folder's sync would do, from a dry run."""

    files_to_send: int = 0
    bytes_to_send: int = 0
    #: files deleted at the source: the sync would move them into the archive
    deletes: int = 0
    #: files whose content changed: the sync would archive the old copy and send the new
    replaced: int = 0
    deleted_examples: tuple[str, ...] = ()
    #: a few of the replaced files (folder-relative), when the preview knows them
    replaced_examples: tuple[str, ...] = ()
    #: rclone's exit status and last error line when the dry run itself failed
    exit_code: int = 0
    error: str | None = None


@dataclass
class PreviewCollector:
    """Follows the stderr lines of a dry-run sync and builds its FolderPreview.

    The archived paths come from rclone's per-file notices; the counts from its final stats
    (which also count the replaced files, moved "into backup dir" too, as renames).
    """

    files_to_send: int = 0
    bytes_to_send: int = 0
    deletes: int = 0
    replaced: int = 0
    errors: list[str] = field(default_factory=list)
    _archived: list[str] = field(default_factory=list)
    _replaced_paths: set[str] = field(default_factory=set)
    #: from the per-file "Skipped copy" notices: what a real run would send, encrypted
    _copies: int = 0
    _copy_bytes: int = 0

    def on_line(self, line: str) -> None:
        copy = would_copy(line)
        if copy is not None:
            # One line per file to send: read without a JSON parse (see rclone_log).
            self._copies += 1
            self._copy_bytes += encrypted_size(copy[1])
            return
        try:
            record = json.loads(line)
        except ValueError:
            return
        if not isinstance(record, dict):
            return
        stats = record.get("stats")
        if isinstance(stats, dict):
            progress = parse_stats(stats)
            self.files_to_send = progress.total_transfers
            self.bytes_to_send = progress.total_bytes
            self.deletes = progress.deletes
            self.replaced = progress.renames
            return
        message = str(record.get("msg", ""))
        level = str(record.get("level", ""))
        obj = record.get("object")
        if level in ("error", "critical", "fatal"):
            self.errors.append(f"{obj}: {message}" if obj else message)
        elif obj is not None and record.get("skipped") == "copy":
            # rclone's own totals also count the old copy of a replaced file (moved into the
            # archive, server-side: nothing is sent) and plain sizes: the real run sends each
            # file's crypt form.
            self._copies += 1
            size = record.get("size")
            if isinstance(size, int) and size >= 0:
                self._copy_bytes += encrypted_size(size)
        elif obj is not None and message.startswith("Skipped move as --dry-run"):
            # A changed file: rclone first names the old copy's move to the archive...
            self._replaced_paths.add(str(obj))
        elif (
            obj is not None
            and message.startswith((_WOULD_ARCHIVE, _WOULD_DELETE))
            and len(self._archived) < EXAMPLES * 4
        ):
            self._archived.append(str(obj))

    def preview(self, exit_code: int) -> FolderPreview:
        deleted = [p for p in self._archived if p not in self._replaced_paths]
        return FolderPreview(
            files_to_send=self._copies or self.files_to_send,
            bytes_to_send=self._copy_bytes if self._copies else self.bytes_to_send,
            deletes=self.deletes,
            replaced=self.replaced,
            deleted_examples=tuple(deleted[:EXAMPLES]),
            exit_code=exit_code,
            error=self.errors[-1] if exit_code and self.errors else None,
        )


#: rclone crypt's file format: a 32-byte header (magic and nonce), then blocks of up to 64 KiB
#: of data, each with a 16-byte authenticator.
_CRYPT_HEADER = 32
_CRYPT_BLOCK = 64 * 1024
_CRYPT_BLOCK_OVERHEAD = 16


def encrypted_size(plain: int) -> int:
    """The size of a file of `plain` bytes once rclone crypt has encrypted it."""
    blocks = -(-plain // _CRYPT_BLOCK)
    return _CRYPT_HEADER + plain + blocks * _CRYPT_BLOCK_OVERHEAD


@dataclass(frozen=True, slots=True)
class MaxChange:
    """BACKUP_MAX_CHANGE: how many of a folder's files a run may replace with new content
    (#17): `percent` of the files the backup holds, at least `files` (either may be unset)."""

    percent: float | None = 2.0
    files: int | None = 500

    def threshold(self, existing: int) -> int:
        by_share = int(existing * self.percent / 100) if self.percent else 0
        return max(by_share, self.files or 0)

    def describe(self) -> str:
        parts = [f"{self.percent:g}%"] if self.percent else []
        parts += [f"{self.files} files"] if self.files else []
        return " or ".join(parts) + (", whichever is larger" if len(parts) == 2 else "")


#: BACKUP_MAX_CHANGE's default: 2 % of the folder, at least 500 files.
DEFAULT_MAX_CHANGE = MaxChange(2.0, 500)


def parse_max_change(raw: str) -> MaxChange | None:
    """`2%`, `500`, `2%/500` (percent and floor), or `0`/`off` (None); ValueError else."""
    text = raw.strip().lower()
    if text in ("0", "off", "none"):
        return None
    percent: float | None = None
    files: int | None = None
    for part in text.split("/"):
        part = part.strip()
        if part.endswith("%"):
            percent = float(part[:-1])
            if not 0 < percent <= 100:
                raise ValueError(part)
        else:
            files = int(part)
            if files <= 0:
                raise ValueError(part)
    return MaxChange(percent, files)


def max_change_refusal(
    folder: str,
    replaced: int,
    existing: int,
    examples: tuple[str, ...],
    limit: MaxChange | None,
) -> str | None:
    """The refusal when a run would replace more of the folder's files with new content than
    BACKUP_MAX_CHANGE allows; None when it may go on. Immich writes originals once and never
    rewrites them: many replaced at once is ransomware encrypting in place, or a disk fault,
    and syncing would move the good copies into the archive, where they expire."""
    if limit is None or replaced <= limit.threshold(existing):
        return None
    shown = ", ".join(f"{folder}/{p}" for p in examples)
    return (
        f"refused: {replaced} of the {existing} files of {folder}/ in the backup changed "
        f"content at the source, more than BACKUP_MAX_CHANGE ({limit.describe()}); nothing "
        "was replaced" + (f" (e.g. {shown})" if shown else "") + ". Immich never rewrites "
        "its originals: check them (ransomware? a failing disk?) before anything else; if "
        "the change is intended, run `photos-sync backup --force` once (or raise "
        "BACKUP_MAX_CHANGE)"
    )


def max_delete_refusal(folder: str, preview: FolderPreview, max_delete: int | None) -> str | None:
    """The refusal message when the folder's sync would archive more deleted files than
    `max_delete` allows (None or 0: no limit); None when the sync may run."""
    if not max_delete or preview.deletes <= max_delete:
        return None
    examples = ", ".join(f"{folder}/{p}" for p in preview.deleted_examples)
    return (
        f"refused: {preview.deletes} files of {folder}/ were deleted at the source, more than "
        f"BACKUP_MAX_DELETE={max_delete}; nothing was archived"
        + (f" (e.g. {examples})" if examples else "")
        + ". If the deletions are intended, run `photos-sync backup --force` once (or raise "
        "BACKUP_MAX_DELETE); otherwise restore the files at the source"
    )
