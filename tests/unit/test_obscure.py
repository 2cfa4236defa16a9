"""core.obscure: rclone's obscuring, computed in memory, checked against FIPS-197 and against
the real rclone binary (`rclone reveal` must read what we write, and we must read rclone's)."""

from __future__ import annotations

import os
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from photos_sync.core.obscure import encrypt_block, expand_key, obscure, reveal
from tests.conftest import rclone_binary


def test_aes_256_matches_the_fips_197_example() -> None:
    # FIPS-197, Appendix C.3 (AES-256): key 00..1f, plaintext 00112233..ff
    round_keys = expand_key(bytes(range(32)))
    block = encrypt_block(round_keys, bytes.fromhex("00112233445566778899aabbccddeeff"))
    assert block.hex() == "8ea2b7ca516745bfeafc49904b496089"


VALUES = ["x", "Correct-Horse-Battery-Staple-42", "ü" * 40, "a" * 33, "pass word=;'\"$"]


def _rclone(*args: str) -> str:
    env = {**os.environ, "RCLONE_CONFIG": ""}
    done = subprocess.run([rclone_binary(), *args], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.rstrip("\n")


@pytest.mark.parametrize("value", VALUES)
def test_rclone_reveals_what_we_obscure_and_we_reveal_what_it_obscures(value: str) -> None:
    ours = obscure(value, os.urandom(16))
    # "--": a base64url value may start with "-" (1 in 64), which rclone would take for a flag
    assert _rclone("reveal", "--", ours) == value
    assert reveal(_rclone("obscure", "--", value)) == value


def test_a_value_whose_obscured_form_starts_with_a_dash_is_still_read_by_rclone() -> None:
    # the IV leads the base64url text: a first byte of 0xF8 gives its first six bits 62, "-"
    ours = obscure("x", bytes([0xF8]) + bytes(15))
    assert ours.startswith("-")
    assert _rclone("reveal", "--", ours) == "x"


def test_each_obscure_draws_its_own_iv_as_rclone_does() -> None:
    first, second = (obscure("same", os.urandom(16)) for _ in range(2))
    assert first != second and reveal(first) == reveal(second) == "same"
    with pytest.raises(ValueError):
        obscure("x", b"short")
    with pytest.raises(ValueError):
        reveal("dG9vc2hvcnQ")  # base64 of 8 bytes: no room for the IV


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80), st.binary(min_size=16, max_size=16))
def test_obscure_round_trips_any_text(value: str, iv: bytes) -> None:
    surrogate_free = value.encode("utf-8", "replace").decode("utf-8")
    assert reveal(obscure(surrogate_free, iv)) == surrogate_free
