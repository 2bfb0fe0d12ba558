"""The printed codes are pinned: known answers read from the file `cargo test` reads too.

``core_rs/vectors/known_answers.txt`` holds (master key, key version, batch, index) → (serial,
PIN), printer-file lines with their QR content, and NIST's FF1-AES samples. The Rust core (through
``app.codes.scheme``, the Python face) and the pure-Python reference must both give exactly these
answers; any change to what the scheme prints fails here and in core_rs/tests/known_answers.rs.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pytest

from app.codes import reference
from app.codes.reference import ReferenceScheme
from app.codes.scheme import (
    VERIFY_OK,
    Scheme,
    iter_verdicts,
    load_scheme,
    parse_digital_link,
    serial_from_scan,
)

VECTORS = Path(__file__).resolve().parent.parent / "core_rs" / "vectors" / "known_answers.txt"
DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
MAX_U32 = 2**32 - 1


def records(kind: str) -> list[list[str]]:
    """The fields after the kind of every record of one kind, in file order."""
    lines = VECTORS.read_text(encoding="ascii").splitlines()
    rows = [line.split(" ") for line in lines if line and not line.startswith("#")]
    return [row[1:] for row in rows if row[0] == kind]


def field(text: str) -> str:
    return "" if text == "-" else text


MASTERS = {name: bytes.fromhex(hexkey) for name, hexkey in records("key")}


class Code(NamedTuple):
    key: str
    version: int
    batch_no: int
    index: int
    pin_length: int
    serial: str
    pin: str


class PrintLine(NamedTuple):
    key: str
    version: int
    batch_no: int
    index: int
    kind: str
    url_prefix: str
    line: str


class Ff1Sample(NamedTuple):
    sample: int
    key: bytes
    radix: int
    tweak: bytes
    plaintext: str
    ciphertext: str


CODES = [
    Code(k, int(v), int(b), int(i), int(n), serial, pin)
    for k, v, b, i, n, serial, pin in records("code")
]
PRINTS = [
    PrintLine(k, int(v), int(b), int(i), kind, field(prefix), line)
    for k, v, b, i, kind, prefix, line in records("print")
]
FF1_SAMPLES = [
    Ff1Sample(int(s), bytes.fromhex(key), int(radix), bytes.fromhex(field(tweak)), pt, ct)
    for s, key, radix, tweak, pt, ct in records("ff1")
]


def scheme_for(key: str, pin_length: int = 6) -> Scheme:
    """The scheme every vector is checked under: versions 1 and 2 active, 2 current."""
    return load_scheme(MASTERS[key], [1, 2], 2, pin_length)


def test_the_file_covers_both_ends_of_the_index_range_and_two_versions():
    assert len(MASTERS) >= 2 and len(CODES) >= 32
    assert {0, MAX_U32} <= {c.index for c in CODES}
    assert {0, MAX_U32} <= {c.batch_no for c in CODES}
    assert {1, 2} <= {c.version for c in CODES}
    assert {c.key for c in CODES} == set(MASTERS)
    assert {p.kind for p in PRINTS} == {"outer", "inner"}
    assert [s.sample for s in FF1_SAMPLES] == list(range(1, 10))


@pytest.mark.parametrize("code", CODES, ids=lambda c: " ".join(map(str, c[:5])))
def test_the_core_prints_the_pinned_serial_and_pin(code: Code):
    s = scheme_for(code.key, code.pin_length)
    assert s.serial(code.batch_no, code.index, code.version) == code.serial
    assert s.pin(code.serial) == code.pin
    assert s.check_pin(code.serial, code.pin)
    assert s.verify(code.serial) == (code.batch_no, code.index, code.version)
    record = s.generate(code.batch_no, code.index, code.index + 1, version=code.version)
    assert record == f"{code.serial}{code.pin}".encode()
    (verdict,) = iter_verdicts(s.verify_buffer(code.serial.encode()))
    assert verdict == (VERIFY_OK, code.batch_no, code.index, code.version)
    assert s.verify_many([code.serial]) == [verdict]


@pytest.mark.parametrize("code", CODES, ids=lambda c: " ".join(map(str, c[:5])))
def test_the_reference_gives_the_same_known_answers(code: Code):
    ref = ReferenceScheme(MASTERS[code.key], [1, 2], 2, code.pin_length)
    assert ref.serial(code.batch_no, code.index, code.version) == code.serial
    assert ref.pin(code.serial) == code.pin
    assert ref.verify(code.serial) == (code.batch_no, code.index, code.version)


@pytest.mark.parametrize("row", PRINTS, ids=lambda p: " ".join(map(str, p[:5])))
def test_printer_lines_and_their_qr_content_are_pinned(row: PrintLine):
    s = scheme_for(row.key)
    got = s.print_lines(
        row.batch_no, row.index, row.index + 1, row.kind, row.url_prefix, version=row.version
    )
    assert got == f"{row.line}\n".encode()
    serial = s.serial(row.batch_no, row.index, row.version)
    seq, *rest = row.line.split(",")
    assert int(seq) == row.index + 1
    if row.kind == "inner":
        assert rest == [s.pin(serial)]
        return
    printed, qr = rest
    assert printed == serial and qr == row.url_prefix + serial
    # What a scanner reads off the QR leads back to the same code.
    assert serial_from_scan(qr) == serial
    if "/01/" in qr:
        assert parse_digital_link(qr)["21"] == serial


@pytest.mark.parametrize("s", FF1_SAMPLES, ids=lambda s: f"sample {s.sample}")
def test_reference_ff1_matches_nist_samples(s: Ff1Sample):
    """The pure-Python FF1 (the reference of the Rust core's) against NIST SP 800-38G."""
    x = [DIGITS.index(c) for c in s.plaintext]
    enc = reference.ff1_encrypt(s.key, s.radix, s.tweak, x)
    assert "".join(DIGITS[d] for d in enc) == s.ciphertext
    assert reference.ff1_decrypt(s.key, s.radix, s.tweak, enc) == x


def test_a_serial_typed_in_full_width_or_with_zero_width_marks_reads_as_the_serial():
    """Probe Q: a genuine code typed with a Chinese input method (full-width letters and digits,
    or a zero-width space or byte-order mark picked up on the way) was "malformed"."""
    serial = "TQXZF37NK6SPNRAH6005"
    full_width = "".join(chr(ord(c) + 0xFEE0) for c in serial)
    assert full_width != serial
    for typed in (full_width, f"\ufeff{serial}\u200b", f"https://t.example/c/{full_width}"):
        assert serial_from_scan(typed) == serial, typed
