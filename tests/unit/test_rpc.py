"""JSON-RPC framing: decoding, validation, limits, encoding."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from photos_sync.core import rpc


def line(obj: object) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def test_decodes_a_request_with_params() -> None:
    request = rpc.decode_request(
        line({"jsonrpc": "2.0", "id": 7, "method": "start", "params": {"dry_run": True}})
    )
    assert request == rpc.Request("start", {"dry_run": True}, 7, is_notification=False)


def test_a_request_without_id_is_a_notification() -> None:
    request = rpc.decode_request(line({"jsonrpc": "2.0", "method": "ping"}))
    assert request.is_notification and request.params == {}


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"\xff\xfe garbage\n", rpc.PARSE_ERROR),
        (b"{not json\n", rpc.PARSE_ERROR),
        (b"\n", rpc.INVALID_REQUEST),
        (b"42\n", rpc.INVALID_REQUEST),
        (b"[]\n", rpc.INVALID_REQUEST),
        (line([{"jsonrpc": "2.0", "id": 1, "method": "ping"}]), rpc.INVALID_REQUEST),
        (line({"id": 1, "method": "ping"}), rpc.INVALID_REQUEST),
        (line({"jsonrpc": "1.0", "id": 1, "method": "ping"}), rpc.INVALID_REQUEST),
        (line({"jsonrpc": "2.0", "id": 1, "method": 5}), rpc.INVALID_REQUEST),
        (line({"jsonrpc": "2.0", "id": {"a": 1}, "method": "ping"}), rpc.INVALID_REQUEST),
        (line({"jsonrpc": "2.0", "id": True, "method": "ping"}), rpc.INVALID_REQUEST),
        (line({"jsonrpc": "2.0", "id": 1, "method": "ping", "x": 1}), rpc.INVALID_REQUEST),
        (line({"jsonrpc": "2.0", "id": 1, "method": "explode"}), rpc.METHOD_NOT_FOUND),
        (line({"jsonrpc": "2.0", "id": 1, "method": "start", "params": 3}), rpc.INVALID_PARAMS),
        (
            line({"jsonrpc": "2.0", "id": 1, "method": "start", "params": {"dry_run": "yes"}}),
            rpc.INVALID_PARAMS,
        ),
        (
            line({"jsonrpc": "2.0", "id": 1, "method": "start", "params": {"colour": "red"}}),
            rpc.INVALID_PARAMS,
        ),
        (
            line({"jsonrpc": "2.0", "id": 1, "method": "subscribe", "params": {"run": True}}),
            rpc.INVALID_PARAMS,
        ),
        (
            line({"jsonrpc": "2.0", "id": 1, "method": "reset", "params": {"destination": None}}),
            rpc.INVALID_PARAMS,
        ),
    ],
)
def test_bad_messages_get_the_right_code(raw: bytes, code: int) -> None:
    with pytest.raises(rpc.RpcError) as caught:
        rpc.decode_request(raw)
    assert caught.value.code == code


def test_errors_keep_the_request_id_when_it_is_known() -> None:
    with pytest.raises(rpc.RpcError) as caught:
        rpc.decode_request(line({"jsonrpc": "2.0", "id": "abc", "method": "nope"}))
    assert caught.value.id == "abc"
    reply = json.loads(rpc.error_response(caught.value))
    assert reply == {
        "jsonrpc": "2.0",
        "id": "abc",
        "error": {"code": rpc.METHOD_NOT_FOUND, "message": "unknown method 'nope'"},
    }


@pytest.mark.parametrize("depth", [33, 1000, 200_000])
def test_deep_nesting_is_refused_without_recursion(depth: int) -> None:
    raw = b'{"jsonrpc":"2.0","id":1,"method":"ping","params":' + b"[" * depth + b"]" * depth
    with pytest.raises(rpc.RpcError) as caught:
        rpc.decode_request(raw + b"}\n")
    assert caught.value.code in (rpc.INVALID_REQUEST, rpc.INVALID_PARAMS)


def test_nesting_up_to_the_limit_is_parsed() -> None:
    value: object = 1
    for _ in range(rpc.MAX_DEPTH):
        value = [value]
    assert rpc.depth_of(value) == rpc.MAX_DEPTH
    assert rpc.depth_of({"a": [1, {"b": 2}]}) == 3


def test_oversized_message_is_refused() -> None:
    raw = b'{"jsonrpc":"2.0","id":1,"method":"ping","pad":"' + b"x" * rpc.MAX_MESSAGE + b'"}\n'
    with pytest.raises(rpc.RpcError) as caught:
        rpc.decode_request(raw)
    assert caught.value.code == rpc.INVALID_REQUEST


def test_encoding_is_one_line_and_round_trips() -> None:
    data = rpc.request(3, "start", {"destination": "nas\nx"})
    assert data.endswith(b"\n") and data.count(b"\n") == 1
    request = rpc.decode_request(data)
    assert request.params == {"destination": "nas\nx"} and request.id == 3
    note = json.loads(rpc.notification("progress", {"kind": "job_progress"}))
    assert "id" not in note and note["method"] == "progress"
    assert json.loads(rpc.response(3, {"ok": True})) == {
        "jsonrpc": "2.0",
        "id": 3,
        "result": {"ok": True},
    }


def test_a_reply_beyond_the_cap_is_an_internal_error() -> None:
    with pytest.raises(rpc.RpcError) as caught:
        rpc.response(1, "x" * rpc.MAX_MESSAGE)
    assert caught.value.code == rpc.INTERNAL_ERROR


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_escape_as_anything_but_rpc_error(raw: bytes) -> None:
    try:
        rpc.decode_request(raw + b"\n")
    except rpc.RpcError as exc:
        assert exc.code in rpc.ERROR_NAMES


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
        max_leaves=20,
    )
)
def test_arbitrary_json_params_never_escape(params: object) -> None:
    try:
        rpc.decode_request(line({"jsonrpc": "2.0", "id": 1, "method": "start", "params": params}))
    except rpc.RpcError as exc:
        assert exc.code in (rpc.INVALID_PARAMS, rpc.INVALID_REQUEST)
