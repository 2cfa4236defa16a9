"""Job states and the transitions between them. Pure: no I/O.

A job is one Immich folder sent to one destination. Its life:

    PENDING -> RUNNING -> COMPLETED | INTERRUPTED | FAILED
    INTERRUPTED -> RUNNING            (the next run resumes it)
    FAILED -> RUNNING                 (while retry_count < max_retries)

A job that COMPLETED is finished for good; the next backup run creates fresh jobs.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


class JobStatus(enum.StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    INTERRUPTED = "INTERRUPTED"
    FAILED = "FAILED"


#: How every renderer colours a job's state (a rich style), the one table for all of them.
STATUS_STYLE: Mapping[JobStatus, str] = MappingProxyType(
    {
        JobStatus.COMPLETED: "green",
        JobStatus.RUNNING: "cyan",
        JobStatus.PENDING: "white",
        JobStatus.INTERRUPTED: "yellow",
        JobStatus.FAILED: "red",
    }
)
#: The style of a text that names no job state.
PLAIN_STYLE = "white"


def status_style(state: str) -> str:
    """The rich style of a job state as JSON carries it ("FAILED"), or of a run's result, which
    is a job state in lower case ("failed", see reporting.history); PLAIN_STYLE otherwise."""
    try:
        return STATUS_STYLE[JobStatus(state.upper())]
    except ValueError:
        return PLAIN_STYLE


#: States in which a job still has work to do.
ACTIVE_STATES = frozenset({JobStatus.PENDING, JobStatus.RUNNING, JobStatus.INTERRUPTED})
#: States a job may end a run in.
TERMINAL_STATES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED})

_ALLOWED: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.PENDING: frozenset({JobStatus.RUNNING, JobStatus.FAILED, JobStatus.INTERRUPTED}),
    JobStatus.RUNNING: frozenset(
        {JobStatus.COMPLETED, JobStatus.INTERRUPTED, JobStatus.FAILED, JobStatus.RUNNING}
    ),
    JobStatus.INTERRUPTED: frozenset({JobStatus.RUNNING, JobStatus.FAILED}),
    JobStatus.FAILED: frozenset({JobStatus.RUNNING}),
    JobStatus.COMPLETED: frozenset(),
}


class InvalidTransition(ValueError):
    """A status change that the state machine does not allow."""


def check_transition(current: JobStatus, target: JobStatus) -> None:
    """Raise InvalidTransition unless a job may move from `current` to `target`.

    RUNNING -> RUNNING is allowed: it is how a job taken over from a dead owner is
    restarted by a new process.
    """
    if target not in _ALLOWED[current]:
        raise InvalidTransition(f"a {current} job cannot become {target}")


class Refusal(enum.StrEnum):
    """Why a safety guard refused a job (stored in `backup_jobs.refused`).

    A refused job is never resumed: resuming would skip the check that refused it (rclone's
    own `--max-delete` counts as it goes, so a rerun of a half-archived folder used to pass).
    The next run plans the folder afresh and checks it again, so the refusal holds across
    reruns, daemon restarts and schedules until the source is back or `--force` is given.
    """

    MAX_DELETE = "max_delete"
    MAX_CHANGE = "max_change"


def is_resumable(
    status: JobStatus, retry_count: int, max_retries: int, refused: str | None = None
) -> bool:
    """True when the next run should pick this job up again rather than create a new one."""
    if refused:
        return False
    if status in (JobStatus.PENDING, JobStatus.INTERRUPTED):
        return True
    return status is JobStatus.FAILED and retry_count < max_retries


@dataclass(frozen=True, slots=True)
class OwnerView:
    """What is known about the process that claims a RUNNING job."""

    same_host: bool
    alive: bool


class Staleness(enum.StrEnum):
    HEALTHY = "healthy"  # owner alive and reporting
    ORPHANED = "orphaned"  # owner gone: safe to mark INTERRUPTED and resume
    STALE = "stale"  # owner alive (or unknowable) but silent past the threshold


def classify_running_job(
    owner: OwnerView, seconds_since_update: float, stale_after: float
) -> Staleness:
    """Decide what to do with a job that the DB says is RUNNING.

    A job owned by a dead process on this host is ORPHANED whatever its age. A job on
    another host cannot be probed, so it is only judged by its silence. A last_update
    in the future (clock jumped back) counts as silent for its absolute distance, so a
    clock jump can never make a job look fresh forever.
    """
    if owner.same_host and not owner.alive:
        return Staleness.ORPHANED
    if abs(seconds_since_update) > stale_after:
        return Staleness.STALE
    return Staleness.HEALTHY


def stale_threshold(stats_interval: float) -> float:
    """Seconds of silence after which a RUNNING job counts as stale: max(60 s, 2 x stats tick)."""
    return max(60.0, 2.0 * stats_interval)
