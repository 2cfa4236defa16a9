"""Gather settings from the environment and `.env` files (the I/O around photos_sync.config)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import platformdirs
from dotenv import dotenv_values

from photos_sync.config import Settings, parse_settings


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("photos-sync", appauthor=False))


def _runtime_dir(env: Mapping[str, str]) -> Path | None:
    xdg = env.get("XDG_RUNTIME_DIR", "").strip()
    return Path(xdg) if xdg else None


def _read_dotenv(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    try:
        values = dotenv_values(path)
    except (OSError, UnicodeDecodeError):
        return {}
    return {k: v for k, v in values.items() if v is not None}


def gather_environment(
    environ: Mapping[str, str] | None = None, cwd: Path | None = None
) -> dict[str, str]:
    """Merge variables with this precedence: process environment, `./.env`, `<data dir>/.env`.

    The data dir's location may itself come from `./.env`, so it is resolved in between.
    """
    environ = dict(os.environ if environ is None else environ)
    cwd_values = _read_dotenv((cwd or Path.cwd()) / ".env")
    merged = {**cwd_values, **environ}
    data_dir_raw = merged.get("PHOTOS_SYNC_DATA_DIR", "").strip()
    data_dir = Path(data_dir_raw).expanduser() if data_dir_raw else default_data_dir()
    data_dir_values = _read_dotenv(data_dir / ".env")
    # The data dir's own .env cannot relocate the data dir (its .env would go unread).
    data_dir_values.pop("PHOTOS_SYNC_DATA_DIR", None)
    return {**data_dir_values, **merged}


def load_settings(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Settings:
    """Settings for this process. Raises photos_sync.config.ConfigError on a bad variable."""
    env = gather_environment(environ, cwd)
    return parse_settings(env, default_data_dir=default_data_dir(), runtime_dir=_runtime_dir(env))
