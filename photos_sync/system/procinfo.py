"""Who owns a RUNNING job, and is that process still alive?

A job records (pid, host, token). On Linux the token is `<boot id>:<process start time>`, so
a pid reused after a reboot or by another program is not mistaken for the owner. On macOS
and elsewhere the token is None and liveness falls back to "a process with that pid exists".
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from photos_sync.core.records import Job, utcnow
from photos_sync.core.states import OwnerView, Staleness, classify_running_job
from photos_sync.core.units import from_iso


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _start_ticks(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses; fields after it are
    # space-separated, and starttime is field 22 overall.
    after_name = stat.rsplit(")", 1)[1].split()
    return after_name[19] if len(after_name) > 19 else None


def process_token(pid: int) -> str | None:
    boot, ticks = _boot_id(), _start_ticks(pid)
    return f"{boot}:{ticks}" if boot and ticks else None


def hostname() -> str:
    return socket.gethostname()


def current_owner() -> tuple[int, str, str | None]:
    pid = os.getpid()
    return pid, hostname(), process_token(pid)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def owner_view(pid: int | None, host: str | None, token: str | None) -> OwnerView:
    """Is the recorded owner this host, and is it still running?"""
    if host != hostname():
        return OwnerView(same_host=False, alive=True)
    if pid is None or not pid_alive(pid):
        return OwnerView(same_host=True, alive=False)
    if token is not None:
        current = process_token(pid)
        if current is not None and current != token:
            return OwnerView(same_host=True, alive=False)  # the pid was reused
    return OwnerView(same_host=True, alive=True)


def job_staleness(job: Job, threshold: float) -> tuple[Staleness, float]:
    """Classify a RUNNING job by its owner's liveness and its silence; also return the silence."""
    view = owner_view(job.owner_pid, job.owner_host, job.owner_token)
    updated = from_iso(job.last_update or job.started_at or job.created_at)
    # Absolute: a last_update in the future (the clock went back) is as silent as its
    # distance, and must not print as a negative silence.
    silence = abs((utcnow() - updated).total_seconds()) if updated else float("inf")
    return classify_running_job(view, silence, threshold), silence
