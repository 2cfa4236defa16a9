"""Load a destination's secrets from where its secrets_ref points (a key file, or 1Password)."""

from __future__ import annotations

from pathlib import Path

from photos_sync.core.destinations import (
    parse_op_locator,
    parse_secrets_ref,
    required_secret_fields,
)
from photos_sync.core.records import Destination
from photos_sync.credentials.keyfile import read_key_file


async def load_secrets(destination: Destination) -> dict[str, str]:
    """The secret fields of `destination`, kept in memory only.

    Raises SecretsError (OnePasswordError for `op:` references) or DestinationError with a
    one-line explanation.
    """
    store, locator = parse_secrets_ref(destination.secrets_ref)
    if store == "file":
        return read_key_file(Path(locator))
    from photos_sync.credentials.onepassword import load_item_secrets

    vault, title = parse_op_locator(locator)
    return await load_item_secrets(vault, title, required_secret_fields(destination.type))
