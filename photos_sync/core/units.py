"""Sizes, durations and timestamps. Pure."""

from __future__ import annotations

from datetime import datetime


def human_bytes(size: float) -> str:
    """1536 -> '1.5 KiB' (binary units, one decimal; whole bytes below 1 KiB)."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def plural(count: int, word: str, many: str | None = None) -> str:
    """(1, 'file') -> '1 file'; (3, 'file') -> '3 files'; `many` for irregular plurals."""
    return f"{count} {word if count == 1 else many or word + 's'}"


def duration(seconds: float) -> str:
    """3725 -> '1:02:05'."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def from_iso(text: str | None) -> datetime | None:
    """The datetime an ISO-8601 text stands for (as the store writes them), or None."""
    return datetime.fromisoformat(text) if text else None
