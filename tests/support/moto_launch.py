"""`python tests/support/moto_launch.py ARGS`: moto's S3 server (`python -m moto.server ARGS`)
with one deviation from AWS taken out, for tests/support/moto_server.py.

moto asks every PUT that carries Object Lock headers (or lands in a bucket with a default
retention) for a Content-MD5 or SDK checksum header, copies included. AWS asks it of uploads
only: a copy (PUT with x-amz-copy-source) "cannot contain a message body" (S3 API reference,
CopyObject), so there is nothing to digest, and rclone sends none. Without this shim every
server-side copy into a locked bucket (photos-sync's archive moves) fails on moto alone.
Everything else is moto as installed.
"""

from __future__ import annotations

import sys
from typing import Any

from moto import server
from moto.s3.responses import S3Response
from werkzeug.datastructures import Headers

_put = S3Response._key_response_put


def _copy_needs_no_digest(self: Any, query: dict[str, Any], key_name: str) -> Any:
    if "x-amz-copy-source" in self.headers and not (
        self.headers.get("Content-Md5") or self.headers.get("x-amz-sdk-checksum-algorithm")
    ):
        headers = Headers(self.headers)
        headers["x-amz-sdk-checksum-algorithm"] = "CRC32"  # stands for "no body to digest"
        self.headers = headers
    return _put(self, query, key_name)


S3Response._key_response_put = _copy_needs_no_digest  # type: ignore[method-assign]

if __name__ == "__main__":
    server.main(sys.argv[1:])
