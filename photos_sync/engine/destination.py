"""One destination made ready for work: found by name, its secrets prepared for rclone, its
crypt remote opened, its run lock taken, and its backup checked to be there and ours.

Backup, restore, verify, check, setup and the recovery kit all go through here, so a
destination is resolved with the same messages, its secrets are turned into rclone's
environment in one place (and never written anywhere), and one lock keeps a backup, a verify
and a removal of the same destination apart.

Contract of `DestinationContext`:
- `resolve` raises UsageProblem (exit 2) for no, an unknown, or an ambiguous destination;
- `open_remote` raises RcloneNotFound, SecretsError (OnePasswordError), or DestinationError
  when its secrets are unreadable or incomplete; UsageProblem when asked for object versions
  (`version_at`) of a destination that has none (local);
- `check` raises RunRefused unless the destination holds a photos-sync backup made with
  these keys, and returns the backup's top-level folders;
- `lock` yields False, without waiting, while another process holds the destination's lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TextIO

from photos_sync.core.append_only import at_versions, from_versions_problem
from photos_sync.core.config import Settings
from photos_sync.core.destinations import (
    ENCRYPTION_PASSWORD,
    ENCRYPTION_SALT,
    DestinationError,
    build_remotes,
    destination_type,
    missing_secret_fields,
    unknown_destination_message,
)
from photos_sync.core.events import RunRefused, UsageProblem
from photos_sync.core.obscure import obscure
from photos_sync.core.rclone_args import DESTINATION_MARKER, RemoteSpec, remote_env
from photos_sync.core.records import Destination
from photos_sync.credentials.loader import load_secrets
from photos_sync.rclone.remote import CryptRemote
from photos_sync.storage.datadir import open_private
from photos_sync.storage.store import Store
from photos_sync.system import execute


@contextlib.contextmanager
def destination_lock(data_dir: Path, destination_id: int) -> Iterator[bool]:
    """Hold an exclusive flock for runs of one destination; yields False if someone else has it.

    The kernel drops the lock when its holder dies, so a crash never leaves it behind.
    """
    lock_dir = data_dir / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = open_private(lock_dir / f"destination-{destination_id}.lock", os.O_RDWR | os.O_CREAT)
    handle: TextIO = os.fdopen(fd, "a+")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    finally:
        handle.close()


@dataclass(frozen=True, slots=True)
class RcloneSecrets:
    """A destination's secrets as rclone takes them: the plain values, and the encryption
    password (and salt) obscured the way rclone.conf and RCLONE_CONFIG_* expect them.

    Kept in memory only; `remote` hands them to rclone through its environment.
    """

    plain: Mapping[str, str]
    obscured_password: str
    obscured_salt: str | None

    @classmethod
    async def prepare(cls, binary: str, secrets: Mapping[str, str]) -> RcloneSecrets:
        """Obscure `secrets`' encryption password and salt as `rclone obscure` would
        (core.obscure, in memory: no process start, nothing in any argv). `binary` is the
        rclone the remote will run, unused here since rclone no longer obscures for us.

        KeyError when there is no encryption password.
        """
        del binary
        password = secrets[ENCRYPTION_PASSWORD]
        salt = secrets.get(ENCRYPTION_SALT)
        return cls(
            secrets,
            obscure(password, os.urandom(16)),
            obscure(salt, os.urandom(16)) if salt else None,
        )

    @property
    def password(self) -> str:
        """The plain encryption password."""
        return self.plain[ENCRYPTION_PASSWORD]

    @property
    def salt(self) -> str | None:
        """The plain encryption salt; None when rclone's default salt is used."""
        return self.plain.get(ENCRYPTION_SALT) or None

    def remotes(self, destination: Destination) -> list[RemoteSpec]:
        """The destination's rclone remotes: its raw storage, then crypt over it."""
        return build_remotes(destination, self.plain, self.obscured_password, self.obscured_salt)

    def remote(
        self,
        binary: str,
        destination: Destination,
        scrub: Iterable[str],
        *,
        version_at: datetime | None = None,
    ) -> CryptRemote:
        """The destination's crypt remote; its messages are scrubbed of `scrub` and of the
        obscured passwords. With `version_at` it reads the storage's object versions as they
        were then (read-only; s3 and b2 only, ValueError otherwise)."""
        obscured = (self.obscured_password, *([self.obscured_salt] if self.obscured_salt else []))
        remotes = self.remotes(destination)
        if version_at is not None:
            remotes = at_versions(remotes, version_at)
        env = remote_env(remotes)
        return CryptRemote(binary, env, (*scrub, *obscured), destination.name)


@dataclass(frozen=True, slots=True)
class OpenDestination:
    """A destination whose backup was found: its remote, and its backup's top-level folders."""

    destination: Destination
    remote: CryptRemote
    folders: frozenset[str]


class DestinationContext:
    """Resolves, opens, locks and checks the destinations kept in `store`."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store

    async def resolve(self, name: str | None) -> Destination:
        """The destination called `name`, or the only one when `name` is None."""
        # Imported here: RunRefused and UsageProblem still live in the runner, which builds
        # on this module.
        destinations = await self.store.list_destinations()
        if not destinations:
            raise UsageProblem(
                "no destination is set up yet: run `photos-sync backup --setup local --name NAME "
                "--path DIR` first"
            )
        if name is None:
            if len(destinations) == 1:
                return destinations[0]
            names = ", ".join(d.name for d in destinations)
            # Backups and verify go to each in turn; a restore must name its source.
            raise UsageProblem(
                f"several destinations exist ({names}): name one (`photos-sync restore --from "
                "NAME`)"
            )
        for destination in destinations:
            if destination.name == name:
                return destination
        raise UsageProblem(unknown_destination_message(name, [d.name for d in destinations]))

    def lock(self, destination: Destination) -> AbstractContextManager[bool]:
        """The destination's run lock (see `destination_lock`)."""
        return destination_lock(self.settings.data_dir, destination.id)

    async def open_remote(
        self,
        destination: Destination,
        secrets: Mapping[str, str] | None = None,
        *,
        version_at: datetime | None = None,
    ) -> CryptRemote:
        """The destination's crypt remote, with its secrets (loaded from where they are kept
        unless given) obscured in memory; with `version_at`, reading the storage's object
        versions as they were then (UsageProblem for a destination without versions)."""
        if version_at is not None:
            problem = from_versions_problem(destination)
            if problem:
                raise UsageProblem(problem)
        binary = execute.find_rclone(self.settings.rclone_binary)
        if secrets is None:
            secrets = await load_secrets(destination)
        missing = missing_secret_fields(destination.type, secrets)
        if missing:
            raise DestinationError(
                f"destination {destination.name!r}: its secrets lack {', '.join(missing)}; "
                "add them where the secrets are kept"
            )
        prepared = await RcloneSecrets.prepare(binary, secrets)
        return prepared.remote(binary, destination, secrets.values(), version_at=version_at)

    async def rclone_secrets(self, destination: Destination) -> RcloneSecrets:
        """The destination's secrets, loaded and obscured, whatever fields they lack (the
        recovery kit prints what there is)."""
        secrets = await load_secrets(destination)
        binary = execute.find_rclone(self.settings.rclone_binary)
        return await RcloneSecrets.prepare(binary, secrets)

    async def check(self, destination: Destination, remote: CryptRemote) -> set[str]:
        """Raise RunRefused unless the destination is there and is ours; return its folders."""
        if destination.type == "local":
            path = Path(destination.remote_path or "")
            if not path.is_dir():
                raise RunRefused(
                    f"destination {destination.name!r}: {path} does not exist; is the disk "
                    "mounted? (photos-sync never creates it outside --setup)"
                )
        try:
            root = await remote.list_root()
        except DestinationError as exc:
            raise RunRefused(str(exc)) from None
        if DESTINATION_MARKER not in root:
            kind = destination_type(destination.type)
            raise RunRefused(
                f"destination {destination.name!r}: no photos-sync backup found at "
                f"{kind.describe(destination)} (wrong or unmounted volume, or a different "
                "encryption password); check the mount, or run --setup again for a new folder"
            )
        return {name for name, is_dir in root.items() if is_dir}

    async def open(
        self, name: str | None, *, version_at: datetime | None = None
    ) -> OpenDestination:
        """Resolve `name`, open its remote (reading the object versions of `version_at`, when
        given) and check its backup (see the module's contract)."""
        destination = await self.resolve(name)
        remote = await self.open_remote(destination, version_at=version_at)
        folders = await self.check(destination, remote)
        return OpenDestination(destination, remote, frozenset(folders))
