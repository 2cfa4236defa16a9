"""Short operations on a destination's crypt remote: marker, test-write, listings.

All go through photos_sync.system.execute with the remotes defined in rclone's environment only.
Errors are raised as DestinationError with rclone's message, scrubbed of secrets.
"""

from __future__ import annotations

import json
import os
import secrets as pysecrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from photos_sync.core.archive import RAW_LISTING_FLAGS, parse_raw_listing
from photos_sync.core.destinations import DestinationError, explain_error
from photos_sync.core.names import decode_raw
from photos_sync.core.rclone_args import (
    ARCHIVE_FOLDER,
    BASE_REMOTE,
    DESTINATION_MARKER,
    crypt_path,
    simple_argv,
)
from photos_sync.core.rclone_log import ErrorLine, parse_line
from photos_sync.core.redact import redact
from photos_sync.system import execute


def _error_lines(stderr: bytes) -> list[str]:
    errors = []
    for line in stderr.decode("utf-8", "replace").splitlines():
        event = parse_line(line)
        if isinstance(event, ErrorLine):
            errors.append(event.message)
    return errors


def _rclone_error(stderr: bytes, secrets: Iterable[str]) -> str:
    errors = _error_lines(stderr)
    text = errors[-1] if errors else stderr.decode("utf-8", "replace").strip()[-300:]
    return redact(text or "no error text", secrets)


_MISSING = ("directory not found", "nosuchbucket", "bucket not found", "bad_bucket_id")


@dataclass(frozen=True, slots=True)
class Probe:
    """What listing (or creating) a bucket on the raw remote said."""

    ok: bool
    missing: bool  # the bucket (or folder) does not exist
    message: str  # rclone's error, scrubbed of secrets ("" when ok)


@dataclass
class CryptRemote:
    """The crypt remote of one destination, ready to be used by rclone subcommands."""

    binary: str
    env: Mapping[str, str]  # RCLONE_CONFIG_* for this destination (secret)
    secrets: tuple[str, ...]  # values to scrub from any message
    label: str  # the destination's name, for messages
    #: the encrypted names of the entries at the top of the backup, learned by `list_root`
    #: (plain name -> name as stored)
    stored_root_names: dict[str, str] = field(default_factory=dict)

    def child_env(self) -> dict[str, str]:
        return execute.child_env(self.env)

    async def _run(
        self, *args: str, stdin: bytes | None = None, timeout: float = 120
    ) -> execute.Completed:
        argv = simple_argv(self.binary, *args)
        return await execute.run_captured(argv, self.child_env(), stdin=stdin, timeout=timeout)

    def failure(self, what: str, result: execute.Completed) -> DestinationError:
        """The error to raise when `what` (an rclone run on this remote) failed: rclone's
        message, scrubbed of secrets, with a diagnosis when one is known."""
        kind = self.env.get(f"RCLONE_CONFIG_{BASE_REMOTE.upper()}_TYPE", "local")
        reason = explain_error(kind, _rclone_error(result.stderr, self.secrets))
        return DestinationError(f"destination {self.label!r}: {what} failed: {reason}")

    async def list_root(self) -> dict[str, bool]:
        """Names at the top of the backup, mapped to whether each is a folder."""
        result = await self._run("lsjson", crypt_path(), "--max-depth", "1", "--encrypted")
        if result.returncode != 0:
            raise self.failure("listing the backup", result)
        entries = json.loads(result.stdout or b"[]")
        self.stored_root_names = {
            str(e["Path"]): str(e["EncryptedPath"]) for e in entries if e.get("EncryptedPath")
        }
        return {str(e["Path"]): bool(e.get("IsDir")) for e in entries}

    async def lsjson(self, path: str, *flags: str, timeout: float = 120) -> list[dict[str, Any]]:
        """`rclone lsjson path flags...`: its entries; DestinationError if the listing fails."""
        result = await self._run("lsjson", path, *flags, timeout=timeout)
        if result.returncode != 0:
            raise self.failure(f"listing {path}", result)
        entries = json.loads(result.stdout or b"[]")
        return entries if isinstance(entries, list) else []

    async def stat(self, path: str) -> dict[str, Any] | None:
        """The lsjson entry of `path` in the backup; None when it is not there."""
        result = await self._run("lsjson", crypt_path(path), "--stat")
        if result.returncode != 0:
            return None
        entry = json.loads(result.stdout or b"null")
        return entry if isinstance(entry, dict) else None

    async def list_files(self, path: str, *, timeout: float = 3600) -> list[dict[str, object]]:
        """Every file below `path` in the backup with its exact name (lsjson would garble
        names that are not UTF-8), as lsjson-like entries; [] when there is no such folder."""
        result = await self._run("lsf", crypt_path(path), *RAW_LISTING_FLAGS, timeout=timeout)
        if result.returncode != 0:
            return []
        return parse_raw_listing(decode_raw(result.stdout))

    async def has_marker(self) -> bool:
        return DESTINATION_MARKER in await self.list_root()

    async def read_file(self, path: str) -> bytes | None:
        """The decrypted content of the file at plain `path`, or None if there is none (a
        download of that one file: no listing)."""
        result = await self._run("cat", crypt_path(path))
        if result.returncode == 0:
            return result.stdout
        message = _rclone_error(result.stderr, self.secrets).lower()
        if any(marker in message for marker in ("not found", "is a directory", "doesn't exist")):
            return None
        raise self.failure(f"reading {path}", result)

    async def write_file(self, path: str, data: bytes) -> None:
        """Write `data` (encrypted) to plain `path`, replacing what is there."""
        result = await self._run("rcat", crypt_path(path), stdin=data)
        if result.returncode != 0:
            raise self.failure(f"writing {path}", result)

    async def upload(self, local: str, path: str, *, timeout: float = 3600) -> None:
        """Copy the local file `local` (encrypted) to plain `path`, without listing."""
        result = await self._run(
            "copyto", local, crypt_path(path), "--no-traverse", "--no-check-dest", timeout=timeout
        )
        if result.returncode != 0:
            raise self.failure(f"uploading {path}", result)

    async def download(self, path: str, local: str, *, timeout: float = 3600) -> bool:
        """Copy plain `path` (decrypted) to the local file `local`; False if there is none."""
        result = await self._run("copyto", crypt_path(path), local, timeout=timeout)
        if result.returncode == 0:
            # On S3 a missing file looks like an empty folder: rclone copies nothing, and
            # says so with success.
            return os.path.exists(local)
        message = _rclone_error(result.stderr, self.secrets).lower()
        if "not found" in message:
            return False
        raise self.failure(f"downloading {path}", result)

    async def write_marker(self, content: Mapping[str, str]) -> None:
        data = json.dumps(dict(content), sort_keys=True).encode()
        result = await self._run("rcat", crypt_path(DESTINATION_MARKER), stdin=data)
        if result.returncode != 0:
            raise self.failure("writing the destination marker", result)

    async def test_write(self) -> None:
        """Write a small random file through crypt, read it back decrypted, delete it."""
        name = f".photos-sync-write-test-{pysecrets.token_hex(6)}"
        payload = pysecrets.token_bytes(4096)
        path = crypt_path(name)
        result = await self._run("rcat", path, stdin=payload)
        if result.returncode != 0:
            raise self.failure("test-write", result)
        try:
            readback = await self._run("cat", path)
            if readback.returncode != 0:
                raise self.failure("reading the test file back", readback)
            if readback.stdout != payload:
                raise DestinationError(
                    f"destination {self.label!r}: the test file read back differs from what was "
                    "written; the storage is not reliable"
                )
        finally:
            await self._run("deletefile", path)

    async def probe(self, path: str, *, create: bool = False, object_lock: bool = False) -> Probe:
        """List (or with `create`, mkdir) `path` on the raw remote, e.g. "psbase:bucket",
        telling apart a missing bucket from refused credentials or an unreachable service.
        `object_lock`: an S3 bucket created here has Object Lock (and versioning) on."""
        quick = ("--low-level-retries", "1", "--contimeout", "15s", "--timeout", "60s")
        if create:
            lock = ("--s3-bucket-object-lock-enabled",) if object_lock else ()
            result = await self._run("mkdir", path, *lock, *quick)
        else:
            result = await self._run("lsf", path, "--max-depth", "1", "--dirs-only", *quick)
        if result.returncode == 0:
            return Probe(True, False, "")
        message = _rclone_error(result.stderr, self.secrets)
        return Probe(False, any(s in message.lower() for s in _MISSING), message)

    async def list_underlying(self, path: str) -> list[str]:
        """Names at the top of the raw storage under crypt (encrypted); [] if it is absent."""
        result = await self._run("lsf", path, "--max-depth", "1")
        if result.returncode != 0:
            return []
        return [
            line.rstrip("/")
            for line in result.stdout.decode("utf-8", "replace").splitlines()
            if line.strip()
        ]

    async def list_archive_runs(self) -> list[str]:
        """Names of the run folders in the archive (`.deleted/<stamp>`)."""
        result = await self._run("lsjson", crypt_path(ARCHIVE_FOLDER), "--dirs-only")
        if result.returncode != 0:
            if b"directory not found" in result.stderr:
                return []
            raise self.failure("listing the archive", result)
        return [str(e["Path"]) for e in json.loads(result.stdout or b"[]")]

    async def purge(self, path: str) -> None:
        """Delete `path` and everything below it."""
        result = await self._run("purge", path, timeout=3600)
        if result.returncode != 0:
            failure = self.failure(f"removing {path}", result)
            # rclone ends with a count ("failed to delete 3 files"); the cause (a refusal,
            # AccessDenied, an object lock) is in the first error
            errors = _error_lines(result.stderr)
            if errors and errors[0] not in str(failure):
                cause = redact(errors[0], self.secrets)
                raise DestinationError(f"{failure} (first error: {cause})")
            raise failure

    @property
    def removal_hides(self) -> bool:
        """Whether a removal only hides files: a b2 remote without hard_delete (an append-only
        destination, whose key cannot delete)."""
        prefix = f"RCLONE_CONFIG_{BASE_REMOTE.upper()}_"
        return (
            self.env.get(prefix + "TYPE") == "b2"
            and self.env.get(prefix + "HARD_DELETE", "false").lower() != "true"
        )

    async def remove_folder(self, path: str) -> None:
        """Remove `path` and everything below it (an expired archive run).

        Usually `rclone purge`. Where a removal only hides (`removal_hides`), purge cannot
        work: rclone's b2 Purge deletes every version (b2_delete_file_version, deleteFiles)
        whatever hard_delete says. There `rclone delete` hides each file instead (b2_hide_file,
        writeFiles only) and the folder, a name prefix on B2, vanishes with its last visible
        file; the bucket's lifecycle rule deletes the hidden versions later."""
        if not self.removal_hides:
            await self.purge(path)
            return
        result = await self._run("delete", path, timeout=3600)
        if result.returncode != 0:
            raise self.failure(f"hiding {path}", result)

    async def folder_has_files(self, folder: str) -> bool:
        """True if the backup of `folder` holds at least one file besides Immich's marker."""
        result = await self._run(
            "lsf", crypt_path(folder), "--recursive", "--files-only", "--max-depth", "5"
        )
        if result.returncode != 0:
            return False  # the folder does not exist in the backup
        return any(
            line and not line.endswith(".immich")
            for line in result.stdout.decode("utf-8", "replace").splitlines()
        )
