"""The 1Password secret store, through the 1Password CLI (`op`, version 2).

Every call goes through photos_sync.system.execute. Nothing secret is ever put in an argv: items are
read as JSON from op's stdout, and created from a JSON template fed to op's stdin. Errors are
one line that says what to do; they name items, vaults and fields, never values.

Headless use (the daemon, cron): set OP_SERVICE_ACCOUNT_TOKEN in the environment; op reads it
from there and needs no sign-in. Service accounts can only see the vaults they were granted,
so a destination's reference always names its vault.

There is no fixed default vault: the built-in personal vault is "Personal" on Individual
accounts, "Employee" on Business accounts and "Private" on older Family/Team accounts, so setup
lists the vaults (`op vault list`) and picks or offers one (see `default_vault`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from photos_sync.core.redact import redact
from photos_sync.credentials.keyfile import SecretsError
from photos_sync.system import execute

SERVICE_ACCOUNT_ENV = "OP_SERVICE_ACCOUNT_TOKEN"
#: The CLI can be pointed elsewhere (tests, unusual installs); default: `op` on PATH.
OP_BINARY_ENV = "PHOTOS_SYNC_OP_BINARY"
INSTALL_HINT = "https://developer.1password.com/docs/cli/get-started/"
#: The oldest op with the v2 JSON item format this module parses.
MIN_VERSION = (2, 0, 0)

_ERROR_PREFIX = re.compile(r"^\[ERROR\]\s+\d{4}/\d{2}/\d{2}\s+\d{2}:\d{2}:\d{2}\s+")
_NOT_SIGNED_IN = (
    "not currently signed in",
    "not signed in",
    "no accounts configured",
    "session expired",
    "authorization prompt dismissed",
    "authorization timeout",
    "you need to sign in",
    # A revoked, expired or deleted service account token (or session): op answers
    # "(401) Unauthorized: You aren't authorized to perform this action."
    "(401) unauthorized",
)


class OnePasswordError(SecretsError):
    """The 1Password CLI failed; the message is one line saying what to do."""


class OpNotInstalled(OnePasswordError):
    pass


class OpNotSignedIn(OnePasswordError):
    pass


class OpItemNotFound(OnePasswordError):
    pass


class OpVaultNotFound(OnePasswordError):
    pass


class OpMissingFields(OnePasswordError):
    def __init__(self, title: str, vault: str, missing: Sequence[str]) -> None:
        self.missing = tuple(missing)
        super().__init__(
            f'1Password item "{title}" in vault "{vault}" lacks the fields '
            f"{', '.join(missing)}: add them to the item (labels exactly as written) and try "
            "again"
        )


@dataclass(frozen=True, slots=True)
class OpAccount:
    """Who op is signed in as (no secrets)."""

    url: str
    email: str
    user_type: str  # HUMAN or SERVICE_ACCOUNT


@dataclass(frozen=True, slots=True)
class OpItem:
    id: str
    title: str
    vault: str
    fields: dict[str, str]  # normalised label -> value (empty values left out)


@dataclass(frozen=True, slots=True)
class OpVault:
    """One entry of `op vault list --format json` (no secrets)."""

    id: str
    name: str
    items: int | None  # how many items it holds, when op says


#: Names of the built-in personal vault: Individual, Business, and older Family/Team accounts.
PERSONAL_VAULT_NAMES = ("Personal", "Employee", "Private")


def parse_vaults(document: object) -> list[OpVault]:
    """The vaults in `op vault list --format json` output: a list of objects with (among
    others) "id", "name" and "items"; anything else is OnePasswordError."""
    if not isinstance(document, list):
        raise OnePasswordError("the 1Password CLI printed an unexpected vault list: update it")
    vaults = []
    for entry in document:
        if not isinstance(entry, Mapping) or not entry.get("name"):
            continue
        items = entry.get("items")
        vaults.append(
            OpVault(
                id=str(entry.get("id", "")),
                name=str(entry["name"]),
                items=items if isinstance(items, int) and not isinstance(items, bool) else None,
            )
        )
    return vaults


def default_vault(vaults: Sequence[OpVault]) -> OpVault | None:
    """The vault to use when none was named: the only one, else the account's built-in
    personal vault when exactly one vault has such a name; None when that is ambiguous."""
    if len(vaults) == 1:
        return vaults[0]
    personal = [v for v in vaults if v.name in PERSONAL_VAULT_NAMES]
    return personal[0] if len(personal) == 1 else None


@dataclass(frozen=True, slots=True)
class NewField:
    label: str
    value: str
    concealed: bool


def normalise_label(label: str) -> str:
    """ "Application Key ID" -> "application_key_id"; labels are matched this way."""
    return re.sub(r"[^a-z0-9]+", "_", label.strip().lower()).strip("_")


def op_message(stderr: bytes) -> str:
    """op's error text without its "[ERROR] date time" prefix, on one line."""
    lines = [
        _ERROR_PREFIX.sub("", line).strip()
        for line in stderr.decode("utf-8", "replace").splitlines()
        if line.strip()
    ]
    return " ".join(lines)[:400] or "no error text"


def parse_item(document: Mapping[str, Any]) -> OpItem:
    """An OpItem from `op item get --format json` output (the v2 item JSON)."""
    fields: dict[str, str] = {}
    for entry in document.get("fields") or []:
        if not isinstance(entry, Mapping):
            continue
        label = normalise_label(str(entry.get("label") or entry.get("id") or ""))
        value = entry.get("value")
        if label and value not in (None, "") and label not in fields:
            fields[label] = str(value)
    vault = document.get("vault") or {}
    return OpItem(
        id=str(document.get("id", "")),
        title=str(document.get("title", "")),
        vault=str(vault.get("name", "")) if isinstance(vault, Mapping) else "",
        fields=fields,
    )


def item_template(title: str, fields: Sequence[NewField], notes: str) -> dict[str, Any]:
    """The JSON template `op item create` reads from stdin: a Secure Note with one field
    per label (concealed for secrets). Empty values leave a field for the user to fill."""
    entries: list[dict[str, Any]] = [
        {
            "id": "notesPlain",
            "type": "STRING",
            "purpose": "NOTES",
            "label": "notesPlain",
            "value": notes,
        }
    ]
    for field in fields:
        entries.append(
            {
                "id": field.label,
                "type": "CONCEALED" if field.concealed else "STRING",
                "label": field.label,
                "value": field.value,
            }
        )
    return {"title": title, "category": "SECURE_NOTE", "tags": ["photos-sync"], "fields": entries}


def parse_version(text: str) -> tuple[int, ...]:
    match = re.search(r"(\d+)\.(\d+)\.(\d+)", text)
    return tuple(int(g) for g in match.groups()) if match else ()


def find_op(environ: Mapping[str, str] | None = None) -> str:
    """Path of the op binary, or OpNotInstalled."""
    env = os.environ if environ is None else environ
    wanted = env.get(OP_BINARY_ENV, "").strip() or "op"
    found = shutil.which(wanted, path=env.get("PATH"))
    if not found:
        raise OpNotInstalled(
            f"the 1Password CLI (op) is not installed or not on PATH: install it ({INSTALL_HINT}) "
            "or use --secrets file to keep the keys in a local key file"
        )
    return found


class OnePassword:
    """A handle on the op CLI. Construct with `OnePassword.find()`."""

    def __init__(self, binary: str, *, timeout: float = 90.0) -> None:
        self.binary = binary
        self.timeout = timeout

    @classmethod
    def find(cls) -> OnePassword:
        return cls(find_op())

    def _env(self) -> dict[str, str]:
        return execute.child_env({})

    def _scrub(self, text: str) -> str:
        token = os.environ.get(SERVICE_ACCOUNT_ENV, "")
        return redact(text, [token] if token else [])

    async def _op(self, *args: str, stdin: bytes | None = None) -> execute.Completed:
        try:
            return await execute.run_captured(
                (self.binary, *args), self._env(), stdin=stdin, timeout=self.timeout
            )
        except TimeoutError:
            raise OnePasswordError(
                f"the 1Password CLI did not answer `op {args[0]} {args[1]}` within "
                f"{self.timeout:.0f} s: unlock the 1Password app, or check the network"
            ) from None
        except OSError as exc:
            raise OpNotInstalled(
                f"cannot run the 1Password CLI at {self.binary}: {exc.strerror}; reinstall it "
                f"({INSTALL_HINT})"
            ) from None

    def _signed_out(self, message: str) -> OpNotSignedIn:
        if os.environ.get(SERVICE_ACCOUNT_ENV):
            return OpNotSignedIn(
                f"1Password rejected the service account token in {SERVICE_ACCOUNT_ENV} "
                f"({self._scrub(message)}): it is revoked, expired or mistyped; create a new "
                "token and update the variable (for the installed service: "
                f"`{SERVICE_ACCOUNT_ENV}=… photos-sync daemon --install`)"
            )
        return OpNotSignedIn(
            "the 1Password CLI is not signed in: run `eval $(op signin)` (or turn on "
            "'Integrate with 1Password CLI' in the 1Password app), or set "
            f"{SERVICE_ACCOUNT_ENV} for headless use"
        )

    def _failure(self, what: str, result: execute.Completed) -> OnePasswordError:
        message = op_message(result.stderr)
        lowered = message.lower()
        if any(s in lowered for s in _NOT_SIGNED_IN) or (
            os.environ.get(SERVICE_ACCOUNT_ENV) and "service account" in lowered
        ):
            return self._signed_out(message)
        return OnePasswordError(f"1Password CLI: {what} failed: {self._scrub(message)}")

    async def version(self) -> str:
        """op's version, e.g. "2.30.0"; OnePasswordError if too old or broken."""
        result = await self._op("--version")
        text = result.stdout.decode("utf-8", "replace").strip()
        version = parse_version(text)
        if result.returncode != 0 or not version:
            raise OnePasswordError(
                f"{self.binary} --version failed: reinstall the 1Password CLI ({INSTALL_HINT})"
            )
        if version < MIN_VERSION:
            raise OnePasswordError(
                f"the 1Password CLI is version {text}; photos-sync needs 2.0 or newer: update "
                f"it ({INSTALL_HINT})"
            )
        return text

    async def account(self) -> OpAccount:
        """Who op is signed in as; OpNotSignedIn if nobody.

        `op whoami` answers without prompting; if it says no, `op account get` lets the
        1Password app's CLI integration unlock (it may show a prompt), and settles it.
        """
        result = await self._op("whoami", "--format", "json")
        if result.returncode == 0:
            data = _json_object(result.stdout)
            return OpAccount(
                str(data.get("url", "")),
                str(data.get("email", "")),
                str(data.get("user_type", "HUMAN")),
            )
        result = await self._op("account", "get", "--format", "json")
        if result.returncode == 0:
            data = _json_object(result.stdout)
            user_type = "SERVICE_ACCOUNT" if os.environ.get(SERVICE_ACCOUNT_ENV) else "HUMAN"
            return OpAccount(str(data.get("domain", "")), str(data.get("name", "")), user_type)
        message = op_message(result.stderr)
        lowered = message.lower()
        if (
            os.environ.get(SERVICE_ACCOUNT_ENV)
            or any(s in lowered for s in _NOT_SIGNED_IN)
            or "sign" in lowered
        ):
            raise self._signed_out(message)
        raise self._failure("checking the sign-in", result)

    async def list_vaults(self) -> list[OpVault]:
        """The vaults this account (or service account) can see, as op lists them."""
        result = await self._op("vault", "list", "--format", "json")
        if result.returncode != 0:
            raise self._failure("listing the vaults", result)
        try:
            document = json.loads(result.stdout or b"[]")
        except ValueError:
            raise OnePasswordError(
                "the 1Password CLI printed something that is not JSON: update it to version 2"
            ) from None
        return parse_vaults(document)

    async def find_item(self, title: str, vault: str) -> OpItem | None:
        """The item titled `title` in `vault`, or None if there is none."""
        try:
            return await self.get_item(title, vault)
        except OpItemNotFound:
            return None

    async def get_item(self, title: str, vault: str) -> OpItem:
        """The item titled `title` in `vault`; OpItemNotFound naming both if absent."""
        result = await self._op("item", "get", title, "--vault", vault, "--format", "json")
        if result.returncode != 0:
            message = op_message(result.stderr)
            lowered = message.lower()
            if "isn't a vault" in lowered or "no vault" in lowered:
                raise OpVaultNotFound(
                    f'1Password vault "{vault}" was not found (or this account cannot see it): '
                    "pass the right one with --vault"
                )
            if "isn't an item" in lowered or "not found" in lowered:
                raise OpItemNotFound(
                    f'1Password item "{title}" was not found in vault "{vault}": create it '
                    "(`photos-sync backup --setup` offers to) or name it with --item/--vault"
                )
            if "more than one item" in lowered:
                raise OnePasswordError(
                    f'several 1Password items are titled "{title}" in vault "{vault}": '
                    "rename or archive the extra ones"
                )
            raise self._failure(f'reading item "{title}" from vault "{vault}"', result)
        item = parse_item(_json_object(result.stdout))
        return OpItem(item.id, item.title or title, item.vault or vault, item.fields)

    async def read_fields(self, title: str, vault: str, required: Sequence[str]) -> dict[str, str]:
        """The item's fields; OpMissingFields naming every required one that is empty."""
        item = await self.get_item(title, vault)
        missing = [f for f in required if not item.fields.get(f)]
        if missing:
            raise OpMissingFields(title, vault, missing)
        return dict(item.fields)

    async def create_item(
        self, title: str, vault: str, fields: Sequence[NewField], notes: str = ""
    ) -> OpItem:
        """Create a Secure Note item; its JSON (with any values) goes to op on stdin."""
        template = json.dumps(item_template(title, fields, notes)).encode()
        result = await self._op(
            "item", "create", "--vault", vault, "--format", "json", "-", stdin=template
        )
        if result.returncode != 0:
            raise self._failure(f'creating item "{title}" in vault "{vault}"', result)
        item = parse_item(_json_object(result.stdout))
        return OpItem(item.id, item.title or title, item.vault or vault, item.fields)

    async def delete_item(self, item_id: str, vault: str) -> None:
        """Delete the item with id `item_id` (setup removes only an item it just created)."""
        result = await self._op("item", "delete", item_id, "--vault", vault)
        if result.returncode != 0:
            raise self._failure(f'deleting item {item_id} from vault "{vault}"', result)


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw or b"{}")
    except ValueError:
        raise OnePasswordError(
            "the 1Password CLI printed something that is not JSON: update it to version 2"
        ) from None
    if not isinstance(data, dict):
        raise OnePasswordError("the 1Password CLI printed unexpected JSON: update it")
    return data


async def load_item_secrets(vault: str, title: str, required: Sequence[str]) -> dict[str, str]:
    """Secrets of the item `title` in `vault` (for secrets_io): installed, then read.

    Sign-in is not checked separately: a signed-out op fails the read with a clear message.
    """
    op = OnePassword.find()
    return await op.read_fields(title, vault, required)
