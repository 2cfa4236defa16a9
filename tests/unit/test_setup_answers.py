"""The wizard's answer checks (each refusal is one line saying why), the 1Password vault
list (op v2's JSON) and which vault is used when none is named; the op double's `vault list`
and `item delete` answer like the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from photos_sync.core.destinations import bucket_problem
from photos_sync.credentials.onepassword import OpVault, default_vault, parse_vaults
from photos_sync.engine.setup import (
    bucket_folder_problem,
    endpoint_problem,
    key_problem,
    local_folder_problem,
    name_problem,
    password_problem,
    region_problem,
    store_problem,
)
from tests.support.op_double import OpDouble, op_double  # noqa: F401


@pytest.mark.parametrize(
    ("bucket", "reason"),
    [
        ("family-photos", None),
        ("my.photos.2024", None),
        ("abc", None),
        ("a" * 63, None),
        ("   ", "a bucket name is needed"),
        ("ab", "S3 bucket names are 3-63 characters long"),
        ("a" * 64, "S3 bucket names are 3-63 characters long"),
        ("Family_Photos", "use only lowercase letters, digits, '.' and '-'"),
        ("-photos", "start and end it with a lowercase letter or a digit"),
        ("photos.", "start and end it with a lowercase letter or a digit"),
        ("my..photos", "two dots in a row are not allowed"),
        ("192.168.5.4", "a bucket name cannot look like an IP address"),
        ("xn--photos", "names starting with 'xn--' are reserved"),
        ("sthree-photos", "names starting with 'sthree-' are reserved"),
        ("photos-s3alias", "names ending with '-s3alias' are reserved"),
        ("photos--x-s3", "names ending with '--x-s3' are reserved"),
    ],
)
def test_s3_bucket_names(bucket: str, reason: str | None) -> None:
    problem = bucket_problem("s3", bucket)
    if reason is None:
        assert problem is None
    else:
        assert problem is not None and problem.endswith(reason)
        assert "\n" not in problem


@pytest.mark.parametrize(
    ("bucket", "reason"),
    [
        ("Family-Photos-2024", None),  # B2 allows upper case
        ("abcdef", None),
        ("a" * 63, None),  # 63, not 50: Backblaze's current limit
        ("", "a bucket name is needed"),
        ("abcde", "B2 bucket names are 6-63 characters long"),
        ("a" * 64, "B2 bucket names are 6-63 characters long"),
        ("family.photos", "use only letters, digits and '-'"),
        ("family_photos", "use only letters, digits and '-'"),
        ("b2-family-photos", "names starting with 'b2-' are reserved by Backblaze"),
        ("B2-family-photos", "names starting with 'b2-' are reserved by Backblaze"),
    ],
)
def test_b2_bucket_names(bucket: str, reason: str | None) -> None:
    problem = bucket_problem("b2", bucket)
    if reason is None:
        assert problem is None
    else:
        assert problem is not None and problem.endswith(reason)


def test_endpoint_regions_folders_names_keys_passwords() -> None:
    for ok in ("", "https://s3.eu-central-1.wasabisys.com", "http://127.0.0.1:9000", "https://h/"):
        assert endpoint_problem(ok) is None, ok
    for bad in ("s3.wasabisys.com", "127.0.0.1:9000", "ftp://h", "https://", "http://h:99999"):
        assert endpoint_problem(bad) == (
            f"{bad!r} is not a URL: type it as https://host or http://host:port (empty for AWS)"
        )
    assert endpoint_problem("https://h/bucket") == (
        "'https://h/bucket' has a path or query: the endpoint is only https://h"
    )
    assert region_problem("", required=False) is None
    assert region_problem("", required=True) == "AWS needs a region, e.g. eu-central-1"
    assert region_problem("eu-central-1", required=True) is None
    assert region_problem("EU Central", required=False) is not None
    assert bucket_folder_problem("") is None
    assert bucket_folder_problem("/server1/immich/") is None
    assert bucket_folder_problem("a/../b") == "invalid folder 'a/../b': no '.', '..' or '//' in it"
    assert bucket_folder_problem("a//b") is not None
    assert name_problem("nas-2") is None
    assert name_problem("  ") == "a destination name is needed"
    assert name_problem(".hidden") is not None
    assert key_problem(" K001abc ", "B2 keyID") is None
    assert key_problem("", "B2 keyID") == "the B2 keyID is needed"
    assert key_problem("K001 abc", "B2 keyID") == "the B2 keyID has a space in it: paste it again"
    assert password_problem("x" * 12) is None
    assert password_problem("x" * 11) == (
        "too short: use at least 12 characters, or let photos-sync generate one"
    )
    assert store_problem(" OP ") is None and store_problem("file") is None
    assert store_problem("vault") == "answer op or file"


def test_local_folder_answers(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert local_folder_problem(str(tmp_path / "new" / "deeper")) is None  # made at step 5
    assert local_folder_problem(str(tmp_path)) is None
    assert local_folder_problem("") == "a folder is needed, e.g. /mnt/nas/immich-backup"
    assert local_folder_problem("backup") == (
        "'backup' is not a full path: type it from /, e.g. /mnt/nas/immich-backup"
    )
    assert local_folder_problem(str(a_file)) == f"{a_file} is a file, not a folder"
    assert local_folder_problem(str(a_file / "below")) == f"{a_file} is a file, not a folder"
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert local_folder_problem(str(locked / "backup")) == (
            f"{locked} is not writable by this user: choose another folder"
        )


#: `op vault list --format json` as op v2 prints it.
OP_VAULT_LIST = [
    {
        "id": "0123456789abcdefghijklmnop",
        "name": "Personal",
        "content_version": 505,
        "created_at": "2022-09-04T08:17:14Z",
        "updated_at": "2025-01-25T05:36:11Z",
        "items": 300,
    },
    {
        "id": "1234567890abcdefghijklmnop",
        "name": "HomeLab",
        "content_version": 33,
        "created_at": "2024-12-30T23:17:36Z",
        "updated_at": "2025-01-12T02:49:20Z",
        "items": 10,
    },
]


def test_vault_list_and_the_vault_used_when_none_is_named() -> None:
    vaults = parse_vaults(OP_VAULT_LIST)
    assert vaults == [
        OpVault("0123456789abcdefghijklmnop", "Personal", 300),
        OpVault("1234567890abcdefghijklmnop", "HomeLab", 10),
    ]
    assert parse_vaults([{"id": "x", "name": "Only"}]) == [OpVault("x", "Only", None)]

    def named(*names: str) -> list[OpVault]:
        return [OpVault(f"id{n}", n, 0) for n in names]

    assert default_vault(named("Servers")) == named("Servers")[0]  # the only one, any name
    assert default_vault(vaults) == vaults[0]  # Individual account: "Personal"
    assert default_vault(named("Shared", "Employee")) == named("Employee")[0]  # Business
    assert default_vault(named("Private", "Servers")) == named("Private")[0]  # Family/Team
    assert default_vault(named("Servers", "HomeLab")) is None  # ask, or --vault
    assert default_vault(named("Private", "Personal")) is None  # ambiguous
    assert default_vault([]) is None


def _op(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["op", *args], capture_output=True, text=True, timeout=30)


def test_op_double_lists_vaults_and_deletes_items_like_op(op_double: OpDouble) -> None:  # noqa: F811
    op_double.set_vaults(["Personal", "HomeLab"])
    op_double.add_item("Immich Backup B2", {"application_key_id": "id"}, vault="HomeLab")
    listed = json.loads(_op("vault", "list", "--format", "json").stdout)
    assert [(v["name"], v["items"]) for v in listed] == [("Personal", 0), ("HomeLab", 1)]
    for vault in listed:
        assert set(vault) == {"id", "name", "content_version", "created_at", "updated_at", "items"}
        assert len(vault["id"]) == 26
    assert parse_vaults(listed)[1].name == "HomeLab"
    item = op_double.item("Immich Backup B2", "HomeLab")
    assert item is not None
    item_id = item["id"]
    gone = _op("item", "delete", item_id, "--vault", "Personal")
    assert gone.returncode == 1 and 'isn\'t an item in the "Personal" vault' in gone.stderr
    assert _op("item", "delete", item_id, "--vault", "HomeLab").returncode == 0
    assert op_double.all_items() == []
    op_double.sign_out()
    signed_out = _op("vault", "list", "--format", "json")
    assert signed_out.returncode == 1 and "not currently signed in" in signed_out.stderr
