"""Parse rclone's `--use-json-log` output and exit codes. Pure: no I/O.

Each stderr line of rclone is one JSON object such as
`{"time": "...", "level": "notice", "msg": "...", "stats": {...}, "source": "..."}`.
Lines carrying `stats` become Progress records; `error` lines become error messages;
`Copied ...` INFO lines count finished files.
"""

from __future__ import annotations

import enum
import json
import math
import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Progress:
    """One rclone stats snapshot, for the current invocation only."""

    bytes: int = 0
    total_bytes: int = 0
    transfers: int = 0
    total_transfers: int = 0
    speed: float = 0.0
    eta: float | None = None
    errors: int = 0
    checks: int = 0
    total_checks: int = 0
    deletes: int = 0
    renames: int = 0
    listed: int = 0
    elapsed: float = 0.0
    last_error: str | None = None
    fatal: bool = False


@dataclass(frozen=True, slots=True)
class StatsLine:
    progress: Progress


@dataclass(frozen=True, slots=True)
class ErrorLine:
    message: str
    #: the plain path rclone names (relative to the sync's source or destination), if any
    object: str | None = None
    level: str = "error"


@dataclass(frozen=True, slots=True)
class FileCopied:
    object: str
    size: int


@dataclass(frozen=True, slots=True)
class SkippedName:
    """rclone ignored a file or folder of the source as a duplicate name (a NOTICE, not an
    error: the sync still exits 0). `path` is relative to the sync's source; JSON shows
    undecodable bytes as U+FFFD."""

    path: str
    is_directory: bool


@dataclass(frozen=True, slots=True)
class OtherLine:
    level: str
    message: str
    object: str | None = None


LogEvent = StatsLine | ErrorLine | FileCopied | SkippedName | OtherLine


def _float(value: Any) -> float:
    """A finite float, or 0.0 (JSON may carry Infinity, NaN or an int beyond float range)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return 0.0
    try:
        result = float(value)
    except OverflowError:
        return 0.0
    return result if math.isfinite(result) else 0.0


def _int(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return int(_float(value))


def parse_stats(stats: dict[str, Any]) -> Progress:
    """A Progress from rclone's `stats` object; unknown or missing fields default to zero."""
    eta = stats.get("eta")
    last_error = stats.get("lastError")
    return Progress(
        bytes=_int(stats.get("bytes")),
        total_bytes=_int(stats.get("totalBytes")),
        transfers=_int(stats.get("transfers")),
        total_transfers=_int(stats.get("totalTransfers")),
        speed=_float(stats.get("speed")),
        eta=_float(eta) if isinstance(eta, int | float) and not isinstance(eta, bool) else None,
        errors=_int(stats.get("errors")),
        checks=_int(stats.get("checks")),
        total_checks=_int(stats.get("totalChecks")),
        deletes=_int(stats.get("deletes")),
        renames=_int(stats.get("renames")),
        listed=_int(stats.get("listed")),
        elapsed=_float(stats.get("elapsedTime")),
        last_error=str(last_error) if last_error else None,
        fatal=bool(stats.get("fatalError")),
    )


#: rclone's march notices for a source entry it drops because another entry of the same
#: folder has the same name after normalisation (rclone 1.75 march/march.go), and whether it
#: is a folder. With `--no-unicode-normalization` rclone no longer drops Unicode twins; these
#: stay parsed so that anything rclone still drops is named, never silent.
_SKIPPED_NOTICES = {
    "Duplicate object found in source - ignoring": False,
    "Duplicate directory found in source - ignoring": True,
}


#: The start of rclone's message for a file it sent. Files of --multi-thread-cutoff (256 MiB)
#: and more, going to a local disk, are logged as "Multi-thread Copied (new)": a restored video
#: must count like any other file.
_COPIED_MESSAGES = ("Copied", "Multi-thread Copied")


# -- the per-file lines, read without a JSON parse ------------------------------------------
#
# rclone logs one INFO line per file it sends: on a 100,000-file tree these are nearly all its
# lines, and parsing each as JSON cost photos-sync more CPU than rclone's own work per file
# (#15). Their form never varies (rclone 1.75's slog JSON handler: fixed key order), so a regular
# expression reads them. The patterns accept only text that decodes to itself (a JSON string
# without escapes or control characters), numbers in JSON's own spelling, and rclone's keys in
# rclone's order: a line they accept is one `json.loads` reads the same way. Any other spelling
# falls through to the full parse, so the fast path can make a line cheaper, never read
# differently.

#: A JSON string that decodes to exactly its own text.
_PLAIN = r'"[^"\\\x00-\x1f]*"'
#: A non-negative JSON integer small enough for int() (no leading zeros, as JSON requires).
_COUNT = r"(0|[1-9][0-9]{0,17})"
#: rclone's keys after `object` on a per-file line, in any number.
_OBJECT_TAIL = rf'(?:,"(?:objectType|source)":{_PLAIN})*\}}[ \t\r\n]*\Z'
#: `{"time":"...","level":"LEVEL","msg":"` — the start of every rclone JSON line.
_HEAD = rf'\{{"time":{_PLAIN},"level":'

_COPIED_LINE = re.compile(
    rf'{_HEAD}"info","msg":"(?:Multi-thread )?Copied[^"\\\x00-\x1f]*",'
    rf'"size":{_COUNT},"object":"([^"\\\x00-\x1f]+)"{_OBJECT_TAIL}'
)
_INFO_MESSAGE = re.compile(rf'{_HEAD}"info","msg":"([A-Za-z][^"\\\x00-\x1f]*)"')
_WOULD_COPY_LINE = re.compile(
    rf'{_HEAD}"notice","msg":{_PLAIN},"skipped":"copy",'
    rf'"size":{_COUNT},"object":"([^"\\\x00-\x1f]*)"{_OBJECT_TAIL}'
)


def copied_file(line: str) -> FileCopied | None:
    """The FileCopied of rclone's usual line for a file it sent ("Copied (new)", "Copied
    (replaced existing)", "Multi-thread Copied (new)", ...), read without a JSON parse.

    None for any other line, and for any unusual spelling of that one (parse_line still reads
    it). Whenever this returns an event, `parse_line(line)` returns an equal one.
    """
    match = _COPIED_LINE.match(line)
    if match is None:
        return None
    return FileCopied(match.group(2), int(match.group(1)))


def is_quiet_info(line: str) -> bool:
    """True for an INFO line of rclone that names no sent file, skipped name or stats ("Set
    directory modification time", "Moved into backup dir", "There was nothing to transfer",
    ...), recognised without a JSON parse. A runner that follows a sync acts on none of them.

    Whenever this is True, `parse_line(line)` returns an OtherLine at level "info" (or "text"
    for a line that is not JSON at all). False means only "parse it".
    """
    match = _INFO_MESSAGE.match(line)
    if match is None:
        return False
    message = match.group(1).strip()
    if message.startswith(_COPIED_MESSAGES) or message in _SKIPPED_NOTICES:
        return False
    # One level, one message, no stats: json.loads keeps the last of repeated keys.
    rest = line[match.end() :]
    return '"level":' not in rest and '"msg":' not in rest and '"stats":' not in rest


def would_copy(line: str) -> tuple[str, int] | None:
    """(path, plain size) from a dry run's usual per-file notice "Skipped copy as --dry-run is
    set (size N)", read without a JSON parse; None for any other line or spelling. Whenever
    this returns a pair, the line's JSON holds level "notice", `"skipped": "copy"`, that
    `object` and that integer `size`."""
    match = _WOULD_COPY_LINE.match(line)
    if match is None:
        return None
    return match.group(2), int(match.group(1))


def parse_line(line: str) -> LogEvent:
    """Classify one stderr line of rclone. Non-JSON text becomes an OtherLine (level "text")."""
    return copied_file(line) or parse_json_line(line)


def parse_json_line(line: str) -> LogEvent:
    """`parse_line` through a full JSON parse, without the fast path for per-file lines: the
    reference every fast path here must agree with."""
    text = line.strip()
    try:
        record = json.loads(text)
    except ValueError:
        return OtherLine("text", text)
    if not isinstance(record, dict):
        return OtherLine("text", text)
    level = str(record.get("level", ""))
    message = str(record.get("msg", "")).strip()
    stats = record.get("stats")
    if isinstance(stats, dict):
        return StatsLine(parse_stats(stats))
    obj = record.get("object") or None
    if level in ("error", "critical", "fatal"):
        return ErrorLine(
            f"{obj}: {message}" if obj else message, str(obj) if obj is not None else None, level
        )
    if message.startswith(_COPIED_MESSAGES) and obj is not None:
        return FileCopied(str(obj), _int(record.get("size")))
    if message in _SKIPPED_NOTICES and obj is not None:
        return SkippedName(str(obj), _SKIPPED_NOTICES[message])
    return OtherLine(level, message, str(obj) if obj is not None else None)


class LineSplitter:
    """Cuts a child's stderr, as it arrives in chunks of any size, into the lines that
    `StreamReader.readline` would return: each with its newline, decoded as UTF-8 (bytes that
    do not decode become U+FFFD). A line longer than `limit` bytes is dropped whole."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._partial = b""
        #: inside a line already longer than the limit: drop up to its end
        self._dropping = False

    def feed(self, data: bytes) -> list[str]:
        """The lines `data` completes, in order."""
        *whole, rest = (self._partial + data).split(b"\n")
        lines = []
        for raw in whole:
            if self._dropping:
                self._dropping = False
            elif len(raw) < self._limit:
                lines.append(raw.decode("utf-8", "replace") + "\n")
        if len(rest) >= self._limit:
            self._dropping, rest = True, b""
        self._partial = rest
        return lines

    def finish(self) -> str | None:
        """The last line, when the output ended without a newline."""
        rest, self._partial = self._partial, b""
        if not rest or self._dropping:
            return None
        return rest.decode("utf-8", "replace")


class Outcome(enum.StrEnum):
    SUCCESS = "success"
    RETRYABLE = "retryable"  # a later attempt may well succeed (network, temporary errors)
    FATAL = "fatal"  # retrying will not help until something is fixed
    INTERRUPTED = "interrupted"  # killed by a signal: resume later


#: rclone's documented exit codes (https://rclone.org/docs/#exit-code).
_EXIT_OUTCOMES: dict[int, Outcome] = {
    0: Outcome.SUCCESS,
    1: Outcome.RETRYABLE,  # error not otherwise categorised (e.g. "failed to delete N files")
    2: Outcome.FATAL,  # syntax or usage error
    3: Outcome.FATAL,  # directory not found
    4: Outcome.RETRYABLE,  # file not found (the source changed under us)
    5: Outcome.RETRYABLE,  # temporary error
    6: Outcome.RETRYABLE,  # less serious errors (NoRetry): a later run usually clears them
    7: Outcome.FATAL,  # fatal error: account suspended, --max-delete reached, ...
    8: Outcome.RETRYABLE,  # transfer limit exceeded
    9: Outcome.SUCCESS,  # no files transferred (--error-on-no-transfer)
    10: Outcome.RETRYABLE,  # --max-duration reached
}


def classify_exit(returncode: int) -> Outcome:
    """Map rclone's exit status (negative: killed by that signal) to what photos-sync does next."""
    if returncode < 0 or returncode in (128 + 9, 128 + 15, 128 + 2):
        return Outcome.INTERRUPTED
    return _EXIT_OUTCOMES.get(returncode, Outcome.RETRYABLE)


#: Words in an rclone error that mean the storage refused our keys (S3, B2, HTTP). rclone exits
#: 1 ("retryable") for them, but no retry helps until the user fixes the credentials.
_CREDENTIAL_MARKERS = (
    "invalidaccesskeyid",
    "signaturedoesnotmatch",
    "accessdenied",
    "invalidtoken",
    "expiredtoken",
    "statuscode: 401",
    "statuscode: 403",
    "401 unauthorized",
    "403 forbidden",
    "bad_auth_token",
)


def is_credentials_error(message: str | None) -> bool:
    """True if an rclone error says the storage refused the credentials."""
    lowered = (message or "").lower()
    return any(marker in lowered for marker in _CREDENTIAL_MARKERS)


#: Words in an rclone error (or the stall watchdog's) that mean the storage cannot be reached.
_UNREACHABLE_MARKERS = (
    "no progress for",
    "connection refused",
    "no such host",
    "network is unreachable",
    "no route to host",
)


def is_storage_unreachable(message: str | None) -> bool:
    """True if an error says the storage could not be reached at all (not a per-file error)."""
    lowered = (message or "").lower()
    return any(marker in lowered for marker in _UNREACHABLE_MARKERS)


#: Words in an rclone error that mean the destination's disk is full.
_DISK_FULL_MARKERS = (
    "no space left on device",
    "file too big for remaining disk space",
    "disk quota exceeded",
)

#: The runner's own message for a destination that went away during a run.
DESTINATION_GONE = "the destination disappeared"


def is_disk_full(message: str | None) -> bool:
    """True if an rclone error says the destination has no room left."""
    lowered = (message or "").lower()
    return any(marker in lowered for marker in _DISK_FULL_MARKERS)


def ends_the_run(message: str | None) -> bool:
    """True if a job's failure means every later folder would fail the same way (refused
    credentials, storage unreachable, disk full, destination gone): the run stops there."""
    return (
        is_credentials_error(message)
        or is_storage_unreachable(message)
        or is_disk_full(message)
        or DESTINATION_GONE in (message or "")
    )


def classify_failure(returncode: int, last_error: str | None) -> Outcome:
    """`classify_exit`, except that refused credentials and a full disk are FATAL: retrying
    them only makes a retry storm against the storage (and may get the account locked), or
    fills the disk again before failing the same way."""
    outcome = classify_exit(returncode)
    if outcome is Outcome.RETRYABLE and (
        is_credentials_error(last_error) or is_disk_full(last_error)
    ):
        return Outcome.FATAL
    return outcome


def activity_marker(progress: Progress) -> tuple[int, ...]:
    """What changes in rclone's stats while it gets work done (errors and elapsed time do not
    count): the stall watchdog compares successive markers."""
    return (
        progress.bytes,
        progress.transfers,
        progress.checks,
        progress.listed,
        progress.deletes,
        progress.renames,
    )


_HINTS: tuple[tuple[str, str], ...] = (
    (
        "max-delete threshold",
        "more files would be archived than BACKUP_MAX_DELETE allows; "
        "check the source, then rerun with --force or raise BACKUP_MAX_DELETE",
    ),
    (
        "no space left on device",
        "the destination disk is full: free space or use a larger disk, then run again",
    ),
    (
        "file too big for remaining disk space",
        "the destination disk is full: free space or use a larger disk, then run again",
    ),
    (
        "connection refused",
        "the storage is unreachable: check the network and the storage service; the next run "
        "resumes where this one stopped",
    ),
    (
        "no progress for",
        "the storage is unreachable or hung: check the network and the storage service; the "
        "next run resumes where this one stopped",
    ),
    (
        "file name too long",
        "a file or folder name is too long once encrypted (143 bytes at most on a local "
        "disk); the run names it in a 'file name:' line: shorten that name",
    ),
    (
        "permission denied",
        "photos-sync may not write there; check the destination's owner and mode",
    ),
)


def explain_failure(returncode: int, last_error: str | None) -> str:
    """One line for error_message: rclone's last error plus a hint where one is known."""
    base = last_error or f"rclone exited with status {returncode}"
    lowered = base.lower()
    if is_credentials_error(base):
        return (
            f"{base} (the storage refused the credentials: they were revoked or changed; "
            "update the access key where the secrets are kept, then run again)"
        )
    if returncode == 7 and "failed to delete" in lowered:
        # A --max-delete stop ends with stats lastError "failed to delete N files" and exit 7.
        lowered += " max-delete threshold"
    for needle, hint in _HINTS:
        if needle in lowered:
            return f"{base} ({hint})"
    return base
