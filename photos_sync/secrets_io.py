"""Load a destination's secrets from where its secrets_ref points (a key file, or 1Password)."""

from __future__ import annotations

from pathlib import Path

from photos_sync.destinations import DestinationError, parse_secrets_ref
from photos_sync.keyfile import read_key_file
from photos_sync.store import Destination


async def load_secrets(destination: Destination) -> dict[str, str]:
    """The secret fields of `destination`, kept in memory only.

    Raises SecretsError or DestinationError with a one-line explanation.
    """
    store, locator = parse_secrets_ref(destination.secrets_ref)
    if store == "file":
        return read_key_file(Path(locator))
    raise DestinationError(
        f"destination {destination.name!r} keeps its secrets in {store!r}, which this version "
        "cannot read"
    )
