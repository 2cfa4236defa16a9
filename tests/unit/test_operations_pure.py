"""Pure parts of issue #8: bandwidth timetables, notification config and messages, metrics
exposition (parsed with prometheus_client's parser), run history, the rc argv."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from photos_sync.core.bandwidth import is_timetable, rate_at
from photos_sync.core.config import ConfigError
from photos_sync.core.metrics_exposition import metrics_addr, render_metrics
from photos_sync.core.rclone_args import RcServer, SyncOptions, sync_argv
from photos_sync.reporting.history import summarise_runs
from photos_sync.reporting.notify import finished_notice, notify_config, verify_notice

MONDAY_0930 = datetime(2026, 11, 23, 9, 30)  # a Monday
SUNDAY_2330 = datetime(2026, 11, 29, 23, 30)


def test_rate_at_follows_timetables() -> None:
    assert rate_at(None, MONDAY_0930) == "off"
    assert rate_at("10M", MONDAY_0930) == "10M"
    table = "08:00,2M 23:00,off"
    assert is_timetable(table) and not is_timetable("10M")
    assert rate_at(table, MONDAY_0930) == "2M"
    assert rate_at(table, SUNDAY_2330) == "off"
    assert rate_at(table, datetime(2026, 11, 23, 7, 59)) == "off"  # wraps from the night before
    weekly = "Mon-08:00,1M Fri-18:00,off"
    assert rate_at(weekly, MONDAY_0930) == "1M"
    assert rate_at(weekly, SUNDAY_2330) == "off"
    assert rate_at(weekly, datetime(2026, 11, 23, 7, 0)) == "off"


def test_sync_argv_serves_rc_without_credentials_in_argv() -> None:
    server = RcServer("unix:///run/x/rc.sock", "photos-sync", "s3cret-pass")
    argv = sync_argv(
        "rclone", "/src", "pscrypt:library", "pscrypt:.deleted/x", SyncOptions(rc_addr=server.addr)
    )
    assert argv[argv.index("--rc-addr") + 1] == "unix:///run/x/rc.sock" and "--rc" in argv
    assert not any("s3cret" in a for a in argv)
    assert server.env() == {"RCLONE_RC_USER": "photos-sync", "RCLONE_RC_PASS": "s3cret-pass"}
    assert "s3cret" not in repr(server)
    assert "--rc" not in sync_argv("rclone", "/s", "d", "a", SyncOptions())


def test_notify_config() -> None:
    config = notify_config(
        {
            "BACKUP_HEALTHCHECK_URL": "https://hc-ping.com/abc/",
            "BACKUP_NOTIFY_URLS": "ntfy://ntfy.sh/topic, json://127.0.0.1:1/  mailto://u:p@x",
        }
    )
    assert config.healthcheck_url == "https://hc-ping.com/abc"
    assert config.urls == ("ntfy://ntfy.sh/topic", "json://127.0.0.1:1/", "mailto://u:p@x")
    assert "start" not in config.events and "failure" in config.events
    assert notify_config({"BACKUP_NOTIFY_EVENTS": "all"}).events >= {"start", "verify"}
    assert not notify_config({}).enabled
    for bad in (
        {"BACKUP_HEALTHCHECK_URL": "ftp://x"},
        {"BACKUP_NOTIFY_URLS": "not-a-url"},
        {"BACKUP_NOTIFY_EVENTS": "start,explode"},
    ):
        with pytest.raises(ConfigError):
            notify_config(bad)


def test_notices() -> None:
    result: dict[str, Any] = {
        "ok": False,
        "run_id": "20261125T000000Z",
        "jobs": [
            {
                "folder": "backups",
                "status": "COMPLETED",
                "files_transferred": 2,
                "bytes_transferred": 2048,
                "error_message": None,
            },
            {
                "folder": "library",
                "status": "FAILED",
                "files_transferred": 1,
                "bytes_transferred": 10,
                "error_message": "disk full",
            },
        ],
    }
    notice = finished_notice("nas", result, 3725)
    assert notice.kind == "failure" and notice.ping_suffix == "/fail" and notice.level == "failure"
    assert "1/2 folders" in notice.body and "library/: FAILED — disk full" in notice.body
    assert "1:02:05" in notice.body
    ok = finished_notice("nas", {**result, "ok": True, "jobs": result["jobs"][:1]}, None)
    assert ok.kind == "success" and ok.ping_suffix == ""
    assert "Immich" not in ok.body
    # Immich down: the run still succeeds, and the notice says which dump went up
    warned = finished_notice(
        "nas",
        {
            **result,
            "ok": True,
            "jobs": result["jobs"][:1],
            "immich": {"warning": "Immich at http://x did not answer; sent the newest dump"},
        },
        None,
    )
    assert warned.kind == "success"
    assert "Immich database dump: Immich at http://x did not answer" in warned.body
    verify = verify_notice(
        "nas",
        {"ok": False, "mode": "full", "figures": {"missing": 1}, "missing": ["library/a.jpg"]},
    )
    assert verify.ping_suffix is None and "library/a.jpg" in verify.body


ROWS = [
    {
        "name": "nas",
        "run_id": "r1",
        "folder": f,
        "status": "COMPLETED",
        "bytes_transferred": 100,
        "files_transferred": 2,
        "created_at": "2026-11-20T03:00:00+00:00",
        "started_at": "2026-11-20T03:00:01+00:00",
        "completed_at": "2026-11-20T03:01:01+00:00",
        "last_update": None,
        "retry_count": 1 if f == "library" else 0,
        "error_message": None,
    }
    for f in ("backups", "library")
] + [
    {
        "name": "nas",
        "run_id": "r2",
        "folder": "backups",
        "status": "FAILED",
        "bytes_transferred": 5,
        "files_transferred": 0,
        "created_at": "2026-11-21T03:00:00+00:00",
        "started_at": "2026-11-21T03:00:00+00:00",
        "completed_at": None,
        "last_update": "2026-11-21T03:00:30+00:00",
        "retry_count": 3,
        "error_message": "boom",
    },
]


def test_history_groups_runs() -> None:
    runs = summarise_runs(ROWS)
    assert [r["run_id"] for r in runs] == ["r2", "r1"]
    assert runs[1]["result"] == "completed" and runs[1]["duration_seconds"] == 60.0
    assert runs[1]["bytes"] == 200 and runs[1]["files"] == 4 and runs[1]["retries"] == 1
    assert runs[0]["result"] == "failed" and runs[0]["errors"] == ["backups/: boom"]


def test_metrics_parse() -> None:
    document = {
        "destinations": [
            {
                "name": 'n"as',
                "last_backup_at": "2026-11-20T03:01:01+00:00",
                "last_verify": {
                    "ok": True,
                    "finished_at": "2026-11-20T04:00:00+00:00",
                    "matched": 5,
                    "missing": 0,
                    "extra": 0,
                    "differ": 0,
                    "errors": 0,
                },
            },
        ],
        "jobs": [
            {
                "destination": 'n"as',
                "folder": "library",
                "status": "RUNNING",
                "bytes_transferred": 50,
                "bytes_total": 100,
                "files_transferred": 1,
                "files_total": 2,
                "transfer_speed": 12.5,
                "retry_count": 0,
            },
            {
                "destination": 'n"as',
                "folder": "upload",
                "status": "FAILED",
                "refused": "max_change",
                "bytes_transferred": 0,
                "bytes_total": 0,
                "files_transferred": 0,
                "files_total": 0,
                "retry_count": 0,
            },
        ],
        "daemon": {
            "run": {"destination": 'n"as'},
            "next_run": {'n"as': "2026-11-21T03:00:00+00:00"},
        },
    }
    rows = [dict(r, name='n"as') for r in ROWS]
    text = render_metrics(document, summarise_runs(rows))
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    dest = (("destination", 'n"as'),)
    job = (("destination", 'n"as'), ("folder", "library"))
    assert samples[("photos_sync_last_success_timestamp_seconds", dest)] == 1795143661.0
    assert samples[("photos_sync_job_bytes_done", job)] == 50
    assert samples[("photos_sync_job_speed_bytes_per_second", job)] == 12.5
    assert samples[("photos_sync_job_state", (*job, ("state", "RUNNING")))] == 1
    assert samples[("photos_sync_job_state", (*job, ("state", "FAILED")))] == 0
    upload = (("destination", 'n"as'), ("folder", "upload"))
    assert samples[("photos_sync_job_refused", (*upload, ("guard", "max_change")))] == 1
    assert samples[("photos_sync_job_refused", (*upload, ("guard", "max_delete")))] == 0
    assert samples[("photos_sync_job_refused", (*job, ("guard", "max_change")))] == 0
    assert samples[("photos_sync_runs_total", (*dest, ("result", "failed")))] == 1
    assert samples[("photos_sync_job_retries_total", dest)] == 4
    assert samples[("photos_sync_job_failures_total", dest)] == 1
    assert samples[("photos_sync_verify_ok", dest)] == 1
    assert samples[("photos_sync_run_in_progress", dest)] == 1
    assert samples[("photos_sync_daemon_up", ())] == 1
    assert ("photos_sync_next_run_timestamp_seconds", dest) in samples


def test_metrics_addr() -> None:
    assert metrics_addr({}) is None
    assert metrics_addr({"BACKUP_METRICS_ADDR": "127.0.0.1:9853"}) == ("127.0.0.1", 9853)
    assert metrics_addr({"BACKUP_METRICS_ADDR": ":9853"}) == ("127.0.0.1", 9853)
    assert metrics_addr({"BACKUP_METRICS_ADDR": "[::1]:9853"}) == ("::1", 9853)
    with pytest.raises(ConfigError):
        metrics_addr({"BACKUP_METRICS_ADDR": "localhost"})
