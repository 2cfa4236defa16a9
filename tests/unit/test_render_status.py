"""photos_sync.reporting.status.status_document: the stable `backup --status --json` contract;
its manifest part (manifest_section, render.manifest_line) and the run summary's modes note."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from photos_sync.cli.output import modes_note
from photos_sync.cli.render import dumps, manifest_line
from photos_sync.core.config import Settings
from photos_sync.core.manifest import ManifestState, Reconcile, destination_key
from photos_sync.core.records import Destination, Job
from photos_sync.core.states import JobStatus, Staleness
from photos_sync.reporting.status import manifest_section, percent, status_document
from photos_sync.storage.manifest_reader import ManifestFacts

#: Every job field the JSON carries, as documented in the design (plus run/ownership data).
JOB_FIELDS = {
    "id",
    "destination_id",
    "run_id",
    "folder",
    "source_path",
    "status",
    "bytes_total",
    "bytes_transferred",
    "bytes_confirmed",
    "files_total",
    "files_transferred",
    "files_archived",
    "refused",
    "files_skipped",
    "skipped_detail",
    "transfer_speed",
    "eta_seconds",
    "created_at",
    "started_at",
    "completed_at",
    "last_update",
    "error_message",
    "retry_count",
    "priority",
    "owner_pid",
    "owner_host",
    "owner_token",
}
DESTINATION_FIELDS = {
    "id",
    "name",
    "type",
    "bucket_name",
    "remote_path",
    "endpoint",
    "region",
    "secrets_ref",
    "created_at",
    "last_backup_at",
}


def destination(id: int, name: str, type: str = "local", **changes: Any) -> Destination:
    values: dict[str, Any] = {
        "id": id,
        "name": name,
        "type": type,
        "bucket_name": None,
        "remote_path": f"/mnt/{name}",
        "endpoint": None,
        "region": None,
        "secrets_ref": f"file:{name}.key",
        "options": {"fast_list": True},
        "created_at": "2025-01-01T00:00:00+00:00",
        "last_backup_at": None,
    }
    values.update(changes)
    return Destination(**values)


def job(id: int, destination_id: int, folder: str, status: JobStatus, **changes: Any) -> Job:
    values: dict[str, Any] = {
        "id": id,
        "destination_id": destination_id,
        "run_id": "20250101T000000Z",
        "folder": folder,
        "source_path": f"/immich/{folder}",
        "status": status,
        "bytes_total": 1000,
        "bytes_transferred": 250,
        "bytes_confirmed": 200,
        "files_total": 10,
        "files_transferred": 3,
        "files_archived": 0,
        "transfer_speed": 1234.5,
        "eta_seconds": 42.0,
        "created_at": "2025-01-01T00:00:00+00:00",
        "started_at": "2025-01-01T00:00:01+00:00",
        "completed_at": None,
        "last_update": "2025-01-01T00:05:00+00:00",
        "error_message": None,
        "retry_count": 0,
        "priority": 2,
        "owner_pid": 4242,
        "owner_host": "nas",
        "owner_token": "tok",
    }
    values.update(changes)
    return Job(**values)


NAS = destination(1, "nas")
B2 = destination(2, "offsite", "b2", bucket_name="my-bucket", remote_path="immich")


def test_empty_state() -> None:
    assert status_document([], {}, {}) == {"destinations": [], "jobs": []}


def test_destination_without_jobs() -> None:
    doc = status_document([NAS], {}, {})
    assert doc["jobs"] == []
    assert doc["destinations"] == [
        {
            "id": 1,
            "name": "nas",
            "type": "local",
            "bucket_name": None,
            "remote_path": "/mnt/nas",
            "endpoint": None,
            "region": None,
            "secrets_ref": "file:nas.key",
            "created_at": "2025-01-01T00:00:00+00:00",
            "last_backup_at": None,
        }
    ]


def test_job_items_carry_every_field_plus_destination_percent_stale() -> None:
    running = job(7, 1, "library", JobStatus.RUNNING)
    doc = status_document([NAS], {1: [running]}, {7: Staleness.HEALTHY})
    (item,) = doc["jobs"]
    assert set(item) == JOB_FIELDS | {"destination", "percent", "stale"}
    expected = {name: getattr(running, name) for name in JOB_FIELDS}
    expected.update(
        status="RUNNING", destination="nas", percent=25.0, stale=False, skipped_detail=[]
    )
    assert item == expected


def test_job_fields_match_the_store_dataclass() -> None:
    assert {f.name for f in dataclasses.fields(Job)} == JOB_FIELDS
    assert {f.name for f in dataclasses.fields(Destination)} == DESTINATION_FIELDS | {"options"}


@pytest.mark.parametrize("status", list(JobStatus))
def test_status_is_an_upper_case_plain_string(status: JobStatus) -> None:
    doc = status_document([NAS], {1: [job(1, 1, "library", status)]}, {})
    value = doc["jobs"][0]["status"]
    assert value == status.name
    assert value.isupper()
    assert type(value) is str


def test_jobs_grouped_by_destination_in_destination_order() -> None:
    jobs = {
        2: [job(21, 2, "backups", JobStatus.COMPLETED), job(22, 2, "library", JobStatus.PENDING)],
        1: [job(11, 1, "backups", JobStatus.FAILED, error_message="disk full", retry_count=3)],
    }
    doc = status_document([NAS, B2], jobs, {})
    assert [(j["id"], j["destination"]) for j in doc["jobs"]] == [
        (11, "nas"),
        (21, "offsite"),
        (22, "offsite"),
    ]
    assert [d["name"] for d in doc["destinations"]] == ["nas", "offsite"]
    assert doc["destinations"][1]["bucket_name"] == "my-bucket"
    failed = doc["jobs"][0]
    assert (failed["error_message"], failed["retry_count"]) == ("disk full", 3)


def test_jobs_of_unknown_destinations_are_left_out() -> None:
    doc = status_document([NAS], {1: [], 9: [job(1, 9, "library", JobStatus.RUNNING)]}, {})
    assert doc["jobs"] == []


@pytest.mark.parametrize(
    ("staleness", "stale"),
    [
        (Staleness.STALE, True),
        (Staleness.HEALTHY, False),
        (Staleness.ORPHANED, False),
        (None, False),
    ],
)
def test_stale_flag(staleness: Staleness | None, stale: bool) -> None:
    verdicts = {5: staleness} if staleness else {}
    doc = status_document([NAS], {1: [job(5, 1, "library", JobStatus.RUNNING)]}, verdicts)
    assert doc["jobs"][0]["stale"] is stale


def test_stale_flag_is_per_job() -> None:
    jobs = [job(1, 1, "library", JobStatus.RUNNING), job(2, 1, "upload", JobStatus.PENDING)]
    doc = status_document([NAS], {1: jobs}, {1: Staleness.STALE, 2: Staleness.HEALTHY})
    assert [j["stale"] for j in doc["jobs"]] == [True, False]


@pytest.mark.parametrize(
    ("status", "transferred", "total", "expected"),
    [
        (JobStatus.RUNNING, 250, 1000, 25.0),
        (JobStatus.RUNNING, 1, 3, 33.3),
        (JobStatus.RUNNING, 2, 3, 66.7),
        (JobStatus.RUNNING, 0, 1000, 0.0),
        (JobStatus.RUNNING, 5000, 1000, 100.0),  # capped
        (JobStatus.PENDING, 0, 0, 0.0),  # total unknown yet
        (JobStatus.INTERRUPTED, 10, -1, 0.0),
        (JobStatus.FAILED, 999, 1000, 99.9),
        (JobStatus.COMPLETED, 0, 0, 100.0),  # nothing to send is done
        (JobStatus.COMPLETED, 10, 1000, 100.0),
    ],
)
def test_percent(status: JobStatus, transferred: int, total: int, expected: float) -> None:
    j = job(1, 1, "library", status, bytes_transferred=transferred, bytes_total=total)
    assert percent(j) == expected
    doc = status_document([NAS], {1: [j]}, {})
    assert doc["jobs"][0]["percent"] == expected


def test_extra_keys_are_merged_in() -> None:
    doc = status_document([NAS], {}, {}, extra={"daemon": {"pid": 1}, "version": "0.1.0"})
    assert doc == {
        "destinations": [NAS.as_dict()],
        "jobs": [],
        "daemon": {"pid": 1},
        "version": "0.1.0",
    }
    assert set(status_document([NAS], {}, {}, extra={})) == {"destinations", "jobs"}


def test_document_round_trips_through_json() -> None:
    jobs = {1: [job(1, 1, "library", JobStatus.RUNNING), job(2, 1, "upload", JobStatus.FAILED)]}
    doc = status_document([NAS, B2], jobs, {1: Staleness.STALE})
    parsed = json.loads(dumps(doc))
    assert parsed == doc
    assert parsed["jobs"][0]["status"] == "RUNNING"
    assert parsed["jobs"][0]["stale"] is True
    assert parsed["jobs"][1]["eta_seconds"] == 42.0


def test_no_secret_material_in_destinations() -> None:
    """Destinations record where secrets live, and the JSON shows only that reference."""
    item = status_document([B2], {}, {})["destinations"][0]
    assert item["secrets_ref"] == "file:offsite.key"
    assert "options" not in item
    text = dumps(status_document([B2], {}, {}))
    for word in ("password", "secret_access_key", "application_key"):
        assert word not in text


# -- the manifest's part (#15) -----------------------------------------------------------------

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
NAS_KEY = destination_key("local", None, "/mnt/nas", None)


def _settings(**changes: Any) -> Settings:
    return Settings(data_dir=Path("/data"), socket_path=Path("/data/daemon.sock"), **changes)


def _facts(files: int = 1200, **changes: Any) -> ManifestFacts:
    values: dict[str, Any] = {
        "destination_key": NAS_KEY,
        "copy_run": "20261128T033000Z",
        "reconciled_at": NOW - timedelta(days=2),
        "folders": frozenset({"library", "upload"}),
    }
    values.update(changes)
    return ManifestFacts(ManifestState(**values), files)


def test_no_manifest_means_the_next_run_is_a_full_sync() -> None:
    section = manifest_section(None, NAS, _settings(), NOW)
    assert section == {
        "present": False,
        "files": 0,
        "reconciled_at": None,
        "next_reconcile_at": None,
        "unfinished": [],
        "next_run": "full sync: no manifest yet",
        "error": None,
    }
    assert manifest_line(section).startswith("manifest: none yet — the next run is a full sync")


def test_a_trusted_manifest_says_its_size_its_last_reconcile_and_the_next() -> None:
    section = manifest_section(_facts(), NAS, _settings(), NOW)
    assert section["present"] is True and section["files"] == 1200
    assert section["reconciled_at"] == "2026-11-28T12:00:00+00:00"
    assert section["next_reconcile_at"] == "2026-12-05T12:00:00+00:00"  # the default 7d
    assert section["next_run"] == "incremental"
    line = manifest_line(section)
    assert line.startswith("manifest: 1,200 files, last full sync ")
    assert ", next due " in line and line.endswith("; next run: incremental")
    off = manifest_section(_facts(), NAS, _settings(reconcile_every=None), NOW)
    assert off["next_reconcile_at"] is None and off["next_run"] == "incremental"
    assert "periodic full sync off" in manifest_line(off)


@pytest.mark.parametrize(
    ("changes", "settings", "expected"),
    [
        ({"reconciled_at": NOW - timedelta(days=8)}, {}, Reconcile.DUE),
        ({"reconciled_at": None}, {}, Reconcile.FIRST),
        ({"destination_key": "local||/mnt/usb|"}, {}, Reconcile.OTHER_DESTINATION),
        ({"copy_run": None}, {}, Reconcile.STALE_COPY),
        ({}, {"follow_symlinks": True}, Reconcile.SYMLINKS),
    ],
)
def test_what_makes_the_next_run_a_full_sync_is_named(
    changes: dict[str, Any], settings: dict[str, Any], expected: Reconcile
) -> None:
    section = manifest_section(_facts(**changes), NAS, _settings(**settings), NOW)
    assert section["next_run"] == f"full sync: {expected.value}"


def test_folders_a_run_left_unfinished_are_named() -> None:
    facts = _facts(unfinished={"upload": "r2", "library": "r2"})
    section = manifest_section(facts, NAS, _settings(), NOW)
    assert section["unfinished"] == ["library", "upload"]
    assert section["next_run"] == (f"full sync of library/, upload/: {Reconcile.UNFINISHED.value}")


def test_an_unreadable_manifest_is_reported_not_raised() -> None:
    section = manifest_section(None, NAS, _settings(), NOW, error="file is not a database")
    assert section["present"] is True and section["error"] == "file is not a database"
    assert manifest_line(section).startswith("manifest: could not be read (file is not a database)")


def test_the_run_summary_says_how_each_folder_went_and_what_moved() -> None:
    data = {
        "folder_modes": {
            "backups": "full sync: a folder the manifest does not cover yet",
            "library": "incremental",
            "upload": "incremental",
            "profile": "full sync: a folder the manifest does not cover yet",
        },
        "moved": 3,
    }
    assert modes_note(data) == (
        "incremental: library/, upload/; full sync of backups/, profile/ (a folder the "
        "manifest does not cover yet); 3 files moved inside the backup, not sent again"
    )
    assert modes_note({"folder_modes": {"library": "incremental"}, "moved": 1}) == (
        "incremental: library/; 1 file moved inside the backup, not sent again"
    )
    assert modes_note({"dry_run": True, "dry_run_folders": []}) == ""  # a dry run says nothing
