"""Metadata taken out of a catalogue image before it is published (``app.media.catalog``).

A product photo taken with a phone carries its EXIF: the GPS position where it was taken, the
device, the time, often a thumbnail of the original; XMP and IPTC blocks name the editor and the
author. Served to every consumer, those leak. The project has no imaging library (no Pillow), and
re-encoding is not needed to drop them: the three formats are containers of typed blocks, and the
blocks that hold metadata are dropped here, the image data kept byte for byte.

* JPEG: the segments before the first scan (SOS) are walked; APP1 (EXIF, XMP), APP3–APP13
  (IPTC, Photoshop and vendors' blocks), APP15 and comments are dropped; APP0 (JFIF), APP2's ICC
  profile (colours) and APP14 (Adobe: how to convert the colours) are kept. EXIF's orientation is
  kept, alone, in a minimal EXIF block of its own: without it a portrait photo shows on its side.
  A scan's entropy-coded data is copied as it is, up to the next marker (a stuffed ``FF00`` and
  RST0–7 are part of it); the segments between the scans of a progressive JPEG are walked as
  those before the first; nothing after EOI is kept: phones and cameras append more pictures
  there (MPF previews, HDR gain maps, a Motion Photo's video), each with its own EXIF and GPS.
  A JPEG with no EOI, or whose first scan comes before its frame header (SOF), is ``Damaged``.
* PNG: the ``tEXt``, ``zTXt``, ``iTXt``, ``eXIf`` and ``tIME`` chunks are dropped; nothing after
  ``IEND`` is kept. A PNG whose ``IEND`` comes before any ``IDAT`` has no image data: ``Damaged``.
* WebP: the ``EXIF`` and ``XMP `` chunks are dropped and their flags cleared in ``VP8X``; nothing
  after the RIFF's declared end is kept.

A file whose blocks do not add up (a length past its end, no image data) is ``Damaged``: it is
refused rather than published with what could not be read, and so is a JPEG of more than
``MAX_JPEG_SEGMENTS`` segments (a camera's has a few dozen; a crafted one of millions of
two-byte segments kept a process busy for over a second). The scans' data and fill bytes are
searched with ``bytes.find`` and a regular expression, not walked byte by byte in Python.

The image's size in pixels is read where the walk passes it (a PNG's ``IHDR``, a JPEG's SOF, a
WebP's ``VP8X`` canvas and ``VP8 `` / ``VP8L`` frame headers): a side of 0 is ``Damaged``, and
more than ``MAX_SIDE`` pixels a side or ``MAX_PIXELS`` in all is ``TooLarge``. The server never
decodes an image, but it publishes it to every consumer's phone: a 69-byte PNG claiming
100,000 × 100,000 pixels (~30 GB decoded) was a decompression bomb for the phones' decoders (a
probe). The limits pass every phone's photo (a 48 or 50 megapixel one is ~8,200 × 6,150) and
panoramas up to 16,384 pixels wide; a 108 or 200 megapixel one is to be scaled down first.
"""

from __future__ import annotations

import re
import struct

from app.errors import ValidationFailed

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_DROPPED = {b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"tIME"}
_WEBP_DROPPED = {b"EXIF", b"XMP "}
# JPEG markers of metadata: APP1, APP3–APP13, APP15 and COM (APP2: only its ICC profile is kept)
_JPEG_DROPPED = {0xE1, *range(0xE3, 0xEE), 0xEF, 0xFE}
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM, RST0–7: no length
_ORIENTATION = 0x0112
MAX_JPEG_SEGMENTS = 4096  # markers outside the scans' data (a progressive photo has ~100)
MAX_SIDE = 16_384  # pixels a side (WebP's own limit; a panorama of a phone fits)
MAX_PIXELS = 64_000_000  # pixels in all (a 50 megapixel phone photo fits; 256 MB decoded)
# JPEG frame headers (SOF0–15 but DHT C4, JPG C8 and DAC CC): precision, height, width, …
_JPEG_FRAMES = {*range(0xC0, 0xD0)} - {0xC4, 0xC8, 0xCC}
_VP8_START = b"\x9d\x01\x2a"  # a VP8 key frame's start code
_NOT_FILL = re.compile(rb"[^\xff]")
# the end of a scan's entropy-coded data: a 0xFF that is not stuffed (FF00) nor RST0–7
_SCAN_END = re.compile(rb"\xff(?![\x00\xd0-\xd7])", re.DOTALL)


class Damaged(ValueError):
    """The image's structure does not add up."""


class TooLarge(ValueError):
    """The image claims more than ``MAX_SIDE`` pixels a side or ``MAX_PIXELS`` in all."""

    def __init__(self, width: int, height: int) -> None:
        super().__init__(
            f"the image is {width} x {height} pixels: at most {MAX_SIDE} a side and "
            f"{MAX_PIXELS // 1_000_000} megapixels"
        )
        self.width, self.height = width, height


def _check_size(width: int, height: int, what: str) -> None:
    """``Damaged`` for a side of 0, ``TooLarge`` past the limits."""
    if width < 1 or height < 1:
        raise Damaged(f"the {what} is {width} x {height} pixels")
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise TooLarge(width, height)


def strip(data: bytes, content_type: str) -> bytes:
    """``data`` without its metadata blocks (see the module docstring)."""
    if content_type == "image/jpeg":
        return _jpeg(data)
    if content_type == "image/png":
        return _png(data)
    if content_type == "image/webp":
        return _webp(data)
    raise ValueError(f"not an image type: {content_type}")


def checked(data: bytes, content_type: str) -> bytes:
    """``strip``'s answer, its refusals the API's: 400 ``damaged_image`` (``Damaged``) and 400
    ``image_too_large`` (``TooLarge``) — for catalogue media and staff photos alike."""
    try:
        return strip(data, content_type)
    except Damaged as exc:
        raise ValidationFailed(f"the image cannot be read: {exc}", code="damaged_image") from None
    except TooLarge as exc:
        raise ValidationFailed(
            f"{exc}; scale it down",
            code="image_too_large",
            details={
                "width": exc.width,
                "height": exc.height,
                "max_side": MAX_SIDE,
                "max_pixels": MAX_PIXELS,
            },
        ) from None


def _jpeg(data: bytes) -> bytes:
    out = bytearray(data[:2])  # SOI
    at, scanned, framed = 2, False, False
    for _ in range(MAX_JPEG_SEGMENTS):
        if at >= len(data) or data[at] != 0xFF:
            raise Damaged("a JPEG segment does not start with a marker")
        found = _NOT_FILL.search(data, at)  # past the fill bytes
        if found is None:
            raise Damaged("the JPEG ends inside a marker")
        at = found.start()
        marker = data[at]
        at += 1
        if marker in _STANDALONE:
            out += bytes((0xFF, marker))
            continue
        if marker == 0xD9:  # EOI: the image ends; whatever follows (another picture) is cut
            if not scanned:
                raise Damaged("the JPEG has no image data")
            out += b"\xff\xd9"
            return bytes(out)
        if at + 2 > len(data):
            raise Damaged("the JPEG ends inside a segment's length")
        (length,) = struct.unpack_from(">H", data, at)
        end = at + length
        if length < 2 or end > len(data):
            raise Damaged("a JPEG segment runs past the end of the file")
        body = data[at + 2 : end]
        if marker in _JPEG_FRAMES:
            _jpeg_frame(body)
            framed = True
        if marker == 0xDA:  # a scan: its header and entropy-coded data, copied as they are
            if not framed:
                raise Damaged("the JPEG's scan comes before its frame header (SOF)")
            stop = _entropy_end(data, end)
            out += b"\xff\xda" + data[at:stop]
            at, scanned = stop, True
            continue
        if marker == 0xE1:
            orientation = _exif_orientation(body)
            if orientation not in (None, 1):
                out += _exif_block(orientation)
        elif marker == 0xE2 and not body.startswith(b"ICC_PROFILE\x00"):
            pass  # APP2 of another kind (FlashPix, MPF: pointers to more pictures)
        elif marker not in _JPEG_DROPPED:
            out += bytes((0xFF, marker)) + data[at:end]
        at = end
    raise Damaged(f"the JPEG has more than {MAX_JPEG_SEGMENTS} segments")


def _jpeg_frame(body: bytes) -> None:
    """A SOF segment's size checked (``_check_size``): precision, height, width, components."""
    if len(body) < 6:
        raise Damaged("the JPEG's frame header is cut short")
    height, width = struct.unpack_from(">HH", body, 1)
    _check_size(width, height, "JPEG")


def _entropy_end(data: bytes, at: int) -> int:
    """Where the entropy-coded data of a scan starting at ``at`` ends: the first marker after it
    (its fill bytes included) other than a stuffed 0xFF (``FF00``) and RST0–7."""
    found = _SCAN_END.search(data, at)
    if found is None or found.start() + 1 >= len(data):
        raise Damaged("the JPEG's image data has no end (no EOI)")
    return found.start()  # a marker (or a fill byte 0xFF before one)


def _exif_orientation(body: bytes) -> int | None:
    """EXIF's orientation tag (1–8) of an APP1 body; None when it has none or is not EXIF."""
    if not body.startswith(b"Exif\x00\x00") or len(body) < 14:
        return None
    tiff = body[6:]
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None:
        return None
    try:
        (ifd,) = struct.unpack_from(order + "I", tiff, 4)
        (count,) = struct.unpack_from(order + "H", tiff, ifd)
        for n in range(count):
            tag, kind, _, value = struct.unpack_from(order + "HHIH", tiff, ifd + 2 + 12 * n)
            if tag == _ORIENTATION and kind == 3:  # SHORT
                return value if 1 <= value <= 8 else None
    except struct.error:
        return None
    return None


def _exif_block(orientation: int) -> bytes:
    """An APP1 EXIF segment holding the orientation tag alone."""
    tiff = b"MM\x00\x2a" + struct.pack(">I", 8)  # big-endian, IFD0 right after the header
    tiff += struct.pack(">H", 1) + struct.pack(">HHIHH", _ORIENTATION, 3, 1, orientation, 0)
    tiff += struct.pack(">I", 0)  # no next IFD
    body = b"Exif\x00\x00" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body


def _png(data: bytes) -> bytes:
    out = bytearray(PNG_SIGNATURE)
    at, first, drawn = len(PNG_SIGNATURE), True, False
    while True:
        if at + 12 > len(data):
            raise Damaged("the PNG ends inside a chunk (no IEND)")
        length, kind = struct.unpack_from(">I4s", data, at)
        end = at + 12 + length
        if end > len(data):
            raise Damaged("a PNG chunk runs past the end of the file")
        if first:
            if kind != b"IHDR" or length != 13:
                raise Damaged("a PNG starts with its IHDR chunk (13 bytes)")
            width, height = struct.unpack_from(">II", data, at + 8)
            _check_size(width, height, "PNG")
        first = False
        drawn = drawn or kind == b"IDAT"
        if kind not in _PNG_DROPPED:
            out += data[at:end]
        if kind == b"IEND":
            if not drawn:
                raise Damaged("the PNG has no image data")
            return bytes(out)
        at = end


def _webp(data: bytes) -> bytes:
    if len(data) < 12:
        raise Damaged("the WebP is too short")
    (size,) = struct.unpack_from("<I", data, 4)
    end = 8 + size
    if end > len(data) or size < 4:
        raise Damaged("the WebP's RIFF size runs past the end of the file")
    chunks = bytearray()
    at, images, sized = 12, 0, False
    while at < end:
        if at + 8 > end:
            raise Damaged("the WebP ends inside a chunk")
        kind, length = struct.unpack_from("<4sI", data, at)
        stop = at + 8 + length + (length & 1)  # chunks are padded to an even length
        if at + 8 + length > end:
            raise Damaged("a WebP chunk runs past the end of the file")
        chunk = bytearray(data[at:stop])
        if kind in (b"VP8X", b"VP8 ", b"VP8L"):
            _check_size(*_webp_size(kind, data[at + 8 : at + 8 + length]), "WebP")
            sized = True
        if kind == b"VP8X" and length >= 1:
            chunk[8] &= ~0x0C & 0xFF  # no EXIF (0x08), no XMP (0x04) any more
        if kind in (b"VP8 ", b"VP8L", b"ANIM"):
            images += 1
        if kind not in _WEBP_DROPPED:
            chunks += chunk
        at = stop
    if not images:
        raise Damaged("the WebP has no image data")
    if not sized:
        raise Damaged("the WebP has no image size (no VP8X before its animation)")
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WEBP" + bytes(chunks)


def _webp_size(kind: bytes, body: bytes) -> tuple[int, int]:
    """(width, height) of a WebP's ``VP8X`` canvas, ``VP8 `` key frame or ``VP8L`` image."""
    if kind == b"VP8X" and len(body) >= 10:
        width, height = (int.from_bytes(body[n : n + 3], "little") + 1 for n in (4, 7))
        return width, height
    if kind == b"VP8 " and len(body) >= 10 and body[3:6] == _VP8_START:
        width, height = struct.unpack_from("<HH", body, 6)
        return width & 0x3FFF, height & 0x3FFF  # the top two bits: the scale
    if kind == b"VP8L" and len(body) >= 5 and body[0] == 0x2F:
        (bits,) = struct.unpack_from("<I", body, 1)
        return (bits & 0x3FFF) + 1, (bits >> 14 & 0x3FFF) + 1
    raise Damaged(f"the WebP's {kind.decode().strip()} header cannot be read")
