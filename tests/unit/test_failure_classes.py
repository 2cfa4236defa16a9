"""Refused credentials and an unreachable storage (found by the fault-injection suite)."""

from __future__ import annotations

import pytest

from photos_sync.core.rclone_log import (
    Outcome,
    Progress,
    activity_marker,
    classify_failure,
    explain_failure,
    is_credentials_error,
    is_storage_unreachable,
)

REVOKED = (
    "user0/IMG_1.jpg: Failed to copy: operation error S3: PutObject, https response error "
    "StatusCode: 403, RequestID: , HostID: , api error InvalidAccessKeyId: The Access Key Id "
    "you provided does not exist in our records."
)
REFUSED = (
    'Failed to copy: request send failed, Put "http://127.0.0.1:9/b/x": dial tcp: '
    "connect: connection refused"
)


def test_refused_credentials_are_fatal_and_say_so() -> None:
    assert is_credentials_error(REVOKED)
    assert classify_failure(1, REVOKED) is Outcome.FATAL
    assert "credentials" in explain_failure(1, REVOKED)


@pytest.mark.parametrize("code", [1, 5, 6])
def test_other_errors_keep_the_exit_code_outcome(code: int) -> None:
    assert classify_failure(code, REFUSED) is Outcome.RETRYABLE
    assert classify_failure(code, None) is Outcome.RETRYABLE


def test_unreachable_storage_is_named() -> None:
    assert is_storage_unreachable(REFUSED)
    assert is_storage_unreachable("no progress for 1800 s (BACKUP_STALL_TIMEOUT)")
    assert "unreachable" in explain_failure(5, REFUSED)
    assert not is_storage_unreachable(REVOKED)


def test_activity_ignores_errors_and_time() -> None:
    before = Progress(bytes=10, checks=2, errors=1, elapsed=5.0)
    assert activity_marker(before) == activity_marker(Progress(bytes=10, checks=2, errors=9))
    assert activity_marker(before) != activity_marker(Progress(bytes=11, checks=2))
