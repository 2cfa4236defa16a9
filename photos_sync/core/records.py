"""The domain records the store keeps: destinations, backup jobs and restore jobs. Pure.

photos_sync.storage.store turns SQLite rows into these records and back; everything else
reads them without knowing about the DB. Timestamps are ISO-8601 UTC strings
("2026-11-25T17:29:22.123456+00:00"), written with `to_iso` and read with
photos_sync.core.units.from_iso.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from photos_sync.core.states import JobStatus


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


@dataclass(frozen=True, slots=True)
class Destination:
    id: int
    name: str
    type: str
    bucket_name: str | None
    remote_path: str | None
    endpoint: str | None
    region: str | None
    secrets_ref: str
    options: Mapping[str, Any]
    created_at: str
    last_backup_at: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "bucket_name": self.bucket_name,
            "remote_path": self.remote_path,
            "endpoint": self.endpoint,
            "region": self.region,
            "secrets_ref": self.secrets_ref,
            "created_at": self.created_at,
            "last_backup_at": self.last_backup_at,
        }


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    destination_id: int
    run_id: str
    folder: str
    source_path: str
    status: JobStatus
    bytes_total: int
    bytes_transferred: int
    bytes_confirmed: int
    files_total: int
    files_transferred: int
    files_archived: int
    transfer_speed: float
    eta_seconds: float | None
    created_at: str
    started_at: str | None
    completed_at: str | None
    last_update: str | None
    error_message: str | None
    retry_count: int
    priority: int
    owner_pid: int | None
    owner_host: str | None
    owner_token: str | None
    #: The safety guard that refused this job (a `Refusal` value), or None. A refused job is
    #: never resumed: the next run plans the folder afresh and checks it again.
    refused: str | None = None
    #: Files under the folder that this job could not send (named in `skipped_detail`).
    files_skipped: int = 0
    #: JSON list of {"path": plain source path, "reason": why}, the first few only.
    skipped_detail: str = "[]"

    def as_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__slots__}
        data["status"] = self.status.value
        data["skipped_detail"] = json.loads(self.skipped_detail or "[]")
        return data


@dataclass(frozen=True, slots=True)
class RestoreJob:
    id: int
    destination_id: int
    remote_path: str
    target_dir: str
    mode: str
    as_of: str | None
    overwrite: int
    status: JobStatus
    bytes_total: int
    bytes_transferred: int
    files_total: int
    files_transferred: int
    created_at: str
    started_at: str | None
    completed_at: str | None
    last_update: str | None
    error_message: str | None
    owner_pid: int | None

    def as_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__slots__}
        data["status"] = self.status.value
        return data
