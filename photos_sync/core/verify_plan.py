"""Reading rclone check output and choosing what to download for verification. Pure."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from photos_sync.core.archive import parse_stamp

#: Files below this size that cannot be hash-checked are always downloaded and compared.
SMALL_FILE = 16 * 1024 * 1024
#: Default share (percent) of larger unhashable files downloaded by a sampled verify.
DEFAULT_SAMPLE_PERCENT = 1.0


@dataclass
class CheckOutcome:
    """Plain paths by verdict, from `rclone check|cryptcheck --combined -`."""

    matched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # in the source, not in the backup
    extra: list[str] = field(default_factory=list)  # in the backup, not in the source
    differ: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)  # could not be compared

    def merge(self, other: CheckOutcome, prefix: str = "") -> None:
        for name in ("matched", "missing", "extra", "differ", "unchecked"):
            getattr(self, name).extend(f"{prefix}{p}" for p in getattr(other, name))


_MARKS = {"=": "matched", "+": "missing", "-": "extra", "*": "differ", "!": "unchecked"}


def parse_combined(text: str) -> CheckOutcome:
    """Parse `--combined` lines: `= path`, `+ path`, `- path`, `* path`, `! path`."""
    outcome = CheckOutcome()
    for line in text.splitlines():
        if len(line) < 3 or line[1] != " " or line[0] not in _MARKS:
            continue
        getattr(outcome, _MARKS[line[0]]).append(line[2:])
    return outcome


def unhashed_paths(
    plain: Iterable[Mapping[str, object]], stored: Iterable[Mapping[str, object]]
) -> set[str]:
    """Plain paths of files whose stored (encrypted) object carries no hash.

    `plain` is `rclone lsjson -R --files-only --encrypted pscrypt:FOLDER` (plain `Path`,
    encrypted `EncryptedPath`), `stored` is `rclone lsjson -R --files-only --hash` of the same
    folder on the raw storage (encrypted `Path`, `Hashes`). `rclone cryptcheck` counts such
    files as matching ("could not check hash" is only a debug line), so they must be compared
    by content instead.
    """
    by_encrypted = {
        str(e.get("EncryptedPath")): str(e.get("Path"))
        for e in plain
        if not e.get("IsDir") and e.get("EncryptedPath")
    }
    missing_hash = set()
    for entry in stored:
        if entry.get("IsDir"):
            continue
        hashes = entry.get("Hashes")
        if isinstance(hashes, Mapping) and any(hashes.values()):
            continue
        name = by_encrypted.get(str(entry.get("Path")))
        if name is not None:
            missing_hash.add(name)
    return missing_hash


def choose_downloads(
    unchecked: Iterable[str],
    sizes: Mapping[str, int],
    *,
    full: bool,
    sample_percent: float,
    rng: random.Random,
    small_file: int = SMALL_FILE,
) -> tuple[list[str], list[str]]:
    """Split files that hashes could not verify into (download now, leave unverified).

    With `full`, everything is downloaded. Otherwise every small file is, and a random
    `sample_percent` of the larger ones (at least one when there are any and the share is
    above zero), so that each nightly verify checks a different slice.
    """
    paths = sorted(set(unchecked))
    if full:
        return paths, []
    small = [p for p in paths if sizes.get(p, 0) < small_file]
    large = [p for p in paths if sizes.get(p, 0) >= small_file]
    count = 0
    if large and sample_percent > 0:
        count = max(1, round(len(large) * min(sample_percent, 100.0) / 100.0))
    picked = set(rng.sample(large, count)) if count else set()
    return small + sorted(picked), sorted(p for p in large if p not in picked)


# -- judging a folder against what its last completed backup sent --------------------------------

#: Immich rewrites this marker in each of its folders at every start: never a backup problem.
IMMICH_MARKER = ".immich"
#: Names per listing call on B2 (`b2_list_file_names`) and S3 (`ListObjectsV2`) with --fast-list.
NAMES_PER_LISTING = 1000
#: Listings of the storage per folder on a cloud destination: cryptcheck's own, the plain-name
#: listing (`lsjson --encrypted`) and the hash listing (`lsjson --hash`) of the raw objects.
LISTINGS_PER_FOLDER = 3

ADDED, MODIFIED, DELETED, MARKER = "added", "modified", "deleted", "marker"


@dataclass(frozen=True, slots=True)
class SourceProblem:
    """A source file or folder (`path` ends with "/") that rclone could not read."""

    path: str
    reason: str  # the system's words: "permission denied", "input/output error", ...


@dataclass(frozen=True, slots=True)
class CheckErrors:
    """The error lines of one `rclone check|cryptcheck --use-json-log` run, sorted by side."""

    source: tuple[SourceProblem, ...] = ()
    #: other error messages (the backup's side, or rclone itself), last one last
    other: tuple[str, ...] = ()


def _reason(message: str) -> str:
    """The system error at the end of an rclone message ("open /x: permission denied")."""
    return message.rsplit(": ", 1)[-1].strip() or message


def parse_check_errors(stderr: str, source_root: str) -> CheckErrors:
    """Sort the `level: error` JSON lines of a check of `source_root` by the side they are on.

    A message naming a path below `source_root` ("failed to open directory \"a/b\": open
    SRC/a/b: permission denied", "error computing hash: failed to open src: open SRC/a/f:
    ...") is the source's; its `object` is the path relative to the root. "file not in …"
    lines repeat what the `--combined` output says and are left out.
    """
    root = source_root.rstrip("/")
    source: list[SourceProblem] = []
    other: list[str] = []
    for line in stderr.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict) or entry.get("level") != "error":
            continue
        message = str(entry.get("msg", ""))
        if message.startswith("file not in "):
            continue
        names_source = f" {root}/" in message or f" {root}:" in message
        if not names_source:
            other.append(message)
            continue
        where = str(entry.get("object") or "")
        if message.startswith("failed to open directory"):
            where = f"{where.rstrip('/')}/" if where else ""
        source.append(SourceProblem(where, _reason(message)))
    return CheckErrors(tuple(source), tuple(other))


@dataclass
class Verdict:
    """One folder's result, judged against what the folder's last completed backup sent.

    Only `missing`, `differ`, `unchecked` and `errors` are problems. `newer` holds what
    changed at the source since that backup started (path, change): a new or modified file,
    a file deleted at the source since (Immich rotates its dumps), an `.immich` marker.
    """

    matched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    differ: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)  # backup objects that could not be read
    extra: list[str] = field(default_factory=list)  # only in the backup (also in `newer`)
    newer: list[tuple[str, str]] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (path, what is wrong)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.differ or self.unchecked or self.errors)


#: How rclone (Go) words ENOENT: the file or folder went away while the check ran.
VANISHED = "no such file or directory"


def _is_folder(problem: SourceProblem) -> bool:
    return problem.path.endswith("/") or problem.path == ""


def _is_marker(path: str) -> bool:
    return path.rsplit("/", 1)[-1] == IMMICH_MARKER


def _below(path: str, folders: Iterable[str]) -> str | None:
    """The first of `folders` ("a/b/", or "" for the root) that holds `path`, else None."""
    for folder in folders:
        if folder == "" or path.startswith(folder):
            return folder
    return None


def judge(
    outcome: CheckOutcome,
    *,
    changed_at: Mapping[str, float | None],
    since: float | None,
    source_problems: Iterable[SourceProblem] = (),
) -> Verdict:
    """Tell true mismatches from changes made at the source after the last backup started.

    `changed_at` maps the source paths of missing and differing files to their latest
    change (the later of mtime and ctime: a file moved in keeps its mtime, not its ctime),
    None if the file is gone (a path it lacks is never excused); `since` is when the
    folder's last completed backup started (None: it never completed, so nothing is
    excused by time). A file changed at or after `since` is newer than the backup; older,
    it is a true mismatch. Files the source could not read are errors (with what to do),
    and so are unreadable source folders, which also account for the backup's files below
    them (not "deleted at the source").
    """
    problems = [
        p
        for p in dict.fromkeys(source_problems)  # once each, in order
        # a folder deleted while the check ran is not a problem: its backup files were
        # deleted at the source since the backup, like any other
        if not (_is_folder(p) and p.reason == VANISHED)
    ]
    judgement = _Judgement(changed_at, since, problems, Verdict(matched=list(outcome.matched)))
    judgement.sort_extra(outcome.extra)
    judgement.sort_mismatches(outcome.missing, judgement.verdict.missing, ADDED, hidden_ok=True)
    judgement.sort_mismatches(outcome.differ, judgement.verdict.differ, MODIFIED)
    judgement.sort_unchecked(outcome.unchecked)
    judgement.report_unreadable()
    judgement.verdict.newer.sort()
    return judgement.verdict


class _Judgement:
    """The state of one `judge` call: what the source could not read, what each file's
    latest change was, and the verdict being filled in."""

    def __init__(
        self,
        changed_at: Mapping[str, float | None],
        since: float | None,
        problems: list[SourceProblem],
        verdict: Verdict,
    ) -> None:
        self.changed_at = changed_at
        self.since = since
        self.problems = problems
        self.verdict = verdict
        self.dead_folders = [p.path for p in problems if _is_folder(p)]
        self.unreadable_files = {
            p.path: p.reason for p in problems if p.path not in self.dead_folders
        }
        #: backup files below each unreadable source folder, which could not be checked
        self.hidden: dict[str, int] = {folder: 0 for folder in self.dead_folders}

    def newer(self, path: str, change: str) -> None:
        self.verdict.newer.append((path, MARKER if _is_marker(path) else change))

    def is_newer(self, path: str) -> bool:
        if _is_marker(path):
            return True
        if path not in self.changed_at:
            return False  # nothing known about it: not excused
        moment = self.changed_at[path]
        return moment is None or (self.since is not None and moment >= self.since)

    def change(self, path: str, otherwise: str) -> str:
        gone = path in self.changed_at and self.changed_at[path] is None
        return DELETED if gone else otherwise

    def sort_extra(self, paths: Iterable[str]) -> None:
        """Only in the backup: deleted at the source, unless below an unreadable folder."""
        for path in paths:
            folder = _below(path, self.dead_folders)
            if folder is not None:
                self.hidden[folder] += 1
            else:
                self.verdict.extra.append(path)
                self.newer(path, DELETED)

    def sort_mismatches(
        self, paths: Iterable[str], mismatches: list[str], change: str, *, hidden_ok: bool = False
    ) -> None:
        """Missing or differing files: newer than the backup, or true mismatches. With
        `hidden_ok`, files below an unreadable source folder are left to that folder's error
        (rclone reports them missing because it could not list the folder)."""
        for path in paths:
            if path in self.unreadable_files:
                continue
            if hidden_ok and _below(path, self.dead_folders) is not None:
                continue
            if self.is_newer(path):
                self.newer(path, self.change(path, change))
            else:
                mismatches.append(path)

    def sort_unchecked(self, paths: Iterable[str]) -> None:
        for path in paths:
            if path in self.unreadable_files:
                continue
            if _is_marker(path):
                self.newer(path, MARKER)
            else:
                self.verdict.unchecked.append(path)

    def report_unreadable(self) -> None:
        """Unreadable source files and folders become errors that say what to do."""
        for path, reason in sorted(self.unreadable_files.items()):
            if reason == VANISHED:
                self.newer(path, DELETED)  # deleted while the check ran
            else:
                self.verdict.errors.append(
                    (path, f"the source file cannot be read ({reason}): check its owner and mode")
                )
        for problem in self.problems:
            if problem.path not in self.dead_folders:
                continue
            below = self.hidden[problem.path]
            unchecked = (
                f"; {below} file{'s' if below != 1 else ''} below it in the backup not checked"
            )
            self.verdict.errors.append(
                (
                    problem.path,
                    f"the source folder cannot be read ({problem.reason}): check its owner and "
                    f"mode{unchecked if below else ''}",
                )
            )


def listing_calls(objects: int, *, cloud: bool) -> int:
    """Billed listing calls (class C on B2) for one folder holding `objects` objects."""
    if not cloud:
        return 0
    return LISTINGS_PER_FOLDER * max(1, -(-objects // NAMES_PER_LISTING))


def nonce_reads(outcome: CheckOutcome, unhashed: Iterable[str] = ()) -> int:
    """Objects one `rclone cryptcheck` opened: each file in both the source and the backup
    whose object has a stored hash is read once (a ranged GET of its 32-byte header, for the
    nonce that encrypts the source copy), so a billed read per file per verify on B2 and S3.
    Objects without a hash are not opened (see `unhashed_paths`)."""
    pairs = [*outcome.matched, *outcome.differ, *outcome.unchecked]
    skipped = set(unhashed)
    return sum(1 for p in pairs if p not in skipped)


def run_start(run_id: str, created_at: datetime | None) -> datetime | None:
    """When a run started: its jobs' creation time (to the microsecond), else the run id,
    which is the run's UTC start to the second ("20261125T030000Z"); None if neither."""
    return created_at if created_at is not None else parse_stamp(run_id)
