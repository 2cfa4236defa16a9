"""`photos-sync backup --setup b2|s3|local`: create (or update) a destination and prove it works.

The wizard asks first, proves second and saves last:

1. prerequisites: rclone; then, at a terminal, every value the destination needs that no
   option gave, in this order: name, bucket, endpoint and region (S3), the folder inside the
   bucket (local: the folder), where the secrets live (op or file) and, for 1Password, the
   vault (`op vault list`: the only one is used, several are offered). Each answer is checked
   when typed and asked again with a one-line reason, so no mistake that could be caught here
   surfaces after the keys were typed;
2. look for the secrets: the 1Password item (default "Immich Backup B2"/"... S3") or key file;
3. gather what is missing: the keys (hidden input at a terminal, else PHOTOS_SYNC_<FIELD>) and
   the encryption password (generated unless the person types one, twice);
4. check the required fields, naming any that are missing;
5. configure the raw remote (b2/s3 through RCLONE_CONFIG_* only; a folder for local) and check
   the bucket is reachable and the credentials accepted (creating the bucket if asked); with
   --append-only (#17), prove the storage keeps what is written (S3: versioning on, Object Lock
   seen on a probe object) and record how uploads are locked in the destination's options;
6. configure the crypt overlay;
7. test-write through encryption: upload, read back decrypted, delete;
8. save: the key file or the new 1Password item, then the destination (a reference to its
   secrets, never the secrets). Ctrl-C here is held until the save is complete.

Until step 8 the secrets live only in memory, so a failure or Ctrl-C (SetupInterrupted) at
any earlier point leaves no key file, no 1Password item and no destination row. If step 8
fails, what it wrote is removed (an updated key file restored). One exception is kept from
the scripted (--yes) mode: a new 1Password item whose keys were not supplied is created
anyway, as a form for the user to fill in, and setup stops naming the empty fields.

An existing encryption password is never regenerated: the backup written with it would
become unreadable. Secrets come from hidden prompts or PHOTOS_SYNC_<FIELD> variables, never
from options, and never reach a log, the DB or an error message.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from photos_sync.cloud.b2_account import require_append_only_key
from photos_sync.core.append_only import (
    APPEND_ONLY,
    LOCK_PROBE,
    OBJECT_LOCK,
    PER_OBJECT,
    PER_OBJECT_MODE,
    ObjectLock,
    bucket_default_lock,
    default_lock_days,
    is_append_only,
    lock_missing,
    seen_lock,
    versioning_problem,
)
from photos_sync.core.config import ConfigError, Settings
from photos_sync.core.destinations import (
    ENCRYPTION_PASSWORD,
    ENCRYPTION_SALT,
    DestinationError,
    bucket_problem,
    destination_type,
    explain_error,
    item_fields,
    op_ref,
    parse_op_locator,
    parse_secrets_ref,
    required_secret_fields,
    s3_provider,
)
from photos_sync.core.records import Destination, to_iso, utcnow
from photos_sync.core.redact import redact
from photos_sync.credentials.keyfile import (
    SecretsError,
    generate_password,
    read_key_file,
    write_key_file,
)
from photos_sync.engine.destination import RcloneSecrets
from photos_sync.rclone.remote import CryptRemote
from photos_sync.storage.store import Store
from photos_sync.system import execute
from photos_sync.system.logs import get_logger

if TYPE_CHECKING:
    from photos_sync.credentials.onepassword import NewField, OnePassword

log = get_logger("photos_sync.engine.setup")

_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
MIN_PASSWORD_LENGTH = 12
#: How many numbered steps the wizard announces ("[n/STEPS] ..." at a terminal).
STEPS = 8
#: The Immich API key's field (1Password item, key file); PHOTOS_SYNC_IMMICH_API_KEY at setup.
IMMICH_API_KEY = "immich_api_key"
#: Fields whose values are secret (prompted hidden, stored concealed in 1Password).
SECRET_FIELDS = frozenset(
    {"application_key", "secret_access_key", ENCRYPTION_PASSWORD, ENCRYPTION_SALT, IMMICH_API_KEY}
)
#: What each key is called where the person copies it from (B2 console, S3 provider).
KEY_LABELS = {
    "application_key_id": "B2 keyID",
    "application_key": "B2 applicationKey",
    "access_key_id": "S3 access key ID",
    "secret_access_key": "S3 secret access key",
}
AWS_DEFAULT_REGION = "us-east-1"


class SetupError(RuntimeError):
    """Setup could not finish; nothing was saved."""


class SetupInterrupted(Exception):
    """Ctrl-C or end of input at a question (or during the checks): the wizard stopped at
    once and nothing was saved."""


class SetupUI(Protocol):
    """How the wizard talks to a person (or to nobody, with --yes).

    At a terminal, `ask` and `confirm` raise SetupInterrupted on Ctrl-C or end of input.
    """

    #: False when nobody can answer: every question takes its default or fails.
    interactive: bool

    def step(self, number: int, text: str) -> None: ...

    def info(self, text: str) -> None: ...

    def warn(self, text: str) -> None:
        """Why an answer was not accepted (one line); the question is asked again."""
        ...

    def confirm(self, question: str, default: bool = True) -> bool: ...

    def ask(self, question: str, *, secret: bool = False, default: str | None = None) -> str:
        """The answer as typed ("" for an empty line when there is no default)."""
        ...


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

    def warn(self, text: str) -> None:
        self._report(text)

    def confirm(self, question: str, default: bool = True) -> bool:
        if self._assume_yes:
            return True
        raise SetupError(f"{question} needs an answer: run setup in a terminal, or add --yes")

    def ask(self, question: str, *, secret: bool = False, default: str | None = None) -> str:
        raise SetupError(f"no answer for {question!r} without a terminal")


@dataclass
class SetupRequest:
    kind: str
    name: str  # "" at a terminal: asked
    path: Path | None = None  # local: the folder; b2/s3: optional folder inside the bucket
    bucket: str | None = None
    endpoint: str | None = None
    region: str | None = None
    secrets: str | None = None  # "op" or "file"; None: asked at a terminal, else op if installed
    item: str | None = None
    vault: str | None = None  # None: the only vault, else chosen (see onepassword.default_vault)
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    #: --append-only (#17): a destination its own keys cannot destroy, validated before saving
    append_only: bool = False


@dataclass(frozen=True)
class SetupOutcome:
    """What a finished setup did, for its closing summary."""

    destination: Destination
    #: Where the secrets are, for people: 'key file /x/secrets/nas.json', '1Password item ...'.
    secrets_where: str
    #: What this run created besides the destination: the bucket, the item or key file.
    created: tuple[str, ...]
    generated_password: bool
    updated: bool  # the destination existed before

    def next_command(self, immich_path_known: bool) -> str:
        """The command to run next: the first backup to this destination."""
        run = f"photos-sync backup --to {self.destination.name}"
        if immich_path_known:
            return run
        return f"BACKUP_IMMICH_PATH=/path/to/immich/upload-location {run}"


# -- answers, checked as they are typed (pure) -------------------------------------------------


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a destination, or None."""
    if not name.strip():
        return "a destination name is needed"
    if not set(name) <= _NAME_CHARS or name.startswith("."):
        return f"invalid destination name {name!r}: use letters, digits, '-', '_' and '.'"
    return None


def validate_name(name: str) -> str:
    problem = name_problem(name)
    if problem:
        raise SetupError(problem)
    return name


def endpoint_problem(endpoint: str) -> str | None:
    """Why `endpoint` is not an S3 endpoint URL, or None ("" means AWS)."""
    value = endpoint.strip()
    if not value:
        return None
    hint = "type it as https://host or http://host:port (empty for AWS)"
    try:
        parts = urlsplit(value)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        return f"{value!r} is not a URL: {hint}"
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or not port_ok
        or any(c.isspace() for c in value)
    ):
        return f"{value!r} is not a URL: {hint}"
    if parts.query or parts.fragment or parts.path.strip("/"):
        return (
            f"{value!r} has a path or query: the endpoint is only {parts.scheme}://{parts.netloc}"
        )
    return None


_REGION = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


def region_problem(region: str, *, required: bool) -> str | None:
    """Why `region` is not a region name, or None ("" is fine unless `required`)."""
    value = region.strip()
    if not value:
        return "AWS needs a region, e.g. eu-central-1" if required else None
    if not _REGION.match(value):
        return f"invalid region {value!r}: lowercase letters, digits and '-', e.g. eu-central-1"
    return None


def bucket_folder_problem(folder: str) -> str | None:
    """Why `folder` cannot be the folder inside the bucket, or None ("" is the whole bucket)."""
    value = folder.strip().strip("/")
    if not value:
        return None
    parts = value.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return f"invalid folder {folder.strip()!r}: no '.', '..' or '//' in it"
    return None


def local_folder_problem(folder: str) -> str | None:
    """Why `folder` cannot hold a local backup, or None. It need not exist yet, but the
    nearest existing folder above it must be writable (it is created at step 5)."""
    value = folder.strip()
    if not value:
        return "a folder is needed, e.g. /mnt/nas/immich-backup"
    path = Path(value).expanduser()
    if not path.is_absolute():
        return f"{value!r} is not a full path: type it from /, e.g. /mnt/nas/immich-backup"
    if path.exists() and not path.is_dir():
        return f"{path} is a file, not a folder"
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable by this user: choose another folder"
    return None


def key_problem(value: str, label: str) -> str | None:
    """Why `value` cannot be the key called `label`, or None."""
    text = value.strip()
    if not text:
        return f"the {label} is needed"
    if any(c.isspace() for c in text):
        return f"the {label} has a space in it: paste it again"
    return None


def password_problem(password: str) -> str | None:
    if len(password) < MIN_PASSWORD_LENGTH:
        return (
            f"too short: use at least {MIN_PASSWORD_LENGTH} characters, or let photos-sync "
            "generate one"
        )
    return None


def store_problem(answer: str) -> str | None:
    return None if answer.strip().lower() in ("op", "file") else "answer op or file"


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
        self.secrets: dict[str, str] = {}
        self.secrets_ref = ""
        self.generated = False
        self.bucket_created = False
        self.op: OnePassword | None = None
        self.vault = ""
        self.title = ""
        #: a 1Password item to create at step 8 (its fields), or None
        self.new_item: list[NewField] | None = None
        #: the key file's content before this run (to restore if saving fails)
        self._keyfile_backup: dict[str, str] | None = None
        self._keyfile_created: Path | None = None
        self._item_created: tuple[str, str] | None = None  # (id, vault)
        #: True once PHOTOS_SYNC_IMMICH_API_KEY went into a new 1Password item
        self.immich_key_stored = False

    @property
    def store_kind(self) -> str:
        assert self.request.secrets is not None
        return self.request.secrets

    def _secret_values(self) -> list[str]:
        return [v for k, v in self.secrets.items() if k in SECRET_FIELDS or k in _CRED_FIELDS]

    def ask(
        self,
        question: str,
        problem: Callable[[str], str | None],
        *,
        secret: bool = False,
        default: str | None = None,
        strip: bool = True,
    ) -> str:
        """Ask until the answer passes `problem`; each refusal says why in one line."""
        while True:
            answer = self.ui.ask(question, secret=secret, default=default)
            reason = problem(answer)
            if reason is None:
                return answer.strip() if strip else answer
            self.ui.warn(reason)

    # step 1: prerequisites and the questions about the destination

    async def prerequisites(self) -> None:
        self.ui.step(1, "checking prerequisites")
        if self.request.secrets not in (None, "op", "file"):
            raise SetupError(f"--secrets {self.request.secrets!r} is unknown: use op or file")
        try:
            self.binary = execute.find_rclone(self.settings.rclone_binary)
        except execute.RcloneNotFound as exc:
            raise SetupError(str(exc)) from None
        self.ui.info(f"rclone: {self.binary}")
        await self.choose_name()
        self.choose_location()
        await self.choose_store()

    async def choose_name(self) -> None:
        kind = self.kind.type_name
        if not self.request.name:
            if not self.ui.interactive:
                raise SetupError("--setup needs --name NAME")
            while True:
                name = self.ask("Destination name", name_problem, default=kind)
                found = await self.store.get_destination(name)
                if found is None or found.type == kind:
                    break
                self.ui.warn(
                    f"a {found.type} destination named {name!r} already exists: choose another name"
                )
            self.request.name = name
        validate_name(self.request.name)
        self.existing = await self.store.get_destination(self.request.name)
        if self.existing is None:
            return
        if self.existing.type != kind:
            raise SetupError(
                f"destination {self.request.name!r} already exists with type "
                f"{self.existing.type}; choose another name"
            )
        if not self.ui.confirm(
            f"Destination {self.request.name!r} exists. Update it? (its encryption password "
            "is kept)"
        ):
            raise SetupError("setup cancelled: nothing was changed")

    def choose_location(self) -> None:
        """Bucket, endpoint, region and folder: from the options (checked), else asked at a
        terminal (defaults: an updated destination's current values)."""
        kind = self.kind.type_name
        if kind == "local":
            self._choose_local_folder()
            return
        self._choose_bucket(kind)
        if kind == "s3":
            self._choose_endpoint()
            self._choose_region()
        self._choose_bucket_folder()

    def _choose_local_folder(self) -> None:
        """A local destination's folder: --path, else asked (SetupError when it cannot be)."""
        request, before = self.request, self.existing
        if request.path is None and self.ui.interactive:
            answer = self.ask(
                "Backup folder (local disk or NAS mount)",
                local_folder_problem,
                default=before.remote_path if before else None,
            )
            request.path = Path(answer).expanduser()
        elif request.path is None:
            raise SetupError("--setup local needs --path DIR")

    def _choose_bucket(self, kind: str) -> None:
        """The bucket: --bucket (checked), else asked at a terminal."""
        request, before = self.request, self.existing
        if request.bucket is not None:
            problem = bucket_problem(kind, request.bucket)
            if problem:
                raise SetupError(problem)
        elif self.ui.interactive:
            request.bucket = self.ask(
                "Bucket name",
                lambda answer: bucket_problem(kind, answer.strip()),
                default=before.bucket_name if before else None,
            )

    def _choose_endpoint(self) -> None:
        """An S3 destination's endpoint: --endpoint (checked), else asked at a terminal
        (empty: AWS)."""
        request, before = self.request, self.existing
        if request.endpoint:
            problem = endpoint_problem(request.endpoint)
            if problem:
                raise SetupError(f"--endpoint {problem}")
        elif self.ui.interactive:
            request.endpoint = (
                self.ask(
                    "S3 endpoint URL (empty for AWS)",
                    endpoint_problem,
                    default=(before.endpoint or "") if before else "",
                ).rstrip("/")
                or None
            )

    def _choose_region(self) -> None:
        """An S3 destination's region: --region (checked), else asked at a terminal
        (required for AWS, i.e. without an endpoint)."""
        request, before = self.request, self.existing
        if request.region:
            problem = region_problem(request.region, required=False)
            if problem:
                raise SetupError(f"--region: {problem}")
        elif self.ui.interactive:
            aws = not request.endpoint
            request.region = (
                self.ask(
                    "AWS region" if aws else "Region (empty if your provider needs none)",
                    lambda answer: region_problem(answer, required=aws),
                    default=(before.region if before else None)
                    or (AWS_DEFAULT_REGION if aws else ""),
                )
                or None
            )

    def _choose_bucket_folder(self) -> None:
        """The folder inside the bucket: --path (checked), else asked at a terminal (empty:
        the whole bucket)."""
        request, before = self.request, self.existing
        if request.path is not None:
            problem = bucket_folder_problem(str(request.path))
            if problem:
                raise SetupError(f"--path: {problem}")
        elif self.ui.interactive:
            folder = self.ask(
                "Folder inside the bucket (empty for the whole bucket)",
                bucket_folder_problem,
                default=(before.remote_path or "") if before else "",
            ).strip("/")
            request.path = Path(folder) if folder else None

    async def choose_store(self) -> None:
        from photos_sync.credentials.onepassword import OnePassword, OnePasswordError, find_op

        if self.request.secrets is None:
            if self.existing is not None:
                self.request.secrets = parse_secrets_ref(self.existing.secrets_ref)[0]
            else:
                try:
                    find_op(self.env)
                    op_installed = True
                except OnePasswordError:
                    op_installed = False
                preferred = "file" if self.kind.type_name == "local" else "op"
                if not op_installed:
                    if preferred == "op":
                        self.ui.info("1Password CLI not found: the keys go to a local key file")
                    self.request.secrets = "file"
                elif self.ui.interactive:
                    self.request.secrets = self.ask(
                        "Keep the secrets in 1Password (op) or in a key file (file)?",
                        store_problem,
                        default=preferred,
                    ).lower()
                else:
                    self.request.secrets = preferred
        if self.store_kind != "op":
            return
        self.op = OnePassword.find()
        version = await self.op.version()
        account = await self.op.account()
        who = account.email or account.url or account.user_type
        self.ui.info(f"1Password CLI {version}, signed in ({who})")
        self.vault, self.title = await self.choose_vault(self.op)

    async def choose_vault(self, op: OnePassword) -> tuple[str, str]:
        """The vault and title of the destination's 1Password item."""
        from photos_sync.credentials.onepassword import default_vault

        title = self.request.item or self.kind.default_item_title
        if self.existing is not None and not (self.request.item or self.request.vault):
            store, locator = parse_secrets_ref(self.existing.secrets_ref)
            if store == "op":
                return parse_op_locator(locator)
        if self.request.vault:
            return self.request.vault, title
        vaults = await op.list_vaults()
        if not vaults:
            raise SetupError(
                "this 1Password account has no vault the CLI can see: create one in the "
                "1Password app (or grant the service account one), then run setup again"
            )
        chosen = default_vault(vaults)
        if len(vaults) == 1:
            self.ui.info(f'1Password vault "{vaults[0].name}" (the only one)')
            return vaults[0].name, title
        names = [v.name for v in vaults]
        if not self.ui.interactive:
            if chosen is None:
                raise SetupError(
                    f"several 1Password vaults ({', '.join(names)}): choose one with --vault"
                )
            self.ui.info(f'1Password vault "{chosen.name}" (the personal vault; or use --vault)')
            return chosen.name, title
        self.ui.info("1Password vaults:")
        for number, vault in enumerate(vaults, 1):
            count = "" if vault.items is None else f" ({vault.items} items)"
            self.ui.info(f"  {number}) {vault.name}{count}")

        def vault_problem(answer: str) -> str | None:
            value = answer.strip()
            if value.isdigit() and 1 <= int(value) <= len(vaults):
                return None
            if value.lower() in (n.lower() for n in names):
                return None
            return f"type a number from 1 to {len(vaults)}, or a vault's name"

        default = names.index(chosen.name) + 1 if chosen else 1
        answer = self.ask("1Password vault", vault_problem, default=str(default))
        if answer.isdigit():
            return names[int(answer) - 1], title
        return next(n for n in names if n.lower() == answer.lower()), title

    async def _existing_secrets(self) -> dict[str, str]:
        """The secrets the destination has today (to keep its encryption password)."""
        if self.existing is None:
            return {}
        from photos_sync.credentials.loader import load_secrets

        try:
            return await load_secrets(self.existing)
        except (SecretsError, DestinationError) as exc:
            raise SetupError(
                f"destination {self.existing.name!r} exists but its secrets cannot be read "
                f"({exc}); fix that first, so its encryption password is not lost"
            ) from None

    # steps 2-4: secrets, in memory only

    def _offered(self, name: str) -> str:
        """A value supplied for field `name` by an option, an answer or PHOTOS_SYNC_<FIELD>."""
        if name == "bucket_name" and self.request.bucket:
            return self.request.bucket
        if name == "endpoint" and self.request.endpoint:
            return self.request.endpoint
        return self.env.get(env_name(name), "")

    def ask_key(self, name: str) -> str:
        label = KEY_LABELS.get(name, name.replace("_", " "))
        return self.ask(
            label, lambda answer: key_problem(answer, label), secret=name in SECRET_FIELDS
        )

    def choose_encryption(self, existing: Mapping[str, str]) -> dict[str, str]:
        """The encryption password and salt (see `encryption_secrets`); at a terminal a
        new one is generated unless the person declines and types one, twice."""
        encryption, self.generated = encryption_secrets(self.env, existing)
        if not (self.generated and self.ui.interactive):
            return encryption
        if self.ui.confirm("Generate a strong encryption password (recommended)?"):
            return encryption
        while True:
            password = self.ask(
                f"Encryption password ({MIN_PASSWORD_LENGTH} characters or more)",
                password_problem,
                secret=True,
                strip=False,
            )
            if self.ui.ask("Encryption password (again)", secret=True) == password:
                break
            self.ui.warn("the two passwords differ: type it again")
        self.generated = False
        return {**encryption, ENCRYPTION_PASSWORD: password}

    async def op_secrets(self) -> None:
        from photos_sync.credentials.onepassword import NewField, OpMissingFields

        assert self.op is not None
        op, vault, title = self.op, self.vault, self.title
        self.secrets_ref = op_ref(vault, title)
        self.ui.step(2, f'looking for 1Password item "{title}" in vault "{vault}"')
        item = await op.find_item(title, vault)
        if item is not None:
            self.ui.step(3, f'found 1Password item "{title}" in vault "{vault}"')
            await self._read_item()
            return
        if self.ui.interactive:
            self.ui.step(
                3,
                f'no item "{title}" in vault "{vault}": it is created at the end with the keys '
                "typed now",
            )
        else:
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
        values = {name: self._offered(name) for name in item_fields(self.kind.type_name)}
        if self.ui.interactive:
            for name in self.kind.secret_fields:
                if not values.get(name):
                    values[name] = self.ask_key(name)
        values.update(self.choose_encryption(await self._existing_secrets()))
        fields = [
            NewField(name, values.get(name, ""), name in SECRET_FIELDS)
            for name in (*item_fields(self.kind.type_name), ENCRYPTION_SALT)
        ]
        immich_key = self.env.get(env_name(IMMICH_API_KEY), "").strip()
        if immich_key:  # the Immich API key (#9) joins the new item
            fields.append(NewField(IMMICH_API_KEY, immich_key, True))
        self.ui.step(4, "checking the required fields")
        missing = [name for name in self._required() if not values.get(name)]
        if missing:
            # Scripted without the keys: the item is made as a form to fill in, as documented.
            await op.create_item(title, vault, fields, notes=self._item_notes())
            self.ui.info(
                f'created 1Password item "{title}" in vault "{vault}"'
                + (" with a generated encryption password" if self.generated else "")
            )
            raise OpMissingFields(title, vault, missing)
        self.new_item = fields
        self.immich_key_stored = bool(immich_key)
        self.secrets = {k: v for k, v in values.items() if v}
        _check_password(self.secrets[ENCRYPTION_PASSWORD], "the encryption password")

    async def _read_item(self) -> None:
        from photos_sync.credentials.onepassword import OpMissingFields

        assert self.op is not None
        required = self._required()
        while True:
            self.ui.step(4, "checking the item's fields")
            try:
                self.secrets = await self.op.read_fields(self.title, self.vault, required)
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
        _check_password(self.secrets[ENCRYPTION_PASSWORD], f'encryption_password in "{self.title}"')

    def _item_notes(self) -> str:
        return (
            f"photos-sync destination {self.request.name!r} ({self.kind.type_name}). "
            "The encryption password decrypts the backup: never change or delete it."
        )

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
                value = self.ask_key(name)
            values[name] = value.strip()
        for name in self.kind.location_fields:
            value = self._offered(name) or existing.get(name, "")
            if value:
                values[name] = value
        values.update(self.choose_encryption(existing))
        if existing.get(IMMICH_API_KEY):  # keep an Immich API key added by hand (#9)
            values[IMMICH_API_KEY] = existing[IMMICH_API_KEY]
        self.secrets = values
        self.ui.step(4, "checking the required fields")
        missing = [f for f in required_secret_fields(self.kind.type_name) if not values.get(f)]
        if missing:
            raise SetupError(f"missing {', '.join(missing)}: nothing was saved")
        _check_password(values[ENCRYPTION_PASSWORD], "the encryption password")

    # steps 5-7

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
        if request.append_only:
            options[APPEND_ONLY] = True
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

    def secrets_where(self) -> str:
        if self.store_kind == "op":
            return f'1Password item "{self.title}" in vault "{self.vault}"'
        return f"key file {key_file_path(self.settings, self.request.name)}"

    async def open_remote(self, destination: Destination) -> CryptRemote:
        """The raw remote and the crypt overlay over it, defined in rclone's environment."""
        try:
            prepared = await RcloneSecrets.prepare(self.binary, self.secrets)
        except (RuntimeError, OSError) as exc:
            raise SetupError(
                f"rclone config failed ({exc}): run `{self.binary} version` to check the "
                "binary, or set RCLONE_BINARY to a working rclone"
            ) from None
        return prepared.remote(self.binary, destination, self._secret_values())

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
        kind = self.kind.type_name
        description = self.kind.describe(destination)
        self.ui.step(5, f"configuring the {kind} remote: {description}")
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
        made = await remote.probe(
            f"psbase:{bucket}", create=True, object_lock=self.append_only and kind == "s3"
        )
        if not made.ok:
            raise SetupError(
                f"cannot create bucket {bucket!r}: "
                f"{explain_error(self.kind.type_name, made.message)}; create it in your "
                "provider's console"
            )
        self.bucket_created = True
        self.ui.info(f"created bucket {bucket!r}")

    @property
    def append_only(self) -> bool:
        """--append-only, or an update of a destination that is append-only already (updating
        its keys never drops the protection silently)."""
        return self.request.append_only or (
            self.existing is not None and is_append_only(self.existing)
        )

    async def validate_append_only(
        self, destination: Destination, remote: CryptRemote
    ) -> Destination:
        """Prove the storage keeps what this destination writes, and return the destination
        with its append-only options (SetupError, nothing saved, when it does not). B2's key
        is judged earlier, in `run`, before anything is configured."""
        if self.kind.type_name == "s3":
            return await self._s3_append_only(destination, remote)
        raise SetupError(
            f"--append-only needs a bucket (b2 or s3): a {self.kind.type_name} folder can "
            "always be deleted by the host that writes it"
        )

    async def _s3_append_only(self, destination: Destination, remote: CryptRemote) -> Destination:
        """Versioning must be Enabled and Object Lock must lock what is written: a probe
        object written without a lock shows the bucket's default retention; without one, a
        probe with a one-day lock shows that per-object locks work (photos-sync then locks
        every upload for BACKUP_OBJECT_LOCK_DAYS)."""
        from photos_sync.rclone import object_lock as s3lock

        bucket = destination.bucket_name or ""
        self.ui.info(f"checking versioning and Object Lock on bucket {bucket!r} (--append-only)")
        status = await s3lock.bucket_versioning(remote, bucket)
        problem = versioning_problem(bucket, status)
        if problem:
            raise SetupError(problem)
        folder = self.kind.underlying_path(destination)
        written = utcnow()
        lock = bucket_default_lock(await s3lock.write_probe(remote, folder, lock=False), written)
        if lock is None:
            try:
                metadata = await s3lock.write_probe(remote, folder, lock=True)
            except DestinationError as exc:
                raise SetupError(lock_missing(bucket, str(exc))) from None
            if seen_lock(metadata) is None:
                raise SetupError(lock_missing(bucket))
            try:
                days = default_lock_days(
                    self.settings.keep_deleted_days, self.settings.object_lock_days
                )
            except ConfigError as exc:
                raise SetupError(str(exc)) from None
            lock = ObjectLock(PER_OBJECT_MODE, days, PER_OBJECT)
        removed = await s3lock.delete_probe(remote, folder)
        self.ui.info(
            f"bucket {bucket!r}: versioning on, {lock.describe()}; the probe object "
            f"{LOCK_PROBE} was {'deleted' if removed else 'left'}, its locked version stays "
            "until its retention ends"
        )
        options = {**destination.options, APPEND_ONLY: True, OBJECT_LOCK: lock.as_option()}
        return replace(destination, options=options)

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

    # step 8

    async def save(self, destination: Destination) -> SetupOutcome:
        """Step 8, held to the end even through Ctrl-C: a key file or 1Password item without
        its destination (or the reverse) would be worse than either finished or undone."""
        saving = asyncio.ensure_future(self._save(destination))
        told = False
        while True:
            try:
                return await asyncio.shield(saving)
            except asyncio.CancelledError:
                if saving.cancelled():
                    raise
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
                if not told:
                    self.ui.info("interrupted while saving: finishing the save first")
                    told = True

    async def _save(self, destination: Destination) -> SetupOutcome:
        self.ui.step(8, "saving the destination")
        created: list[str] = []
        if self.bucket_created:
            created.append(f"bucket {destination.bucket_name}")
        try:
            if self.store_kind == "file":
                keyfile = key_file_path(self.settings, self.request.name)
                is_new = not keyfile.exists()
                write_key_file(keyfile, self.secrets)
                if is_new:
                    self._keyfile_created = keyfile
                    created.append(f"key file {keyfile} (mode 0600)")
                self.ui.info(f"keys stored in {keyfile} (mode 0600)")
            elif self.new_item is not None:
                assert self.op is not None
                item = await self.op.create_item(
                    self.title, self.vault, self.new_item, notes=self._item_notes()
                )
                self._item_created = (item.id, self.vault)
                created.append(f'1Password item "{self.title}" in vault "{self.vault}"')
                self.ui.info(
                    f'created 1Password item "{self.title}" in vault "{self.vault}"'
                    + (" with a generated encryption password" if self.generated else "")
                )
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
        except BaseException as exc:
            await self.rollback()
            if isinstance(exc, (SecretsError, DestinationError, OSError)):
                raise SetupError(
                    f"saving failed ({redact(str(exc), self._secret_values())}); nothing was saved"
                ) from None
            raise
        self.store_immich_key()
        log.info(
            "destination_saved",
            name=saved.name,
            type=saved.type,
            where=self.kind.describe(saved),
            secrets=self.store_kind,
            generated_password=self.generated,
        )
        return SetupOutcome(
            destination=saved,
            secrets_where=self.secrets_where(),
            created=tuple(created),
            generated_password=self.generated,
            updated=self.existing is not None,
        )

    def store_immich_key(self) -> None:
        """PHOTOS_SYNC_IMMICH_API_KEY, unless a new 1Password item took it: secrets/immich.json."""
        key = self.env.get(env_name(IMMICH_API_KEY), "").strip()
        if not key or self.immich_key_stored:
            if key:
                self.ui.info(f"Immich API key stored in the 1Password item ({IMMICH_API_KEY})")
            return
        from photos_sync.immich.server import store_api_key

        try:
            path = store_api_key(self.settings, key)
        except (OSError, SecretsError) as exc:
            self.ui.info(f"the Immich API key was not stored: {exc}")
            return
        self.ui.info(f"Immich API key stored in {path} (mode 0600)")

    async def rollback(self) -> None:
        """Undo what step 8 wrote before it failed."""
        if self._keyfile_created is not None:
            self._keyfile_created.unlink(missing_ok=True)
        elif self._keyfile_backup is not None:
            keyfile = key_file_path(self.settings, self.request.name)
            write_key_file(keyfile, self._keyfile_backup)
        if self._item_created is not None and self.op is not None:
            from photos_sync.credentials.onepassword import OnePasswordError

            item_id, vault = self._item_created
            try:
                await self.op.delete_item(item_id, vault)
            except OnePasswordError as exc:
                self.ui.warn(f"the new 1Password item could not be removed ({exc}): delete it")

    async def run(self) -> SetupOutcome:
        try:
            await self.prerequisites()
            if self.store_kind == "op":
                await self.op_secrets()
            else:
                await self.file_secrets()
            destination = self.candidate()
            if destination.type == "b2" and self.append_only:
                # the key is judged before anything is configured: B2 says what it may do
                key = await require_append_only_key(self.secrets, destination.endpoint)
                self.ui.info(f"B2 key cannot delete files ({key.describe()}): append-only")
                destination = replace(
                    destination, options={**destination.options, APPEND_ONLY: True}
                )
            remote = await self.open_remote(destination)
            await self.configure_storage(destination, remote)
            if self.append_only and destination.type != "b2":
                destination = await self.validate_append_only(destination, remote)
                remote = await self.open_remote(destination)
            self.ui.step(6, "configuring the crypt overlay (names and contents encrypted)")
            await self.test_write(destination, remote)
        except (DestinationError, SecretsError, execute.RcloneNotFound) as exc:
            raise SetupError(redact(str(exc), self._secret_values())) from None
        return await self.save(destination)


_CRED_FIELDS = frozenset({"application_key_id", "access_key_id"})


async def run_setup(
    settings: Settings, store: Store, request: SetupRequest, ui: SetupUI | None = None
) -> SetupOutcome:
    """Run the wizard for `request`: SetupOutcome, or SetupError / SetupInterrupted with
    nothing saved."""
    return await _Wizard(settings, store, request, ui or StepUI()).run()


async def setup_destination(
    settings: Settings, store: Store, request: SetupRequest, ui: SetupUI | None = None
) -> Destination:
    """Run the wizard for `request` and return the saved destination; SetupError if not."""
    return (await run_setup(settings, store, request, ui)).destination


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
