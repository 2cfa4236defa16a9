"""photos_sync.core.rclone_log.LineSplitter: a child's output, however it is cut into chunks,
gives the lines `StreamReader.readline` gave (#15.4 reads rclone's stderr in batches)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from photos_sync.core.rclone_log import LineSplitter


def readline_lines(output: bytes) -> list[str]:
    """What a loop of readline() returned for `output`, each line decoded as the pump did."""
    pieces = output.split(b"\n")
    lines = [p + b"\n" for p in pieces[:-1]]
    if pieces[-1]:
        lines.append(pieces[-1])
    return [line.decode("utf-8", "replace") for line in lines]


def split(output: bytes, cuts: list[int], limit: int = 1 << 20) -> list[str]:
    splitter = LineSplitter(limit)
    lines: list[str] = []
    start = 0
    for cut in sorted(c % (len(output) + 1) for c in cuts):
        lines += splitter.feed(output[start:cut])
        start = cut
    lines += splitter.feed(output[start:])
    last = splitter.finish()
    return lines + ([last] if last is not None else [])


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=40),
            st.sampled_from([b"\n", "é".encode(), b"\xff", b"\xe2\x82", b'{"level":"info"}\n']),
        ),
        max_size=30,
    ),
    st.lists(st.integers(min_value=0, max_value=2000), max_size=12),
)
def test_any_chunking_gives_the_lines_readline_gave(parts: list[bytes], cuts: list[int]) -> None:
    output = b"".join(parts)
    assert split(output, cuts) == readline_lines(output)


def test_a_line_beyond_the_limit_is_dropped_whole_and_the_next_one_kept() -> None:
    output = b"short\n" + b"x" * 50 + b"\n" + b"next\n" + b"y" * 30
    assert split(output, [3, 20, 40, 59, 70], limit=16) == ["short\n", "next\n"]
    assert split(b"x" * 50 + b"\nend", [10, 30], limit=16) == ["end"]


def test_the_last_line_without_a_newline_is_handed_over() -> None:
    splitter = LineSplitter(1 << 20)
    assert splitter.feed(b'{"a": 1}\n{"b"') == ['{"a": 1}\n']
    assert splitter.feed(b": 2}") == []
    assert splitter.finish() == '{"b": 2}'
    assert splitter.finish() is None
