"""Pure-Python reference implementation of the serial scheme (SPEC C1).

It exists to check the Rust core byte for byte and to be the baseline of the benchmarks; it is
slow (one pycryptodome call per AES block) and never used to issue codes. It does not import
``app._core``.

    w      = batch_no << 32 | index
    v      = FF1-AES256_K1(w)            radix 2, n = 64, empty tweak (NIST SP 800-38G)
    t      = AES256_K2(0^64 || v)[:36 bits]
    serial = Crockford Base32(v || t)    20 symbols
    pin    = int(AES256_K3(0^64 || v)[:8]) mod 10^pin_length
    K1, K2, K3 = HKDF-SHA256(master, salt, info=b"tracecode/v{version}/prp|tag|pin")
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from Crypto.Cipher import AES

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
SALT = b"tracecode/hkdf-salt/v1"
TAG_BITS = 36
SERIAL_LENGTH = 20
MAX_TEXT_LENGTH = 64

_DECODE = {c: i for i, c in enumerate(ALPHABET)}
_DECODE.update({c.lower(): i for c, i in list(_DECODE.items())})
_DECODE.update({"O": 0, "o": 0, "I": 1, "i": 1, "L": 1, "l": 1})


class ReferenceMalformed(ValueError):
    """Not 20 Crockford symbols."""


class ReferenceForged(ValueError):
    """No active key version accepts the tag."""


class ReferenceUnknownVersion(ValueError):
    """The key version is not active."""


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 HKDF with SHA-256."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def crockford_encode(value: int, length: int = SERIAL_LENGTH) -> str:
    if not 0 <= value < 32**length:
        raise ValueError("value does not fit")
    return "".join(ALPHABET[(value >> (5 * (length - 1 - i))) & 31] for i in range(length))


def crockford_decode(text: str) -> tuple[int, int]:
    """(value, number of symbols); hyphens ignored, O->0, I/L->1, case-insensitive."""
    value = count = 0
    for ch in text:
        if ch == "-":
            continue
        d = _DECODE.get(ch)
        if d is None:
            raise ReferenceMalformed("character outside Crockford Base32")
        value = value << 5 | d
        count += 1
    return value, count


# --- FF1, general (any radix, any tweak) -------------------------------------------------------


def _num(x: Sequence[int], radix: int) -> int:
    n = 0
    for d in x:
        n = n * radix + d
    return n


def _str(x: int, radix: int, m: int) -> list[int]:
    out = [0] * m
    for i in range(m - 1, -1, -1):
        x, out[i] = divmod(x, radix)
    return out


def _ff1_round(ecb, radix: int, tweak: bytes, n: int, u: int, b: int, d: int, i: int, num: int):
    t = len(tweak)
    p = bytes([1, 2, 1]) + radix.to_bytes(3, "big") + bytes([10, u % 256])
    p += n.to_bytes(4, "big") + t.to_bytes(4, "big")
    q = tweak + bytes((-t - b - 1) % 16) + bytes([i]) + num.to_bytes(b, "big")
    data = p + q
    y = bytes(16)
    for k in range(0, len(data), 16):
        y = ecb.encrypt(bytes(a ^ c for a, c in zip(y, data[k : k + 16], strict=True)))
    s = y
    j = 1
    while len(s) < d:
        s += ecb.encrypt(bytes(a ^ c for a, c in zip(y, j.to_bytes(16, "big"), strict=True)))
        j += 1
    return int.from_bytes(s[:d], "big")


def _ff1(key: bytes, radix: int, tweak: bytes, x: Sequence[int], decrypt: bool) -> list[int]:
    ecb = AES.new(key, AES.MODE_ECB)
    n = len(x)
    u, v = n // 2, n - n // 2
    b = ((radix**v - 1).bit_length() + 7) // 8
    d = 4 * ((b + 3) // 4) + 4
    a, bb = _num(x[:u], radix), _num(x[u:], radix)
    rounds = range(9, -1, -1) if decrypt else range(10)
    for i in rounds:
        m = u if i % 2 == 0 else v
        if decrypt:
            y = _ff1_round(ecb, radix, tweak, n, u, b, d, i, a)
            a, bb = (bb - y) % radix**m, a
        else:
            y = _ff1_round(ecb, radix, tweak, n, u, b, d, i, bb)
            a, bb = bb, (a + y) % radix**m
    return _str(a, radix, u) + _str(bb, radix, v)


def ff1_encrypt(key: bytes, radix: int, tweak: bytes, x: Sequence[int]) -> list[int]:
    """FF1 encryption of the numeral string ``x`` (SP 800-38G, Algorithm 7)."""
    return _ff1(key, radix, tweak, x, decrypt=False)


def ff1_decrypt(key: bytes, radix: int, tweak: bytes, x: Sequence[int]) -> list[int]:
    """FF1 decryption (SP 800-38G, Algorithm 8)."""
    return _ff1(key, radix, tweak, x, decrypt=True)


# --- FF1 at radix 2 over 64 bits: P is constant, one AES block per round -----------------------

_P_BIN64 = bytes([1, 2, 1, 0, 0, 2, 10, 32, 0, 0, 0, 64, 0, 0, 0, 0])


class _VersionKeys:
    def __init__(self, master: bytes, version: int) -> None:
        def key(purpose: str) -> bytes:
            return hkdf_sha256(master, SALT, f"tracecode/v{version}/{purpose}".encode(), 32)

        self.version = version
        self.prp = AES.new(key("prp"), AES.MODE_ECB)
        self.tag = AES.new(key("tag"), AES.MODE_ECB)
        self.pin = AES.new(key("pin"), AES.MODE_ECB)
        self.ep = int.from_bytes(self.prp.encrypt(_P_BIN64), "big")

    def _y(self, i: int, half: int) -> int:
        r = self.prp.encrypt((self.ep ^ (i << 32) ^ half).to_bytes(16, "big"))
        return int.from_bytes(r[4:8], "big")

    def encrypt(self, w: int) -> int:
        a, b = w >> 32, w & 0xFFFFFFFF
        for i in range(10):
            a, b = b, (a + self._y(i, b)) & 0xFFFFFFFF
        return a << 32 | b

    def decrypt(self, v: int) -> int:
        a, b = v >> 32, v & 0xFFFFFFFF
        for i in range(9, -1, -1):
            a, b = (b - self._y(i, a)) & 0xFFFFFFFF, a
        return a << 32 | b

    def tag_of(self, v: int) -> int:
        return int.from_bytes(self.tag.encrypt(v.to_bytes(16, "big"))[:8], "big") >> 28

    def pin_of(self, v: int, length: int) -> str:
        x = int.from_bytes(self.pin.encrypt(v.to_bytes(16, "big"))[:8], "big")
        return str(x % 10**length).zfill(length)


class ReferenceScheme:
    """The same API subset as ``app._core.Scheme``, in plain Python."""

    def __init__(
        self,
        master_key: bytes,
        versions: Sequence[int],
        current_version: int,
        pin_length: int = 6,
    ) -> None:
        if len(master_key) != 32:
            raise ValueError("master key must be 32 bytes")
        if not 4 <= pin_length <= 10:
            raise ValueError("pin_length must be between 4 and 10")
        if current_version not in versions:
            raise ReferenceUnknownVersion(current_version)
        self._master = master_key
        self.versions = tuple(versions)
        self.current_version = current_version
        self.pin_length = pin_length
        order = [current_version] + [v for v in versions if v != current_version]
        self._keys = [_VersionKeys(master_key, v) for v in order]

    def _keys_for(self, version: int | None) -> _VersionKeys:
        for k in self._keys:
            if version is None or k.version == version:
                return k
        raise ReferenceUnknownVersion(version)

    def serial(self, batch_no: int, index: int, version: int | None = None) -> str:
        k = self._keys_for(version)
        v = k.encrypt(batch_no << 32 | index)
        return crockford_encode(v << TAG_BITS | k.tag_of(v))

    def _check(self, serial: str) -> tuple[_VersionKeys, int]:
        if len(serial) > MAX_TEXT_LENGTH:
            raise ReferenceMalformed("too long")
        x, count = crockford_decode(serial)
        if count != SERIAL_LENGTH:
            raise ReferenceMalformed("serial must have 20 symbols")
        v, t = x >> TAG_BITS, x & ((1 << TAG_BITS) - 1)
        for k in self._keys:
            if hmac.compare_digest(k.tag_of(v).to_bytes(5, "big"), t.to_bytes(5, "big")):
                return k, v
        raise ReferenceForged("no active key version accepts the tag")

    def verify(self, serial: str) -> tuple[int, int, int]:
        k, v = self._check(serial)
        w = k.decrypt(v)
        return w >> 32, w & 0xFFFFFFFF, k.version

    def pin(self, serial: str) -> str:
        k, v = self._check(serial)
        return k.pin_of(v, self.pin_length)

    def generate(
        self,
        batch_no: int,
        start: int,
        end: int,
        with_pins: bool = True,
        version: int | None = None,
    ) -> bytes:
        """Records laid out like the Rust ``generate`` (serial then PIN, no separators)."""
        k = self._keys_for(version)
        out = bytearray()
        for index in range(start, end):
            v = k.encrypt(batch_no << 32 | index)
            out += crockford_encode(v << TAG_BITS | k.tag_of(v)).encode()
            if with_pins:
                out += k.pin_of(v, self.pin_length).encode()
        return bytes(out)

    def derive(self, purpose: str, version: int, length: int = 32) -> bytes:
        if version not in self.versions:
            raise ReferenceUnknownVersion(version)
        info = f"tracecode/v{version}/ext/{purpose}".encode()
        return hkdf_sha256(self._master, SALT, info, length)
