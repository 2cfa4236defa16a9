"""photos_sync.reporting.status.status_document: the stable `backup --status --json` contract."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from photos_sync.cli.render import dumps
from photos_sync.core.records import Destination, Job
from photos_sync.core.states import JobStatus, Staleness
from photos_sync.reporting.status import percent, status_document

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
