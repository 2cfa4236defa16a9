"""The run's shared types and the domain records are leaves (#14): reading an event, a request,
a result or a record loads no I/O layer, and an event's kind is the RPC's string."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from photos_sync.core.events import EventKind, RunEvent

#: Modules that do I/O or belong to a higher layer: none may come with the shared types.
FORBIDDEN = (
    "aiosqlite",
    "rich",
    "typer",
    "asyncio.subprocess",
    "photos_sync.storage",
    "photos_sync.system",
    "photos_sync.credentials",
    "photos_sync.rclone",
    "photos_sync.immich",
    "photos_sync.reporting",
    "photos_sync.engine",
    "photos_sync.cli",
    "photos_sync_daemon",
)


def test_the_shared_types_load_nothing_that_does_io() -> None:
    code = (
        "import json, sys\n"
        "import photos_sync.core.events, photos_sync.core.records\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    loaded = json.loads(
        subprocess.run(
            [sys.executable, "-c", code], check=True, capture_output=True, text=True
        ).stdout
    )
    assert [m for m in loaded if m.startswith(FORBIDDEN)] == []


#: The `kind` strings daemon notifications have always carried (tests/support, the CLI).
WIRE_KINDS = [
    "run_started",
    "job_started",
    "job_progress",
    "job_finished",
    "message",
    "run_finished",
]


def test_event_kinds_are_the_wire_strings() -> None:
    assert [kind.value for kind in EventKind] == WIRE_KINDS


@pytest.mark.parametrize("wire", WIRE_KINDS)
def test_an_event_survives_the_rpc_as_the_same_text(wire: str) -> None:
    event = RunEvent(EventKind(wire), "nas", {"text": "hello"})
    sent = json.loads(json.dumps({"kind": event.kind, "data": dict(event.data)}))
    assert sent == {"kind": wire, "data": {"text": "hello"}}
    assert RunEvent(EventKind(sent["kind"]), "nas", sent["data"]) == event
