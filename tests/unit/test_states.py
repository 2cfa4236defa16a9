"""photos_sync.core.states: the job state machine, resumability and staleness of RUNNING jobs."""

from __future__ import annotations

import itertools

import pytest

from photos_sync.core.states import (
    ACTIVE_STATES,
    TERMINAL_STATES,
    InvalidTransition,
    JobStatus,
    OwnerView,
    Staleness,
    check_transition,
    classify_running_job,
    is_resumable,
    stale_threshold,
)

P, R, C, N, F = (  # N: iNterrupted
    JobStatus.PENDING,
    JobStatus.RUNNING,
    JobStatus.COMPLETED,
    JobStatus.INTERRUPTED,
    JobStatus.FAILED,
)

#: The design's state machine, written out independently of the module's table.
ALLOWED = {
    (P, R),
    (P, F),
    (P, N),
    (R, C),
    (R, N),
    (R, F),
    (R, R),  # a job taken over from a dead owner is restarted
    (N, R),
    (N, F),
    (F, R),
}
ALL_PAIRS = list(itertools.product(JobStatus, repeat=2))
REFUSED = [pair for pair in ALL_PAIRS if pair not in ALLOWED]


def test_statuses_are_upper_case_strings() -> None:
    assert [s.value for s in JobStatus] == [
        "PENDING",
        "RUNNING",
        "COMPLETED",
        "INTERRUPTED",
        "FAILED",
    ]
    assert JobStatus("FAILED") is F
    assert f"{R}" == "RUNNING"


def test_state_groups() -> None:
    assert {P, R, N} == ACTIVE_STATES
    assert {C, F} == TERMINAL_STATES


def test_the_pair_lists_cover_every_combination() -> None:
    assert len(ALL_PAIRS) == 25
    assert len(REFUSED) == 15


@pytest.mark.parametrize(("current", "target"), sorted(ALLOWED))
def test_allowed_transitions(current: JobStatus, target: JobStatus) -> None:
    check_transition(current, target)  # does not raise


@pytest.mark.parametrize(("current", "target"), REFUSED)
def test_refused_transitions(current: JobStatus, target: JobStatus) -> None:
    with pytest.raises(InvalidTransition) as info:
        check_transition(current, target)
    assert str(info.value) == f"a {current.value} job cannot become {target.value}"


def test_completed_is_final() -> None:
    for target in JobStatus:
        with pytest.raises(InvalidTransition):
            check_transition(C, target)


def test_nothing_goes_back_to_pending() -> None:
    for current in JobStatus:
        with pytest.raises(InvalidTransition):
            check_transition(current, P)


def test_invalid_transition_is_a_value_error() -> None:
    assert issubclass(InvalidTransition, ValueError)


# --- is_resumable -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "retry_count", "max_retries", "expected"),
    [
        (P, 0, 3, True),
        (P, 99, 0, True),
        (N, 0, 3, True),
        (N, 5, 3, True),  # interruptions do not use up retries
        (F, 0, 3, True),
        (F, 2, 3, True),
        (F, 3, 3, False),  # retries exhausted
        (F, 4, 3, False),
        (F, 0, 0, False),  # BACKUP_MAX_RETRIES=0: never retry
        (C, 0, 3, False),
        (R, 0, 3, False),
    ],
)
def test_is_resumable(
    status: JobStatus, retry_count: int, max_retries: int, expected: bool
) -> None:
    assert is_resumable(status, retry_count, max_retries) is expected


# --- classify_running_job ---------------------------------------------------------------------

HERE_ALIVE = OwnerView(same_host=True, alive=True)
HERE_DEAD = OwnerView(same_host=True, alive=False)
ELSEWHERE = OwnerView(same_host=False, alive=False)  # cannot be probed
ELSEWHERE_ALIVE = OwnerView(same_host=False, alive=True)


@pytest.mark.parametrize("silence", [0.0, 5.0, 119.0, 120.0, 121.0, 1e9, -5.0, -1e9])
def test_dead_owner_on_this_host_is_orphaned_whatever_the_age(silence: float) -> None:
    assert classify_running_job(HERE_DEAD, silence, 120.0) is Staleness.ORPHANED


@pytest.mark.parametrize(
    ("owner", "silence", "expected"),
    [
        (HERE_ALIVE, 0.0, Staleness.HEALTHY),
        (HERE_ALIVE, 119.9, Staleness.HEALTHY),
        (HERE_ALIVE, 120.0, Staleness.HEALTHY),  # at the threshold: not yet
        (HERE_ALIVE, 120.1, Staleness.STALE),
        (HERE_ALIVE, 86_400.0 * 365 * 30, Staleness.STALE),  # far past
        (ELSEWHERE, 10.0, Staleness.HEALTHY),
        (ELSEWHERE, 121.0, Staleness.STALE),
        (ELSEWHERE_ALIVE, 10.0, Staleness.HEALTHY),
        (ELSEWHERE_ALIVE, 10_000.0, Staleness.STALE),
    ],
)
def test_live_or_remote_owner_is_judged_by_silence(
    owner: OwnerView, silence: float, expected: Staleness
) -> None:
    assert classify_running_job(owner, silence, 120.0) is expected


@pytest.mark.parametrize(
    ("silence", "expected"),
    [
        (-1.0, Staleness.HEALTHY),  # small clock skew
        (-120.0, Staleness.HEALTHY),
        (-121.0, Staleness.STALE),
        (-3600.0, Staleness.STALE),  # last_update an hour in the future
        (-86_400.0 * 365 * 10, Staleness.STALE),
    ],
)
def test_last_update_in_the_future_counts_by_its_distance(
    silence: float, expected: Staleness
) -> None:
    assert classify_running_job(HERE_ALIVE, silence, 120.0) is expected
    assert classify_running_job(ELSEWHERE, silence, 120.0) is expected


def test_staleness_values() -> None:
    assert {s.value for s in Staleness} == {"healthy", "orphaned", "stale"}


@pytest.mark.parametrize(
    ("stats_interval", "expected"),
    [(0, 60.0), (1, 60.0), (10, 60.0), (30, 60.0), (31, 62.0), (60, 120.0), (300, 600.0)],
)
def test_stale_threshold_is_two_ticks_but_at_least_a_minute(
    stats_interval: float, expected: float
) -> None:
    assert stale_threshold(stats_interval) == expected
    assert isinstance(stale_threshold(stats_interval), float)


def test_stale_threshold_with_the_default_interval_marks_a_job_stale_after_two_minutes() -> None:
    threshold = stale_threshold(60)
    assert classify_running_job(HERE_ALIVE, 119, threshold) is Staleness.HEALTHY
    assert classify_running_job(HERE_ALIVE, 121, threshold) is Staleness.STALE
