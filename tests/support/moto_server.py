"""A real S3 server with versioning, Object Lock and IAM policies: moto's server mode.

`rclone serve s3` has no versions and no locks, so the append-only tests (#17) run against
moto's server mode (the `moto[server]` test extra; started through moto_launch.py, which takes
out one demand AWS does not make) on a free loopback port. The server
enforces IAM (INITIAL_NO_AUTH_ACTION_COUNT): its first three requests create an administrator,
and every later request must be signed by a key whose policy allows it, so a key that may not
delete versions is refused as AWS would refuse it.

One server per test module (`moto_s3`): each test makes its own buckets and keys.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.procs import TAG_VARIABLE

#: Requests served without a signature before IAM is enforced: create_user, put_user_policy,
#: create_access_key for the administrator.
_UNSIGNED_SETUP_REQUESTS = 3
#: moto.server, with the Content-MD5 demand on copies AWS does not make taken out
_LAUNCHER = Path(__file__).with_name("moto_launch.py")
_RUNNING = re.compile(rb"Running on (http://127\.0\.0\.1:\d+)")
REGION = "us-east-1"


@dataclass(frozen=True)
class Key:
    """An IAM user's access key."""

    user: str
    access_key_id: str
    secret_access_key: str


@dataclass(frozen=True)
class MotoS3:
    endpoint: str
    admin: Key
    pid: int

    def _client(self, service: str, key: Key | None) -> Any:
        import boto3

        key = key or self.admin
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=key.access_key_id,
            aws_secret_access_key=key.secret_access_key,
        )

    def s3(self, key: Key | None = None) -> Any:
        """A boto3 S3 client signing with `key` (the administrator's by default)."""
        return self._client("s3", key)

    def bucket(
        self,
        name: str,
        *,
        versioning: bool = True,
        object_lock: bool = True,
        default_days: int | None = None,
        mode: str = "GOVERNANCE",
    ) -> str:
        """Create bucket `name`: with Object Lock (which turns versioning on), with versioning
        only, or plain; `default_days`: a default retention of that many days in `mode`."""
        s3 = self.s3()
        if object_lock:
            s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
        else:
            s3.create_bucket(Bucket=name)
            if versioning:
                s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        if default_days is not None:
            s3.put_object_lock_configuration(
                Bucket=name,
                ObjectLockConfiguration={
                    "ObjectLockEnabled": "Enabled",
                    "Rule": {"DefaultRetention": {"Mode": mode, "Days": default_days}},
                },
            )
        return name

    def key(self, user: str, deny: Sequence[str] = ()) -> Key:
        """A new user allowed every S3 action except `deny` (e.g. "s3:DeleteObjectVersion")."""
        iam = self._client("iam", None)
        iam.create_user(UserName=user)
        statements: list[dict[str, Any]] = [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]
        if deny:
            statements.append({"Effect": "Deny", "Action": list(deny), "Resource": "*"})
        iam.put_user_policy(
            UserName=user,
            PolicyName="photos-sync-test",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}),
        )
        made = iam.create_access_key(UserName=user)["AccessKey"]
        return Key(user, made["AccessKeyId"], made["SecretAccessKey"])

    def versions(self, bucket: str) -> list[dict[str, Any]]:
        """Every object version and delete marker in `bucket` (the administrator's view)."""
        pages = self.s3().get_paginator("list_object_versions").paginate(Bucket=bucket)
        found: list[dict[str, Any]] = []
        for page in pages:
            found += [{**v, "IsDeleteMarker": False} for v in page.get("Versions", [])]
            found += [{**m, "IsDeleteMarker": True} for m in page.get("DeleteMarkers", [])]
        return found

    def rclone_env(self, key: Key, remote: str = "s3") -> dict[str, str]:
        """RCLONE_CONFIG_* variables defining `remote:` as plain rclone's view with `key`."""
        prefix = f"RCLONE_CONFIG_{remote.upper()}_"
        return {
            prefix + "TYPE": "s3",
            prefix + "PROVIDER": "Other",
            prefix + "ENDPOINT": self.endpoint,
            prefix + "ACCESS_KEY_ID": key.access_key_id,
            prefix + "SECRET_ACCESS_KEY": key.secret_access_key,
            prefix + "ENV_AUTH": "false",
        }


def _admin(endpoint: str) -> Key:
    """The administrator, made with the server's unsigned setup requests."""
    import boto3

    iam = boto3.client(
        "iam",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="bootstrap",
        aws_secret_access_key="bootstrap",  # unsigned requests: any value
    )
    iam.create_user(UserName="admin")
    iam.put_user_policy(
        UserName="admin",
        PolicyName="everything",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
            }
        ),
    )
    made = iam.create_access_key(UserName="admin")["AccessKey"]
    return Key("admin", made["AccessKeyId"], made["SecretAccessKey"])


@contextmanager
def serve_moto(timeout: float = 30.0) -> Iterator[MotoS3]:
    """moto's server (tests/support/moto_launch.py) on 127.0.0.1, on a port the OS picks,
    until the block ends."""
    env = {k: v for k, v in os.environ.items() if k != TAG_VARIABLE}  # outlives one test
    env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(_UNSIGNED_SETUP_REQUESTS)
    env["MOTO_ALLOW_NONEXISTENT_REGION"] = "true"
    proc = subprocess.Popen(
        [sys.executable, str(_LAUNCHER), "-H", "127.0.0.1", "-p", "0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    assert proc.stdout is not None
    output = proc.stdout
    endpoint = ""
    timer = threading.Timer(timeout, proc.kill)  # a server that never says it runs
    timer.start()
    try:
        for line in output:
            found = _RUNNING.search(line)
            if found:
                endpoint = found.group(1).decode()
                break
    finally:
        timer.cancel()
    if not endpoint:
        proc.kill()
        proc.wait()
        raise RuntimeError("moto.server did not start")
    # it logs every request: keep reading, or a full pipe would stop it
    threading.Thread(target=lambda: [None for _ in output], daemon=True).start()
    try:
        yield MotoS3(endpoint, _admin(endpoint), proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def moto_s3() -> Iterator[MotoS3]:
    """One moto S3 server (versioning, Object Lock, IAM) for the test module."""
    with serve_moto() as server:
        yield server


def unique(prefix: str) -> str:
    """A bucket or user name no other test of the module uses."""
    return f"{prefix}-{secrets.token_hex(4)}"
