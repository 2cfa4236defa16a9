"""`photos-sync backup --setup b2|s3|local`: create (or update) a destination and prove it works.

The wizard's eight steps:

1. prerequisites: rclone, and for `--secrets op` the 1Password CLI, installed and signed in;
2. look for the secrets: the 1Password item (default "Immich Backup B2"/"... S3") or the key file;
3. if there is no item, offer to create it with a generated encryption password, and wait
   while the user fills in the cloud keys (or take them from PHOTOS_SYNC_<FIELD>);
4. check the required fields, naming any that are missing;
5. configure the raw remote (b2/s3 through RCLONE_CONFIG_* only; a folder for local) and check
   the bucket is reachable and the credentials accepted (creating the bucket if asked);
6. configure the crypt overlay;
7. test-write through encryption: upload, read back decrypted, delete;
8. save the destination (a reference to its secrets, never the secrets).

If any step fails nothing is saved; a key file created by the attempt is removed (an updated
one restored). An existing encryption password is never regenerated: the backup written with
it would become unreadable. Secrets come from hidden prompts or PHOTOS_SYNC_<FIELD> variables,
never from options, and never reach a log, the DB or an error message.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from photos_sync import execute
from photos_sync.config import Settings
from photos_sync.destinations import (
    ENCRYPTION_PASSWORD,
    ENCRYPTION_SALT,
    DestinationError,
    bucket_problem,
    build_remotes,
    destination_type,
    explain_error,
    item_fields,
    op_ref,
    parse_op_locator,
    parse_secrets_ref,
    required_secret_fields,
    s3_provider,
)
from photos_sync.keyfile import SecretsError, generate_password, read_key_file, write_key_file
from photos_sync.logs import get_logger
from photos_sync.rclone_args import remote_env
from photos_sync.redact import redact
from photos_sync.remote import CryptRemote
from photos_sync.store import Destination, Store, to_iso, utcnow

log = get_logger("photos_sync.setup")

_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
MIN_PASSWORD_LENGTH = 12
DEFAULT_VAULT = "Private"
STEPS = 8
#: The Immich API key's field (1Password item, key file); PHOTOS_SYNC_IMMICH_API_KEY at setup.
IMMICH_API_KEY = "immich_api_key"
#: Fields whose values are secret (prompted hidden, stored concealed in 1Password).
SECRET_FIELDS = frozenset(
    {"application_key", "secret_access_key", ENCRYPTION_PASSWORD, ENCRYPTION_SALT, IMMICH_API_KEY}
)


class SetupError(RuntimeError):
    """Setup could not finish; nothing was saved."""


class SetupUI(Protocol):
    """How the wizard talks to a person (or to nobody, with --yes)."""

    #: False when nobody can answer: every question takes its default or fails.
    interactive: bool

    def step(self, number: int, text: str) -> None: ...

    def info(self, text: str) -> None: ...

    def confirm(self, question: str, default: bool = True) -> bool: ...

    def ask(self, question: str, *, secret: bool = False, default: str | None = None) -> str: ...

    def pause(self, text: str) -> None: ...


class StepUI:
    """Non-interactive UI: reports steps through a callback; questions take `assume_yes`
    (--yes) or, without it, fail saying so."""

    interactive = False

    def __init__(
        self, report: Callable[[str], None] = lambda _text: None, *, assume_yes: bool = True
    ) -> None:
        self._report = report
        self._assume_yes = assume_yes

    def step(self, number: int, text: str) -> None:
        self._report(text)

    def info(self, text: str) -> None:
        self._report(text)

    def confirm(self, question: str, default: bool = True) -> bool:
        if self._assume_yes:
            return True
        raise SetupError(f"{question} needs an answer: run setup in a terminal, or add --yes")

    def ask(self, question: str, *, secret: bool = False, default: str | None = None) -> str:
        raise SetupError(f"no answer for {question!r} without a terminal")

    def pause(self, text: str) -> None:
        return None


@dataclass
class SetupRequest:
    kind: str
    name: str
    path: Path | None = None  # local: the folder; b2/s3: optional folder inside the bucket
    bucket: str | None = None
    endpoint: str | None = None
    region: str | None = None
    secrets: str | None = None  # "op" or "file"; None: op for b2/s3 when installed
    item: str | None = None
    vault: str | None = None
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))


def validate_name(name: str) -> str:
    if not name or not set(name) <= _NAME_CHARS or name.startswith("."):
        raise SetupError(
            f"invalid destination name {name!r}: use letters, digits, '-', '_' and '.'"
        )
    return name


def env_name(field_name: str) -> str:
    """The variable that supplies a field at setup: PHOTOS_SYNC_SECRET_ACCESS_KEY, ..."""
    return f"PHOTOS_SYNC_{field_name.upper()}"


def _check_password(password: str, source: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise SetupError(
            f"{source} is too short: use at least {MIN_PASSWORD_LENGTH} characters, or leave it "
            "unset to have a strong one generated"
        )


def encryption_secrets(
    env: Mapping[str, str], existing: Mapping[str, str]
) -> tuple[dict[str, str], bool]:
    """The encryption password and salt to use, and whether they were generated now.

    Existing secrets always win: regenerating the password of an existing backup
    would make it unreadable. Otherwise PHOTOS_SYNC_ENCRYPTION_PASSWORD/_SALT, else random.
    """
    if existing.get(ENCRYPTION_PASSWORD):
        return {k: v for k, v in existing.items()}, False
    password = env.get(env_name(ENCRYPTION_PASSWORD), "")
    if password:
        _check_password(password, env_name(ENCRYPTION_PASSWORD))
    generated = not password
    salt = env.get(env_name(ENCRYPTION_SALT), "") or generate_password(32)
    return {
        ENCRYPTION_PASSWORD: password or generate_password(32),
        ENCRYPTION_SALT: salt,
    }, generated


def key_file_path(settings: Settings, name: str) -> Path:
    return settings.secrets_dir / f"{name}.json"


# -- the wizard --------------------------------------------------------------------------------


class _Wizard:
    def __init__(self, settings: Settings, store: Store, request: SetupRequest, ui: SetupUI):
        self.settings = settings
        self.store = store
        self.request = request
        self.ui = ui
        self.env = request.env
        self.kind = destination_type(request.kind)
        self.binary = ""
        self.existing: Destination | None = None
        self.existing_secrets: dict[str, str] = {}
        self.secrets: dict[str, str] = {}
        self.secrets_ref = ""
        self.generated = False
        self._keyfile_backup: dict[str, str] | None = None
        #: True once PHOTOS_SYNC_IMMICH_API_KEY went into a new 1Password item
        self.immich_key_stored = False
        self._keyfile_created: Path | None = None

    @property
    def store_kind(self) -> str:
        assert self.request.secrets is not None
        return self.request.secrets

    def _secret_values(self) -> list[str]:
        return [v for k, v in self.secrets.items() if k in SECRET_FIELDS or k in _CRED_FIELDS]

    # step 1

    async def prerequisites(self) -> None:
        self.ui.step(1, "checking prerequisites")
        validate_name(self.request.name)
        if self.request.secrets not in (None, "op", "file"):
            raise SetupError(f"--secrets {self.request.secrets!r} is unknown: use op or file")
        self.existing = await self.store.get_destination(self.request.name)
        if self.existing is not None:
            if self.existing.type != self.kind.type_name:
                raise SetupError(
                    f"destination {self.request.name!r} already exists with type "
                    f"{self.existing.type}; choose another name"
                )
            if not self.ui.confirm(
                f"Destination {self.request.name!r} exists. Update it? (its encryption password "
                "is kept)"
            ):
                raise SetupError("setup cancelled: nothing was changed")
        try:
            self.binary = execute.find_rclone(self.settings.rclone_binary)
        except execute.RcloneNotFound as exc:
            raise SetupError(str(exc)) from None
        self.ui.info(f"rclone: {self.binary}")
        if self.request.secrets is None:
            self.request.secrets = self._default_store()
        if self.store_kind == "op":
            from photos_sync.onepassword import OnePassword

            op = OnePassword.find()
            version = await op.version()
            account = await op.account()
            who = account.email or account.url or account.user_type
            self.ui.info(f"1Password CLI {version}, signed in ({who})")

    def _default_store(self) -> str:
        if self.kind.type_name == "local":
            return "file"
        if self.existing is not None:
            return parse_secrets_ref(self.existing.secrets_ref)[0]
        from photos_sync.onepassword import OnePasswordError, find_op

        try:
            find_op(self.env)
        except OnePasswordError:
            self.ui.info("1Password CLI not found: the keys go to a local key file")
            return "file"
        return "op"

    async def _existing_secrets(self) -> dict[str, str]:
        """The secrets the destination has today (to keep its encryption password)."""
        if self.existing is None:
            return {}
        from photos_sync.secrets_io import load_secrets

        try:
            return await load_secrets(self.existing)
        except (SecretsError, DestinationError) as exc:
            raise SetupError(
                f"destination {self.existing.name!r} exists but its secrets cannot be read "
                f"({exc}); fix that first, so its encryption password is not lost"
            ) from None

    # steps 2-4: secrets

    def _offered(self, name: str) -> str:
        """A value supplied for field `name` by an option or PHOTOS_SYNC_<FIELD>."""
        if name == "bucket_name" and self.request.bucket:
            return self.request.bucket
        if name == "endpoint" and self.request.endpoint:
            return self.request.endpoint
        return self.env.get(env_name(name), "")

    async def op_secrets(self) -> None:
        from photos_sync.onepassword import NewField, OnePassword, OpMissingFields

        op = OnePassword.find()
        vault = self.request.vault or DEFAULT_VAULT
        title = self.request.item or self.kind.default_item_title
        if self.existing is not None and not (self.request.item or self.request.vault):
            store, locator = parse_secrets_ref(self.existing.secrets_ref)
            if store == "op":
                vault, title = parse_op_locator(locator)
        self.secrets_ref = op_ref(vault, title)
        self.ui.step(2, f'looking for 1Password item "{title}" in vault "{vault}"')
        item = await op.find_item(title, vault)
        if item is None:
            self.ui.step(3, f'no item "{title}" in vault "{vault}"')
            if not self.ui.confirm(
                f'Create the 1Password item "{title}" in vault "{vault}" with a generated '
                "encryption password?"
            ):
                raise SetupError(
                    f'setup cancelled: create the item "{title}" in vault "{vault}" yourself '
                    f"(fields: {', '.join(item_fields(self.kind.type_name))}) or use --secrets "
                    "file"
                )
            keep = await self._existing_secrets()
            encryption, self.generated = encryption_secrets(self.env, keep)
            values = {name: self._offered(name) for name in item_fields(self.kind.type_name)}
            values.update(encryption)
            fields = [
                NewField(name, values.get(name, ""), name in SECRET_FIELDS)
                for name in (*item_fields(self.kind.type_name), ENCRYPTION_SALT)
            ]
            immich_key = self.env.get(env_name(IMMICH_API_KEY), "").strip()
            if immich_key:  # the Immich API key (#9) joins the new item
                fields.append(NewField(IMMICH_API_KEY, immich_key, True))
                self.immich_key_stored = True
            await op.create_item(
                title,
                vault,
                fields,
                notes=(
                    f"photos-sync destination {self.request.name!r} ({self.kind.type_name}). "
                    "The encryption password decrypts the backup: never change or delete it."
                ),
            )
            self.ui.info(
                f'created 1Password item "{title}" in vault "{vault}"'
                + (" with a generated encryption password" if self.generated else "")
            )
        else:
            self.ui.step(3, f'found 1Password item "{title}" in vault "{vault}"')
        required = self._required()
        while True:
            self.ui.step(4, "checking the item's fields")
            try:
                self.secrets = await op.read_fields(title, vault, required)
                break
            except OpMissingFields as exc:
                if not self.ui.interactive:
                    raise
                self.ui.info(str(exc))
                if not self.ui.confirm(
                    f"Fill in {', '.join(exc.missing)} in 1Password now. Check the item again?"
                ):
                    raise
        self.secrets.pop("notesplain", None)
        _check_password(self.secrets[ENCRYPTION_PASSWORD], f'encryption_password in "{title}"')

    def _required(self) -> list[str]:
        required = list(required_secret_fields(self.kind.type_name))
        if "bucket_name" in self.kind.location_fields and not self.request.bucket:
            required.insert(len(self.kind.secret_fields), "bucket_name")
        return required

    async def file_secrets(self) -> None:
        keyfile = key_file_path(self.settings, self.request.name)
        self.secrets_ref = f"file:{keyfile}"
        self.ui.step(2, f"looking for the key file {keyfile}")
        existing: dict[str, str] = {}
        if keyfile.exists():
            try:
                existing = read_key_file(keyfile)
            except SecretsError as exc:
                raise SetupError(str(exc)) from None
            self._keyfile_backup = dict(existing)
        elif self.existing is not None:
            existing = await self._existing_secrets()
        self.ui.step(3, "gathering the keys")
        values: dict[str, str] = {}
        for name in self.kind.secret_fields:
            value = self.env.get(env_name(name), "") or existing.get(name, "")
            if not value:
                if not self.ui.interactive:
                    raise SetupError(
                        f"{name} is missing: set {env_name(name)} in the environment (secrets "
                        "are never taken from options)"
                    )
                value = self.ui.ask(name.replace("_", " "), secret=name in SECRET_FIELDS)
            values[name] = value.strip()
        for name in self.kind.location_fields:
            value = self._offered(name) or existing.get(name, "")
            if value:
                values[name] = value
        encryption, self.generated = encryption_secrets(self.env, existing)
        if (
            self.generated
            and self.ui.interactive
            and not self.env.get(env_name(ENCRYPTION_PASSWORD))
            and not self.ui.confirm("Generate a strong encryption password (recommended)?")
        ):
            password = self.ui.ask("encryption password", secret=True)
            _check_password(password, "the encryption password")
            if self.ui.ask("encryption password (again)", secret=True) != password:
                raise SetupError("the two encryption passwords differ: nothing was saved")
            encryption[ENCRYPTION_PASSWORD] = password
            self.generated = False
        values.update(encryption)
        if existing.get(IMMICH_API_KEY):  # keep an Immich API key added by hand (#9)
            values[IMMICH_API_KEY] = existing[IMMICH_API_KEY]
        self.secrets = values
        self.ui.step(4, "checking the required fields")
        missing = [f for f in required_secret_fields(self.kind.type_name) if not values.get(f)]
        if missing:
            raise SetupError(f"missing {', '.join(missing)}: nothing was saved")
        _check_password(values[ENCRYPTION_PASSWORD], "the encryption password")
        created = not keyfile.exists()
        try:
            write_key_file(keyfile, values)
        except (OSError, SecretsError) as exc:
            raise SetupError(f"cannot write {keyfile}: {exc}") from None
        if created:
            self._keyfile_created = keyfile
        self.ui.info(f"keys stored in {keyfile} (mode 0600)")

    def store_immich_key(self) -> None:
        """PHOTOS_SYNC_IMMICH_API_KEY, unless a new 1Password item took it: secrets/immich.json."""
        key = self.env.get(env_name(IMMICH_API_KEY), "").strip()
        if not key or self.immich_key_stored:
            if key:
                self.ui.info(f"Immich API key stored in the 1Password item ({IMMICH_API_KEY})")
            return
        from photos_sync.immich import store_api_key

        try:
            path = store_api_key(self.settings, key)
        except (OSError, SecretsError) as exc:
            self.ui.info(f"the Immich API key was not stored: {exc}")
            return
        self.ui.info(f"Immich API key stored in {path} (mode 0600)")

    def rollback(self) -> None:
        if self._keyfile_created is not None:
            self._keyfile_created.unlink(missing_ok=True)
        elif self._keyfile_backup is not None:
            keyfile = key_file_path(self.settings, self.request.name)
            write_key_file(keyfile, self._keyfile_backup)

    # step 5-7

    def candidate(self) -> Destination:
        request = self.request
        options: dict[str, Any] = {}
        bucket = endpoint = region = None
        remote_path: str | None = None
        if self.kind.type_name == "local":
            if request.path is None:
                raise SetupError("--setup local needs --path DIR")
            remote_path = str(request.path.expanduser().resolve())
        else:
            bucket = request.bucket or self.secrets.get("bucket_name") or None
            if not bucket:
                raise SetupError(
                    f"no bucket: pass --bucket, or fill bucket_name in the {self.store_name()}"
                )
            problem = bucket_problem(self.kind.type_name, bucket)
            if problem:
                raise SetupError(problem)
            endpoint = request.endpoint or self.secrets.get("endpoint") or None
            region = request.region or self.secrets.get("region") or None
            remote_path = str(request.path).strip("/") if request.path else None
            if self.kind.type_name == "s3":
                options["provider"] = s3_provider(endpoint)
        return Destination(
            id=0,
            name=request.name,
            type=self.kind.type_name,
            bucket_name=bucket,
            remote_path=remote_path or None,
            endpoint=endpoint,
            region=region,
            secrets_ref=self.secrets_ref,
            options=options,
            created_at=to_iso(utcnow()),
            last_backup_at=None,
        )

    def store_name(self) -> str:
        return "1Password item" if self.store_kind == "op" else "key file"

    async def open_remote(self, destination: Destination) -> CryptRemote:
        """The raw remote and the crypt overlay over it, defined in rclone's environment."""
        try:
            password = await execute.obscure(self.binary, self.secrets[ENCRYPTION_PASSWORD])
            salt_plain = self.secrets.get(ENCRYPTION_SALT)
            salt = await execute.obscure(self.binary, salt_plain) if salt_plain else None
        except (RuntimeError, OSError) as exc:
            raise SetupError(
                f"rclone config failed ({exc}): run `{self.binary} version` to check the "
                "binary, or set RCLONE_BINARY to a working rclone"
            ) from None
        remotes = build_remotes(destination, self.secrets, password, salt)
        hidden = (*self._secret_values(), password, *([salt] if salt else []))
        return CryptRemote(self.binary, remote_env(remotes), hidden, destination.name)

    async def configure_storage(self, destination: Destination, remote: CryptRemote) -> None:
        if self.kind.type_name == "local":
            target = Path(destination.remote_path or "")
            self.ui.step(5, f"preparing the folder {target}")
            try:
                target.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise SetupError(f"cannot create {target}: {exc.strerror}") from None
            if not os.access(target, os.W_OK):
                raise SetupError(f"{target} is not writable by this user; choose another folder")
            return
        description = self.kind.describe(destination)
        self.ui.step(5, f"configuring the {self.kind.type_name} remote: {description}")
        bucket = destination.bucket_name or ""
        probe = await remote.probe(f"psbase:{bucket}")
        if probe.ok:
            return
        if not probe.missing:
            raise SetupError(
                f"destination {destination.name!r}: cannot reach bucket {bucket!r}: "
                f"{explain_error(self.kind.type_name, probe.message)}"
            )
        if not self.ui.confirm(f"Bucket {bucket!r} does not exist. Create it?"):
            raise SetupError(f"bucket {bucket!r} does not exist: create it, then run setup again")
        made = await remote.probe(f"psbase:{bucket}", create=True)
        if not made.ok:
            raise SetupError(
                f"cannot create bucket {bucket!r}: "
                f"{explain_error(self.kind.type_name, made.message)}; create it in your "
                "provider's console"
            )
        self.ui.info(f"created bucket {bucket!r}")

    async def test_write(self, destination: Destination, remote: CryptRemote) -> None:
        self.ui.step(7, "test-write through encryption (upload, read back decrypted, delete)")
        await remote.test_write()
        root = await remote.list_root()
        ours = await remote.has_marker()
        if not ours:
            raw = await remote.list_underlying(self.kind.underlying_path(destination))
            foreign = [e for e in raw if e and not e.startswith(".photos-sync")]
            if foreign or any(not e.startswith(".photos-sync") for e in root):
                raise SetupError(
                    f"{self.kind.describe(destination)} already holds files that are not a "
                    "photos-sync backup with these keys; choose an empty folder or bucket path"
                )
            await remote.write_marker(
                {"name": destination.name, "created_at": destination.created_at}
            )

    async def run(self) -> Destination:
        try:
            await self.prerequisites()
        except (DestinationError, SecretsError) as exc:
            raise SetupError(str(exc)) from None
        try:
            if self.store_kind == "op":
                await self.op_secrets()
            else:
                await self.file_secrets()
            destination = self.candidate()
            remote = await self.open_remote(destination)
            await self.configure_storage(destination, remote)
            self.ui.step(6, "configuring the crypt overlay (names and contents encrypted)")
            await self.test_write(destination, remote)
        except (DestinationError, SecretsError, execute.RcloneNotFound) as exc:
            self.rollback()
            raise SetupError(redact(str(exc), self._secret_values())) from None
        except BaseException:
            self.rollback()
            raise
        self.ui.step(8, "saving the destination")
        saved = await self.store.create_destination(
            name=destination.name,
            type=destination.type,
            remote_path=destination.remote_path,
            bucket_name=destination.bucket_name,
            endpoint=destination.endpoint,
            region=destination.region,
            secrets_ref=self.secrets_ref,
            options=destination.options,
        )
        self.store_immich_key()
        log.info(
            "destination_saved",
            name=saved.name,
            type=saved.type,
            where=self.kind.describe(saved),
            secrets=self.store_kind,
            generated_password=self.generated,
        )
        return saved


_CRED_FIELDS = frozenset({"application_key_id", "access_key_id"})


async def setup_destination(
    settings: Settings, store: Store, request: SetupRequest, ui: SetupUI | None = None
) -> Destination:
    """Run the wizard for `request` and return the saved destination; SetupError if not."""
    return await _Wizard(settings, store, request, ui or StepUI()).run()


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
    request = SetupRequest(
        kind="local",
        name=name,
        path=path,
        secrets="file",
        env=dict(os.environ if env is None else env),
    )
    return await setup_destination(settings, store, request, StepUI(step))
