"""Backblaze B2 `b2_authorize_account` answers in their documented shapes (there is no B2
emulator to ask), and a loopback HTTP server that gives them as B2 would.

Sources:
* v4 — https://www.backblaze.com/apidocs/b2-authorize-account (GET /b2api/v4/..., April 2025:
  `apiInfo.storageApi.allowed` = {buckets: [{id, name}], capabilities, namePrefix}); the same
  fields as rclone's backend/b2/api/types.go `StorageAPI.Allowed`;
* v3 — the same page's v3 example (September 2021: `storageApi` carries bucketId, bucketName,
  capabilities, namePrefix itself; here the master key's full list of capabilities);
* v2 — https://www.backblaze.com/b2/docs/b2_authorize_account.html (top-level `allowed`);
* errors — B2's documented error body {"status", "code", "message"} (Backblaze, "Calling the
  API": 401 `unauthorized` for a wrong key id or key).
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: What photos-sync needs, and nothing that deletes: the append-only key of docs/CLOUD.md.
APPEND_ONLY_CAPABILITIES = ["listBuckets", "listFiles", "readFiles", "writeFiles"]

#: v4, a key restricted to one bucket, expiring 2026-01-01T00:00:00Z.
AUTHORIZE_V4: dict[str, Any] = {
    "accountId": "ACCOUNT_ID",
    "apiInfo": {
        "storageApi": {
            "absoluteMinimumPartSize": 5000000,
            "allowed": {
                "buckets": [{"id": "4a48fe8875c6214145260818", "name": "immich-backup-yourname"}],
                "capabilities": list(APPEND_ONLY_CAPABILITIES),
                "namePrefix": None,
            },
            "apiUrl": "https://api001.backblazeb2.com",
            "downloadUrl": "https://f001.backblazeb2.com",
            "recommendedPartSize": 100000000,
            "s3ApiUrl": "https://s3.us-west-001.backblazeb2.com",
        }
    },
    "applicationKeyExpirationTimestamp": 1767225600000,
    "authorizationToken": "AUTHORIZATION_TOKEN",
}

#: v3, the documented example: the master application key (every capability, every bucket).
AUTHORIZE_V3_MASTER: dict[str, Any] = {
    "accountId": "ACCOUNT_ID",
    "apiInfo": {
        "storageApi": {
            "absoluteMinimumPartSize": 5000000,
            "apiUrl": "https://api001.backblazeb2.com",
            "bucketId": None,
            "bucketName": None,
            "capabilities": [
                "deleteFiles",
                "deleteKeys",
                "readBucketEncryption",
                "writeKeys",
                "writeBuckets",
                "writeBucketReplications",
                "readBucketReplications",
                "deleteBuckets",
                "readBuckets",
                "bypassGovernance",
                "readFileLegalHolds",
                "readFiles",
                "listAllBucketNames",
                "readBucketNotifications",
                "readBucketRetentions",
                "writeBucketRetentions",
                "writeFileLegalHolds",
                "shareFiles",
                "writeFiles",
                "listKeys",
                "listBuckets",
                "listFiles",
                "writeFileRetentions",
                "writeBucketEncryption",
                "writeBucketNotifications",
                "readFileRetentions",
            ],
            "downloadUrl": "https://f001.backblazeb2.com",
            "infoType": "storageApi",
            "namePrefix": None,
            "recommendedPartSize": 100000000,
            "s3ApiUrl": "https://s3.us-west-001.backblazeb2.com",
        },
        "groupsApi": {
            "capabilities": ["all"],
            "groupsApiUrl": "https://apiNNN.backblazeb2.com",
            "infoType": "groupsApi",
        },
    },
    "applicationKeyExpirationTimestamp": None,
    "authorizationToken": "AUTHORIZATION_TOKEN",
}

#: v2, the documented example: a bucket-restricted read-and-write key (with deleteFiles).
AUTHORIZE_V2: dict[str, Any] = {
    "absoluteMinimumPartSize": 5000000,
    "accountId": "YOUR_ACCOUNT_ID",
    "allowed": {
        "bucketId": "BUCKET_ID",
        "bucketName": "BUCKET_NAME",
        "capabilities": [
            "listBuckets",
            "listFiles",
            "readFiles",
            "shareFiles",
            "writeFiles",
            "deleteFiles",
        ],
        "namePrefix": None,
    },
    "apiUrl": "https://apiNNN.backblazeb2.com",
    "authorizationToken": (
        "4_0022623512fc8f80000000001_0186e431_d18d02_acct_tH7VW03boebOXayIc43-sxptpfA="
    ),
    "downloadUrl": "https://f002.backblazeb2.com",
    "recommendedPartSize": 100000000,
    "s3ApiUrl": "https://s3.us-west-NNN.backblazeb2.com",
}

UNAUTHORIZED = {
    "status": 401,
    "code": "unauthorized",
    "message": "The applicationKeyId and/or the applicationKey are wrong.",
}


def v4_answer(capabilities: list[Any], **allowed: object) -> dict[str, Any]:
    """The v4 answer with other capabilities (and other `allowed` fields)."""
    answer = copy.deepcopy(AUTHORIZE_V4)
    answer["apiInfo"]["storageApi"]["allowed"].update(capabilities=capabilities, **allowed)
    return answer


@dataclass
class Seen:
    method: str
    path: str
    authorization: str


@dataclass
class FakeB2:
    """A loopback server answering `b2_authorize_account` with `answer` (status `status`)."""

    port: int = 0
    status: int = 200
    answer: object = field(default_factory=lambda: copy.deepcopy(AUTHORIZE_V4))
    raw: bytes | None = None  # a body that is not JSON
    seen: list[Seen] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _kept_local(answer: object, endpoint: str) -> object:
    """`answer` with its API and download URLs pointing at this server: whatever a client
    (rclone) calls next stays on loopback and is answered 404."""
    if not isinstance(answer, dict):
        return answer
    local = copy.deepcopy(answer)
    storage = local.get("apiInfo", {}).get("storageApi") if "apiInfo" in local else local
    if isinstance(storage, dict):
        for url in ("apiUrl", "downloadUrl", "s3ApiUrl"):
            if url in storage:
                storage[url] = endpoint
    return local


@contextmanager
def fake_b2() -> Iterator[FakeB2]:
    """A FakeB2 on a free loopback port; every other path is answered 404 (B2's error body)."""
    b2 = FakeB2()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            b2.seen.append(Seen(self.command, self.path, self.headers.get("Authorization") or ""))
            known = self.path == "/b2api/v4/b2_authorize_account"
            status = b2.status if known else 404
            if b2.raw is not None and known:
                body = b2.raw
            elif known:
                body = json.dumps(_kept_local(b2.answer, b2.endpoint)).encode()
            else:
                body = json.dumps(
                    {"status": 404, "code": "not_found", "message": "unknown call"}
                ).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json;charset=UTF-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    b2.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield b2
    finally:
        server.shutdown()
        server.server_close()
