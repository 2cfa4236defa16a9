"""`photos-sync verify`: compare the Immich source with the backup.

Each folder is first checked with `rclone cryptcheck` (the backend's hash of each encrypted
object against the source file encrypted with the object's nonce: cheap, no download). Objects
whose backend keeps no hash (B2 large files, S3 multipart uploads, some backends) come back as
"could not check"; those are downloaded, decrypted and compared with `rclone check --download`
— all of them with `full`, else every small one and a random sample of the large ones.
Missing, extra and differing files are reported by their plain paths; the result is stored.
"""

from __future__ import annotations

import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from photos_sync import execute
from photos_sync.planning import selected_folders
from photos_sync.rclone_args import check_argv, crypt_path
from photos_sync.runner import RunEvent, Runner, RunRefused
from photos_sync.store import RestoreAndVerifyStore, utcnow
from photos_sync.verify_plan import (
    DEFAULT_SAMPLE_PERCENT,
    CheckOutcome,
    choose_downloads,
    parse_combined,
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
            "missing": o.missing,
            "extra": o.extra,
            "differ": o.differ,
            "unchecked": o.unchecked,
            "downloaded": self.downloaded,
            "left_unverified": self.left_unverified,
        }


async def _check(
    runner_binary: str,
    env: dict[str, str],
    source: Path,
    backup: str,
    *,
    download: bool,
    files: list[str] | None = None,
) -> CheckOutcome:
    with tempfile.TemporaryDirectory(prefix="photos-sync-verify-") as tmp:
        files_from = None
        if files is not None:
            files_from = str(Path(tmp) / "files.txt")
            Path(files_from).write_text("".join(f"{p}\n" for p in files))
        argv = check_argv(
            runner_binary, str(source), backup, download=download, files_from=files_from
        )
        result = await execute.run_captured(argv, env, timeout=24 * 3600)
    if result.returncode not in (0, 1):
        raise RunRefused(
            f"rclone {'check' if download else 'cryptcheck'} of {backup} failed "
            f"with status {result.returncode}"
        )
    return parse_combined(result.stdout.decode("utf-8", "replace"))


async def verify(
    runner: Runner,
    name: str | None,
    *,
    full: bool = False,
    sample_percent: float = DEFAULT_SAMPLE_PERCENT,
    seed: int | None = None,
) -> VerifyReport:
    """Verify one destination against the source; the result is stored in the DB."""
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
                missing=[str(p.relative_to(source)) for p in source.rglob("*") if p.is_file()]
            )
        else:
            found = await _check(
                remote.binary, env, source, crypt_path(folder.name), download=False
            )
        unchecked, found.unchecked = found.unchecked, []
        if unchecked:
            sizes = {p: _size(source / p) for p in unchecked}
            download, skip = choose_downloads(
                unchecked, sizes, full=full, sample_percent=sample_percent, rng=rng
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
