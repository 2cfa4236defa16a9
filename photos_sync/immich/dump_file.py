"""Read an Immich database dump file (`.sql.gz`, or an uploaded plain `.sql`) from disk,
streaming, with photos_sync.core.immich_dump.

The gzip stream is inflated here in 256 KiB reads (gzip wrapper: the header, the CRC-32 and the
length of every member are checked) and cut into lines for the pure reader. Inflating is most
of the cost of reading a dump (its embeddings are most of its bytes): when the `isal` package
(Intel ISA-L) is installed it inflates about twice as fast as zlib and is used instead. A file that
is not gzip, ends before the gzip end-of-stream marker, or fails its checksum yields a final
DumpEnd with `truncated=True` and a one-line `problem`; a file that cannot be read at all (a
missing file, an I/O error) yields one with `truncated=False`: read_dump_file and
check_dump_file never raise for a bad dump (dump_file_lines, the lines alone, raises
DumpFileProblem).
"""

from __future__ import annotations

import dataclasses
import importlib
import io
import zlib
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import BinaryIO

from photos_sync.core.immich_dump import (
    ALL_RECORDS,
    DEFAULT_MEDIA_LOCATIONS,
    DumpEnd,
    DumpRecord,
    read_dump,
)

#: How much of the file is read at a time.
READ_SIZE = 256 << 10
#: At most this much inflated data per step, whatever the compression ratio.
INFLATE_STEP = 2 << 20
_GZIP_MAGIC = b"\x1f\x8b"
_GZIP_WBITS = 16 + zlib.MAX_WBITS


def _fastest_inflater() -> ModuleType:
    try:
        return importlib.import_module("isal.isal_zlib")
    except ImportError:
        return zlib


#: The zlib-compatible module that inflates (`isal.isal_zlib` when installed, else zlib).
INFLATER = _fastest_inflater()


class DumpFileProblem(Exception):
    """Why a dump file could not be read to its end; `truncated` for a broken gzip stream."""

    def __init__(self, message: str, *, truncated: bool) -> None:
        super().__init__(message)
        self.truncated = truncated


def read_dump_file(
    path: Path,
    media_locations: Sequence[str] = DEFAULT_MEDIA_LOCATIONS,
    want: Collection[type] = ALL_RECORDS,
) -> Iterator[DumpRecord]:
    """The records of the dump at `path` (see photos_sync.core.immich_dump.read_dump); the last
    one is always a DumpEnd, whose problem names the gzip or read error when there was one."""
    failures: list[DumpFileProblem] = []
    for record in read_dump(_file_lines(path, failures), media_locations, want):
        if isinstance(record, DumpEnd) and failures:
            failure = failures[0]
            record = dataclasses.replace(
                record, complete=False, truncated=failure.truncated, problem=str(failure)
            )
        yield record


def check_dump_file(
    path: Path, media_locations: Sequence[str] = DEFAULT_MEDIA_LOCATIONS
) -> DumpEnd:
    """Read the whole dump, building no record, and return its verdict."""
    end: DumpEnd | None = None
    for record in read_dump_file(path, media_locations, want=()):
        if isinstance(record, DumpEnd):
            end = record
    assert end is not None  # read_dump always ends with one
    return end


def dump_file_lines(path: Path, inflater: ModuleType | None = None) -> Iterator[bytes]:
    """The lines of the dump at `path`, decompressed when it is gzip (by its name or its first
    bytes), newline kept. Raises DumpFileProblem when the file cannot be read to its end.
    `inflater` is a zlib-compatible module (default INFLATER)."""
    try:
        with open(path, "rb", buffering=0) as raw:
            head = raw.read(2)
            raw.seek(0)
            if path.name.endswith(".gz") or head == _GZIP_MAGIC:
                yield from _split_lines(_inflate(raw, path.name, inflater or INFLATER))
            else:
                yield from _split_lines(_chunks(raw))
    except OSError as error:
        reason = error.strerror or str(error)
        raise DumpFileProblem(
            f"cannot read the dump {path.name}: {reason}", truncated=False
        ) from None


def _file_lines(path: Path, failures: list[DumpFileProblem]) -> Iterator[bytes]:
    """dump_file_lines, stopping quietly on a failure (recorded in `failures`)."""
    try:
        yield from dump_file_lines(path)
    except DumpFileProblem as problem:
        failures.append(problem)


def _chunks(raw: BinaryIO) -> Iterator[bytes]:
    while chunk := raw.read(READ_SIZE):
        yield chunk


def _split_lines(blocks: Iterator[bytes]) -> Iterator[bytes]:
    """Lines (newline kept) out of arbitrary blocks; a last line without newline comes last."""
    pending = b""
    for block in blocks:
        if not block:
            continue
        for line in io.BytesIO(pending + block if pending else block):
            if line.endswith(b"\n"):
                yield line
            else:
                pending = line
                break
        else:
            pending = b""
    if pending:
        yield pending


def _inflate(raw: BinaryIO, name: str, module: ModuleType) -> Iterator[bytes]:
    """The inflated bytes of every gzip member in `raw`, in bounded steps."""
    errors = (zlib.error, getattr(module, "error", zlib.error))
    inflater = module.decompressobj(_GZIP_WBITS)
    started = False
    while True:
        chunk = raw.read(READ_SIZE)
        if not chunk:
            break
        if not started:
            if not chunk.startswith(_GZIP_MAGIC[: len(chunk)]):
                raise DumpFileProblem(
                    f"the dump {name} is not a gzip file (it does not start with gzip's "
                    "signature): it is damaged or was not written by Immich",
                    truncated=True,
                )
            started = True
        while chunk:
            try:
                data = inflater.decompress(chunk, INFLATE_STEP)
            except errors as error:
                raise DumpFileProblem(
                    f"the dump {name} is not valid gzip ({error}): it is damaged or truncated",
                    truncated=True,
                ) from None
            if data:
                yield data
            chunk = inflater.unconsumed_tail
            if inflater.eof:
                rest = inflater.unused_data + chunk
                if not rest.strip(b"\x00"):  # zero padding after the last member is allowed
                    chunk = b""
                    break
                if not rest.startswith(_GZIP_MAGIC[: len(rest)]):
                    raise DumpFileProblem(
                        f"the dump {name} has data after its gzip stream: it is damaged",
                        truncated=True,
                    )
                inflater = module.decompressobj(_GZIP_WBITS)
                chunk = rest
    if not started:
        raise DumpFileProblem(f"the dump {name} is an empty file", truncated=True)
    if not inflater.eof:
        raise DumpFileProblem(
            f"the dump {name} is truncated: its gzip stream ends before the end-of-stream "
            "marker (the file was cut short, e.g. by a full disk)",
            truncated=True,
        )
