"""Destination types: how each kind of storage becomes an rclone crypt remote. Pure: no I/O.

A destination type knows which secrets it needs, which raw remote (if any) carries the data,
and which sync tunables suit it. Adding a type means adding one class here and registering it
in DESTINATION_TYPES; everything else (runner, setup, recovery kit) goes through this table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from photos_sync.rclone_args import BASE_REMOTE, RemoteSpec, SyncOptions, crypt_remote
from photos_sync.store import Destination

ENCRYPTION_PASSWORD = "encryption_password"  # noqa: S105 - a field name, not a secret
ENCRYPTION_SALT = "encryption_salt"


class DestinationError(RuntimeError):
    """A destination is unknown, misconfigured or unreachable; the message says what to do."""


class DestinationType(Protocol):
    """What the rest of photos-sync needs to know about one kind of storage."""

    type_name: str
    #: Secret fields the type needs besides the encryption password and salt.
    secret_fields: tuple[str, ...]

    def base_remote(
        self, destination: Destination, secrets: Mapping[str, str]
    ) -> RemoteSpec | None:
        """The raw storage remote, or None when crypt can sit on a plain path."""
        ...

    def underlying_path(self, destination: Destination) -> str:
        """What the crypt remote wraps: a path, or `psbase:bucket/path`."""
        ...

    def tune(self, options: SyncOptions) -> SyncOptions:
        """Sync tunables suited to this storage, applied before the user's own settings."""
        ...

    def describe(self, destination: Destination) -> str:
        """Where the data goes, for people (no secrets)."""
        ...


class LocalType:
    """A folder on a local or network-mounted disk."""

    type_name = "local"
    secret_fields: tuple[str, ...] = ()

    def base_remote(
        self, destination: Destination, secrets: Mapping[str, str]
    ) -> RemoteSpec | None:
        return None

    def underlying_path(self, destination: Destination) -> str:
        if not destination.remote_path:
            raise DestinationError(f"destination {destination.name!r} has no path")
        return destination.remote_path

    def tune(self, options: SyncOptions) -> SyncOptions:
        return options

    def describe(self, destination: Destination) -> str:
        return f"local folder {destination.remote_path}"


DESTINATION_TYPES: dict[str, DestinationType] = {"local": LocalType()}


def destination_type(name: str) -> DestinationType:
    try:
        return DESTINATION_TYPES[name]
    except KeyError:
        known = ", ".join(sorted(DESTINATION_TYPES))
        raise DestinationError(f"unknown destination type {name!r}: use one of {known}") from None


def required_secret_fields(type_name: str) -> tuple[str, ...]:
    return (*destination_type(type_name).secret_fields, ENCRYPTION_PASSWORD)


def missing_secret_fields(type_name: str, secrets: Mapping[str, str]) -> list[str]:
    return [f for f in required_secret_fields(type_name) if not secrets.get(f)]


def build_remotes(
    destination: Destination,
    secrets: Mapping[str, str],
    obscured_password: str,
    obscured_salt: str | None,
) -> list[RemoteSpec]:
    """The rclone remotes (raw storage, then crypt over it) for a destination."""
    kind = destination_type(destination.type)
    remotes = []
    base = kind.base_remote(destination, secrets)
    if base is not None:
        assert base.name == BASE_REMOTE
        remotes.append(base)
    remotes.append(
        crypt_remote(kind.underlying_path(destination), obscured_password, obscured_salt)
    )
    return remotes


def parse_secrets_ref(ref: str) -> tuple[str, str]:
    """Split "file:/path" or "op:vault/item" into (store, locator)."""
    store, sep, locator = ref.partition(":")
    if not sep or store not in ("file", "op") or not locator:
        raise DestinationError(f"invalid secrets reference {ref!r}")
    return store, locator
