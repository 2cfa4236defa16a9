"""JSON-RPC 2.0 framing for the daemon's Unix socket. Pure: no I/O.

Wire format: one JSON object per line (UTF-8, terminated by ``\\n``), at most
`MAX_MESSAGE` bytes including the newline, nested at most `MAX_DEPTH` levels. Batches
(JSON arrays) are not supported and are answered with -32600.

Methods (params are an object; every field is optional unless marked):

=========== ============================================ =======================================
method      params                                       result
=========== ============================================ =======================================
ping        –                                            {version, pid, uptime}
status      –                                            the `--status --json` document plus
                                                         ``daemon`` (pid, uptime, run, queue,
                                                         schedule, next_run, foreign_jobs)
start       {destination: str, dry_run: bool,            {run: RunInfo, already_running: bool,
            force: bool, full: bool}                     queued: bool}; with no destination
                                                         and several set up: {runs: [...]},
                                                         one such object per destination
                                                         (or {destination, error,
                                                         error_code} if refused at once),
                                                         queued in turn, one Immich dump;
                                                         ``full``: a full sync (`--full`)
cancel      –                                            {cancelled: bool, run: RunInfo | null}
reset       {destination: str}                           {removed: int}
remove      {destination: str (required)}                {removed_jobs: int}; BUSY while a run
                                                         uses it, USAGE for an unknown name
subscribe   {run: int, wait: bool}                       {run: RunInfo | null, ended: End | null}
            then notifications ``progress`` {kind, destination, data} (one per runner event)
            and finally ``run_ended`` End = {run, ok, cancelled, error, result}
restore     {to: str (required), destination: str,       like start; the restore is queued as
            path: str, mode: current|deleted|as-of,      a run (RunInfo.kind "restore") and
            as_of: ISO time, overwrite, dry_run,         followed with subscribe
            user, album, person, taken: str (by
            meaning), immich: bool}
=========== ============================================ =======================================

Error codes: the four standard ones below (plus -32603 for an internal error) and the
application codes `RUN_REFUSED`, `USAGE`, `BUSY`, `SHUTTING_DOWN`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: Longest message, newline included.
MAX_MESSAGE = 1024 * 1024
#: Deepest nesting of arrays/objects accepted in a message.
MAX_DEPTH = 32

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

#: The runner refused to start (source unmounted, destination unreachable, busy elsewhere).
RUN_REFUSED = -32001
#: The request names an unknown destination, or needs one among several.
USAGE = -32002
#: The operation conflicts with a run in progress (reset while running).
BUSY = -32003
#: The daemon is stopping and takes no new work.
SHUTTING_DOWN = -32004

ERROR_NAMES = {
    PARSE_ERROR: "parse error",
    INVALID_REQUEST: "invalid request",
    METHOD_NOT_FOUND: "method not found",
    INVALID_PARAMS: "invalid params",
    INTERNAL_ERROR: "internal error",
    RUN_REFUSED: "run refused",
    USAGE: "usage error",
    BUSY: "busy",
    SHUTTING_DOWN: "shutting down",
}

RequestId = int | str | None


class RpcError(Exception):
    """An error to send back as a JSON-RPC error object."""

    def __init__(self, code: int, message: str, *, id: RequestId = None, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.id = id
        self.data = data

    def as_error(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    params: Mapping[str, Any] = field(default_factory=dict)
    id: RequestId = None
    is_notification: bool = False


# -- parameter schemas ----------------------------------------------------------------------

#: method -> {param: accepted type}. Every param is optional; unknown params are refused.
PARAMS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "ping": {},
    "status": {},
    "start": {"destination": str, "dry_run": bool, "force": bool, "full": bool},
    "cancel": {},
    "reset": {"destination": str},
    "remove": {"destination": str},
    "subscribe": {"run": int, "wait": bool},
    "restore": {
        "destination": str,
        "to": str,
        "path": str,
        "mode": str,
        "as_of": str,
        "overwrite": bool,
        "dry_run": bool,
        "user": str,
        "album": str,
        "person": str,
        "taken": str,
        "immich": bool,
        "from_versions": bool,
    },
}

_TYPE_NAMES = {str: "a string", bool: "true or false", int: "an integer"}


def validate_params(method: str, params: Any, id: RequestId = None) -> dict[str, Any]:
    """Check `params` against the method's schema; return them as a dict or raise RpcError."""
    if method not in PARAMS:
        raise RpcError(METHOD_NOT_FOUND, f"unknown method {method!r}", id=id)
    if params is None:
        params = {}
    if isinstance(params, list) and not params:
        params = {}
    if not isinstance(params, dict):
        raise RpcError(INVALID_PARAMS, "params must be an object", id=id)
    schema = PARAMS[method]
    for name, value in params.items():
        if name not in schema:
            known = ", ".join(schema) or "none"
            raise RpcError(
                INVALID_PARAMS, f"{method}: unknown param {name!r} (known: {known})", id=id
            )
        expected = schema[name]
        # bool is a subclass of int: an int param must not take true/false.
        if value is None or (expected is int and isinstance(value, bool)):
            ok = False
        else:
            ok = isinstance(value, expected)
        if not ok:
            wanted = _TYPE_NAMES.get(expected, str(expected)) if isinstance(expected, type) else ""
            raise RpcError(INVALID_PARAMS, f"{method}: {name} must be {wanted}", id=id)
    return dict(params)


# -- decoding -------------------------------------------------------------------------------


def depth_of(value: Any) -> int:
    """Nesting depth of a decoded JSON value (a scalar is 0), computed without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            depth += 1
            stack.extend((v, depth) for v in item.values())
        elif isinstance(item, list):
            depth += 1
            stack.extend((v, depth) for v in item)
        deepest = max(deepest, depth)
    return deepest


def _loads(line: bytes) -> Any:
    """Decode one line of JSON, or raise RpcError (parse error or too large/deep)."""
    if len(line) > MAX_MESSAGE:
        raise RpcError(INVALID_REQUEST, f"message larger than {MAX_MESSAGE} bytes")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise RpcError(PARSE_ERROR, "message is not UTF-8") from None
    if not text.strip():
        raise RpcError(INVALID_REQUEST, "empty message")
    try:
        value = json.loads(text)
    except RecursionError:
        raise RpcError(INVALID_REQUEST, f"message nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:
        raise RpcError(PARSE_ERROR, f"invalid JSON: {exc}") from None
    if depth_of(value) > MAX_DEPTH:
        raise RpcError(INVALID_REQUEST, f"message nested deeper than {MAX_DEPTH} levels")
    return value


def decode_request(line: bytes) -> Request:
    """Parse and validate one request line; raise RpcError (with the id when known)."""
    message = _loads(line)
    if isinstance(message, list):
        raise RpcError(INVALID_REQUEST, "batches are not supported: send one request per line")
    if not isinstance(message, dict):
        raise RpcError(INVALID_REQUEST, "a request must be a JSON object")
    raw_id = message.get("id")
    has_id = "id" in message
    if has_id and (isinstance(raw_id, bool) or not isinstance(raw_id, int | str | None)):
        raise RpcError(INVALID_REQUEST, "id must be a string, an integer or null")
    request_id: RequestId = raw_id
    if message.get("jsonrpc") != "2.0":
        raise RpcError(INVALID_REQUEST, 'jsonrpc must be "2.0"', id=request_id)
    method = message.get("method")
    if not isinstance(method, str):
        raise RpcError(INVALID_REQUEST, "method must be a string", id=request_id)
    extra = set(message) - {"jsonrpc", "method", "params", "id"}
    if extra:
        raise RpcError(
            INVALID_REQUEST, f"unknown member(s): {', '.join(sorted(extra))}", id=request_id
        )
    params = validate_params(method, message.get("params"), request_id)
    return Request(method, params, request_id, is_notification=not has_id)


def decode_message(line: bytes) -> dict[str, Any]:
    """Parse one line received by a client: a response or a notification."""
    message = _loads(line)
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        raise RpcError(INVALID_REQUEST, "not a JSON-RPC 2.0 message")
    return message


# -- encoding -------------------------------------------------------------------------------


def encode(message: Mapping[str, Any]) -> bytes:
    """One line of compact JSON; RpcError if it would exceed MAX_MESSAGE."""
    data = json.dumps(message, separators=(",", ":"), default=str).encode() + b"\n"
    if len(data) > MAX_MESSAGE:
        raise RpcError(INTERNAL_ERROR, f"reply larger than {MAX_MESSAGE} bytes")
    return data


def request(id: RequestId, method: str, params: Mapping[str, Any] | None = None) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": id, "method": method}
    if params:
        message["params"] = dict(params)
    return encode(message)


def response(id: RequestId, result: Any) -> bytes:
    return encode({"jsonrpc": "2.0", "id": id, "result": result})


def error_response(error: RpcError) -> bytes:
    return encode({"jsonrpc": "2.0", "id": error.id, "error": error.as_error()})


def notification(method: str, params: Mapping[str, Any]) -> bytes:
    return encode({"jsonrpc": "2.0", "method": method, "params": dict(params)})
