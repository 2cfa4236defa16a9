"""Tables for people (#13 6): fitted to a width by shortening and dropping columns in a set
order, never by cutting names, times or results; plurals."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console, RenderableType

from photos_sync.cli.render import Column, fit_table, job_table, size_pair
from photos_sync.cli.watch import history_table, status_view
from photos_sync.core.states import STATUS_STYLE, JobStatus, status_style
from photos_sync.core.units import plural


def draw(renderable: RenderableType, width: int) -> list[str]:
    out = io.StringIO()
    Console(file=out, width=width, force_terminal=False, color_system=None).print(renderable)
    return [line.rstrip() for line in out.getvalue().splitlines()]


def test_plural() -> None:
    assert [plural(n, "file") for n in (0, 1, 2)] == ["0 files", "1 file", "2 files"]
    assert plural(1, "retry", "retries") == "1 retry"
    assert plural(3, "retry", "retries") == "3 retries"


def test_size_pair_shares_the_unit_when_short() -> None:
    assert size_pair(1536, 3 * 1024) == "1.5 KiB/3.0 KiB"
    assert size_pair(1536, 3 * 1024, short=True) == "1.5/3.0 KiB"
    assert size_pair(12, 3 * 1024, short=True) == "12 B/3.0 KiB"


def test_fit_table_shortens_then_drops_in_the_order_given() -> None:
    columns = [
        Column("name", ["a-long-destination-name"]),
        Column("when", ["2026-11-20 03:30"], ["11-20 03:30"]),
        Column("stamp", ["20261120T033000Z"]),
    ]
    reductions = ("when", "stamp")
    assert draw(fit_table(columns, 80, reductions), 80)[1].split() == [
        "a-long-destination-name",
        "2026-11-20",
        "03:30",
        "20261120T033000Z",
    ]
    assert draw(fit_table(columns, 55, reductions), 55)[1].split() == [
        "a-long-destination-name",
        "11-20",
        "03:30",
        "20261120T033000Z",
    ]
    narrow = draw(fit_table(columns, 40, reductions), 40)
    assert narrow[0].split() == ["name", "when"]
    assert narrow[1] == "a-long-destination-name  11-20 03:30"


def _run(destination: str, result: str, retries: int = 0) -> dict[str, Any]:
    return {
        "destination": destination,
        "run_id": "20261120T033000Z",
        "started_at": "2026-11-20T03:30:00+00:00",
        "duration_seconds": 37_425.0,
        "bytes": 987_654_321_098,
        "files": 1_234_567,
        "retries": retries,
        "result": result,
    }


@pytest.mark.parametrize("width", [80, 100, 200])
def test_history_fits_the_width_and_keeps_what_matters(width: int) -> None:
    runs = [
        _run("offsite-b2-bucket", "failed", retries=14),
        _run("offsite-b2-bucket", "interrupted"),
        _run("nas", "completed", retries=1),
    ]
    lines = draw(history_table(runs, width), width)
    assert all(len(line) <= width for line in lines)
    assert "…" not in "\n".join(lines)
    assert lines[1].startswith("offsite-b2-bucket ")
    # At 80 columns the retry counts go (after the run stamp and the year); the result stays.
    retries = width > 80
    assert lines[1].endswith("failed (14 retries)" if retries else "failed")
    assert lines[2].endswith("interrupted")
    assert lines[3].endswith("completed (1 retry)" if retries else "completed")
    assert all(
        "10:23:45" in line and "919.8 GiB" in line and "1234567" in line for line in lines[1:]
    )
    assert ("20261120T033000Z" in lines[1]) is (width >= 120)
    assert ("2026-11-20 03:30" in lines[1]) is (width >= 100)


def _job(folder: str, status: str, **extra: Any) -> dict[str, Any]:
    job = {
        "destination": "nas",
        "folder": folder,
        "status": status,
        "stale": False,
        "bytes_total": 987_654_321_098,
        "bytes_transferred": 123_456_789_012,
        "files_total": 1_234_567,
        "files_transferred": 123_456,
        "transfer_speed": 12_345_678.0,
        "eta_seconds": 37_425,
        "percent": 12.5,
        "last_update": "2026-11-20T03:30:00+00:00",
        "error_message": None,
        "retry_count": 0,
        "owner_pid": None,
    }
    job.update(extra)
    return job


JOBS = [
    _job("encoded-video", "RUNNING"),
    _job("backups", "INTERRUPTED", stale=True),
    _job("library", "COMPLETED"),
]


def test_the_watch_view_fits_80_columns_with_whole_folder_names() -> None:
    document = {"daemon": None, "destinations": [{"name": "nas"}], "jobs": JOBS}
    lines = draw(status_view(document, width=80, live=False), 80)
    assert all(len(line) <= 80 for line in lines)
    assert "…" not in "\n".join(lines)
    assert any(line.startswith("encoded-video/  RUNNING ") for line in lines)
    assert any(line.startswith("backups/        STALE ") for line in lines)
    assert "Ctrl-C" not in "\n".join(lines)
    wide = draw(status_view(document, width=160), 160)
    assert "INTERRUPTED (stale)" in "\n".join(wide)  # with room, the whole state
    assert wide[-1] == "Ctrl-C to leave"


def test_the_status_table_fits_80_columns() -> None:
    lines = draw(job_table(JOBS, 80), 80)
    assert all(len(line) <= 80 for line in lines)
    assert "…" not in "\n".join(lines)
    assert [line.split()[0] for line in lines[1:]] == ["encoded-video/", "backups/", "library/"]


#: The colours `--status`, `--watch` and `--history` have always given each job state, written
#: out independently of core.states.STATUS_STYLE (which all three now read).
STATE_COLOURS = {
    "COMPLETED": "green",
    "RUNNING": "cyan",
    "PENDING": "white",
    "INTERRUPTED": "yellow",
    "FAILED": "red",
}


def colours(renderable: RenderableType, width: int = 160) -> dict[str, str]:
    """Each coloured piece of text in the drawing -> its colour's name."""
    console = Console(file=io.StringIO(), width=width, force_terminal=True, color_system="standard")
    found: dict[str, str] = {}
    for line in console.render_lines(renderable, console.options, pad=False):
        for segment in line:
            text = segment.text.strip()
            if text and segment.style is not None and segment.style.color is not None:
                found[text] = segment.style.color.name
    return found


@pytest.mark.parametrize("state", sorted(STATE_COLOURS))
def test_every_renderer_colours_a_state_from_one_table(state: str) -> None:
    assert STATUS_STYLE[JobStatus(state)] == STATE_COLOURS[state]
    job = _job("library", state)
    assert colours(job_table([job], 160))[state] == STATE_COLOURS[state]
    document = {"daemon": None, "destinations": [{"name": "nas"}], "jobs": [job]}
    assert colours(status_view(document, width=160, live=False))[state] == STATE_COLOURS[state]
    result = state.lower()  # a run's result is its jobs' state in lower case
    assert colours(history_table([_run("nas", result)], 160))[result] == STATE_COLOURS[state]


def test_a_text_that_is_no_state_is_drawn_plain() -> None:
    assert status_style("STALE") == status_style("") == "white"
    assert status_style("failed") == status_style("FAILED") == "red"
