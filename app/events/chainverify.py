"""The event chain's algorithm, and the offline verifier of an export (SPEC B7).

This one file defines how an event is hashed into its brand's chain; the server
(``app.chain``) imports it, and an auditor runs it alone — it needs Python 3.10+ and nothing
else (no Tracecode, no database, no third-party package)::

    python chainverify.py --file export.jsonl [--public-key HEX [--require-anchor]]
    python -m app.events.chainverify --file export.jsonl      (in a Tracecode checkout)
    tracecode chain verify --file export.jsonl

The algorithm (format ``tracecode-event-chain-v1``):

* Each brand has one chain. Link 0 is the genesis, ``SHA-256("tracecode-event-chain-v1/" +
  brand id in decimal)``; link ``n`` (from 1) is ``SHA-256(hash of link n-1 || canonical bytes
  of event n)``, raw 32-byte digests concatenated.
* The canonical bytes of an event are its 23 ``FIELDS`` in that order, each a text or null:
  a text as the 4-byte big-endian length of its UTF-8 bytes followed by them, a null as the four
  bytes ``FF FF FF FF``. Integers are decimal texts; ``event_time`` and ``record_time`` are
  microseconds since 1970-01-01T00:00:00Z in decimal; ``event_uuid`` lower-case with hyphens;
  the JSON fields (``biz_transactions``, ``details``, ``error_declaration``) are PostgreSQL's
  ``jsonb`` text as exported (taken as they are, never re-serialised); ``codes`` is the event's
  codes (``event_codes``) as ``kind:code`` (``u`` a unit's 64-bit id, ``c`` a case's SSCC as a
  number), sorted by kind then by the code's numeric value, joined by ``,`` (empty: ``""``).
* An anchor signs, with Ed25519 (RFC 8032), the UTF-8 bytes of
  ``"tracecode-anchor-v1\\n{brand_id}\\n{position}\\n{hash hex}\\n{anchored_at}\\n"``, where
  ``anchored_at`` is the exact text exported (UTC, ``YYYY-MM-DDTHH:MM:SS.ffffffZ``).

An export is JSON lines: first a header ``{"format", "brand_id", "from", "to",
"previous_hash", "public_key", "key_id", ...}`` (``previous_hash``: link ``from - 1``; the
genesis when ``from`` is 1), then one ``{"position", "hash", "event": {FIELDS…}}`` per link in
order (``codes`` a list of ``kind:code`` texts), then one ``{"anchor": {...}}`` per anchor
whose position lies in the range. A link line holds those three keys only, and its event exactly
the ``FIELDS`` (nothing a hash does not cover), each code one ``kind:code`` (``u:N``, ``c:N``).
The verifier recomputes every link from the previous one and the event's fields, checks each
anchor's signature and that its hash is the link's at its position, requires a link line for
every position ``from``..``to`` (an export whose link lines were cut, or stripped altogether,
fails), and names the first line that does not hold. Get the
public key from the brand's ``GET /chain`` (or the operator) and pass it with
``--public-key``: the header's own copy proves nothing about who signed. Only an anchor makes
the links evidence — whoever edits an export recomputes every hash after the edit and drops the
anchors — so the positions after the last anchor verified (all of them, without one) are named
in a warning and on the ``ok`` line (``NOT ANCHORED``); ``--require-anchor`` (with
``--public-key``) fails then, exit 1. Not by default: an export that ends after the last anchor
is an ordinary one (its links are anchored later, and the next export's anchor covers them).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

FORMAT = "tracecode-event-chain-v1"
ANCHOR_FORMAT = "tracecode-anchor-v1"
FIELDS = (
    "id",
    "event_uuid",
    "brand_id",
    "event_type",
    "action",
    "biz_step",
    "disposition",
    "event_time",
    "tz_offset",
    "record_time",
    "read_point",
    "biz_location",
    "source_org",
    "destination_org",
    "biz_transactions",
    "parent_kind",
    "parent_code",
    "child_count",
    "recorded_by",
    "client_event_id",
    "details",
    "error_declaration",
    "codes",
)
_NULL = b"\xff\xff\xff\xff"
_CODE = re.compile(r"[uc]:[0-9]+")  # one code of an exported event's ``codes`` list
_LINK_KEYS = frozenset({"position", "hash", "event"})


def genesis(brand_id: int) -> bytes:
    """Link 0 of a brand's chain."""
    return hashlib.sha256(f"{FORMAT}/{brand_id}".encode()).digest()


def codes_text(codes: Iterable[tuple[str, int]]) -> str:
    """The ``codes`` field: ``kind:code`` sorted by kind, then by the code's value."""
    return ",".join(f"{kind}:{code}" for kind, code in sorted(codes))


def canonical(values: Sequence[str | None]) -> bytes:
    """The canonical bytes of an event given its ``FIELDS`` values in order."""
    if len(values) != len(FIELDS):
        raise ValueError(f"an event has {len(FIELDS)} fields, not {len(values)}")
    out = bytearray()
    for value in values:
        if value is None:
            out += _NULL
        else:
            data = value.encode("utf-8")
            out += len(data).to_bytes(4, "big") + data
    return bytes(out)


def link(previous: bytes, event: bytes) -> bytes:
    """The hash of a link: SHA-256(previous link's hash || the event's canonical bytes)."""
    return hashlib.sha256(previous + event).digest()


def anchor_message(brand_id: int, position: int, hash_hex: str, anchored_at: str) -> bytes:
    """The bytes an anchor's Ed25519 signature signs."""
    return f"{ANCHOR_FORMAT}\n{brand_id}\n{position}\n{hash_hex}\n{anchored_at}\n".encode()


def key_id(public_key: bytes) -> str:
    """A public key's short name: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(public_key).hexdigest()[:16]


# -- Ed25519 verification (RFC 8032 section 6, the reference code, verify only) ---------------

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)
Point = tuple[int, int, int, int]


def _recover_x(y: int, sign: int) -> int | None:
    if y >= _P:
        return None
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P:
        return None
    return _P - x if (x & 1) != sign else x


def _add(a: Point, b: Point) -> Point:
    e1 = (a[1] - a[0]) * (b[1] - b[0]) % _P
    h1 = (a[1] + a[0]) * (b[1] + b[0]) % _P
    c = 2 * a[3] * b[3] * _D % _P
    d = 2 * a[2] * b[2] % _P
    e, f, g, h = h1 - e1, d - c, d + c, h1 + e1
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _mul(s: int, point: Point) -> Point:
    result: Point = (0, 1, 1, 0)
    while s > 0:
        if s & 1:
            result = _add(result, point)
        point = _add(point, point)
        s >>= 1
    return result


def _same(a: Point, b: Point) -> bool:
    return (a[0] * b[2] - b[0] * a[2]) % _P == 0 and (a[1] * b[2] - b[1] * a[2]) % _P == 0


def _decompress(data: bytes) -> Point | None:
    y = int.from_bytes(data, "little")
    sign, y = y >> 255, y & ((1 << 255) - 1)
    x = _recover_x(y, sign)
    return None if x is None else (x, y, 1, x * y % _P)


_GY = 4 * pow(5, _P - 2, _P) % _P
_GX = _recover_x(_GY, 0) or 0
_BASE: Point = (_GX, _GY, 1, _GX * _GY % _P)


def ed25519_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is ``public_key``'s Ed25519 signature of ``message``."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    a, r = _decompress(public_key), _decompress(signature[:32])
    s = int.from_bytes(signature[32:], "little")
    if a is None or r is None or s >= _L:
        return False
    h = int.from_bytes(hashlib.sha512(signature[:32] + public_key + message).digest(), "little")
    return _same(_mul(s, _BASE), _add(r, _mul(h % _L, a)))


# -- the export ---------------------------------------------------------------------------------


@dataclass
class Report:
    """What a verification found: ``ok``, or the first ``problem`` (line, position, event id)."""

    brand_id: int | None = None
    links: int = 0
    anchors: int = 0
    first: int | None = None
    last: int | None = None
    head_hash: str | None = None
    problem: str | None = None
    line: int | None = None
    position: int | None = None
    event_id: str | None = None
    unanchored: tuple[int, int] | None = None  # the positions no verified anchor covers
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem is None


def event_values(event: dict[str, object]) -> list[str | None]:
    """An exported event's ``FIELDS`` values (``codes`` joined back into its text); ``ValueError``
    unless it holds exactly the ``FIELDS`` (a key no hash covers would pass unverified) and each
    code is one ``kind:code`` (``["u:1,u:2"]`` joins to the bytes of ``["u:1", "u:2"]``)."""
    if set(event) != set(FIELDS):
        extra, missing = sorted(set(event) - set(FIELDS)), sorted(set(FIELDS) - set(event))
        raise ValueError(
            "the event's fields are not the hashed ones"
            + (f"; not hashed: {', '.join(extra)}" if extra else "")
            + (f"; missing: {', '.join(missing)}" if missing else "")
        )
    values: list[str | None] = []
    for name in FIELDS:
        value = event[name]
        if name == "codes":
            if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
                raise ValueError("codes is not a list of texts")
            if not all(_CODE.fullmatch(c) for c in value):
                raise ValueError("codes holds an element that is not one kind:code (u:N or c:N)")
            value = ",".join(value)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{name} is not a text or null")
        values.append(value)
    return values


def _fail(report: Report, line: int, problem: str, **where: object) -> Report:
    report.problem, report.line = problem, line
    report.position = where.get("position")  # type: ignore[assignment]
    report.event_id = where.get("event_id")  # type: ignore[assignment]
    return report


class _Verifier:
    """The state of one verification: the header read, the links' hashes so far."""

    def __init__(self, public_key: bytes | None) -> None:
        self.report = Report()
        self.public_key = public_key
        self.header: dict[str, object] | None = None
        self.hashes: dict[int, bytes] = {}
        self.previous = b""
        self.expected = 0
        self.to = 0
        self.anchored = 0  # the last position a verified anchor covers (from - 1: none)

    def header_line(self, item: dict[str, object]) -> str | None:
        """Take the header; the problem with it, if any."""
        if item.get("format") != FORMAT:
            return f"the first line is not a {FORMAT} header"
        self.header = item
        try:
            self.report.brand_id = int(str(item["brand_id"]))
            self.previous = bytes.fromhex(str(item["previous_hash"]))
            self.expected, self.to = _whole(item["from"]), _whole(item["to"])
            stated = bytes.fromhex(str(item.get("public_key") or ""))
        except (KeyError, ValueError):
            return "the header's brand_id, from, to or hashes are malformed"
        if not 1 <= self.expected <= self.to:
            return "the header's from and to are not a range of positions"
        if self.expected == 1 and self.previous != genesis(self.report.brand_id):
            return "previous_hash of position 1 is not the genesis"
        if self.public_key is None:
            self.public_key = stated
            self.report.warnings.append(
                "anchors checked against the export's own public key: pass --public-key "
                "(from GET /chain) to know who signed them"
            )
        elif stated and stated != self.public_key:
            self.report.warnings.append("the export names another public key than the one given")
        self.hashes[self.expected - 1] = self.previous
        self.anchored = self.expected - 1
        return None

    def link_line(self, item: dict[str, object]) -> tuple[str, object, object] | None:
        """Recompute one link; (problem, position, event id) when it does not hold."""
        position, event = item.get("position"), item.get("event")
        if position != self.expected:
            return f"expected the link at position {self.expected}", None, None
        if event is None:  # the server exports a link whose event row is gone so
            return "event missing: the link's event was deleted", position, None
        if not isinstance(event, dict):
            return "the link's event is not an object", position, None
        if not set(item) <= _LINK_KEYS:
            extra = ", ".join(sorted(set(item) - _LINK_KEYS))
            return f"the link line holds keys no hash covers: {extra}", position, event.get("id")
        event_id = event.get("id")
        try:
            computed = link(self.previous, canonical(event_values(event)))
        except ValueError as exc:
            return str(exc), position, event_id
        if event.get("brand_id") != str(self.report.brand_id):
            return "event of another brand", position, event_id
        if computed.hex() != item.get("hash"):
            return "hash does not match the event", position, event_id
        self.hashes[self.expected] = self.previous = computed
        report = self.report
        report.first = report.first or self.expected
        report.last, report.links = self.expected, report.links + 1
        self.expected += 1
        return None


def verify_lines(
    lines: Iterable[str], public_key: bytes | None = None, require_anchor: bool = False
) -> Report:
    """Verify an export, line by line; stop at the first problem (see the module's docstring).
    The links after the last verified anchor are named (``unanchored``, a warning): anyone can
    recompute their hashes; with ``require_anchor`` they are a problem."""
    state = _Verifier(public_key)
    report = state.report
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            item = json.loads(text)
        except (ValueError, RecursionError):
            return _fail(report, number, "not a JSON line")
        if not isinstance(item, dict):
            return _fail(report, number, "not a JSON object")
        if state.header is None:
            problem = state.header_line(item)
            if problem:
                return _fail(report, number, problem)
        elif "anchor" in item:
            anchor = item["anchor"]
            key = state.public_key or b""
            problem = _check_anchor(anchor, report.brand_id, state.hashes, key)
            if problem:
                where = anchor.get("position") if isinstance(anchor, dict) else None
                return _fail(report, number, problem, position=where)
            report.anchors += 1
            state.anchored = max(state.anchored, _whole(anchor["position"]))
        else:
            failed = state.link_line(item)
            if failed:
                return _fail(report, number, failed[0], position=failed[1], event_id=failed[2])
    if state.header is None:
        return _fail(report, 0, "empty export")
    if report.last != state.to:  # every position from..to is a link line: none may be missing
        where = f"ends at position {report.last}" if report.links else "holds no link"
        return _fail(report, 0, f"the export {where}, not at {state.to} as its header says")
    report.head_hash = state.previous.hex()
    if state.anchored < state.to:
        report.unanchored = (state.anchored + 1, state.to)
        uncovered = f"positions {state.anchored + 1}..{state.to}"
        if require_anchor:
            problem = f"no verified anchor covers {uncovered}"
            return _fail(report, 0, problem, position=state.anchored + 1)
        report.warnings.append(
            f"no verified anchor covers {uncovered}: their hashes show only that the export is "
            "consistent — anyone can recompute them (anchor the head, POST /chain/anchors, and "
            "export again; --require-anchor fails then)"
        )
    return report


def _whole(value: object) -> int:
    """A position as an export writes it: a JSON integer (a decimal text is taken too); else
    ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{value!r} is not a position")
    return int(value)


def _check_anchor(
    anchor: object, brand_id: int | None, hashes: dict[int, bytes], public_key: bytes
) -> str | None:
    if not isinstance(anchor, dict):
        return "anchor is not an object"
    try:
        position = _whole(anchor["position"])
        message = anchor_message(
            int(str(anchor["brand_id"])), position, str(anchor["hash"]), str(anchor["anchored_at"])
        )
        signature = bytes.fromhex(str(anchor["signature"]))
    except (KeyError, ValueError, TypeError):
        return "anchor fields are malformed"
    if str(anchor["brand_id"]) != str(brand_id):
        return "anchor of another brand"
    if not ed25519_verify(public_key, message, signature):
        return "anchor signature does not verify"
    if position not in hashes:
        return "anchor position is not in the export"
    if hashes[position].hex() != anchor["hash"]:
        return "anchor hash differs from the chain at its position"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="chainverify", description="Verify an export of Tracecode's event chain offline."
    )
    parser.add_argument("--file", required=True, help="the export (JSON lines); - for stdin")
    parser.add_argument("--public-key", help="the anchors' Ed25519 public key (64 hex digits)")
    parser.add_argument(
        "--require-anchor",
        action="store_true",
        help="fail unless an anchor verified under --public-key covers every link",
    )
    args = parser.parse_args(argv)
    if args.require_anchor and not args.public_key:
        parser.error("--require-anchor needs --public-key: the export's own key proves nothing")
    try:
        key = bytes.fromhex(args.public_key) if args.public_key else None
    except ValueError:
        print("chainverify: --public-key is not hex", file=sys.stderr)
        return 2
    try:
        if args.file == "-":
            report = verify_lines(sys.stdin, key, args.require_anchor)
        else:
            with open(args.file, encoding="utf-8") as lines:
                report = verify_lines(lines, key, args.require_anchor)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"chainverify: {exc}", file=sys.stderr)
        return 2
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if not report.ok:
        where = f"line {report.line}"
        if report.position is not None:
            where += f", position {report.position}"
        if report.event_id is not None:
            where += f", event {report.event_id}"
        print(f"FAILED ({where}): {report.problem}")
        return 1
    unanchored = ""
    if report.unanchored:
        first, last = report.unanchored
        unanchored = f"; NOT ANCHORED: positions {first}..{last} (no verified anchor covers them)"
    print(
        f"ok: brand {report.brand_id}, positions {report.first}..{report.last} "
        f"({report.links} links), {report.anchors} anchors verified, head {report.head_hash}"
        + unanchored
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
