"""What a verify asks of cloud storage, counted on a real S3 server (`rclone serve s3` on
loopback, logging every request): cryptcheck reads each object's header once, for its nonce,
so a verify costs one billed read per file; the report says so."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from photos_sync.core.config import Settings
from photos_sync.core.events import RunRequest
from photos_sync.engine.runner import Runner
from photos_sync.engine.setup import SetupRequest, setup_destination
from photos_sync.engine.verify import verify
from photos_sync.storage.store import Store
from tests.immich_tree import TreeStats
from tests.support.s3server import S3Server, serve_s3

FOLDERS = ("backups", "library", "upload", "profile")


@pytest.fixture
def logged_s3(tmp_path: Path) -> Iterator[tuple[S3Server, Path]]:
    """An S3 server that logs each request it serves to a file."""
    log = tmp_path / "s3.log"
    with serve_s3(
        tmp_path / "s3", extra_args=("--log-level", "DEBUG", "--log-file", str(log))
    ) as server:
        yield server, log


async def test_a_verify_reads_each_object_once_and_says_so(
    immich: tuple[Path, TreeStats], logged_s3: tuple[S3Server, Path], settings: Settings
) -> None:
    root, _ = immich
    server, log = logged_s3
    store = await Store.open(settings.db_path)
    try:
        request = SetupRequest(
            kind="s3",
            name="cloud",
            bucket="immich-backup",
            endpoint=server.endpoint,
            secrets="file",
            env={
                **os.environ,
                "PHOTOS_SYNC_ACCESS_KEY_ID": server.access_key_id,
                "PHOTOS_SYNC_SECRET_ACCESS_KEY": server.secret_access_key,
            },
        )
        await setup_destination(settings, store, request)
        runner = Runner(settings, store)
        assert (await runner.run(RunRequest())).ok
        files = sum(1 for f in FOLDERS for p in (root / f).rglob("*") if p.is_file())

        before = log.stat().st_size
        report = await verify(runner.destinations, "cloud")
        served = log.read_bytes()[before:].decode("utf-8", "replace")
        object_gets = re.findall(r"serve s3: GET OBJECT Bucket: immich-backup", served)
        headers_read = re.findall(r"ChunkedReader\.Read at 0 length 32 ", served)
        heads = re.findall(r"serve s3: HEAD OBJECT immich-backup (\S+)", served)

        assert report.ok, report.as_dict()
        assert len(object_gets) == files  # one GET per file: its 32-byte header, for the nonce
        assert len(headers_read) == files
        # and no HEAD per object (the listings would ask for each one's modification time):
        # only one per folder opened (rclone checks whether a path is a file)
        assert len(heads) < files and all("/" not in key for key in heads), heads
        calls = report.as_dict()["calls"]
        assert calls["object_reads"] == files and calls["downloads"] == 0
        assert calls["listings"] == 3 * len(FOLDERS)  # under 1,000 objects per folder
    finally:
        await store.close()
