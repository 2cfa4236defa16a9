"""Gather settings from the environment and `.env` files (the I/O around core.config)."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs
from dotenv import dotenv_values
from dotenv.parser import parse_stream

from photos_sync.core.config import Settings, parse_settings, unknown_variables


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("photos-sync", appauthor=False))


def _runtime_dir(env: Mapping[str, str]) -> Path | None:
    xdg = env.get("XDG_RUNTIME_DIR", "").strip()
    return Path(xdg) if xdg else None


@dataclass
class _Gathered:
    """The merged variables, where each came from, and what was wrong with the files."""

    values: dict[str, str] = field(default_factory=dict)
    #: variable -> "<file> line N" for values read from a `.env` file
    origins: dict[str, str] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)


class _Drop(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return False


@contextmanager
def _dotenv_quiet() -> Iterator[None]:
    """python-dotenv warns "could not parse statement starting at line N" without the file's
    name; `_read_dotenv` says it with the file, so dotenv's own line is dropped meanwhile."""
    logger = logging.getLogger("dotenv.main")
    drop = _Drop()
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def _line_of(binding_line: int, original: str) -> int:
    """The line a binding's statement is on: dotenv counts from the blank lines before it."""
    return binding_line + original[: len(original) - len(original.lstrip())].count("\n")


def _read_dotenv(path: Path, gathered: _Gathered) -> dict[str, str]:
    """The variables of one `.env` file; each line it cannot use becomes a notice naming the
    file and the line (never the line's text: it may hold a secret)."""
    if not path.is_file():
        return {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        gathered.notices.append(f"{path} is not read: {reason}")
        return {}
    lines: dict[str, int] = {}
    for binding in parse_stream(io.StringIO(text)):
        line = _line_of(binding.original.line, binding.original.string)
        if binding.error:
            gathered.notices.append(
                f"{path} line {line} is not NAME=value and is ignored (quote values with "
                "spaces or #, and close every quote)"
            )
        elif binding.key is not None:
            lines[binding.key] = line
    with _dotenv_quiet():
        values = dotenv_values(stream=io.StringIO(text), interpolate=True)
    found = {k: v for k, v in values.items() if v is not None}
    for key in found:
        if key in lines:
            gathered.origins.setdefault(key, f"{path} line {lines[key]}")
    return found


def _gather(environ: Mapping[str, str] | None, cwd: Path | None) -> _Gathered:
    gathered = _Gathered()
    process = dict(os.environ if environ is None else environ)
    cwd_values = _read_dotenv((cwd or Path.cwd()) / ".env", gathered)
    merged = {**cwd_values, **process}
    data_dir_raw = merged.get("PHOTOS_SYNC_DATA_DIR", "").strip()
    data_dir = Path(data_dir_raw).expanduser() if data_dir_raw else default_data_dir()
    data_dir_values = _read_dotenv(data_dir / ".env", gathered)
    # The data dir's own .env cannot relocate the data dir (its .env would go unread).
    data_dir_values.pop("PHOTOS_SYNC_DATA_DIR", None)
    gathered.values = {**data_dir_values, **merged}
    for name in process:
        gathered.origins[name] = "the environment"
    for name, suggestion in unknown_variables(sorted(gathered.values)):
        where = gathered.origins.get(name, "the environment")
        hint = f"did you mean {suggestion}?" if suggestion else "photos-sync does not read it"
        gathered.notices.append(f"unknown setting {name} in {where} ({hint})")
    return gathered


def gather_environment(
    environ: Mapping[str, str] | None = None, cwd: Path | None = None
) -> dict[str, str]:
    """Merge variables with this precedence: process environment, `./.env`, `<data dir>/.env`.

    The data dir's location may itself come from `./.env`, so it is resolved in between.
    """
    return _gather(environ, cwd).values


def load_settings(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Settings:
    """Settings for this process. Never raises for a malformed value: see Settings.problems;
    unknown names and unreadable `.env` lines are in Settings.notices."""
    gathered = _gather(environ, cwd)
    env = gathered.values
    return parse_settings(
        env,
        default_data_dir=default_data_dir(),
        runtime_dir=_runtime_dir(env),
        notices=gathered.notices,
    )
