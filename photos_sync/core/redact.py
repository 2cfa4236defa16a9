"""Scrub secret values out of text before it reaches a log, the DB or an exception. Pure."""

from __future__ import annotations

from collections.abc import Iterable

REDACTED = "[REDACTED]"


def redact(text: str, secrets: Iterable[str]) -> str:
    """Return `text` with every occurrence of each non-trivial secret replaced by [REDACTED].

    Secrets shorter than 4 characters are ignored: replacing them would mangle ordinary words
    while protecting nothing real.
    """
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text
