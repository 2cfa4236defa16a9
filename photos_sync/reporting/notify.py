"""Notifications: Healthchecks-style pings and every common service through apprise.

Configured by `.env`:
- `BACKUP_HEALTHCHECK_URL`: a ping URL (Healthchecks.io, self-hosted Healthchecks, Uptime
  Kuma push...). A run pings `<url>/start` when it starts, `<url>` when it succeeded and
  `<url>/fail` when it failed or was refused, or when a stale job is found; the summary goes
  in the POST body.
- `BACKUP_NOTIFY_URLS`: apprise URLs separated by spaces or commas (`ntfy://`, `gotify://`,
  `discord://`, `mailto://`, `json://`...), told about the events in `BACKUP_NOTIFY_EVENTS`
  (default: success, failure, stale, verify; add `start` for a message when a run starts).

Message building (`Notice` and the `*_notice` functions) is pure. `Notifier` does the I/O in
background tasks: a notifier that fails or hangs is logged and never fails the backup.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import urllib.request
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from photos_sync.core.config import ConfigError, Settings
from photos_sync.core.consistency import proof_from_dict
from photos_sync.core.events import EventKind, ProgressSink, RunEvent, RunRequest, UsageProblem
from photos_sync.core.skips import summary as skip_summary
from photos_sync.core.states import JobStatus
from photos_sync.core.units import duration, human_bytes, plural
from photos_sync.system.logs import get_logger

log = get_logger("photos_sync.reporting.notify")

EVENTS = ("start", "success", "failure", "stale", "verify")
DEFAULT_EVENTS = ("success", "failure", "stale", "verify")
#: Seconds one notifier may take before it is given up on.
SEND_TIMEOUT = 10.0
#: Healthchecks keeps the first 100 kB of a ping body.
_BODY_LIMIT = 10_000


# -- configuration (pure) --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NotifyConfig:
    healthcheck_url: str | None = None
    urls: tuple[str, ...] = ()
    events: frozenset[str] = frozenset(DEFAULT_EVENTS)

    @property
    def enabled(self) -> bool:
        return bool(self.healthcheck_url or self.urls)


def notify_config(env: Mapping[str, str]) -> NotifyConfig:
    """Read BACKUP_HEALTHCHECK_URL, BACKUP_NOTIFY_URLS, BACKUP_NOTIFY_EVENTS; ConfigError if bad."""
    ping = env.get("BACKUP_HEALTHCHECK_URL", "").strip().rstrip("/") or None
    if ping is not None and urlsplit(ping).scheme not in ("http", "https"):
        raise ConfigError(
            f"BACKUP_HEALTHCHECK_URL={ping!r} is invalid: expected an http(s) ping URL such as "
            "https://hc-ping.com/<uuid>"
        )
    urls = tuple(u for u in re.split(r"[\s,]+", env.get("BACKUP_NOTIFY_URLS", "")) if u)
    for url in urls:
        if "://" not in url:
            raise ConfigError(
                f"BACKUP_NOTIFY_URLS: {url!r} is not an apprise URL (e.g. ntfy://ntfy.sh/topic)"
            )
    raw_events = env.get("BACKUP_NOTIFY_EVENTS", "").strip().lower()
    events = frozenset(e for e in re.split(r"[\s,]+", raw_events) if e) or frozenset(DEFAULT_EVENTS)
    if "all" in events:
        events = frozenset(EVENTS)
    unknown = sorted(events - set(EVENTS) - {"all"})
    if unknown:
        raise ConfigError(
            f"BACKUP_NOTIFY_EVENTS={raw_events!r} is invalid: {', '.join(unknown)} unknown; "
            f"use some of {', '.join(EVENTS)} (or all)"
        )
    return NotifyConfig(ping, urls, events)


# -- messages (pure) ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Notice:
    kind: str  # start | success | failure | stale | verify
    ok: bool
    destination: str
    title: str
    body: str

    @property
    def ping_suffix(self) -> str | None:
        """What the Healthchecks ping URL gets appended; None: no ping for this notice."""
        return {"start": "/start", "success": "", "failure": "/fail", "stale": "/fail"}.get(
            self.kind
        )

    @property
    def level(self) -> str:
        """apprise's notify type."""
        if self.kind == "start":
            return "info"
        return "success" if self.ok else "failure"


def start_notice(destination: str, data: Mapping[str, Any]) -> Notice:
    folders = ", ".join(f"{f}/" for f in data.get("folders", []))
    verb = "resuming" if data.get("resumed") else "starting"
    return Notice(
        "start",
        True,
        destination,
        f"photos-sync: backup to {destination} started",
        f"{verb} run {data.get('run_id', '')} of {folders}".strip(),
    )


def finished_notice(destination: str, result: Mapping[str, Any], seconds: float | None) -> Notice:
    """From a RunResult.as_dict(): success when every job completed, else failure."""
    jobs: Sequence[Mapping[str, Any]] = result.get("jobs") or []
    done = [j for j in jobs if j.get("status") == JobStatus.COMPLETED]
    files = sum(int(j.get("files_transferred") or 0) for j in jobs)
    size = sum(int(j.get("bytes_transferred") or 0) for j in jobs)
    ok = bool(result.get("ok"))
    took = f" in {duration(seconds)}" if seconds is not None else ""
    lines = [
        f"{len(done)}/{plural(len(jobs), 'folder')} backed up to {destination}: "
        f"{plural(files, 'file')}, "
        f"{human_bytes(size)}{took} (run {result.get('run_id', '')})"
    ]
    for job in jobs:
        if job.get("status") != JobStatus.COMPLETED:
            error = job.get("error_message") or "not finished"
            lines.append(f"{job.get('folder')}/: {job.get('status')} — {error}")
        elif job.get("files_skipped"):
            detail = job.get("skipped_detail") or []
            lines.append(
                f"WARNING {job.get('folder')}/: "
                + skip_summary(int(job["files_skipped"]), list(detail))
            )
    immich = result.get("immich") or {}
    if immich.get("error"):
        lines.append(f"Immich database dump: {immich['error']}")
    elif immich.get("warning"):
        lines.append(f"Immich database dump: {immich['warning']}")
    proof = result.get("consistency")
    if proof and not proof.get("ok"):
        lines.append(proof_from_dict(proof).line())
    skipped = sum(int(j.get("files_skipped") or 0) for j in jobs)
    all_done = len(done) == len(jobs) and not (immich or {}).get("error")
    title = (
        f"photos-sync: backup to {destination} INCOMPLETE: {skipped} files NOT backed up"
        if skipped and all_done
        else f"photos-sync: backup to {destination} FAILED: the Immich database dump is "
        "truncated or damaged"
        if proof and not proof.get("complete")
        else f"photos-sync: backup to {destination} INCOMPLETE: {proof.get('missing')} files "
        "the Immich database needs are NOT in the backup"
        if proof and proof.get("missing")
        else f"photos-sync: backup to {destination} FAILED"
        if not ok
        else f"photos-sync: backup to {destination} succeeded"
    )
    return Notice("success" if ok else "failure", ok, destination, title, "\n".join(lines))


def refused_notice(destination: str, error: str) -> Notice:
    return Notice(
        "failure",
        False,
        destination,
        f"photos-sync: backup to {destination} FAILED",
        f"the backup did not run: {error}",
    )


def stale_notice(destination: str, folder: str, pid: int | None, silent_seconds: float) -> Notice:
    return Notice(
        "stale",
        False,
        destination,
        f"photos-sync: backup to {destination} looks hung",
        f"{folder}/ is RUNNING (pid {pid}) but has not reported for {int(silent_seconds)} s: "
        "stop it, or run `photos-sync backup --force` to take over",
    )


def verify_notice(destination: str, report: Mapping[str, Any]) -> Notice:
    """From a VerifyReport.as_dict()."""
    ok = bool(report.get("ok"))
    f = report.get("figures") or {}
    body = (
        f"verify of {destination} ({report.get('mode', '')}): {f.get('matched', 0)} match, "
        f"{f.get('missing', 0)} missing, {f.get('extra', 0)} extra, {f.get('differ', 0)} "
        f"differ, {f.get('errors', 0)} unreadable"
    )
    examples = [*report.get("missing", [])[:5], *report.get("differ", [])[:5]]
    if examples:
        body += "\n" + "\n".join(examples)
    title = (
        f"photos-sync: verify of {destination} ok"
        if ok
        else f"photos-sync: verify of {destination} found PROBLEMS"
    )
    return Notice("verify", ok, destination, title, body)


# -- sending (I/O) -----------------------------------------------------------------------------


def _ping(url: str, body: str) -> int:
    request = urllib.request.Request(  # noqa: S310 - scheme checked in notify_config
        url,
        data=body[:_BODY_LIMIT].encode(),
        method="POST",
        headers={"User-Agent": "photos-sync", "Content-Type": "text/plain; charset=utf-8"},
    )
    with urllib.request.urlopen(request, timeout=SEND_TIMEOUT) as response:  # noqa: S310
        return int(response.status)


def _apprise(urls: Sequence[str], notice: Notice) -> bool:
    import apprise

    sender = apprise.Apprise()
    for url in urls:
        if not sender.add(url):
            log.warning("notify_bad_url", scheme=url.split("://", 1)[0])
    if len(sender) == 0:
        return False
    return bool(
        sender.notify(
            title=notice.title,
            body=notice.body,
            notify_type={
                "info": apprise.NotifyType.INFO,
                "success": apprise.NotifyType.SUCCESS,
                "failure": apprise.NotifyType.FAILURE,
            }[notice.level],
        )
    )


class Notifier:
    """Sends notices in the background; `drain` waits for them (with a time limit)."""

    def __init__(self, config: NotifyConfig) -> None:
        self.config = config
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    def from_settings(cls, settings: Settings) -> Notifier:
        try:
            return cls(notify_config(settings.extra))
        except ConfigError as exc:
            log.error("notify_config_invalid", error=str(exc))
            return cls(NotifyConfig())

    async def send(self, notice: Notice) -> None:
        """Deliver `notice` to every configured notifier; never raises."""
        config = self.config
        jobs: list[tuple[str, Any]] = []
        if config.healthcheck_url and notice.ping_suffix is not None:
            url = config.healthcheck_url + notice.ping_suffix
            jobs.append(("healthcheck", asyncio.to_thread(_ping, url, notice.body)))
        if config.urls and notice.kind in config.events:
            jobs.append(("apprise", asyncio.to_thread(_apprise, config.urls, notice)))
        for name, job in jobs:
            try:
                answer = await asyncio.wait_for(job, SEND_TIMEOUT + 2)
            except Exception as exc:
                log.warning("notify_failed", notifier=name, kind=notice.kind, error=str(exc))
                continue
            if answer is False:
                log.warning("notify_failed", notifier=name, kind=notice.kind, error="not sent")
            else:
                log.info("notified", notifier=name, kind=notice.kind)

    def post(self, notice: Notice) -> None:
        """Send `notice` without waiting (from a sink, which cannot await)."""
        if not self.config.enabled:
            return
        task = asyncio.get_running_loop().create_task(self.send(notice))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout: float = SEND_TIMEOUT + 5) -> None:
        """Wait for notices still being sent (at most `timeout` s)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    def wrap(self, sink: ProgressSink) -> ProgressSink:
        """A sink that forwards every event to `sink` and notifies on start and end."""
        started: dict[str, float] = {}

        def notifying(event: RunEvent) -> None:
            sink(event)
            if event.kind is EventKind.RUN_STARTED:
                started[event.destination] = time.monotonic()
                self.post(start_notice(event.destination, event.data))
            elif event.kind is EventKind.RUN_FINISHED and not event.data.get("dry_run"):
                began = started.pop(event.destination, None)
                seconds = time.monotonic() - began if began is not None else None
                self.post(finished_notice(event.destination, event.data, seconds))

        return notifying

    @contextlib.asynccontextmanager
    async def watching(
        self, request: RunRequest, sink: ProgressSink
    ) -> AsyncIterator[ProgressSink]:
        """Around a run: yields the notifying sink; a run that is refused or crashes is a
        failure notice; waits for the notices before leaving. Dry runs are not notified."""
        if request.dry_run:
            yield sink
            return
        try:
            yield self.wrap(sink)
        except (asyncio.CancelledError, KeyboardInterrupt, UsageProblem):
            raise
        except Exception as exc:
            self.post(refused_notice(request.destination or "the only destination", str(exc)))
            raise
        finally:
            await self.drain()


async def notify_verify(settings: Settings, report: Mapping[str, Any]) -> None:
    """Tell the notifiers about a verify result (a VerifyReport.as_dict()); never raises.

    For `photos-sync verify` and the daemon's verify schedule."""
    notifier = Notifier.from_settings(settings)
    if notifier.config.enabled:
        await notifier.send(verify_notice(str(report.get("destination", "")), report))


async def notify_stale(
    settings: Settings, destination: str, folder: str, pid: int | None, silent_seconds: float
) -> None:
    notifier = Notifier.from_settings(settings)
    if notifier.config.enabled:
        await notifier.send(stale_notice(destination, folder, pid, silent_seconds))
