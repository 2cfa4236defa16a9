"""Files a sync could not send, and why. Pure: no I/O.

rclone goes on past a file it cannot read, a symbolic link it does not follow or a name the
destination cannot hold; the rest of the folder is sent. Such a file is not backed up, so it
must never pass in silence: each is named by its plain source path with what to do about it.
These are problems of the source, not of the storage: retrying cannot help, so a sync whose
only errors are skips completes (with its skips counted) instead of being retried.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field

#: How many skipped files a job keeps by name (the count is always whole).
KEPT_BY_NAME = 20


class SkipReason(enum.StrEnum):
    SYMLINK = "symlink"
    SYMLINK_LOOP = "symlink_loop"
    UNREADABLE = "unreadable"
    NAME_TOO_LONG = "name_too_long"
    #: a name that cannot be kept as it is (Unicode twin rclone dropped, …): photos_sync.core.names
    NAME = "name"


#: What to tell the owner, per reason.
ADVICE: dict[SkipReason, str] = {
    SkipReason.SYMLINK: (
        "a symbolic link, not followed: set BACKUP_FOLLOW_SYMLINKS=true to back up what it "
        "points to"
    ),
    SkipReason.SYMLINK_LOOP: "a symbolic link that leads back into its own folder (a loop)",
    SkipReason.UNREADABLE: (
        "unreadable at the source (permission denied): give the user running photos-sync "
        "read access (check the owner and mode)"
    ),
    SkipReason.NAME_TOO_LONG: (
        "name too long for the destination once encrypted: rename it or shorten its folder path"
    ),
    SkipReason.NAME: "its name cannot be kept as it is: rename it (see the run's file name line)",
}

#: rclone error lines that only follow from skips already counted: with any read error rclone
#: archives nothing (so an unreadable folder can never look deleted), then sums the pass up.
_CONSEQUENCES = (
    "not deleting files as there were io errors",
    "not deleting directories as there were io errors",
    "failed to sync",
)


def classify(level: str, message: str, obj: str | None) -> SkipReason | None:
    """The skip an rclone log line reports, or None if it reports none."""
    if obj is None:
        return None
    lowered = message.lower()
    if level == "notice" and "can't follow symlink" in lowered:
        return SkipReason.SYMLINK
    if level not in ("error", "critical"):
        return None
    if "file name too long" in lowered:
        return SkipReason.NAME_TOO_LONG
    if "permission denied" in lowered and (
        "failed to open source object" in lowered or "failed to open directory" in lowered
    ):
        return SkipReason.UNREADABLE
    return None


def is_consequence(message: str) -> bool:
    """True for rclone's error lines that follow from errors already reported (no new fact)."""
    lowered = message.lower()
    return lowered.startswith("attempt ") or any(c in lowered for c in _CONSEQUENCES)


@dataclass(frozen=True, slots=True)
class SkippedFile:
    path: str  # plain path below the Immich folder's parent, e.g. "library/anna/x.jpg"
    reason: SkipReason

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason.value, "advice": ADVICE[self.reason]}


@dataclass
class SkipLog:
    """The distinct files skipped by one job (rclone repeats a pass and its lines)."""

    folder: str
    _seen: dict[str, SkipReason] = field(default_factory=dict)

    def add(self, path: str, reason: SkipReason) -> bool:
        """Record a skip; True if it is new."""
        full = f"{self.folder}/{path}"
        if full in self._seen:
            return False
        self._seen[full] = reason
        return True

    @property
    def count(self) -> int:
        return len(self._seen)

    def relative_paths(self) -> set[str]:
        """Every skipped path, relative to the folder (the manifest leaves them out)."""
        prefix = f"{self.folder}/"
        return {p[len(prefix) :] if p.startswith(prefix) else p for p in self._seen}

    def named(self) -> list[SkippedFile]:
        return [SkippedFile(p, r) for p, r in list(self._seen.items())[:KEPT_BY_NAME]]

    def detail_json(self) -> str:
        return json.dumps([s.as_dict() for s in self.named()])


def summary(count: int, detail: list[dict[str, str]]) -> str:
    """One line for a job that skipped files: how many, why, the first few paths."""
    reasons = dict.fromkeys(SkipReason(d["reason"]).value.replace("_", " ") for d in detail)
    why = ", ".join(reasons)
    first = ", ".join(d["path"] for d in detail[:3])
    noun = "file" if count == 1 else "files"
    return f"{count} {noun} not backed up ({why}): {first}" + (", …" if count > 3 else "")
