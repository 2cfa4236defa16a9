"""sd_notify for systemd's Type=notify: READY, STATUS, STOPPING and WATCHDOG pings.

Everything is a no-op when NOTIFY_SOCKET is unset (launchd, a terminal, tests without it).
"""

from __future__ import annotations

import contextlib
import os
import socket


def _address() -> str | None:
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return None
    if address.startswith("@"):
        return "\0" + address[1:]  # abstract namespace
    return address


def notify(*fields: str) -> bool:
    """Send "KEY=value" lines to systemd; True if it was sent, False if there is no systemd."""
    address = _address()
    if address is None:
        return False
    payload = "\n".join(fields).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(payload)
    except OSError:
        return False
    return True


def ready(status: str) -> bool:
    return notify("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")


def status(text: str) -> bool:
    return notify(f"STATUS={text}")


def stopping(text: str = "stopping") -> bool:
    return notify("STOPPING=1", f"STATUS={text}")


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC), or None when not asked."""
    raw = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not raw:
        return None
    if pid and pid != str(os.getpid()):
        return None
    with contextlib.suppress(ValueError):
        usec = int(raw)
        if usec > 0:
            return usec / 2_000_000
    return None


def watchdog() -> bool:
    return notify("WATCHDOG=1")
