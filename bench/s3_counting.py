"""S3 request counts for the benchmarks: the loopback S3 server behind the counting proxy.

The server and the proxy are the tests' own (tests/support/s3server.py and s3_counting.py);
this module gives a benchmark a context manager and a table, and a command line to count the
requests of any command:

    .venv/bin/python bench/s3_counting.py [--remote s3] [--bucket bench] -- rclone lsf -R s3:bench

runs the command with `RCLONE_CONFIG_<REMOTE>_*` pointing at the proxy (and no other rclone
configuration), then prints the counts per kind and every request. In a benchmark:

    with counted_s3(work / "s3", bucket="bench") as s3:
        env = c.clean_env(s3.rclone_env("psbase"))
        s3.counter.reset()
        ...                                   # the run to measure
        snapshot = s3.counter.snapshot()      # snapshot[Kind.LIST], snapshot.put_bytes

The proxy runs in this process's threads and costs CPU per request (Python): measure request
counts and wall time in separate runs, not through the proxy in a timed run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c

from tests.support.s3_counting import (
    CountingS3,
    CountSnapshot,
    Kind,
    RequestCounter,
    RequestRecord,
    serve_counting_s3,
)

__all__ = [
    "CountSnapshot",
    "CountingS3",
    "Kind",
    "RequestCounter",
    "RequestRecord",
    "counted_s3",
    "counts_table",
]


@contextmanager
def counted_s3(root: Path, bucket: str = "bench") -> Iterator[CountingS3]:
    """`rclone serve s3 ROOT` behind a counting proxy, `bucket` created; stopped at the end."""
    with serve_counting_s3(root, bucket) as s3:
        yield s3


def counts_table(rows: Mapping[str, CountSnapshot]) -> str:
    """A markdown table: one row per measured run, one column per request kind, then the
    bytes of PUT bodies (uploaded content, crypt overhead included) and the total."""
    headers = ["run", *(str(kind) for kind in Kind), "PUT bytes", "requests"]
    body = [
        [name, *(f"{snap[kind]:,}" for kind in Kind), f"{snap.put_bytes:,}", f"{snap.total:,}"]
        for name, snap in rows.items()
    ]
    return c.table(headers, body)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Count the S3 requests a command makes against a loopback S3 server.",
        usage="%(prog)s [--remote NAME] [--bucket NAME] [--root DIR] -- COMMAND [ARG...]",
    )
    parser.add_argument("--remote", default="s3", help="rclone remote name to define (s3)")
    parser.add_argument("--bucket", default="bench", help="bucket to create (bench)")
    parser.add_argument("--root", type=Path, help="server directory (default: a temporary one)")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    with tempfile.TemporaryDirectory(prefix="s3-counting-") as scratch:
        root = args.root or Path(scratch) / "s3"
        with counted_s3(root, args.bucket) as s3:
            env = c.clean_env({"RCLONE_CONFIG": "", **s3.rclone_env(args.remote)})
            print(f"S3 endpoint {s3.endpoint} (proxy) bucket {s3.bucket}", file=sys.stderr)
            returncode = subprocess.run(command, env=env, check=False).returncode
            snapshot = s3.counter.snapshot()
    print(counts_table({" ".join(command): snapshot}))
    print()
    print("\n".join(str(request) for request in snapshot.requests))
    return returncode


if __name__ == "__main__":
    sys.exit(main())
