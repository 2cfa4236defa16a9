"""Plain rclone, configured independently of photos-sync, to check what photos-sync wrote."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.conftest import rclone_binary as rclone_binary  # callers run the same binary


def obscure(secret: str) -> str:
    result = subprocess.run(
        [rclone_binary(), "obscure", "-"],
        input=secret + "\n",
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def crypt_env(dest: Path, keyfile: Path, name: str = "check") -> dict[str, str]:
    """Environment defining remote `<name>:` as crypt over `dest` with the key file's secrets."""
    secrets = json.loads(keyfile.read_text())
    prefix = f"RCLONE_CONFIG_{name.upper()}_"
    env = dict(os.environ)
    env.update(
        {
            "RCLONE_CONFIG": "",
            prefix + "TYPE": "crypt",
            prefix + "REMOTE": str(dest),
            prefix + "PASSWORD": obscure(secrets["encryption_password"]),
            prefix + "FILENAME_ENCRYPTION": "standard",
            prefix + "DIRECTORY_NAME_ENCRYPTION": "true",
        }
    )
    if secrets.get("encryption_salt"):
        env[prefix + "PASSWORD2"] = obscure(secrets["encryption_salt"])
    return env


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [rclone_binary(), *args], env=env, capture_output=True, text=True, timeout=120
    )


def cryptcheck(
    source: Path, remote_path: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """`rclone cryptcheck SOURCE REMOTE_PATH` (exit 0 when every file matches)."""
    return run(["cryptcheck", str(source), remote_path], env)
