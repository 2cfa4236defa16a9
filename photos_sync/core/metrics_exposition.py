"""Prometheus metrics in the text exposition format: pure, no I/O.

`render_metrics` turns a status document (photos_sync.reporting.status, plus the daemon's live
figures when the daemon serves it) and the run history (photos_sync.reporting.history) into
exposition text; photos_sync.reporting.metrics gathers those and writes or serves the text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from photos_sync.core.config import ConfigError
from photos_sync.core.states import JobStatus, Refusal
from photos_sync.core.units import from_iso

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
RESULTS = ("completed", "failed", "interrupted", "running", "pending")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


class _Exposition:
    def __init__(self) -> None:
        self._families: dict[str, tuple[str, str, list[str]]] = {}

    def add(self, name: str, kind: str, help_text: str, value: float, **labels: str) -> None:
        family = self._families.setdefault(name, (kind, help_text, []))
        label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
        sample = f"{name}{{{label_text}}}" if label_text else name
        family[2].append(f"{sample} {_number(value)}")

    def text(self) -> str:
        lines = []
        for name, (kind, help_text, samples) in self._families.items():
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            lines.extend(samples)
        return "\n".join(lines) + "\n"


def _timestamp(text: str | None) -> float | None:
    moment = from_iso(text)
    return moment.timestamp() if moment else None


def render_metrics(document: Mapping[str, Any], runs: Sequence[Mapping[str, Any]]) -> str:
    """Exposition text for a status document and the run history (newest run first)."""
    out = _Exposition()
    daemon = document.get("daemon")
    out.add(
        "photos_sync_daemon_up",
        "gauge",
        "1 when these figures come from a running photos-sync daemon.",
        1 if isinstance(daemon, Mapping) else 0,
    )
    live = daemon if isinstance(daemon, Mapping) else {}
    for destination in document.get("destinations", []):
        _destination_metrics(out, destination, live.get("run"), live.get("next_run") or {})
    for job in document.get("jobs", []):
        _job_metrics(out, job)
    _history_metrics(out, runs)
    return out.text()


def _destination_metrics(
    out: _Exposition,
    destination: Mapping[str, Any],
    current_run: Mapping[str, Any] | None,
    next_runs: Mapping[str, str],
) -> None:
    """Last success, whether the daemon runs it now, its next run, its last verify."""
    name = str(destination["name"])
    out.add(
        "photos_sync_last_success_timestamp_seconds",
        "gauge",
        "When the last complete backup to the destination ended (Unix time); 0: never.",
        _timestamp(destination.get("last_backup_at")) or 0,
        destination=name,
    )
    running = bool(current_run and current_run.get("destination") == name)
    out.add(
        "photos_sync_run_in_progress",
        "gauge",
        "1 while the daemon runs a backup to the destination.",
        1 if running else 0,
        destination=name,
    )
    due = _timestamp(next_runs.get(name))
    if due is not None:
        out.add(
            "photos_sync_next_run_timestamp_seconds",
            "gauge",
            "When the daemon's schedule next runs a backup to the destination (Unix time).",
            due,
            destination=name,
        )
    _consistency_metrics(out, name, destination.get("consistency"))
    verify = destination.get("last_verify")
    if not verify:
        return
    out.add(
        "photos_sync_verify_ok",
        "gauge",
        "1 if the last verify of the destination found no problem, else 0.",
        1 if verify.get("ok") else 0,
        destination=name,
    )
    out.add(
        "photos_sync_verify_timestamp_seconds",
        "gauge",
        "When the last verify of the destination ended (Unix time).",
        _timestamp(verify.get("finished_at")) or 0,
        destination=name,
    )
    for field in ("matched", "missing", "extra", "differ", "errors"):
        out.add(
            "photos_sync_verify_files",
            "gauge",
            "Files of the last verify, by result (errors: could not be checked).",
            int(verify.get(field) or 0),
            destination=name,
            result=field,
        )


def _consistency_metrics(out: _Exposition, name: str, proof: Mapping[str, Any] | None) -> None:
    """The last run's consistency proof of the Immich dump (#16)."""
    if not proof:
        return
    out.add(
        "photos_sync_immich_dump_complete",
        "gauge",
        "1 if the Immich database dump the last run sent was whole, 0 if truncated or damaged.",
        1 if proof.get("complete") else 0,
        destination=name,
    )
    for field in ("referenced", "present", "missing"):
        out.add(
            "photos_sync_immich_dump_files",
            "gauge",
            "Files the last run's Immich dump references in the folders backed up, by result.",
            int(proof.get(field) or 0),
            destination=name,
            result=field,
        )


#: (metric, status-document field, help) for each job's figures in the latest run
_JOB_FIGURES = (
    ("photos_sync_job_bytes_done", "bytes_transferred", "Bytes sent by the latest run."),
    ("photos_sync_job_bytes_total", "bytes_total", "Bytes the latest run has to send."),
    ("photos_sync_job_files_done", "files_transferred", "Files sent by the latest run."),
    ("photos_sync_job_files_total", "files_total", "Files the latest run has to send."),
    (
        "photos_sync_job_files_skipped",
        "files_skipped",
        "Files the latest run could not send (unreadable, symlinks, names too long).",
    ),
    ("photos_sync_job_retries", "retry_count", "Failed attempts of the job in the latest run."),
)


def _job_metrics(out: _Exposition, job: Mapping[str, Any]) -> None:
    """One folder's job in the latest run: its figures, its speed, a one-hot state."""
    labels = {"destination": str(job["destination"]), "folder": str(job["folder"])}
    for metric, field, help_text in _JOB_FIGURES:
        out.add(metric, "gauge", help_text, float(job.get(field) or 0), **labels)
    running = job["status"] == JobStatus.RUNNING
    out.add(
        "photos_sync_job_speed_bytes_per_second",
        "gauge",
        "Current transfer rate of the job (0 unless it is running).",
        float(job.get("transfer_speed") or 0) if running else 0.0,
        **labels,
    )
    for guard in Refusal:
        out.add(
            "photos_sync_job_refused",
            "gauge",
            "1 when a safety guard stopped the job in the latest run (max_delete: too many "
            "deletions; max_change: too many originals replaced, e.g. encrypted by ransomware).",
            1 if job.get("refused") == guard.value else 0,
            **labels,
            guard=guard.value,
        )
    for state in JobStatus:
        out.add(
            "photos_sync_job_state",
            "gauge",
            "1 for the job's state in the latest run (PENDING, RUNNING, COMPLETED, ...).",
            1 if job["status"] == state.value else 0,
            **labels,
            state=state.value,
        )


def _history_metrics(out: _Exposition, runs: Sequence[Mapping[str, Any]]) -> None:
    """Counters over the recorded runs, and how long each destination's latest run took."""
    totals: dict[str, dict[str, float]] = {}
    for run in runs:
        entry = totals.setdefault(
            str(run["destination"]),
            {**{r: 0.0 for r in RESULTS}, "retries": 0.0, "failed_jobs": 0.0},
        )
        entry[str(run["result"])] += 1
        entry["retries"] += float(run.get("retries") or 0)
        entry["failed_jobs"] += float(run.get("failed_jobs") or 0)
    for name, entry in sorted(totals.items()):
        for result in RESULTS:
            out.add(
                "photos_sync_runs_total",
                "counter",
                "Backup runs recorded in the job history, by result.",
                entry[result],
                destination=name,
                result=result,
            )
        out.add(
            "photos_sync_job_retries_total",
            "counter",
            "Failed attempts that were retried, over the recorded job history.",
            entry["retries"],
            destination=name,
        )
        out.add(
            "photos_sync_job_failures_total",
            "counter",
            "Jobs that ended FAILED, over the recorded job history.",
            entry["failed_jobs"],
            destination=name,
        )
    latest: dict[str, Mapping[str, Any]] = {}
    for run in runs:  # newest first
        latest.setdefault(str(run["destination"]), run)
    for name, run in sorted(latest.items()):
        if run.get("duration_seconds") is not None:
            out.add(
                "photos_sync_last_run_duration_seconds",
                "gauge",
                "How long the latest finished-or-not run took (from its first start).",
                float(run["duration_seconds"]),
                destination=name,
            )


def metrics_addr(env: Mapping[str, str]) -> tuple[str, int] | None:
    """BACKUP_METRICS_ADDR ("127.0.0.1:9853", "[::1]:9853", ":9853" = loopback), or None."""
    raw = env.get("BACKUP_METRICS_ADDR", "").strip()
    if not raw:
        return None
    host, sep, port_text = raw.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(
            f"BACKUP_METRICS_ADDR={raw!r} is invalid: expected HOST:PORT such as 127.0.0.1:9853"
        )
    return host, int(port_text)


def metrics_file(env: Mapping[str, str]) -> Path | None:
    raw = env.get("BACKUP_METRICS_FILE", "").strip()
    return Path(raw).expanduser() if raw else None
