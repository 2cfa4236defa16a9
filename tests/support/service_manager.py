"""Stand-ins for systemctl, loginctl and launchctl: systemd is not running in tests.

The `service_manager` fixture puts three small scripts first on PATH. Each appends its argv to
`calls.jsonl` and answers from `answers.json` (both beside the scripts): the answer for the
longest matching argv prefix, e.g. ``{"loginctl enable-linger": {"code": 1, "stderr": "…"}}``;
no answer means exit 0 and no output.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SCRIPT = """#!/usr/bin/env python3
import json, os, sys
here = os.path.dirname(os.path.abspath(__file__))
argv = [os.path.basename(sys.argv[0]), *sys.argv[1:]]
with open(os.path.join(here, "calls.jsonl"), "a") as log:
    log.write(json.dumps(argv) + "\\n")
with open(os.path.join(here, "answers.json")) as handle:
    answers = json.load(handle)
best = None
for key, answer in answers.items():
    words = key.split(" ")
    if argv[: len(words)] == words and (best is None or len(words) > len(best[0])):
        best = (words, answer)
answer = best[1] if best else {}
sys.stdout.write(answer.get("stdout", ""))
sys.stderr.write(answer.get("stderr", ""))
sys.exit(answer.get("code", 0))
"""


@dataclass
class ServiceManager:
    bin_dir: Path

    def answer(self, command: str, *, code: int = 0, stdout: str = "", stderr: str = "") -> None:
        """Make `command` (argv words, a prefix) exit `code` printing `stdout`/`stderr`."""
        answers = json.loads((self.bin_dir / "answers.json").read_text())
        answers[command] = {"code": code, "stdout": stdout, "stderr": stderr}
        (self.bin_dir / "answers.json").write_text(json.dumps(answers))

    def calls(self) -> list[list[str]]:
        log = self.bin_dir / "calls.jsonl"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]

    def clear(self) -> None:
        (self.bin_dir / "calls.jsonl").unlink(missing_ok=True)

    def env(self) -> Mapping[str, Any]:
        return {"PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}


@pytest.fixture
def service_manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServiceManager]:
    bin_dir = tmp_path / "service-manager-bin"
    bin_dir.mkdir()
    for name in ("systemctl", "loginctl", "launchctl"):
        script = bin_dir / name
        script.write_text(SCRIPT)
        script.chmod(0o755)
    (bin_dir / "answers.json").write_text("{}")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    yield ServiceManager(bin_dir)
