"""`photos-sync verify`: compare the Immich source with the backup.

Each folder is first checked with `rclone cryptcheck` (the backend's hash of each encrypted
object against the source file encrypted with the object's nonce: cheap, no download). Objects
whose backend keeps no hash (B2 large files, S3 multipart uploads, some backends) come back as
"could not check"; those are downloaded, decrypted and compared with `rclone check --download`
— all of them with `full`, else every small one and a random sample of the large ones.
Missing, extra and differing files are reported by their plain paths; the result is stored.
"""

from __future__ import annotations

import json
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from photos_sync import execute
from photos_sync.names import decode_raw, display_path, raw_bytes
from photos_sync.planning import selected_folders
from photos_sync.rclone_args import BASE_REMOTE, CRYPT_REMOTE, check_argv, crypt_path
from photos_sync.remote import CryptRemote
from photos_sync.runner import RunEvent, Runner, RunRefused, _destination_lock
from photos_sync.store import RestoreAndVerifyStore, utcnow
from photos_sync.verify_plan import (
    DEFAULT_SAMPLE_PERCENT,
    SMALL_FILE,
    CheckOutcome,
    choose_downloads,
    parse_combined,
    unhashed_paths,
)


@dataclass
class VerifyReport:
    destination: str
    mode: str
    outcome: CheckOutcome = field(default_factory=CheckOutcome)
    downloaded: list[str] = field(default_factory=list)
    left_unverified: list[str] = field(default_factory=list)
    downloaded_bytes: int = 0
    folders: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        o = self.outcome
        return not (o.missing or o.extra or o.differ or o.unchecked)

    def figures(self) -> dict[str, int]:
        o = self.outcome
        return {
            "ok": int(self.ok),
            "matched": len(o.matched),
            "missing": len(o.missing),
            "extra": len(o.extra),
            "differ": len(o.differ),
            "errors": len(o.unchecked),
            "unverified": len(self.left_unverified),
            "downloaded_bytes": self.downloaded_bytes,
        }

    def as_dict(self) -> dict[str, Any]:
        o = self.outcome
        return {
            "destination": self.destination,
            "mode": self.mode,
            "ok": self.ok,
            "folders": self.folders,
            "figures": self.figures(),
            # names that are not UTF-8 are shown with \xNN (the lists keep their exact bytes)
            "missing": [display_path(p) for p in o.missing],
            "extra": [display_path(p) for p in o.extra],
            "differ": [display_path(p) for p in o.differ],
            "unchecked": [display_path(p) for p in o.unchecked],
            "downloaded": [display_path(p) for p in self.downloaded],
            "left_unverified": [display_path(p) for p in self.left_unverified],
        }


async def _check(
    runner_binary: str,
    env: dict[str, str],
    source: Path,
    backup: str,
    *,
    download: bool,
    files: list[str] | None = None,
    fast_list: bool = False,
) -> CheckOutcome:
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
    if result.returncode not in (0, 1):
        raise RunRefused(
            f"rclone {'check' if download else 'cryptcheck'} of {backup} failed "
            f"with status {result.returncode}"
        )
    return parse_combined(decode_raw(result.stdout))


async def _lsjson(remote: CryptRemote, path: str, *flags: str) -> list[dict[str, Any]]:
    result = await remote._run("lsjson", path, *flags, timeout=24 * 3600)
    if result.returncode != 0:
        raise remote._fail(f"listing {path}", result)
    entries = json.loads(result.stdout or b"[]")
    return entries if isinstance(entries, list) else []


def _underlying(remote: CryptRemote) -> str | None:
    """The raw cloud path under the crypt remote ("psbase:bucket/path"); None when local.

    A local destination always has hashes (rclone computes them from the file), so only a
    cloud base remote (S3 multipart uploads, B2 large files) can lack them.
    """
    underlying = remote.env.get(f"RCLONE_CONFIG_{CRYPT_REMOTE.upper()}_REMOTE", "")
    return underlying if underlying.startswith(f"{BASE_REMOTE}:") else None


async def _encrypted_folders(remote: CryptRemote) -> dict[str, str]:
    """Top-level plain folder name -> its encrypted name."""
    top = await _lsjson(remote, crypt_path(), "--max-depth", "1", "--encrypted")
    return {str(e["Path"]): str(e["EncryptedPath"]) for e in top if e.get("IsDir")}


async def _unhashed(
    remote: CryptRemote, underlying: str, folder: str, encrypted: str | None
) -> set[str]:
    """Plain paths below `folder` whose stored object has no hash."""
    if encrypted is None:
        return set()
    # --fast-list: one listing call per 1,000 objects, not one per directory (B2 and S3
    # charge per call, and Immich's upload/ has thousands of directories)
    flags = ("-R", "--files-only", "--fast-list")
    plain = await _lsjson(remote, crypt_path(folder), *flags, "--encrypted")
    stored = await _lsjson(remote, f"{underlying.rstrip('/')}/{encrypted}", *flags, "--hash")
    return unhashed_paths(plain, stored)


async def verify(
    runner: Runner,
    name: str | None,
    *,
    full: bool = False,
    sample_percent: float = DEFAULT_SAMPLE_PERCENT,
    seed: int | None = None,
    small_file: int = SMALL_FILE,
) -> VerifyReport:
    """Verify one destination against the source; the result is stored in the DB.

    Refused while a backup to the same destination runs (its half-done state would be
    reported as differences).
    """
    destination = await runner.resolve_destination(name)
    with _destination_lock(runner.settings.data_dir, destination.id) as locked:
        if not locked:
            raise RunRefused(
                f"a backup to {destination.name!r} is running: verify after it has finished"
            )
        return await _verify(
            runner,
            destination.name,
            full=full,
            sample_percent=sample_percent,
            seed=seed,
            small_file=small_file,
        )


async def _verify(
    runner: Runner,
    name: str,
    *,
    full: bool,
    sample_percent: float,
    seed: int | None,
    small_file: int,
) -> VerifyReport:
    started = utcnow()
    destination = await runner.resolve_destination(name)
    immich_path = runner.settings.require_immich_path()
    if not immich_path.is_dir():
        raise RunRefused(f"BACKUP_IMMICH_PATH={immich_path} does not exist: is it mounted?")
    remote = await runner.open_remote(destination)
    in_backup = await runner.check_destination(destination, remote)
    mode = "full" if full else f"sample {sample_percent:g}%"
    report = VerifyReport(destination.name, mode)
    rng = random.Random(seed)  # noqa: S311 - sampling, not security
    env = remote.child_env()
    underlying = _underlying(remote)
    encrypted_names = await _encrypted_folders(remote) if underlying else {}
    for folder in selected_folders(runner.settings.include_generated):
        source = immich_path / folder.name
        if not source.is_dir() and folder.name not in in_backup:
            continue
        report.folders.append(folder.name)
        runner.sink(
            RunEvent("message", destination.name, {"text": f"{folder.name}/: checking hashes"})
        )
        if folder.name not in in_backup:
            found = CheckOutcome(
                missing=sorted(str(p.relative_to(source)) for p in source.rglob("*") if p.is_file())
            )
        elif not source.is_dir():
            listing = await _lsjson(remote, crypt_path(folder.name), "-R", "--files-only")
            found = CheckOutcome(extra=sorted(str(e["Path"]) for e in listing))
        else:
            found = await _check(
                remote.binary,
                env,
                source,
                crypt_path(folder.name),
                download=False,
                fast_list=underlying is not None,
            )
            # cryptcheck reports objects without a stored hash as matching: take them out
            # and compare their content instead
            unhashed = (
                await _unhashed(remote, underlying, folder.name, encrypted_names.get(folder.name))
                if underlying
                else set()
            )
            if unhashed:
                found.unchecked += [p for p in found.matched if p in unhashed]
                found.matched = [p for p in found.matched if p not in unhashed]
        unchecked, found.unchecked = found.unchecked, []
        if unchecked:
            sizes = {p: _size(source / p) for p in unchecked}
            download, skip = choose_downloads(
                unchecked,
                sizes,
                full=full,
                sample_percent=sample_percent,
                rng=rng,
                small_file=small_file,
            )
            if download:
                runner.sink(
                    RunEvent(
                        "message",
                        destination.name,
                        {
                            "text": f"{folder.name}/: downloading {len(download)} files "
                            "without hashes to compare their content",
                        },
                    )
                )
                compared = await _check(
                    remote.binary,
                    env,
                    source,
                    crypt_path(folder.name),
                    download=True,
                    files=download,
                )
                found.merge(compared)
                report.downloaded += [f"{folder.name}/{p}" for p in download]
                report.downloaded_bytes += sum(sizes[p] for p in download)
            report.left_unverified += [f"{folder.name}/{p}" for p in skip]
        report.outcome.merge(found, prefix=f"{folder.name}/")
    await RestoreAndVerifyStore(runner.store).record_verify(
        destination.id, started, mode, report.figures(), report.as_dict()
    )
    return report


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
