"""Pure parts of #3: destination types, tuning, error diagnosis, op JSON parsing; and the
op test double's own answers (the real CLI's shapes and texts)."""

from __future__ import annotations

import json
import subprocess

import pytest

from photos_sync.core.destinations import (
    DestinationError,
    bucket_problem,
    explain_error,
    item_fields,
    op_ref,
    parse_op_locator,
    s3_provider,
)
from photos_sync.credentials.onepassword import normalise_label, op_message, parse_item
from tests.support.op_double import OpDouble, op_double  # noqa: F401


def test_item_fields_per_type() -> None:
    assert item_fields("b2") == (
        "application_key_id",
        "application_key",
        "bucket_name",
        "encryption_password",
    )
    assert item_fields("s3") == (
        "access_key_id",
        "secret_access_key",
        "bucket_name",
        "endpoint",
        "encryption_password",
    )


def test_refs_and_providers() -> None:
    assert op_ref("Private", "Immich Backup B2") == "op:Private/Immich Backup B2"
    assert parse_op_locator("Private/Immich/B2") == ("Private", "Immich/B2")
    with pytest.raises(DestinationError):
        parse_op_locator("no-title")
    assert s3_provider(None) == "AWS"
    assert s3_provider("https://s3.eu-central-003.backblazeb2.com") == "Other"
    assert s3_provider("https://s3.wasabisys.com") == "Wasabi"
    assert bucket_problem("s3", "ok-bucket") is None
    assert bucket_problem("s3", "B") is not None
    assert bucket_problem("b2", "short") is not None


def test_error_diagnosis_says_which() -> None:
    assert explain_error("s3", "api error NoSuchBucket: nope").startswith(
        "the bucket does not exist"
    )
    assert explain_error(
        "b2", "failed to authorize account: Unauthorized (401 unauthorized)"
    ).startswith("the credentials were rejected: check application_key_id and application_key")
    assert explain_error("s3", "dial tcp 10.0.0.1:9000: connect: connection refused").startswith(
        "the storage service is unreachable"
    )
    assert explain_error("s3", "something else") == "something else"


def test_parse_item_by_label() -> None:
    item = parse_item(
        {
            "id": "abc",
            "title": "Immich Backup B2",
            "vault": {"id": "v1", "name": "Private"},
            "fields": [
                {"id": "notesPlain", "type": "STRING", "purpose": "NOTES", "label": "notesPlain"},
                {"id": "x1", "type": "STRING", "label": "Application Key ID", "value": "k1"},
                {
                    "id": "x2",
                    "type": "CONCEALED",
                    "label": "application_key",
                    "value": "s2",
                    "section": {"id": "s"},
                },
                {"id": "x3", "type": "STRING", "label": "bucket_name"},
            ],
        }
    )
    assert item.vault == "Private"
    assert item.fields == {"application_key_id": "k1", "application_key": "s2"}
    assert normalise_label(" Encryption-Password ") == "encryption_password"
    assert op_message(b"[ERROR] 2024/01/01 12:00:00 You are not signed in\n") == (
        "You are not signed in"
    )


def _op(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(["op", *args], input=stdin, capture_output=True, text=True, timeout=30)


def test_op_double_speaks_like_op(op_double: OpDouble) -> None:  # noqa: F811
    assert _op("--version").stdout.strip() == "2.30.0"
    assert json.loads(_op("whoami", "--format", "json").stdout)["user_type"] == "HUMAN"
    missing = _op("item", "get", "Immich Backup B2", "--vault", "Private", "--format", "json")
    assert missing.returncode == 1
    assert missing.stderr.startswith("[ERROR] ")
    assert missing.stderr.rstrip().endswith(
        '"Immich Backup B2" isn\'t an item in the "Private" vault. Specify the item with its '
        "UUID, name, or domain."
    )
    template = {
        "title": "T",
        "category": "SECURE_NOTE",
        "fields": [{"id": "a", "type": "CONCEALED", "label": "a", "value": "v"}],
    }
    created = _op(
        "item", "create", "--vault", "Private", "--format", "json", "-", stdin=json.dumps(template)
    )
    assert created.returncode == 0, created.stderr
    item = json.loads(created.stdout)
    assert item["vault"]["name"] == "Private" and item["fields"][0]["value"] == "v"
    got = json.loads(_op("item", "get", "T", "--vault", "Private", "--format", "json").stdout)
    assert got["id"] == item["id"]
    op_double.sign_out()
    signed_out = _op("account", "get")
    assert signed_out.returncode == 1
    assert signed_out.stderr.rstrip().endswith(
        "You are not currently signed in. Please run `op signin --help` for instructions"
    )
