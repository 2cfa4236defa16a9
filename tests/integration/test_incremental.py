"""Incremental runs (#15) against a real S3 server behind a request-counting proxy: what a run
sends, archives and moves, the requests it makes (no listing), when the manifest is not
trusted, and restores across a move."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from photos_sync.core.archive import parse_stamp
from photos_sync.core.config import Settings
from photos_sync.core.events import RestoreRequest, RunRefused, RunRequest, RunResult
from photos_sync.core.manifest import MANIFEST_HEAD, Reconcile, crypt_size
from photos_sync.core.metrics_exposition import render_metrics
from photos_sync.core.names import NameProblem
from photos_sync.engine.destination import DestinationContext
from photos_sync.engine.restore import Restorer
from photos_sync.engine.runner import Runner
from photos_sync.engine.setup import SetupRequest, setup_destination
from photos_sync.reporting.status import gather_status
from photos_sync.storage.manifest_db import ManifestDB, manifest_path
from photos_sync.storage.settings_io import load_settings
from photos_sync.storage.store import Store
from tests.conftest import rclone_binary
from tests.immich_tree import TreeStats
from tests.support import plain_rclone
from tests.support.s3_counting import CountingS3, Kind, counting_s3  # noqa: F401

PASSWORD = "Correct-Horse-Battery-Staple-42"
FOLDERS = ("backups", "library", "upload", "profile")


def s3_setup(s3: CountingS3) -> SetupRequest:
    return SetupRequest(
        kind="s3",
        name="cloud",
        bucket=s3.bucket,
        endpoint=s3.endpoint,
        secrets="file",
        env={
            **os.environ,
            "PHOTOS_SYNC_ACCESS_KEY_ID": s3.access_key_id,
            "PHOTOS_SYNC_SECRET_ACCESS_KEY": s3.secret_access_key,
            "PHOTOS_SYNC_ENCRYPTION_PASSWORD": PASSWORD,
        },
    )


def crypt_env(s3: CountingS3, settings: Settings) -> dict[str, str]:
    salt = json.loads((settings.secrets_dir / "cloud.json").read_text())["encryption_salt"]
    env = dict(os.environ)
    env.update(s3.rclone_env("s3"))
    env.update(
        {
            "RCLONE_CONFIG": "",
            "RCLONE_CONFIG_SECRET_TYPE": "crypt",
            "RCLONE_CONFIG_SECRET_REMOTE": f"s3:{s3.bucket}",
            "RCLONE_CONFIG_SECRET_PASSWORD": plain_rclone.obscure(PASSWORD),
            "RCLONE_CONFIG_SECRET_PASSWORD2": plain_rclone.obscure(salt),
            "RCLONE_CONFIG_SECRET_FILENAME_ENCRYPTION": "standard",
            "RCLONE_CONFIG_SECRET_DIRECTORY_NAME_ENCRYPTION": "true",
        }
    )
    return env


def assert_backup_matches(root: Path, env: dict[str, str]) -> None:
    for folder in FOLDERS:
        result = plain_rclone.cryptcheck(root / folder, f"secret:{folder}", env)
        assert result.returncode == 0, result.stderr


class Bench:
    """One settings + store + destination for a test, runs through the real Runner."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store

    async def run(self, *, full: bool = False, dry_run: bool = False) -> RunResult:
        request = RunRequest("cloud", dry_run=dry_run, full=full)
        result = await Runner(self.settings, self.store).run(request)
        assert result.ok, result.as_dict()
        return result


@pytest.fixture
async def bench(
    immich: tuple[Path, TreeStats],
    counting_s3: CountingS3,  # noqa: F811
) -> object:
    settings = load_settings()
    store = await Store.open(settings.db_path)
    await setup_destination(settings, store, s3_setup(counting_s3))
    try:
        yield Bench(settings, store)
    finally:
        await store.close()


def files(root: Path, folder: str) -> list[Path]:
    return sorted(p for p in (root / folder).rglob("*") if p.is_file() and p.name != ".immich")


def modes(result: RunResult) -> set[str]:
    return set(result.folder_modes.values())


async def test_an_incremental_run_sends_the_new_file_and_archives_the_deleted_one_without_listing(
    bench: Bench,
    immich: tuple[Path, TreeStats],
    counting_s3: CountingS3,  # noqa: F811
) -> None:
    root = immich[0]
    first = await bench.run()
    assert modes(first) == {f"full sync: {Reconcile.FIRST}"}
    new = root / "library" / "admin" / "2026" / "11" / "IMG_9001.jpg"
    new.parent.mkdir(parents=True, exist_ok=True)
    new.write_bytes(os.urandom(70_000))
    deleted = files(root, "upload")[0]
    deleted_path = deleted.relative_to(root / "upload").as_posix()
    deleted.unlink()
    counting_s3.counter.reset()
    second = await bench.run()
    counts = counting_s3.counter.snapshot()
    assert modes(second) == {"incremental"}
    assert counts[Kind.LIST] == 0, counts.describe()
    # the new file (70,000 B, a little more encrypted) and the manifest's copy and head
    assert 70_000 < counts.put_bytes < 70_000 + 40_000, counts.describe()
    assert counts[Kind.COPY] >= 1  # the deleted file, moved server-side into the archive
    by_folder = {j.folder: j for j in second.jobs}
    assert by_folder["library"].files_transferred == 1
    assert by_folder["upload"].files_archived == 1
    env = crypt_env(counting_s3, bench.settings)
    assert_backup_matches(root, env)
    archive = plain_rclone.run(["lsf", "-R", "--files-only", "secret:.deleted"], env)
    assert f"{second.run_id}/upload/{deleted_path}" in archive.stdout.split("\n")
    # and nothing to do is nothing done: no rclone upload, no listing
    counting_s3.counter.reset()
    third = await bench.run()
    counts = counting_s3.counter.snapshot()
    assert sum(j.files_transferred for j in third.jobs) == 0
    assert counts[Kind.LIST] == 0 and counts[Kind.PUT] == 0, counts.describe()


async def test_each_folder_is_walked_once_per_run_and_its_hazards_still_named(
    bench: Bench,
    immich: tuple[Path, TreeStats],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The manifest's walks check the file names: a folder to reconcile is walked once into
    the manifest's stage, an incremental one once by the plan, and neither a second time by
    the name scan. Unicode twins (a full run) and a name that is not UTF-8 (an incremental
    run: rclone keeps its bytes) are still named."""
    import unicodedata

    from photos_sync.engine import runner as runner_module
    from photos_sync.system.source_names import scan_names as real_scan

    scanned: list[str] = []

    def counted_scan(root: Path, folder: str, limit: int | None) -> list[NameProblem]:
        scanned.append(folder)
        return real_scan(root, folder, limit)

    monkeypatch.setattr(runner_module, "scan_names", counted_scan)
    root = immich[0]
    for form in ("NFC", "NFD"):
        (root / "profile" / unicodedata.normalize(form, "café.jpg")).write_bytes(b"twin")
    first = await bench.run()
    assert set(first.folder_modes.values()) == {f"full sync: {Reconcile.FIRST}"}
    twins = sorted(p.path for p in first.file_names if p.hazard.value == "unicode-twin")
    assert twins == sorted(
        f"profile/{unicodedata.normalize(f, 'café.jpg')}" for f in ("NFC", "NFD")
    )
    assert scanned == []
    trip = os.path.join(os.fsencode(root), b"library", b"admin")
    os.makedirs(trip, exist_ok=True)
    with open(os.path.join(trip, b"bad\xff.jpg"), "wb") as handle:
        handle.write(os.urandom(3000))
    second = await bench.run()
    assert second.folder_modes["library"] == "incremental"
    named = {(p.hazard.value, p.shown()) for p in second.file_names}
    assert ("not-utf8", "library/admin/bad\\xff.jpg") in named
    assert {j.folder: j.files_transferred for j in second.jobs}["library"] == 1
    assert scanned == []


async def test_a_moved_file_is_not_sent_again_and_restores_at_both_paths(
    bench: Bench,
    immich: tuple[Path, TreeStats],
    counting_s3: CountingS3,  # noqa: F811
    tmp_path: Path,
) -> None:
    root = immich[0]
    first = await bench.run()
    old = max(files(root, "upload"), key=lambda p: p.stat().st_size)
    content = old.read_bytes()
    old_path = old.relative_to(root).as_posix()
    moved = root / "library" / "admin" / "2019" / "06" / "IMG_0042.jpg"
    moved.parent.mkdir(parents=True, exist_ok=True)
    os.rename(old, moved)  # keeps the modification time, as Immich's template migration does
    counting_s3.counter.reset()
    second = await bench.run()
    counts = counting_s3.counter.snapshot()
    assert second.moved == 1
    assert counts.put_bytes < len(content), counts.describe()  # only the manifest went up
    assert sum(j.files_transferred for j in second.jobs) == 0
    assert counts[Kind.LIST] == 0, counts.describe()
    assert_backup_matches(root, crypt_env(counting_s3, bench.settings))

    restorer = Restorer(DestinationContext(bench.settings, bench.store))
    now_dir, then_dir = tmp_path / "now", tmp_path / "then"
    restored = await restorer.run(RestoreRequest("cloud", now_dir, "", "current", None))
    assert restored.ok
    assert (now_dir / "library/admin/2019/06/IMG_0042.jpg").read_bytes() == content
    assert not (now_dir / old_path).exists()
    start = parse_stamp(first.run_id)
    assert start is not None and parse_stamp(second.run_id) is not None
    moment = start + timedelta(milliseconds=500)  # after the first run, before the move
    restored = await restorer.run(RestoreRequest("cloud", then_dir, "", "as-of", moment))
    assert restored.ok, restored.as_dict()
    assert (then_dir / old_path).read_bytes() == content
    assert not (then_dir / "library/admin/2019/06/IMG_0042.jpg").exists()
    assert not (then_dir / ".photos-sync-staging").exists()
    # everything else restored as it was
    for path in files(root, "library"):
        if path != moved:
            assert (then_dir / path.relative_to(root)).read_bytes() == path.read_bytes()


async def test_a_folder_left_unfinished_is_reconciled(
    bench: Bench,
    immich: tuple[Path, TreeStats],
    counting_s3: CountingS3,  # noqa: F811
) -> None:
    await bench.run()
    destination = await bench.store.get_destination("cloud")
    assert destination is not None
    db = ManifestDB(manifest_path(bench.settings.data_dir, destination.id))
    db.begin_folder("upload", "20261130T000000Z")  # as a run killed mid-folder leaves it
    db.close()
    counting_s3.counter.reset()
    result = await bench.run()
    assert result.folder_modes["upload"] == f"full sync: {Reconcile.UNFINISHED}"
    assert result.folder_modes["library"] == "incremental"
    assert counting_s3.counter.snapshot()[Kind.LIST] > 0  # the full sync lists
    again = await bench.run()
    assert modes(again) == {"incremental"}  # once reconciled, trusted again


async def test_a_manifest_for_another_destination_or_a_stale_copy_is_not_trusted(
    bench: Bench,
    counting_s3: CountingS3,  # noqa: F811
) -> None:
    await bench.run()
    destination = await bench.store.get_destination("cloud")
    assert destination is not None
    db = ManifestDB(manifest_path(bench.settings.data_dir, destination.id))
    db.set_identity("s3|other-bucket||http://elsewhere")
    db.close()
    result = await bench.run()
    assert modes(result) == {f"full sync: {Reconcile.OTHER_DESTINATION}"}
    # the destination's head now names a run the local manifest does not know (a DB
    # restored from an older backup, or another machine wrote the destination)
    env = crypt_env(counting_s3, bench.settings)
    head = json.loads(plain_rclone.run(["cat", f"secret:{MANIFEST_HEAD}"], env).stdout)
    head["run"] = "20991231T000000Z"
    written = subprocess.run(
        [rclone_binary(), "rcat", f"secret:{MANIFEST_HEAD}"],
        env=env,
        input=json.dumps(head),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert written.returncode == 0, written.stderr
    result = await bench.run()
    assert modes(result) == {f"full sync: {Reconcile.STALE_COPY}"}
    assert modes(await bench.run(full=True)) == {f"full sync: {Reconcile.ASKED}"}
    assert modes(await bench.run()) == {"incremental"}


async def test_a_new_machine_starts_from_the_manifest_copy_in_the_destination(
    bench: Bench,
    immich: tuple[Path, TreeStats],
    counting_s3: CountingS3,  # noqa: F811
) -> None:
    await bench.run()
    destination = await bench.store.get_destination("cloud")
    assert destination is not None
    local = manifest_path(bench.settings.data_dir, destination.id)
    for leftover in local.parent.glob(f"{local.name}*"):
        leftover.unlink()  # a new machine: same keys, no manifest
    new = immich[0] / "upload" / "fresh.jpg"
    new.write_bytes(os.urandom(5000))
    counting_s3.counter.reset()
    result = await bench.run()
    counts = counting_s3.counter.snapshot()
    assert modes(result) == {"incremental"}
    assert counts[Kind.LIST] == 0, counts.describe()
    assert sum(j.files_transferred for j in result.jobs) == 1
    assert_backup_matches(immich[0], crypt_env(counting_s3, bench.settings))


async def test_a_dry_run_previews_from_the_manifest_without_listing_or_writing(
    bench: Bench,
    immich: tuple[Path, TreeStats],
    counting_s3: CountingS3,  # noqa: F811
) -> None:
    root = immich[0]
    await bench.run()
    (root / "library" / "new.jpg").write_bytes(os.urandom(1234))
    files(root, "upload")[0].unlink()
    counting_s3.counter.reset()
    preview = await bench.run(dry_run=True)
    counts = counting_s3.counter.snapshot()
    assert counts[Kind.LIST] == 0 and counts[Kind.PUT] == 0 and counts[Kind.COPY] == 0
    by_folder = {f.folder: f for f in preview.dry_run_folders}
    assert (by_folder["library"].files, by_folder["library"].bytes) == (1, crypt_size(1234))
    assert by_folder["upload"].archived == 1
    assert modes(preview) == {"incremental"}
    real = await bench.run()  # the dry run changed nothing: the real run still has it all to do
    assert sum(j.files_transferred for j in real.jobs) == 1
    assert sum(j.files_archived for j in real.jobs) == 1


async def test_a_storage_template_migration_that_empties_upload_is_not_refused(
    bench: Bench,
    immich: tuple[Path, TreeStats],
    counting_s3: CountingS3,  # noqa: F811
) -> None:
    """Every original leaves upload/ for library/ (renamed, times kept): the emptied-source
    guard must see moves, not a missing mount — and still refuse a real emptying."""
    root = immich[0]
    await bench.run()
    originals = files(root, "upload")
    for n, path in enumerate(originals):
        target = root / "library" / "admin" / "2020" / "01" / f"IMG_{n:04d}{path.suffix}"
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(path, target)
    counting_s3.counter.reset()
    migrated = await bench.run()
    counts = counting_s3.counter.snapshot()
    assert migrated.moved == len(originals)
    assert sum(j.files_transferred for j in migrated.jobs) == 0
    assert counts[Kind.LIST] == 0, counts.describe()
    assert_backup_matches(root, crypt_env(counting_s3, bench.settings))

    for path in files(root, "library"):  # now a real loss: library/ emptied
        path.unlink()
    with pytest.raises(RunRefused, match="library/: it is empty at the source"):
        await Runner(bench.settings, bench.store).run(RunRequest("cloud"))


async def test_originals_encrypted_in_place_stop_the_folder_with_nothing_replaced(
    bench: Bench,
    immich: tuple[Path, TreeStats],
    counting_s3: CountingS3,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The mass-change guard (#17.1): ransomware rewrites 30 % of upload/'s originals; the
    run stops that folder, replaces nothing and archives nothing; --force lets it through."""
    root = immich[0]
    await bench.run()
    originals = files(root, "upload")
    hit = originals[: max(2, len(originals) * 3 // 10)]
    for path in hit:
        path.write_bytes(os.urandom(path.stat().st_size + 16))  # "encrypted"
    monkeypatch.setenv("BACKUP_MAX_CHANGE", "10%")  # the test tree is small: no 500 floor
    settings = load_settings()
    counting_s3.counter.reset()
    result = await Runner(settings, bench.store).run(RunRequest("cloud"))
    counts = counting_s3.counter.snapshot()
    upload = next(j for j in result.jobs if j.folder == "upload")
    assert not result.ok and upload.status.value == "FAILED"
    assert upload.error_message is not None
    assert f"refused: {len(hit)} of the" in upload.error_message
    assert "BACKUP_MAX_CHANGE" in upload.error_message and "--force" in upload.error_message
    assert counts[Kind.COPY] == 0 and counts[Kind.PUT] <= 3, counts.describe()  # nothing moved
    assert {j.folder: j.status.value for j in result.jobs}["library"] == "COMPLETED"
    # the metrics a monitoring system scrapes name the guard
    metrics = render_metrics(await gather_status(settings, bench.store), [])
    refused_line = (
        'photos_sync_job_refused{destination="cloud",folder="upload",guard="max_change"} 1'
    )
    assert refused_line in metrics.splitlines()
    # the backup still holds the good copies: a cryptcheck of upload/ finds them different
    check = plain_rclone.cryptcheck(
        root / "upload", "secret:upload", crypt_env(counting_s3, settings)
    )
    assert check.returncode != 0 and f"{len(hit)} differences found" in check.stderr
    preview = await Runner(settings, bench.store).run(RunRequest("cloud", dry_run=True))
    refused = {f.folder: f.refused for f in preview.dry_run_folders}["upload"]
    assert refused is not None and "BACKUP_MAX_CHANGE" in refused
    forced = await Runner(settings, bench.store).run(RunRequest("cloud", force=True))
    assert next(j for j in forced.jobs if j.folder == "upload").files_archived == len(hit)


def _logging_rclone(tmp_path: Path) -> tuple[Path, Path]:
    """An rclone that notes each start's command (and `--dry-run`) in a file, then runs the
    real one: (the wrapper, the file)."""
    calls = tmp_path / "rclone-calls"
    wrapper = tmp_path / "rclone-logging"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'case " $* " in *" --dry-run "*) echo "$1 --dry-run" >> {calls} ;; '
        f'*) echo "$1" >> {calls} ;; esac\n'
        f'exec {rclone_binary()} "$@"\n'
    )
    wrapper.chmod(0o755)
    return wrapper, calls


async def test_a_periodic_full_sync_is_judged_by_the_manifest_without_a_dry_run(
    bench: Bench,
    immich: tuple[Path, TreeStats],
    counting_s3: CountingS3,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """A full sync due by BACKUP_RECONCILE_EVERY over a trusted manifest judges its guards
    by the folders' walks against the manifest: one rclone sync per folder, no dry run
    listing the destination a second time; ransomware is still stopped with nothing
    replaced. `--full` keeps the dry run (the destination may hold what the manifest does
    not know of)."""
    root = immich[0]
    await bench.run()
    destination = await bench.store.get_destination("cloud")
    assert destination is not None

    def make_reconcile_due() -> None:
        db = ManifestDB(manifest_path(bench.settings.data_dir, destination.id))
        db.mark_reconciled(datetime.now(UTC) - timedelta(days=30))
        db.close()

    wrapper, calls = _logging_rclone(tmp_path)
    monkeypatch.setenv("RCLONE_BINARY", str(wrapper))
    monkeypatch.setenv("BACKUP_MAX_CHANGE", "10%")  # the test tree is small: no 500 floor
    settings = load_settings()

    make_reconcile_due()
    due = await Runner(settings, bench.store).run(RunRequest("cloud"))
    assert due.ok, due.as_dict()
    assert modes(due) == {f"full sync: {Reconcile.DUE}"}
    started = calls.read_text().split("\n")
    assert "sync --dry-run" not in started
    assert started.count("sync") == len(due.jobs)

    originals = files(root, "upload")
    hit = originals[: max(2, len(originals) * 3 // 10)]
    for path in hit:
        path.write_bytes(os.urandom(path.stat().st_size + 16))  # "encrypted"
    make_reconcile_due()
    calls.unlink()
    counting_s3.counter.reset()
    attacked = await Runner(settings, bench.store).run(RunRequest("cloud"))
    counts = counting_s3.counter.snapshot()
    upload = next(j for j in attacked.jobs if j.folder == "upload")
    assert upload.status.value == "FAILED" and upload.error_message is not None
    assert f"refused: {len(hit)} of the" in upload.error_message
    assert os.fsdecode(hit[0].relative_to(root / "upload")) in upload.error_message
    assert counts[Kind.COPY] == 0, counts.describe()  # nothing archived, nothing replaced
    assert "sync --dry-run" not in calls.read_text().split("\n")
    check = plain_rclone.cryptcheck(
        root / "upload", "secret:upload", crypt_env(counting_s3, settings)
    )
    assert check.returncode != 0 and f"{len(hit)} differences found" in check.stderr

    calls.unlink()
    asked = await Runner(settings, bench.store).run(RunRequest("cloud", full=True))
    assert next(j for j in asked.jobs if j.folder == "upload").status.value == "FAILED"
    assert "sync --dry-run" in calls.read_text().split("\n")
