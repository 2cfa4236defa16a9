"""The `op_double` fixture: puts the 1Password CLI test double (./op) first on PATH.

The double keeps its state in a JSON file (OP_DOUBLE_STATE); `OpDouble` reads and edits it,
as a person would in the 1Password app.
"""

from __future__ import annotations

import errno
import json
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
SECRET_TYPES = {"application_key", "secret_access_key", "encryption_password", "encryption_salt"}


@dataclass
class OpDouble:
    state_path: Path
    bin_dir: Path

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = json.loads(self.state_path.read_text())
        return state

    def save(self, state: Mapping[str, Any]) -> None:
        self.state_path.write_text(json.dumps(state, indent=2))

    def sign_out(self) -> None:
        state = self.state()
        state["signed_in"] = False
        self.save(state)

    def set_service_token(self, token: str) -> None:
        state = self.state()
        state["signed_in"] = False
        state["service_account_token"] = token
        self.save(state)

    def add_item(self, title: str, fields: Mapping[str, str], vault: str = "Private") -> None:
        state = self.state()
        entries = [
            {
                "id": label,
                "type": "CONCEALED" if label in SECRET_TYPES else "STRING",
                "label": label,
                "value": value,
                "reference": f"op://{vault}/{title}/{label}",
            }
            for label, value in fields.items()
        ]
        state["vaults"][vault]["items"].append(
            {
                "id": f"item{len(state['vaults'][vault]['items'])}xxxxxxxxxxxxxxxxxxxxx",
                "title": title,
                "version": 1,
                "vault": {"id": state["vaults"][vault]["id"], "name": vault},
                "category": "SECURE_NOTE",
                "last_edited_by": state["account"]["user_uuid"],
                "created_at": "2024-01-01T00:00:00Z",
                "updated_at": "2024-01-01T00:00:00Z",
                "fields": entries,
            }
        )
        self.save(state)

    def item(self, title: str, vault: str = "Private") -> dict[str, Any] | None:
        for item in self.state()["vaults"][vault]["items"]:
            if item["title"] == title:
                return dict(item)
        return None

    def item_fields(self, title: str, vault: str = "Private") -> dict[str, str]:
        item = self.item(title, vault)
        assert item is not None
        return {f["label"]: f.get("value", "") for f in item["fields"]}

    def set_field(self, title: str, label: str, value: str, vault: str = "Private") -> None:
        """Fill in a field, as the user does in the 1Password app."""
        state = self.state()
        for item in state["vaults"][vault]["items"]:
            if item["title"] == title:
                for entry in item["fields"]:
                    if entry["label"] == label:
                        entry["value"] = value
                        break
                else:
                    item["fields"].append(
                        {"id": label, "type": "STRING", "label": label, "value": value}
                    )
        self.save(state)

    def set_vaults(self, names: list[str]) -> None:
        """The account's vaults, in the order `op vault list` shows them (items kept)."""
        state = self.state()
        old = state["vaults"]
        state["vaults"] = {
            name: old.get(name, {"id": _vault_id(name), "items": []}) for name in names
        }
        self.save(state)

    def hold(self, command: str, fifo: Path) -> None:
        """Make `op COMMAND` (e.g. "item create") slow, as over a slow network: it takes
        effect, but answers only once `release(fifo)` is called."""
        os.mkfifo(fifo)
        state = self.state()
        state.setdefault("gates", {})[command] = str(fifo)
        self.save(state)

    @staticmethod
    def release(fifo: Path, timeout: float = 60.0) -> None:
        """Let a held command go on, once the double is waiting on it (AssertionError if it
        does not get there within `timeout` s, instead of blocking the test for good)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno != errno.ENXIO:  # ENXIO: no reader yet
                    raise
                assert time.monotonic() < deadline, f"op never waited on {fifo}"
                # a FIFO gives no event for "a reader opened me"; the double gets there soon
                time.sleep(0.05)
                continue
            os.close(fd)
            return

    def all_items(self) -> list[dict[str, Any]]:
        """Every item in every vault."""
        return [item for vault in self.state()["vaults"].values() for item in vault["items"]]

    def calls(self) -> list[dict[str, Any]]:
        return list(self.state().get("calls", []))


def _vault_id(name: str) -> str:
    """A 26-character id in op's alphabet, derived from the name."""
    letters = "".join(c for c in name.lower() if c.isalnum())
    return f"vault{letters:0<21.21}"


def initial_state() -> dict[str, Any]:
    return {
        "version": "2.30.0",
        "signed_in": True,
        "service_account_token": None,
        "account": {
            "url": "my.1password.com",
            "email": "owner@example.com",
            "user_uuid": "USERUUID000000000000000000",
            "account_uuid": "ACCOUNTUUID000000000000000",
            "name": "Family",
        },
        "vaults": {
            "Private": {"id": "vaultprivate00000000000000", "items": []},
            "Servers": {"id": "vaultservers00000000000000", "items": []},
        },
        "calls": [],
    }


@pytest.fixture
def op_double(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[OpDouble]:
    """The op test double first on PATH, signed in, with empty "Private" and "Servers" vaults
    (`set_vaults` changes them)."""
    op = HERE / "op"
    if not os.access(op, os.X_OK):
        op.chmod(0o755)
    bin_dir = tmp_path / "op-bin"
    bin_dir.mkdir()
    (bin_dir / "op").symlink_to(op)
    state_path = tmp_path / "op-state.json"
    state_path.write_text(json.dumps(initial_state(), indent=2))
    monkeypatch.setenv("OP_DOUBLE_STATE", str(state_path))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    yield OpDouble(state_path, bin_dir)
