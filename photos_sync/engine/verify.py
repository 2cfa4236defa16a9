"""`photos-sync verify`: check the backup against what the last completed backup sent.

Each folder is first checked with `rclone cryptcheck` (the backend's hash of each encrypted
object against the source file encrypted with the object's nonce: no download, but one ranged
read of each object's 32-byte header for that nonce). Objects whose backend keeps no hash (B2
large files, S3 multipart uploads, some backends) come back as "could not check"; those are
downloaded, decrypted and compared with `rclone check --download` — all of them with `full`,
else every small one and a random sample of the large ones.

The source keeps changing after a backup, so differences are judged against the start of the
folder's last completed backup (verify_plan.judge): files added, modified or deleted at the
source since then, and Immich's `.immich` markers, are listed as newer than the backup and are
no failure; missing and differing files older than that backup, unreadable backup objects and
unreadable source files or folders are. One folder's failure never stops the others. The
result is stored.
"""

from __future__ import annotations

import os
import random
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from photos_sync.core.destinations import DestinationError
from photos_sync.core.events import EventKind, ProgressSink, RunEvent, RunRefused
from photos_sync.core.names import decode_raw, display_path, raw_bytes
from photos_sync.core.planning import IMMICH_MARKER, selected_folders
from photos_sync.core.rclone_args import BASE_REMOTE, CRYPT_REMOTE, check_argv, crypt_path
from photos_sync.core.records import Destination, utcnow
from photos_sync.core.redact import redact
from photos_sync.core.units import from_iso
from photos_sync.core.verify_plan import (
    DEFAULT_SAMPLE_PERCENT,
    SMALL_FILE,
    CheckErrors,
    CheckOutcome,
    SourceProblem,
    Verdict,
    choose_downloads,
    judge,
    listing_calls,
    nonce_reads,
    parse_check_errors,
    parse_combined,
    run_start,
    unhashed_paths,
)
from photos_sync.engine.destination import DestinationContext
from photos_sync.rclone.remote import CryptRemote
from photos_sync.storage.store import RestoreAndVerifyStore
from photos_sync.system import execute


@dataclass
class VerifyReport:
    destination: str | None
    mode: str
    outcome: CheckOutcome = field(default_factory=CheckOutcome)
    #: (plain path, change): what the source changed since the folder's last backup
    newer: list[tuple[str, str]] = field(default_factory=list)
    #: (plain path, what is wrong): unreadable source files or folders, folders not checked
    errors: list[tuple[str, str]] = field(default_factory=list)
    downloaded: list[str] = field(default_factory=list)
    left_unverified: list[str] = field(default_factory=list)
    downloaded_bytes: int = 0
    folders: list[str] = field(default_factory=list)
    #: folder -> when the backup it was checked against started (ISO, UTC); None: never
    backups: dict[str, str | None] = field(default_factory=dict)
    cloud: bool = False
    object_reads: int = 0  # ranged header reads by cryptcheck (billed per call on B2/S3)
    listings: int = 0  # listing calls (billed per 1,000 names: class C on B2)
    #: why the verify could not run at all (nothing was checked)
    error: str | None = None

    @property
    def ok(self) -> bool:
        o = self.outcome
        return self.error is None and not (o.missing or o.differ or o.unchecked or self.errors)

    def add(self, folder: str, verdict: Verdict) -> None:
        prefix = f"{folder}/"
        self.outcome.merge(
            CheckOutcome(
                matched=verdict.matched,
                missing=verdict.missing,
                extra=verdict.extra,
                differ=verdict.differ,
                unchecked=verdict.unchecked,
            ),
            prefix,
        )
        self.newer += [(prefix + path, change) for path, change in verdict.newer]
        self.errors += [(prefix + path, problem) for path, problem in verdict.errors]

    def figures(self) -> dict[str, int]:
        o = self.outcome
        return {
            "ok": int(self.ok),
            "matched": len(o.matched),
            "missing": len(o.missing),
            "extra": len(o.extra),
            "differ": len(o.differ),
            "errors": len(o.unchecked) + len(self.errors) + (self.error is not None),
            "newer": len(self.newer),
            "unverified": len(self.left_unverified),
            "downloaded_bytes": self.downloaded_bytes,
        }

    def calls(self) -> dict[str, int]:
        """What the storage is asked for (billed per call on B2 and S3; 0 when local)."""
        if not self.cloud:
            return {"object_reads": 0, "downloads": 0, "listings": 0}
        return {
            "object_reads": self.object_reads,
            "downloads": len(self.downloaded),
            "listings": self.listings,
        }

    def as_dict(self) -> dict[str, Any]:
        o = self.outcome
        return {
            "destination": self.destination,
            "mode": self.mode,
            "ok": self.ok,
            "error": self.error,
            "folders": self.folders,
            "backups": self.backups,
            "figures": self.figures(),
            # names that are not UTF-8 are shown with \xNN (the lists keep their exact bytes)
            "missing": [display_path(p) for p in o.missing],
            "differ": [display_path(p) for p in o.differ],
            "unchecked": [display_path(p) for p in o.unchecked],
            "errors": [
                {"path": display_path(path), "error": problem} for path, problem in self.errors
            ],
            "newer": [
                {"path": display_path(path), "change": change} for path, change in self.newer
            ],
            "extra": [display_path(p) for p in o.extra],
            "downloaded": [display_path(p) for p in self.downloaded],
            "left_unverified": [display_path(p) for p in self.left_unverified],
            "calls": self.calls(),
        }


def failed_report(message: str, destination: str | None = None, mode: str = "") -> VerifyReport:
    """The report of a verify that could not run (its JSON is as whole as a real one's)."""
    return VerifyReport(destination, mode, error=message)


#: rclone's time limit for one listing (a folder of a large library, from cloud storage).
_LISTING_TIMEOUT = 24 * 3600


@dataclass
class _Checked:
    outcome: CheckOutcome
    errors: CheckErrors
    returncode: int


async def _check(
    runner_binary: str,
    env: dict[str, str],
    source: Path,
    backup: str,
    *,
    download: bool,
    files: list[str] | None = None,
    fast_list: bool = False,
) -> _Checked:
    with tempfile.TemporaryDirectory(prefix="photos-sync-verify-") as tmp:
        files_from = None
        if files is not None:
            files_from = str(Path(tmp) / "files.txt")
            Path(files_from).write_bytes(b"".join(raw_bytes(p) + b"\n" for p in files))
        argv = check_argv(
            runner_binary,
            str(source),
            backup,
            download=download,
            files_from=files_from,
            fast_list=fast_list,
        )
        result = await execute.run_captured(argv, env, timeout=24 * 3600)
    return _Checked(
        parse_combined(decode_raw(result.stdout)),
        parse_check_errors(result.stderr.decode("utf-8", "replace"), str(source)),
        result.returncode,
    )


def _failure(what: str, checked: _Checked, secrets: tuple[str, ...]) -> str | None:
    """Why a check's output cannot be trusted, or None. rclone exits 1 on differences and
    6 when the only errors are the source's (an unreadable folder): both leave a complete
    report; anything else without a source problem to explain it is a failed check."""
    if checked.returncode in (0, 1) or (checked.returncode == 6 and checked.errors.source):
        return None
    cause = checked.errors.other[-1] if checked.errors.other else "no error text"
    return redact(f"rclone {what} failed with status {checked.returncode}: {cause}", secrets)


def _underlying(remote: CryptRemote) -> str | None:
    """The raw cloud path under the crypt remote ("psbase:bucket/path"); None when local.

    A local destination always has hashes (rclone computes them from the file), so only a
    cloud base remote (S3 multipart uploads, B2 large files) can lack them.
    """
    underlying = remote.env.get(f"RCLONE_CONFIG_{CRYPT_REMOTE.upper()}_REMOTE", "")
    return underlying if underlying.startswith(f"{BASE_REMOTE}:") else None


async def _encrypted_folders(remote: CryptRemote) -> dict[str, str]:
    """Top-level plain folder name -> its encrypted name."""
    top = await remote.lsjson(
        crypt_path(), "--max-depth", "1", "--encrypted", timeout=_LISTING_TIMEOUT
    )
    return {str(e["Path"]): str(e["EncryptedPath"]) for e in top if e.get("IsDir")}


async def _unhashed(
    remote: CryptRemote, underlying: str, folder: str, encrypted: str | None
) -> tuple[set[str], int]:
    """Plain paths below `folder` whose stored object has no hash, and how many objects
    the folder holds."""
    if encrypted is None:
        return set(), 0
    # --fast-list: one listing call per 1,000 objects, not one per directory (B2 and S3
    # charge per call, and Immich's upload/ has thousands of directories). --no-modtime: on
    # S3 rclone keeps the modification time in metadata, which takes a HEAD per object.
    flags = ("-R", "--files-only", "--fast-list", "--no-modtime", "--no-mimetype")
    plain = await remote.lsjson(crypt_path(folder), *flags, "--encrypted", timeout=_LISTING_TIMEOUT)
    stored = await remote.lsjson(
        f"{underlying.rstrip('/')}/{encrypted}", *flags, "--hash", timeout=_LISTING_TIMEOUT
    )
    return unhashed_paths(plain, stored), len(stored)


def _changed_at(source: Path, paths: list[str]) -> dict[str, float | None]:
    """The latest change (mtime or ctime) of each source file; None for one that is gone."""
    found: dict[str, float | None] = {}
    for path in paths:
        try:
            info = os.lstat(source / path)
        except FileNotFoundError:
            found[path] = None
        except OSError:
            continue  # unknown: the judgement does not excuse it
        else:
            found[path] = max(info.st_mtime, info.st_ctime)
    return found


async def verify(
    destinations: DestinationContext,
    name: str | None,
    *,
    sink: ProgressSink | None = None,
    full: bool = False,
    sample_percent: float = DEFAULT_SAMPLE_PERCENT,
    seed: int | None = None,
    small_file: int = SMALL_FILE,
) -> VerifyReport:
    """Verify one destination against the source, telling `sink` which folder it checks;
    the result is stored in the DB.

    Refused while a backup to the same destination runs (its half-done state would be
    reported as differences).
    """
    destination = await destinations.resolve(name)
    with destinations.lock(destination) as locked:
        if not locked:
            raise RunRefused(
                f"a backup to {destination.name!r} is running: verify after it has finished"
            )
        return await _verify(
            destinations,
            destination,
            sink or (lambda _event: None),
            full=full,
            sample_percent=sample_percent,
            seed=seed,
            small_file=small_file,
        )


@dataclass
class _FolderCheck:
    """One folder's check, with what it cost."""

    verdict: Verdict
    downloaded: list[str] = field(default_factory=list)
    left_unverified: list[str] = field(default_factory=list)
    downloaded_bytes: int = 0
    object_reads: int = 0
    listings: int = 0


@dataclass(frozen=True, slots=True)
class _Sampling:
    """Which files without a stored hash a verify downloads to compare: all of them with
    `full`, else every one under `small_file` bytes and `sample_percent` of the others,
    drawn with `rng`."""

    full: bool
    sample_percent: float
    rng: random.Random
    small_file: int


async def _verify(
    destinations: DestinationContext,
    destination: Destination,
    sink: ProgressSink,
    *,
    full: bool,
    sample_percent: float,
    seed: int | None,
    small_file: int,
) -> VerifyReport:
    started = utcnow()
    settings = destinations.settings
    immich_path = settings.require_immich_path()
    if not immich_path.is_dir():
        raise RunRefused(f"BACKUP_IMMICH_PATH={immich_path} does not exist: is it mounted?")
    remote = await destinations.open_remote(destination)
    in_backup = await destinations.check(destination, remote)
    mode = "full" if full else f"sample {sample_percent:g}%"
    report = VerifyReport(destination.name, mode)
    rng = random.Random(seed)  # noqa: S311 - sampling, not security
    sampling = _Sampling(full, sample_percent, rng, small_file)
    underlying = _underlying(remote)
    report.cloud = underlying is not None
    encrypted_names = await _encrypted_folders(remote) if underlying else {}
    completed = await destinations.store.last_completed_jobs(destination.id)
    for folder in selected_folders(settings.include_generated):
        source = immich_path / folder.name
        if not source.is_dir() and folder.name not in in_backup:
            continue
        job = completed.get(folder.name)
        since = run_start(job.run_id, from_iso(job.created_at)) if job else None
        await _verify_folder(
            report,
            sink,
            remote,
            source,
            folder.name,
            in_backup=folder.name in in_backup,
            since=since,
            underlying=underlying,
            encrypted=encrypted_names.get(folder.name),
            sampling=sampling,
        )
    await RestoreAndVerifyStore(destinations.store).record_verify(
        destination.id, started, mode, report.figures(), report.as_dict()
    )
    return report


async def _verify_folder(
    report: VerifyReport,
    sink: ProgressSink,
    remote: CryptRemote,
    source: Path,
    folder: str,
    *,
    in_backup: bool,
    since: datetime | None,
    underlying: str | None,
    encrypted: str | None,
    sampling: _Sampling,
) -> None:
    """Check one folder against its backup of `since` and add what was found, and what it
    cost, to `report`. A folder that cannot be checked is added as an error (secrets
    redacted), never raised: it must not leave the other folders unchecked."""
    report.folders.append(folder)
    report.backups[folder] = since.isoformat() if since else None
    sink(RunEvent(EventKind.MESSAGE, remote.label, {"text": f"{folder}/: checking hashes"}))
    try:
        checked = await _check_folder(
            sink,
            remote,
            source,
            folder,
            in_backup=in_backup,
            since=since,
            underlying=underlying,
            encrypted=encrypted,
            sampling=sampling,
        )
    except (RunRefused, DestinationError, OSError, ValueError) as exc:
        report.errors.append((f"{folder}/", redact(str(exc), remote.secrets)))
        return
    report.add(folder, checked.verdict)
    report.downloaded += [f"{folder}/{p}" for p in checked.downloaded]
    report.left_unverified += [f"{folder}/{p}" for p in checked.left_unverified]
    report.downloaded_bytes += checked.downloaded_bytes
    report.object_reads += checked.object_reads
    report.listings += checked.listings


async def _check_folder(
    sink: ProgressSink,
    remote: CryptRemote,
    source: Path,
    folder: str,
    *,
    in_backup: bool,
    since: datetime | None,
    underlying: str | None,
    encrypted: str | None,
    sampling: _Sampling,
) -> _FolderCheck:
    """Check one folder; raise (RunRefused, DestinationError, OSError) if it cannot be."""
    cutoff = since.timestamp() if since else None
    if not in_backup:
        found = CheckOutcome(
            missing=sorted(str(p.relative_to(source)) for p in source.rglob("*") if p.is_file())
        )
        return _FolderCheck(
            judge(found, changed_at=_changed_at(source, found.missing), since=cutoff)
        )
    _refuse_unmounted(source)
    env = remote.child_env()
    checked = await _check(
        remote.binary,
        env,
        source,
        crypt_path(folder),
        download=False,
        fast_list=underlying is not None,
    )
    failure = _failure("cryptcheck", checked, remote.secrets)
    if failure:
        raise RunRefused(failure)
    found = checked.outcome
    problems = list(checked.errors.source)
    result = _FolderCheck(Verdict())
    unhashed: set[str] = set()
    if underlying:
        unhashed, objects = await _unhashed(remote, underlying, folder, encrypted)
        result.listings = listing_calls(objects, cloud=True)
    result.object_reads = nonce_reads(found, unhashed)
    unchecked = _to_compare_by_content(found, unhashed, {p.path for p in problems})
    if unchecked:
        await _compare_by_download(
            sink, remote, env, source, folder, unchecked, sampling, found, problems, result
        )
    changed_at = _changed_at(source, [*found.missing, *found.differ])
    result.verdict = judge(found, changed_at=changed_at, since=cutoff, source_problems=problems)
    return result


def _refuse_unmounted(source: Path) -> None:
    """RunRefused (the folder is not checked) when the source folder is gone or lacks
    Immich's marker: an unmounted or wrong volume would read as every file deleted."""
    if not source.is_dir():
        raise RunRefused(
            f"{source} is gone at the source but its backup holds files: is the volume "
            "mounted? (not checked)"
        )
    try:
        os.lstat(source / IMMICH_MARKER)
    except FileNotFoundError:
        raise RunRefused(
            f"{source} lacks Immich's {IMMICH_MARKER} marker: an unmounted or wrong volume? "
            "(not checked)"
        ) from None
    except PermissionError:
        pass  # an unreadable folder: cryptcheck names it


def _to_compare_by_content(
    found: CheckOutcome, unhashed: set[str], unreadable: set[str]
) -> list[str]:
    """The files of `found` to compare by downloading them, taken out of it. cryptcheck
    reports objects without a stored hash as matching: they move to the unchecked ones. Of
    the unchecked, those whose source file cannot be read stay there (a download cannot
    compare them either); the others are returned."""
    if unhashed:
        found.unchecked += [p for p in found.matched if p in unhashed]
        found.matched = [p for p in found.matched if p not in unhashed]
    unchecked = found.unchecked
    found.unchecked = [p for p in unchecked if p in unreadable]
    return [p for p in unchecked if p not in unreadable]


async def _compare_by_download(
    sink: ProgressSink,
    remote: CryptRemote,
    env: dict[str, str],
    source: Path,
    folder: str,
    unchecked: list[str],
    sampling: _Sampling,
    found: CheckOutcome,
    problems: list[SourceProblem],
    result: _FolderCheck,
) -> None:
    """Download, decrypt and compare the files of `unchecked` that `sampling` chooses:
    merge what that shows into `found` and its source problems into `problems`, and record
    in `result` what was downloaded (and how many bytes) and what was left unverified.
    RunRefused if the compare itself fails."""
    sizes = {p: _size(source / p) for p in unchecked}
    download, skip = choose_downloads(
        unchecked,
        sizes,
        full=sampling.full,
        sample_percent=sampling.sample_percent,
        rng=sampling.rng,
        small_file=sampling.small_file,
    )
    if download:
        sink(
            RunEvent(
                EventKind.MESSAGE,
                remote.label,
                {
                    "text": f"{folder}/: downloading {len(download)} files "
                    "without hashes to compare their content",
                },
            )
        )
        compared = await _check(
            remote.binary, env, source, crypt_path(folder), download=True, files=download
        )
        failure = _failure("check --download", compared, remote.secrets)
        if failure:
            raise RunRefused(failure)
        found.merge(compared.outcome)
        problems += compared.errors.source
        result.downloaded = download
        result.downloaded_bytes = sum(sizes[p] for p in download)
    result.left_unverified = skip


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
