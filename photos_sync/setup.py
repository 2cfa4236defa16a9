"""`photos-sync backup --setup`: create (or update) a destination and prove it works.

For a local destination: generate (or keep) the encryption password and salt, store them in a
0600 key file, create the folder, write and read back a test file through crypt, write the
destination marker, then save the destination. If any step fails nothing is saved, and a key
file created by this attempt is removed again.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

from photos_sync import execute
from photos_sync.config import Settings
from photos_sync.destinations import ENCRYPTION_PASSWORD, ENCRYPTION_SALT, DestinationError
from photos_sync.keyfile import SecretsError, generate_password, read_key_file, write_key_file
from photos_sync.logs import get_logger
from photos_sync.remote import CryptRemote
from photos_sync.store import Destination, Store, to_iso, utcnow

log = get_logger("photos_sync.setup")

_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
MIN_PASSWORD_LENGTH = 12


class SetupError(RuntimeError):
    """Setup could not finish; nothing was saved."""


def validate_name(name: str) -> str:
    if not name or not set(name) <= _NAME_CHARS or name.startswith("."):
        raise SetupError(
            f"invalid destination name {name!r}: use letters, digits, '-', '_' and '.'"
        )
    return name


def encryption_secrets(
    env: Mapping[str, str], existing: Mapping[str, str]
) -> tuple[dict[str, str], bool]:
    """The encryption password and salt to use, and whether they were generated now.

    An existing key file always wins: regenerating the password of an existing backup
    would make it unreadable. Otherwise PHOTOS_SYNC_ENCRYPTION_PASSWORD/_SALT, else random.
    """
    if existing.get(ENCRYPTION_PASSWORD):
        return {k: v for k, v in existing.items()}, False
    password = env.get("PHOTOS_SYNC_ENCRYPTION_PASSWORD", "")
    if password and len(password) < MIN_PASSWORD_LENGTH:
        raise SetupError(
            f"PHOTOS_SYNC_ENCRYPTION_PASSWORD is too short: use at least {MIN_PASSWORD_LENGTH} "
            "characters, or unset it to have a strong one generated"
        )
    generated = not password
    salt = env.get("PHOTOS_SYNC_ENCRYPTION_SALT", "") or generate_password(32)
    return {
        ENCRYPTION_PASSWORD: password or generate_password(32),
        ENCRYPTION_SALT: salt,
    }, generated


def key_file_path(settings: Settings, name: str) -> Path:
    return settings.secrets_dir / f"{name}.json"


async def setup_local(
    settings: Settings,
    store: Store,
    *,
    name: str,
    path: Path,
    env: Mapping[str, str] | None = None,
    step: Callable[[str], None] = lambda _text: None,
) -> Destination:
    """Create or update the local destination `name` at `path` and return it."""
    from photos_sync.runner import Runner  # the runner imports setup's neighbours

    validate_name(name)
    env = os.environ if env is None else env
    target = path.expanduser().resolve()
    existing_destination = await store.get_destination(name)
    if existing_destination and existing_destination.type != "local":
        raise SetupError(
            f"destination {name!r} already exists with type {existing_destination.type}; "
            "choose another name"
        )

    step("checking rclone")
    try:
        execute.find_rclone(settings.rclone_binary)
    except execute.RcloneNotFound as exc:
        raise SetupError(str(exc)) from None

    step(f"preparing {target}")
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SetupError(f"cannot create {target}: {exc.strerror}") from None
    if not os.access(target, os.W_OK):
        raise SetupError(f"{target} is not writable by this user; choose another folder")

    keyfile = key_file_path(settings, name)
    existing_secrets: dict[str, str] = {}
    if keyfile.exists():
        try:
            existing_secrets = read_key_file(keyfile)
        except SecretsError as exc:
            raise SetupError(str(exc)) from None
    secrets, generated = encryption_secrets(env, existing_secrets)
    created_keyfile = not keyfile.exists()

    step("storing the encryption keys in " + str(keyfile))
    try:
        write_key_file(keyfile, secrets)
    except (OSError, SecretsError) as exc:
        raise SetupError(f"cannot write {keyfile}: {exc}") from None

    candidate = Destination(
        id=0,
        name=name,
        type="local",
        bucket_name=None,
        remote_path=str(target),
        endpoint=None,
        region=None,
        secrets_ref=f"file:{keyfile}",
        options={},
        created_at=to_iso(utcnow()),
        last_backup_at=None,
    )
    try:
        runner = Runner(settings, store)
        remote: CryptRemote = await runner.open_remote(candidate)
        step("test-write through encryption (write, read back, delete)")
        await remote.test_write()
        root = await remote.list_root()
        if any(not entry.startswith(".photos-sync") for entry in root) and not (
            await remote.has_marker()
        ):
            raise SetupError(
                f"{target} already holds files that are not a photos-sync backup with these "
                "keys; choose an empty folder"
            )
        if not await remote.has_marker():
            step("writing the destination marker")
            await remote.write_marker({"name": name, "created_at": candidate.created_at})
    except (DestinationError, SecretsError, execute.RcloneNotFound, SetupError) as exc:
        if created_keyfile:
            keyfile.unlink(missing_ok=True)
        raise SetupError(str(exc)) from None
    except BaseException:
        if created_keyfile:
            keyfile.unlink(missing_ok=True)
        raise

    step("saving the destination")
    destination = await store.create_destination(
        name=name, type="local", remote_path=str(target), secrets_ref=f"file:{keyfile}"
    )
    log.info(
        "destination_saved", name=name, type="local", path=str(target), generated_password=generated
    )
    return destination
