"""rclone's "obscure" of a config value, computed here instead of by `rclone obscure`. Pure.

rclone.conf and the RCLONE_CONFIG_* variables take passwords *obscured*: AES-256 in CTR mode
under a key fixed in rclone's source, a random 16-byte IV in front, the whole in unpadded
URL-safe base64 (rclone fs/config/obscure/obscure.go: `Obscure`, `crypt`, `cryptKey`). It is
an obfuscation, not a protection (anyone can `rclone reveal` it), so nothing here guards a
secret: the point is to spare every run two `rclone obscure` process starts (~0.1 s of CPU
each, on a Raspberry Pi more), which the crypt remote's password and salt used to cost.

AES is written out (FIPS-197, encryption only: CTR never decrypts a block) because the
standard library has none and a compiled dependency is a poor trade for two short strings.
tests/unit/test_obscure.py checks it against FIPS-197's AES-256 example and against the real
`rclone reveal`.
"""

from __future__ import annotations

import base64

#: rclone's fixed obscuring key (obscure.go, `cryptKey`)
RCLONE_OBSCURE_KEY = bytes.fromhex(
    "9c935b48730a554d6bfd7c63c886a92bd390198eb8128afbf4de162b8b95f638"
)
BLOCK = 16


def _sbox() -> bytes:
    """The AES S-box, derived (multiplicative inverse in GF(2^8), then the affine map)."""
    box = bytearray(256)
    p = q = 1
    while True:
        # p runs through the multiplicative group by 3, q through the inverses by 3^-1
        p ^= ((p << 1) ^ (0x1B if p & 0x80 else 0)) & 0xFF
        q ^= q << 1
        q ^= q << 2
        q ^= q << 4
        q &= 0xFF
        if q & 0x80:
            q ^= 0x09
        rotl = q ^ (q << 1 | q >> 7) ^ (q << 2 | q >> 6) ^ (q << 3 | q >> 5) ^ (q << 4 | q >> 4)
        box[p] = (rotl ^ 0x63) & 0xFF
        if p == 1:
            break
    box[0] = 0x63
    return bytes(box)


SBOX = _sbox()


def _xtime(a: int) -> int:
    return ((a << 1) ^ 0x1B) & 0xFF if a & 0x80 else a << 1


def expand_key(key: bytes) -> list[bytes]:
    """The round keys of AES-256 (15 blocks of 16 bytes) for a 32-byte `key`."""
    if len(key) != 32:
        raise ValueError("AES-256 takes a 32-byte key")
    words = [key[i : i + 4] for i in range(0, 32, 4)]
    rcon = 1
    for i in range(8, 60):
        temp = words[i - 1]
        if i % 8 == 0:
            temp = bytes((SBOX[temp[1]] ^ rcon, SBOX[temp[2]], SBOX[temp[3]], SBOX[temp[0]]))
            rcon = _xtime(rcon)
        elif i % 8 == 4:
            temp = bytes(SBOX[b] for b in temp)
        words.append(bytes(a ^ b for a, b in zip(words[i - 8], temp, strict=True)))
    return [b"".join(words[i : i + 4]) for i in range(0, 60, 4)]


def encrypt_block(round_keys: list[bytes], block: bytes) -> bytes:
    """One 16-byte block through AES (the number of rounds follows the round keys)."""
    state = [b ^ k for b, k in zip(block, round_keys[0], strict=True)]
    last = len(round_keys) - 1
    for round_number in range(1, last + 1):
        state = [SBOX[b] for b in state]
        # ShiftRows: the state is column-major, byte r + 4c is row r of column c
        state = [state[(i + 4 * (i % 4)) % 16] for i in range(16)]
        if round_number != last:
            mixed = []
            for c in range(4):
                a0, a1, a2, a3 = state[4 * c : 4 * c + 4]
                total = a0 ^ a1 ^ a2 ^ a3
                mixed += [
                    a0 ^ total ^ _xtime(a0 ^ a1),
                    a1 ^ total ^ _xtime(a1 ^ a2),
                    a2 ^ total ^ _xtime(a2 ^ a3),
                    a3 ^ total ^ _xtime(a3 ^ a0),
                ]
            state = mixed
        state = [b ^ k for b, k in zip(state, round_keys[round_number], strict=True)]
    return bytes(state)


def ctr_xor(key: bytes, iv: bytes, data: bytes) -> bytes:
    """`data` XORed with AES-CTR's key stream from `iv`, the counter being the whole block
    as a big-endian number (Go's crypto/cipher.NewCTR): encryption and decryption alike."""
    round_keys = expand_key(key)
    counter = int.from_bytes(iv, "big")
    out = bytearray()
    for start in range(0, len(data), BLOCK):
        stream = encrypt_block(round_keys, counter.to_bytes(BLOCK, "big"))
        out += bytes(a ^ b for a, b in zip(data[start : start + BLOCK], stream, strict=False))
        counter = (counter + 1) % (1 << 128)
    return bytes(out)


def obscure(value: str, iv: bytes) -> str:
    """`value` obscured as `rclone obscure` does it, with the caller's random 16-byte `iv`
    (os.urandom(16): rclone draws a fresh one each time too)."""
    if len(iv) != BLOCK:
        raise ValueError("the IV is 16 bytes")
    sealed = iv + ctr_xor(RCLONE_OBSCURE_KEY, iv, value.encode("utf-8"))
    return base64.urlsafe_b64encode(sealed).decode("ascii").rstrip("=")


def reveal(obscured: str) -> str:
    """The value behind an obscured one (rclone's `Reveal`); ValueError if it is not one."""
    padded = obscured + "=" * (-len(obscured) % 4)
    try:
        sealed = base64.urlsafe_b64decode(padded.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise ValueError("not an obscured value") from exc
    if len(sealed) < BLOCK:
        raise ValueError("not an obscured value: too short")
    return ctr_xor(RCLONE_OBSCURE_KEY, sealed[:BLOCK], sealed[BLOCK:]).decode(
        "utf-8", "surrogateescape"
    )
