"""Small real images for tests: a PNG a browser draws, a JPEG's structure with optional EXIF
(a secret standing for the GPS position), a WebP — of the sizes a test asks for."""

from __future__ import annotations

import struct
import zlib

from app.media import imagemeta


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_ihdr(width: int, height: int) -> bytes:
    return png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))


def png(seed: int = 0, text: bytes = b"") -> bytes:
    """A real 1x1 PNG (a browser draws it) of a colour of its own (``seed``: tests' images are
    told apart by their pixels, their metadata is gone), with a tEXt chunk of ``text``."""
    ihdr = png_ihdr(1, 1)
    idat = png_chunk(b"IDAT", zlib.compress(b"\x00" + struct.pack(">I", seed)[1:]))
    extra = png_chunk(b"tEXt", b"Comment\x00" + text) if text else b""
    return imagemeta.PNG_SIGNATURE + ihdr + extra + idat + png_chunk(b"IEND", b"")


def jpeg_exif(orientation: int, secret: bytes) -> bytes:
    """An APP1 EXIF segment (little-endian) with an orientation and a GPS-ish maker note."""
    entries = struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0)
    entries += struct.pack("<HHII", 0x927C, 7, len(secret), 26 + 12)  # MakerNote: the secret
    tiff = b"II\x2a\x00" + struct.pack("<I", 8) + struct.pack("<H", 2) + entries
    tiff += struct.pack("<I", 0) + secret
    body = b"Exif\x00\x00" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body


def jpeg_sof(marker: int, width: int, height: int) -> bytes:
    """A JPEG frame header (SOF0–15) of one component."""
    body = b"\x08" + struct.pack(">HH", height, width) + b"\x01\x01\x11\x00"
    return bytes((0xFF, marker)) + struct.pack(">H", len(body) + 2) + body


def jpeg(secret: bytes = b"", orientation: int = 1, size: tuple[int, int] = (1, 1)) -> bytes:
    """A JPEG's structure: JFIF, EXIF (when ``secret``), a comment, a table, a frame header of
    ``size`` (width, height), a scan, EOI."""
    app0 = b"\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    meta = (
        jpeg_exif(orientation, secret) + b"\xff\xfe" + struct.pack(">H", len(secret) + 2) + secret
    )
    dqt = b"\xff\xdb\x00\x43\x00" + bytes(range(64)) + jpeg_sof(0xC0, *size)
    scan = b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00" + bytes(range(200)) + b"\xff\xd9"
    return b"\xff\xd8" + app0 + (meta if secret else b"") + dqt + scan


def webp(secret: bytes = b"") -> bytes:
    vp8x = b"VP8X" + struct.pack("<I", 10) + bytes([0x08 if secret else 0]) + b"\x00" * 9
    image = b"VP8L" + struct.pack("<I", 5) + b"\x2f\x00\x00\x00\x00" + b"\x00"  # padded
    exif = b"EXIF" + struct.pack("<I", len(secret)) + secret if secret else b""
    body = b"WEBP" + vp8x + image + exif
    return b"RIFF" + struct.pack("<I", len(body)) + body
