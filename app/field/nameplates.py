"""Store nameplates (SPEC F2): a signed code per store, printed as a QR code (PNG or PDF).

A nameplate's code is ``N<store id>.<tag>``: the tag is HMAC-SHA256 under
``Settings.subkey("field-nameplate")`` (HKDF of the master key, like the other signed things of
the app; the key is never logged) over ``nameplate:<store id>``, cut to 120 bits and written in
base32 (24 characters). Only the server can make one, and one store's tag says nothing of
another's, so a forged nameplate, or another store's pasted on this one, is refused at check-in.
The QR's text is ``{public URL}/m/n/<code>`` (the mobile app's check-in address): a check-in
takes that URL or the bare code.

Rendering uses segno (pure Python, no dependencies; the project had no QR or PDF writer — its
printer files are text the printers render): the PNG is segno's; the PDF is a small A6 page
written here, the QR's modules as filled squares with the store's name (Chinese through the PDF
reader's STSong-Light, not embedded) and ERP code under it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import re

import segno

from app.config import Settings
from app.errors import Unprocessable

_CODE = re.compile(r"N([1-9][0-9]{0,17})\.([A-Z2-7]{24})")
_TAG_BYTES = 15


def _tag(settings: Settings, store_id: int) -> str:
    mac = hmac.digest(
        settings.subkey("field-nameplate"), f"nameplate:{store_id}".encode(), hashlib.sha256
    )
    return base64.b32encode(mac[:_TAG_BYTES]).decode()


def code_for(settings: Settings, store_id: int) -> str:
    """The signed nameplate code of a store."""
    return f"N{store_id}.{_tag(settings, store_id)}"


def url_for(settings: Settings, code: str) -> str:
    """The QR code's text: the mobile app's check-in address of this nameplate."""
    return f"{settings.public_url}/m/n/{code}"


def store_of(settings: Settings, text: str) -> int:
    """The store id of a scanned nameplate (its code or its whole URL); 422
    ``invalid_nameplate`` when it is malformed or its tag is not ours."""
    code = text.strip().split("?", 1)[0].split("#", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    match = _CODE.fullmatch(code)
    if match is None:
        raise Unprocessable("not a store nameplate", code="invalid_nameplate")
    store_id = int(match.group(1))
    if not hmac.compare_digest(match.group(2), _tag(settings, store_id)):
        raise Unprocessable("not a genuine store nameplate", code="invalid_nameplate")
    return store_id


def png(url: str) -> bytes:
    """The QR code of ``url`` as a PNG (8 pixels a module, the standard 4-module margin)."""
    buffer = io.BytesIO()
    segno.make(url, error="m", micro=False).save(buffer, kind="png", scale=8, border=4)
    return buffer.getvalue()


_A6 = (298, 420)  # points


def _utf16_hex(text: str) -> str:
    """Text for the UniGB-UCS2-H encoding: UCS-2 big-endian (outside the BMP: '?')."""
    return "".join(f"{ord(c) if ord(c) <= 0xFFFF else 0x3F:04X}" for c in text)


def _ascii(text: str) -> str:
    """Text for a PDF literal string in Helvetica: ASCII, with ( ) \\ escaped."""
    safe = "".join(c if 32 <= ord(c) < 127 else "?" for c in text)
    return safe.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def _page(url: str, name: str, erp_code: str) -> bytes:
    """The page's content stream: the QR centred in the upper part, name and code below."""
    matrix = segno.make(url, error="m", micro=False).matrix
    modules = len(matrix)
    width, height = _A6
    size = 220.0
    unit = size / modules
    left, top = (width - size) / 2, height - 50
    ops = ["0 g"]
    for row, line in enumerate(matrix):
        for col, dark in enumerate(line):
            if dark:
                x, y = left + col * unit, top - (row + 1) * unit
                ops.append(f"{x:.3f} {y:.3f} {unit:.3f} {unit:.3f} re")
    ops.append("f")
    y = top - size - 36
    font, lines = _name_lines(name)
    for text in lines:
        ops.append(f"BT /F2 {font:.1f} Tf {_MARGIN} {y:.1f} Td <{_utf16_hex(text)}> Tj ET")
        y -= font * 1.25
    ops.append(f"BT /F1 11 Tf {_MARGIN} {y - 8:.1f} Td ({_ascii(erp_code)}) Tj ET")
    return "\n".join(ops).encode()


_MARGIN = 30  # points, left and right
_NAME_SIZES = (14.0, 7.0)  # the name's font size: at most, at least


def _ems(text: str) -> float:
    """The width of ``text`` in ems, as the PDF's font declares it (``/W``: ASCII half)."""
    return sum(0.5 if " " <= c <= "~" else 1.0 for c in text)


def _name_lines(name: str) -> tuple[float, list[str]]:
    """The font size and the one or two lines that fit the store's name across the page, the
    largest size that does (a probe: every glyph a full em at 14 pt ran a name of 30 characters
    off the page, and names past 40 characters were cut silently). A name too long for two
    lines at the least size ends in an ellipsis."""
    largest, least = _NAME_SIZES
    size = largest
    while True:
        lines = _wrap(name, (_A6[0] - 2 * _MARGIN) / size)
        if len(lines) <= 2:
            return size, lines
        if size <= least:
            second = lines[1]
            while _ems(second + "…") * size > _A6[0] - 2 * _MARGIN:
                second = second[:-1]
            return size, [lines[0], second.rstrip() + "…"]
        size = max(least, size - 0.5)


def _wrap(text: str, ems: float) -> list[str]:
    """``text`` in lines of at most ``ems``, broken after a space where a line has one."""
    lines, line = [], ""
    for c in text:
        if line and _ems(line + c) > ems:
            cut = line.rfind(" ") + 1 if " " in line.strip() else len(line)
            lines.append(line[:cut].rstrip())
            line = line[cut:].lstrip()
        line += c
    return [*lines, line] if line else lines


def pdf(url: str, name: str, erp_code: str) -> bytes:
    """A one-page A6 PDF nameplate: the QR code, the store's name and its ERP code."""
    content = _page(url, name, erp_code)
    width, height = _A6
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {width} {height}] "
        "/Resources << /Font << /F1 5 0 R /F2 6 0 R >> >> /Contents 4 0 R >>".encode(),
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Type /Font /Subtype /Type0 /BaseFont /STSong-Light /Encoding /UniGB-UCS2-H "
        b"/DescendantFonts [7 0 R] >>",
        # CIDs 1-95 are the ASCII characters in Adobe-GB1: half an em; the rest a full one
        b"<< /Type /Font /Subtype /CIDFontType0 /BaseFont /STSong-Light "
        b"/CIDSystemInfo << /Registry (Adobe) /Ordering (GB1) /Supplement 2 >> "
        b"/DW 1000 /W [1 95 500] /FontDescriptor 8 0 R >>",
        b"<< /Type /FontDescriptor /FontName /STSong-Light /Flags 6 "
        b"/FontBBox [-25 -254 1000 880] /ItalicAngle 0 /Ascent 880 /Descent -120 "
        b"/CapHeight 880 /StemV 93 >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)
