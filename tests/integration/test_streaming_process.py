"""photos_sync.system.execute.StreamingProcess reads a real child's stderr in batches (#15.4):
every line arrives, whole and in order, however the child writes it, within the batch window
(plus scheduling slack), and the last line without a newline too."""

from __future__ import annotations

import asyncio
import sys
import time

from photos_sync.system.execute import StreamingProcess

#: A child writing `count` lines, one write(2) each, a few at a time, then a line in two
#: writes and a last line without a newline; it reports when it wrote each line.
CHILD = r"""
import os, sys, time
count = int(sys.argv[1])
for n in range(count):
    os.write(2, b'{"level":"info","msg":"Copied (new)","object":"f%d.jpg","sent":%r}\n'
             % (n, time.monotonic()))
    if n % 7 == 0:
        time.sleep(0.001)
os.write(2, b'{"half": ')
time.sleep(0.05)
os.write(2, "\"caf\u00e9\"}\n".encode() + b"\xff\n")
os.write(2, b"last words")
"""


def test_every_line_arrives_whole_in_order_and_soon() -> None:
    count = 600
    received: list[tuple[str, float]] = []

    async def follow() -> int:
        process = StreamingProcess(
            [sys.executable, "-c", CHILD, str(count)],
            {},
            lambda line: received.append((line, time.monotonic())),
        )
        await process.start()
        return await process.wait()

    assert asyncio.run(follow()) == 0
    lines = [line for line, _ in received]
    for n, line in enumerate(lines[:count]):
        assert line.startswith(f'{{"level":"info","msg":"Copied (new)","object":"f{n}.jpg",')
        assert line.endswith("}\n")
    assert lines[count:] == ['{"half": "café"}\n', "\ufffd\n", "last words"]
    delays = [at - float(line.split('"sent":')[1].rstrip("}\n")) for line, at in received[:count]]
    assert max(delays) < 2.0, "a line waited far longer than the batch window"
