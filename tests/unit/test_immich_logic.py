"""photos_sync.core.immich_rules (pure) and the Immich settings in photos_sync.core.config."""

from __future__ import annotations

from pathlib import Path

import pytest

from photos_sync.core.config import ConfigError, Settings, parse_settings
from photos_sync.core.immich_rules import (
    CREATE_JOB,
    QUEUE_COMMAND,
    DumpFile,
    UrlError,
    api_url,
    dump_health,
    error_message,
    is_dump_name,
    is_stable,
    key_problem,
    missing_permission,
    new_dump,
    normalize_base_url,
    parse_version,
    supports_backups,
    trigger_calls,
)

HOUR = 3600.0
NOW = 1_800_000_000.0


def dump(name: str, size: int = 1000, age_hours: float = 1.0) -> DumpFile:
    return DumpFile(f"immich-db-backup-{name}.sql.gz", size, NOW - age_hours * HOUR)


# --- URLs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("http://localhost:2283", "http://localhost:2283"),
        ("http://localhost:2283/", "http://localhost:2283"),
        ("http://localhost:2283/api", "http://localhost:2283"),
        ("https://photos.example.com/immich/api/", "https://photos.example.com/immich"),
        ("  http://[::1]:2283  ", "http://[::1]:2283"),
    ],
)
def test_base_url_is_normalised(raw: str, expected: str) -> None:
    assert normalize_base_url(raw) == expected
    assert api_url(expected, "/jobs") == expected + "/api/jobs"


@pytest.mark.parametrize(
    "raw",
    [
        "localhost:2283",
        "ftp://host",
        "http://",
        "http://user:pw@host",
        "http://h/?x=1",
        "http://h:99999",
    ],
)
def test_bad_urls_are_refused(raw: str) -> None:
    with pytest.raises(UrlError):
        normalize_base_url(raw)


def _parse(env: dict[str, str]) -> Settings:
    return parse_settings(env, default_data_dir=Path("/d"), runtime_dir=None)


def test_config_reads_immich_settings() -> None:
    settings = _parse(
        {
            "BACKUP_IMMICH_URL": "http://nas:2283/api/",
            "BACKUP_IMMICH_DUMP_TIMEOUT": "120",
            "BACKUP_IMMICH_POLL_INTERVAL": "0.5",
        }
    )
    assert settings.immich_url == "http://nas:2283"
    assert settings.immich_dump_timeout == 120.0
    assert settings.immich_poll_interval == 0.5
    defaults = _parse({})
    assert defaults.immich_url is None
    assert defaults.immich_dump_timeout == 600.0


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("BACKUP_IMMICH_URL", "nas:2283"),
        ("BACKUP_IMMICH_DUMP_TIMEOUT", "0"),
        ("BACKUP_IMMICH_API_TIMEOUT", "soon"),
    ],
)
def test_config_errors_name_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        _parse({variable: value}).require([variable])


# --- versions and endpoints ---------------------------------------------------------------------


def test_version_parsing() -> None:
    assert parse_version({"major": 1, "minor": 137, "patch": 3}) == (1, 137, 3)
    assert parse_version({"major": "2", "minor": "0", "patch": "1"}) == (2, 0, 1)
    assert parse_version({"res": "pong"}) is None
    assert parse_version([1, 2, 3]) is None


def test_newer_servers_get_the_manual_job_first_older_the_queue_command() -> None:
    assert trigger_calls((2, 3, 1)) == (CREATE_JOB, QUEUE_COMMAND)
    assert trigger_calls((1, 137, 0)) == (CREATE_JOB, QUEUE_COMMAND)
    assert trigger_calls((1, 136, 9)) == (QUEUE_COMMAND, CREATE_JOB)
    assert trigger_calls(None) == (CREATE_JOB, QUEUE_COMMAND)
    assert CREATE_JOB.method == "POST" and CREATE_JOB.path == "/jobs"
    assert CREATE_JOB.body == {"name": "backup-database"}
    assert QUEUE_COMMAND.method == "PUT" and QUEUE_COMMAND.path == "/jobs/backupDatabase"
    assert QUEUE_COMMAND.body == {"command": "start", "force": False}
    assert not supports_backups((1, 119, 0)) and supports_backups((1, 120, 0))


def test_error_messages_and_key_problems_name_where_the_key_is() -> None:
    body = b'{"message":"Invalid API key","error":"Unauthorized","statusCode":401}'
    assert error_message(body) == "Invalid API key"
    assert error_message(b'{"message":["a","b"]}') == "a; b"
    where = "in field immich_api_key of key file /d/secrets/immich.json"
    text = key_problem(401, "Invalid API key", where)
    assert text is not None and where in text and "rejected" in text
    forbidden = key_problem(403, "Forbidden resource", where)
    assert forbidden is not None and "admin" in forbidden and "job.create" in forbidden
    assert key_problem(500, "boom", where) is None


def test_a_missing_permission_is_named_as_immich_names_it() -> None:
    where = "given to --setup-immich"
    # Immich's AuthService: ForbiddenException(`Missing required permission: ${permission}`)
    assert missing_permission("Missing required permission: user.read") == "user.read"
    assert missing_permission("Missing required permission: job.create") == "job.create"
    assert missing_permission("Forbidden") is None
    assert missing_permission("") is None
    text = key_problem(403, "Missing required permission: user.read", where)
    assert text is not None and "lacks the user.read permission" in text and where in text
    assert "job.create and user.read" in text
    assert "admin" not in text  # the key's owner is not the problem
    jobs = key_problem(403, "Missing required permission: job.create", where)
    assert jobs is not None and "lacks the job.create permission" in jobs


# --- dump files ---------------------------------------------------------------------------------


def test_dump_names() -> None:
    assert is_dump_name("immich-db-backup-20261120T020000-v2.3.1-pg14.19.sql.gz")
    assert is_dump_name("immich-db-backup-1712345678901.sql.gz")
    assert not is_dump_name("immich-db-backup-20261120T020000-v2.3.1-pg14.19.sql.gz.tmp")
    assert not is_dump_name(".immich")


def test_new_dump_and_stability() -> None:
    old = [dump("a", age_hours=20), dump("b", age_hours=2)]
    assert new_dump([d.name for d in old], old) is None
    grown = dump("c", 10, age_hours=0)
    assert new_dump([d.name for d in old], [*old, grown]) == grown
    assert not is_stable(None, grown)
    assert is_stable(grown, grown)
    assert not is_stable(grown, DumpFile(grown.name, 20, grown.mtime))
    empty = DumpFile("immich-db-backup-x.sql.gz", 0, NOW)
    assert not is_stable(empty, empty)


def test_health_missing() -> None:
    health = dump_health([], NOW)
    assert health.newest is None and not health.ok
    assert "no Immich database dump" in health.warnings[0]


@pytest.mark.parametrize(("age", "warned"), [(35.9, False), (36.1, True), (100, True)])
def test_health_age_threshold(age: float, warned: bool) -> None:
    health = dump_health([dump("old", age_hours=age + 24), dump("new", age_hours=age)], NOW)
    assert health.newest is not None and health.newest.name.endswith("new.sql.gz")
    assert (not health.ok) is warned
    if warned:
        assert "h old (more than 36 h)" in health.warnings[0]


@pytest.mark.parametrize(("size", "warned"), [(5000, False), (4999, True), (10, True)])
def test_health_tiny_dump_compared_with_previous(size: int, warned: bool) -> None:
    health = dump_health([dump("prev", 10_000, 25), dump("new", size, 1)], NOW)
    assert (not health.ok) is warned
    if warned:
        assert "less than 50% of the previous one" in health.warnings[0]
    document = health.as_dict(NOW)
    assert document["newest"]["size"] == size and document["previous"]["size"] == 10_000
    assert document["newest"]["age_hours"] == 1.0
