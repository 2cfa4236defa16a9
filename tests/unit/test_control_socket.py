"""Where the socket goes for a configured PHOTOS_SYNC_SOCKET (issue #18, point 4)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from photos_sync.system.control_socket import socket_location


@pytest.mark.parametrize(
    ("mode", "private"),
    [
        (0o700, False),  # a folder of one's own
        (0o755, False),  # /run as root
        (0o777, False),  # refused by the daemon, not redirected
        (0o1777, True),  # /tmp, /dev/shm
        (0o1770, True),  # sticky and writable by a group
        (0o1755, False),  # sticky but nobody else may write
    ],
)
def test_only_a_shared_sticky_folder_gets_a_private_subfolder(
    tmp_path: Path, mode: int, private: bool
) -> None:
    folder = tmp_path / "f"
    folder.mkdir()
    os.chmod(folder, mode)
    configured = folder / "x.sock"
    expected = folder / f"photos-sync-{os.getuid()}" / "x.sock" if private else configured
    assert socket_location(configured) == expected


def test_a_missing_folder_is_taken_as_configured(tmp_path: Path) -> None:
    configured = tmp_path / "missing" / "x.sock"
    assert socket_location(configured) == configured
    assert not configured.parent.exists()  # looking creates nothing
