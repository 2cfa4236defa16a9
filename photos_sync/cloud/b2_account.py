"""One call to Backblaze B2's native API: `b2_authorize_account`, for a key's capabilities.

rclone authorises with the same call but never says what the key may do; `--check` and
`--setup b2 --append-only` need to know whether it can delete. The call is a GET of
`{endpoint}/b2api/v4/b2_authorize_account` with HTTP Basic auth of `keyID:applicationKey`
(Backblaze, "b2_authorize_account"; rclone's b2 backend asks v4 too, and multi-bucket keys
work only there). Stdlib urllib in a thread, with a timeout; proxies from the environment
are honoured as rclone honours them.

The key travels only in the Authorization header: never in argv, a log line or an exception
(every message is also scrubbed of the key and its id).
"""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from urllib.parse import urlsplit

from photos_sync.core.b2_keys import KeyCapabilities, append_only_refusal, parse_authorization
from photos_sync.core.destinations import DestinationError
from photos_sync.core.redact import redact
from photos_sync.system.logs import get_logger

log = get_logger("photos_sync.cloud.b2_account")

#: rclone's b2 backend default (its `endpoint` option overrides it, as destination.endpoint does).
DEFAULT_ENDPOINT = "https://api.backblazeb2.com"
AUTHORIZE_PATH = "/b2api/v4/b2_authorize_account"
TIMEOUT = 30.0
#: An authorisation answer is ~1 KB; anything far larger is not one.
MAX_ANSWER = 1 << 20


class B2AccountError(DestinationError):
    """The key's capabilities could not be read; the message (one line) says why and what to
    do, and holds no secret."""


def authorize_url(endpoint: str | None) -> str:
    """The authorisation URL under `endpoint` (rclone's default when None or empty)."""
    base = (endpoint or DEFAULT_ENDPOINT).strip().rstrip("/")
    scheme = urlsplit(base).scheme
    if scheme not in ("http", "https"):
        raise B2AccountError(f"B2 endpoint {base!r} is not an http(s) URL: fix the endpoint")
    return base + AUTHORIZE_PATH


def _b2_error(body: bytes) -> str:
    """B2's error answer `{"status": 401, "code": "unauthorized", "message": "..."}` as
    'unauthorized: ...' (or the start of the body when it is not one)."""
    try:
        answer = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace").strip()[:200] or "no error text"
    if not isinstance(answer, dict):
        return "no error text"
    code = str(answer.get("code") or "").strip()
    message = str(answer.get("message") or "").strip()
    return ": ".join(p for p in (code, message) if p) or "no error text"


def _authorize_blocking(key_id: str, key: str, url: str, timeout: float) -> object:
    token = base64.b64encode(f"{key_id}:{key}".encode()).decode("ascii")
    # the scheme is http(s), checked by authorize_url
    request = urllib.request.Request(  # noqa: S310
        url,
        headers={
            "Authorization": f"Basic {token}",
            "Accept": "application/json",
            "User-Agent": "photos-sync",
        },
        method="GET",
    )
    secrets = (key, key_id, token)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            body = response.read(MAX_ANSWER)
    except urllib.error.HTTPError as exc:
        detail = redact(_b2_error(exc.read(1 << 16) if exc.fp is not None else b""), secrets)
        if exc.code == 401:
            raise B2AccountError(
                f"B2 refused the key ({exc.code} {detail}): check application_key_id and "
                "application_key"
            ) from None
        raise B2AccountError(
            f"B2 answered {exc.code} to b2_authorize_account ({detail}): try again later"
        ) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = redact(str(getattr(exc, "reason", exc)), secrets)
        raise B2AccountError(
            f"B2 is unreachable at {url.removesuffix(AUTHORIZE_PATH)} ({reason}): check the "
            "network and the endpoint"
        ) from None
    try:
        return json.loads(body)
    except ValueError:
        raise B2AccountError("B2's authorisation answer is not JSON: check the endpoint") from None


async def key_capabilities(
    key_id: str, key: str, endpoint: str | None = None, *, timeout: float = TIMEOUT
) -> KeyCapabilities:
    """What the key `key_id`:`key` may do, as B2 says; B2AccountError (one line) if B2 refuses
    the key, cannot be reached or answers something else than JSON."""
    if not key_id or not key:
        raise B2AccountError("no B2 key: application_key_id and application_key are needed")
    url = authorize_url(endpoint)
    answer = await asyncio.to_thread(_authorize_blocking, key_id, key, url, timeout)
    capabilities = parse_authorization(answer)
    log.info(
        "b2_key_capabilities",
        shape=capabilities.shape,
        capabilities=capabilities.describe(),
        scope=capabilities.scope(),
    )
    return capabilities


async def secrets_capabilities(
    secrets: Mapping[str, str], endpoint: str | None, *, timeout: float = TIMEOUT
) -> KeyCapabilities:
    """`key_capabilities` of a b2 destination's secrets (fields application_key_id and
    application_key)."""
    return await key_capabilities(
        secrets.get("application_key_id", ""),
        secrets.get("application_key", ""),
        endpoint,
        timeout=timeout,
    )


async def require_append_only_key(
    secrets: Mapping[str, str], endpoint: str | None, *, timeout: float = TIMEOUT
) -> KeyCapabilities:
    """`--setup b2 --append-only`: the key's capabilities when it cannot delete the backup;
    B2AccountError (one line) when it can (deleteFiles, writeKeys), or when B2 does not say."""
    capabilities = await secrets_capabilities(secrets, endpoint, timeout=timeout)
    refusal = append_only_refusal(capabilities)
    if refusal is not None:
        raise B2AccountError(refusal)
    return capabilities
