"""Encrypted printer files (SPEC C3): AES-256-GCM in authenticated chunks, the key wrapped.

Layout::

    b"TCPF1\\n" | u32 header length | header (JSON) | chunk* | (end)
    chunk = u32 plaintext length | ciphertext | 16-byte GCM tag

Every chunk is sealed with the STREAM construction (Hoang, Reyhanitabar, Rogaway, Vizár 2015):
the nonce is a per-file 4-byte prefix (``nonce_prefix`` in the header: random for a file with a
key of its own, the file's number for one of the files made again under an allocation's key),
the chunk counter (u64) and a last-chunk flag, and the associated data is the SHA-256 of the
header. Reordered, dropped, altered or appended chunks,
an altered header, and a file cut at a chunk boundary (no chunk flagged last) all fail to decrypt.

The random 32-byte data key is wrapped for the printer either with a passphrase (scrypt KDF, then
AES-256-GCM) or with the printer's RSA public key (RSA-OAEP with SHA-256). This module needs only
pycryptodome, so a printer can decrypt with this package alone (``tracecode export decrypt``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from collections.abc import Iterable, Iterator
from typing import IO, Any, BinaryIO

from Crypto.Cipher import AES, PKCS1_OAEP
from Crypto.Hash import SHA256
from Crypto.Protocol.KDF import scrypt
from Crypto.PublicKey import RSA

MAGIC = b"TCPF1\n"
CHUNK_SIZE = 1 << 20
SCRYPT_N, SCRYPT_R, SCRYPT_P = 1 << 15, 8, 1
_U32 = struct.Struct(">I")
_MAX_HEADER = 64 * 1024


class PrintFileError(ValueError):
    """The file is not a printer file, or it is damaged, truncated or tampered with."""


class WrongKey(PrintFileError):
    """The passphrase or private key does not open this file."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: Any) -> bytes:
    try:
        return base64.b64decode(str(text), validate=True)
    except ValueError:
        raise PrintFileError("damaged header") from None


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    return prefix + struct.pack(">QB", counter, 1 if last else 0)[1:]  # 4 + 7 + 1 = 12 bytes


def file_prefix(file_no: int) -> bytes:
    """The nonce prefix of the ``file_no``-th file made under one data key (from 0): distinct for
    2^32 files, where a random one repeats after ~2^16 (a birthday bound)."""
    return (file_no % (1 << 32)).to_bytes(4, "big")


def wrap_with_passphrase(data_key: bytes, passphrase: str) -> dict[str, Any]:
    salt = os.urandom(16)
    kek = scrypt(passphrase.encode(), salt, 32, N=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)  # type: ignore[arg-type]
    nonce = os.urandom(12)
    cipher = AES.new(kek, AES.MODE_GCM, nonce=nonce)  # type: ignore[arg-type]
    wrapped, tag = cipher.encrypt_and_digest(data_key)
    return {
        "method": "scrypt+aes-256-gcm",
        "salt": _b64(salt),
        "n": SCRYPT_N,
        "r": SCRYPT_R,
        "p": SCRYPT_P,
        "nonce": _b64(nonce),
        "wrapped_key": _b64(wrapped + tag),
    }


def public_key(public_key_pem: str) -> RSA.RsaKey:
    """A printer's RSA public key: 2048 to 8192 bits, an odd exponent below 2^32 (a huge one
    cost the API seconds of CPU per use; an even one makes files nobody can open), never a
    private key (one pasted by mistake would be stored and audited)."""
    try:
        key = RSA.import_key(public_key_pem)
    except (ValueError, IndexError, TypeError):
        raise PrintFileError("not an RSA public key") from None
    if key.has_private():
        raise PrintFileError("a private key: give the printer's public key only")
    if not 2048 <= key.size_in_bits() <= 8192:
        raise PrintFileError("the RSA key must have 2048 to 8192 bits")
    if key.e % 2 == 0 or not 3 <= key.e < 1 << 32:
        raise PrintFileError("the RSA public exponent must be odd and below 2^32 (e.g. 65537)")
    return key


def wrap_with_rsa(data_key: bytes, public_key_pem: str) -> dict[str, Any]:
    key = public_key(public_key_pem)
    wrapped = PKCS1_OAEP.new(key.public_key(), hashAlgo=SHA256).encrypt(data_key)
    fingerprint = hashlib.sha256(key.public_key().export_key("DER")).hexdigest()[:16]
    return {
        "method": "rsa-oaep-sha256",
        "key_fingerprint": fingerprint,
        "wrapped_key": _b64(wrapped),
    }


def unwrap(wrap: dict[str, Any], *, passphrase: str | None, private_key_pem: str | None) -> bytes:
    method = wrap.get("method")
    if method == "scrypt+aes-256-gcm":
        if passphrase is None:
            raise WrongKey("this file is opened with a passphrase")
        try:
            n, r, p = int(wrap["n"]), int(wrap["r"]), int(wrap["p"])
        except (KeyError, TypeError, ValueError):
            raise PrintFileError("damaged header") from None
        # at most twice the writer's cost (SCRYPT_*): a damaged header must not cost minutes
        # and gigabytes before it is found out; n a power of two, as scrypt needs
        if not (
            2 <= n <= 2 * SCRYPT_N
            and n & (n - 1) == 0
            and 1 <= r <= SCRYPT_R
            and 1 <= p <= SCRYPT_P
        ):
            raise PrintFileError("damaged header")
        try:
            kek = scrypt(passphrase.encode(), _unb64(wrap.get("salt")), 32, N=n, r=r, p=p)  # type: ignore[arg-type]
            sealed = _unb64(wrap.get("wrapped_key"))
            cipher = AES.new(kek, AES.MODE_GCM, nonce=_unb64(wrap.get("nonce")))  # type: ignore[arg-type]
        except (ValueError, TypeError):  # an empty salt or nonce, say
            raise PrintFileError("damaged header") from None
        try:
            return cipher.decrypt_and_verify(sealed[:-16], sealed[-16:])
        except ValueError:
            raise WrongKey("wrong passphrase") from None
    if method == "rsa-oaep-sha256":
        if private_key_pem is None:
            raise WrongKey("this file is opened with the printer's RSA private key")
        try:
            key = RSA.import_key(private_key_pem)
        except (ValueError, IndexError, TypeError):
            raise WrongKey("not an RSA private key") from None
        if not key.has_private():
            raise WrongKey("an RSA private key is needed, not a public key")
        try:
            return PKCS1_OAEP.new(key, hashAlgo=SHA256).decrypt(_unb64(wrap.get("wrapped_key")))
        except ValueError:
            raise WrongKey("wrong RSA private key") from None
    raise PrintFileError("unknown key wrapping method")


class Writer:
    """Encrypts a stream of plaintext pieces into a printer file, chunk by chunk."""

    def __init__(
        self,
        out: BinaryIO | IO[bytes],
        metadata: dict[str, Any],
        wrap: dict[str, Any],
        data_key: bytes,
        chunk_size: int = CHUNK_SIZE,
        nonce_prefix: bytes | None = None,
    ) -> None:
        """``nonce_prefix``: 4 bytes no other file under ``data_key`` uses (for files made again
        under one key, an allocation's: ``file_prefix``); random by default, for a key of its
        own."""
        if nonce_prefix is not None and len(nonce_prefix) != 4:
            raise ValueError("a nonce prefix is 4 bytes")
        self._out = out
        self._key = data_key
        self._prefix = os.urandom(4) if nonce_prefix is None else nonce_prefix
        self._chunk_size = chunk_size
        header = {
            **metadata,
            "cipher": "aes-256-gcm-stream",
            "chunk_size": chunk_size,
            "nonce_prefix": _b64(self._prefix),
            "wrap": wrap,
        }
        raw = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
        self._aad = hashlib.sha256(raw).digest()
        out.write(MAGIC + _U32.pack(len(raw)) + raw)
        self._pending = bytearray()
        self._counter = 0
        self.bytes_in = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer and seal full chunks; the last (possibly full) chunk waits for ``close``."""
        view = memoryview(data)
        self.bytes_in += len(view)
        size = self._chunk_size
        if self._pending:
            room = size - len(self._pending)
            self._pending += view[:room]
            view = view[room:]
            if not view:
                return
            self._seal(self._pending, last=False)
            self._pending = bytearray()
        while len(view) > size:
            self._seal(view[:size], last=False)
            view = view[size:]
        self._pending += view

    def _seal(self, plain: bytes | bytearray | memoryview, last: bool) -> None:
        cipher = AES.new(self._key, AES.MODE_GCM, nonce=_nonce(self._prefix, self._counter, last))
        cipher.update(self._aad)
        sealed, tag = cipher.encrypt_and_digest(plain)
        self._out.write(_U32.pack(len(plain)) + sealed + tag)
        self._counter += 1

    def close(self) -> None:
        """Seal the final chunk (possibly empty); without it the file reads as truncated."""
        self._seal(self._pending, last=True)
        self._pending = bytearray()


def write_file(
    out: BinaryIO | IO[bytes],
    pieces: Iterable[bytes],
    metadata: dict[str, Any],
    *,
    passphrase: str | None = None,
    public_key_pem: str | None = None,
) -> int:
    """Encrypt ``pieces`` into ``out`` for a passphrase or an RSA public key; return plain bytes."""
    data_key = os.urandom(32)
    if (passphrase is None) == (public_key_pem is None):
        raise ValueError("give exactly one of passphrase and public_key_pem")
    wrap = (
        wrap_with_passphrase(data_key, passphrase)
        if passphrase is not None
        else wrap_with_rsa(data_key, public_key_pem or "")
    )
    writer = Writer(out, metadata, wrap, data_key)
    for piece in pieces:
        writer.write(piece)
    writer.close()
    return writer.bytes_in


def _read_exact(src: BinaryIO | IO[bytes], n: int) -> bytes:
    data = src.read(n)
    if len(data) != n:
        raise PrintFileError("the file is truncated")
    return data


def read_header(src: BinaryIO | IO[bytes]) -> tuple[dict[str, Any], bytes]:
    if src.read(len(MAGIC)) != MAGIC:
        raise PrintFileError("not a Tracecode printer file")
    (length,) = _U32.unpack(_read_exact(src, 4))
    if length > _MAX_HEADER:
        raise PrintFileError("damaged header")
    raw = _read_exact(src, length)
    try:
        header = json.loads(raw)
    except ValueError:
        raise PrintFileError("damaged header") from None
    if not isinstance(header, dict) or not isinstance(header.get("wrap"), dict):
        raise PrintFileError("damaged header")
    return header, raw


def decrypt(
    src: BinaryIO | IO[bytes],
    *,
    passphrase: str | None = None,
    private_key_pem: str | None = None,
) -> Iterator[bytes]:
    """Yield the plaintext chunk by chunk; raise PrintFileError on any damage or truncation."""
    header, raw = read_header(src)
    aad = hashlib.sha256(raw).digest()
    key = unwrap(header["wrap"], passphrase=passphrase, private_key_pem=private_key_pem)
    prefix = _unb64(header.get("nonce_prefix"))
    chunk_size = header.get("chunk_size")
    if len(key) != 32 or len(prefix) != 4 or not isinstance(chunk_size, int):
        raise PrintFileError("damaged header")
    counter = 0
    while True:
        head = src.read(4)
        if not head:
            raise PrintFileError("the file is truncated (no final chunk)")
        if len(head) != 4:
            raise PrintFileError("the file is truncated")
        (length,) = _U32.unpack(head)
        if length > chunk_size:
            raise PrintFileError("damaged chunk")
        body = _read_exact(src, length + 16)
        last = _at_end(src)
        plain = _open(key, prefix, counter, last, aad, body)
        if plain is None:
            raise PrintFileError(
                f"chunk {counter} does not authenticate: the file is damaged, altered or truncated"
            )
        yield plain
        counter += 1
        if last:
            return


def _at_end(src: BinaryIO | IO[bytes]) -> bool:
    peek = getattr(src, "peek", None)
    if peek is not None:
        return not peek(1)
    position = src.tell()
    at_end = not src.read(1)
    src.seek(position)
    return at_end


def _open(
    key: bytes, prefix: bytes, counter: int, last: bool, aad: bytes, body: bytes
) -> bytes | None:
    cipher = AES.new(key, AES.MODE_GCM, nonce=_nonce(prefix, counter, last))
    cipher.update(aad)
    try:
        return cipher.decrypt_and_verify(body[:-16], body[-16:])
    except ValueError:
        return None
