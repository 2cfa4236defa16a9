"""photos_sync.core.redact: secrets scrubbed out of text."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from photos_sync.core.redact import REDACTED, redact


def test_every_occurrence_is_replaced() -> None:
    text = "key=s3cr3t-KEY, again s3cr3t-KEY at the end s3cr3t-KEY"
    assert redact(text, ["s3cr3t-KEY"]) == (
        "key=[REDACTED], again [REDACTED] at the end [REDACTED]"
    )
    assert REDACTED == "[REDACTED]"


def test_several_secrets() -> None:
    text = "account AKIA1234 key wJalrXUtnFEMI password hunter22"
    assert redact(text, ["AKIA1234", "wJalrXUtnFEMI", "hunter22"]) == (
        "account [REDACTED] key [REDACTED] password [REDACTED]"
    )


def test_longer_secrets_first_so_no_fragment_leaks() -> None:
    # If "abcd" were replaced first, "abcdefgh" would leave "efgh" behind.
    assert redact("token=abcdefgh", ["abcd", "abcdefgh"]) == "token=[REDACTED]"
    assert redact("token=abcdefgh", ["abcdefgh", "abcd"]) == "token=[REDACTED]"


def test_short_and_empty_secrets_are_ignored() -> None:
    text = "the cat sat on a mat"
    assert redact(text, ["", "a", "at", "cat"]) == text
    assert redact("pass", ["pass"]) == "[REDACTED]"  # exactly 4 characters counts


def test_no_secrets_and_no_match() -> None:
    assert redact("nothing secret here", []) == "nothing secret here"
    assert redact("nothing secret here", ["zzzzzz"]) == "nothing secret here"


def test_accepts_any_iterable_and_duplicates() -> None:
    secrets = (s for s in ["dup-secret", "dup-secret"])
    assert redact("a dup-secret b", secrets) == "a [REDACTED] b"


def test_secret_inside_json_and_multiline_text() -> None:
    text = '{"msg": "auth failed for key Zx9!Qw\\"e", "object": "x"}\nline2 Zx9!Qw"e'
    out = redact(text, ['Zx9!Qw"e', 'Zx9!Qw\\"e'])
    assert "Zx9!Qw" not in out
    assert out.count(REDACTED) == 2


@settings(max_examples=200, deadline=None)
@given(
    st.text(min_size=4, max_size=20).filter(lambda s: "\0" not in s),
    st.text(max_size=30),
    st.text(max_size=30),
)
def test_a_secret_never_survives(secret: str, before: str, after: str) -> None:
    out = redact(before + secret + after, [secret])
    assert REDACTED in out
    # Whatever text surrounded it, no copy of the secret is left outside the markers.
    assert secret not in out.replace(REDACTED, "\0")
