"""Reading rclone check output and choosing what to download for verification. Pure."""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

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
