"""Type stubs of the Rust core ``app._core`` (built from core_rs/ by maturin).

The serial scheme (SPEC C1): ``v = FF1-AES256_K1(batch_no << 32 | index)``, a 36-bit tag
``AES256_K2(v)``, serial = Crockford Base32 of ``v || tag`` (20 characters), PIN =
``AES256_K3(v)`` reduced to decimal digits. Keys come from one 32-byte master secret by
HKDF-SHA256 per purpose and key version. Bulk functions release the GIL and use several cores.
"""

from collections.abc import Sequence
from typing import Final, Self, final

__all__ = [
    "MAX_BULK",
    "REQUEST_BUCKETS",
    "SERIAL_LENGTH",
    "VERIFY_FORGED",
    "VERIFY_MALFORMED",
    "VERIFY_OK",
    "VERIFY_RECORD_SIZE",
    "ForgedSerial",
    "Gs1Error",
    "MalformedSerial",
    "RequestLog",
    "Scheme",
    "SerialError",
    "UnknownKeyVersion",
    "build_sscc",
    "crockford_decode",
    "crockford_encode",
    "digital_link",
    "gs1_check_digit",
    "is_valid_gtin",
    "is_valid_sscc",
    "json_depth_ok",
    "normalize_gtin",
    "parse_digital_link",
    "sgtin_urn",
    "sscc_link",
    "sscc_urn",
    "version",
]

SERIAL_LENGTH: Final[int]
"""Characters in a serial (20)."""
VERIFY_RECORD_SIZE: Final[int]
"""Bytes per result record of ``Scheme.verify_buffer`` (16: little-endian ``<IIII``)."""
VERIFY_OK: Final[int]
"""Status 0: genuine."""
VERIFY_MALFORMED: Final[int]
"""Status 1: not 20 Crockford Base32 symbols (or not a str, in ``verify_many``)."""
VERIFY_FORGED: Final[int]
"""Status 2: well-formed but no active key version accepts the tag."""
MAX_BULK: Final[int]
"""Most records one ``Scheme.generate`` call produces (2**26); stream larger ranges in chunks."""

class SerialError(ValueError):
    """Base class of every serial verification failure."""

class MalformedSerial(SerialError):
    """Not 20 Crockford Base32 symbols (wrong length or character), or text longer than 64."""

class ForgedSerial(SerialError):
    """Well-formed, but the tag matches under no active key version."""

class UnknownKeyVersion(SerialError):
    """A key version that is not active was requested."""

class Gs1Error(ValueError):
    """Invalid GS1 data (digits, check digit, length, character set) or Digital Link URI."""

def version() -> str:
    """Version of the Rust core, for /health and the CLI."""

REQUEST_BUCKETS: Final[tuple[float, ...]]
"""Upper bounds (seconds) of the request latency histogram's buckets (``RequestLog.series``)."""

@final
class RequestLog:
    """The request metrics and log lines of a process (``app.logs.requests``): counts per
    method, route and status with a latency histogram, and the log lines gathered, in order,
    for the writer thread. Past 32 MB gathered (a writer stuck on a stalled log stream), lines
    are dropped and counted; the next ``take`` ends with a line saying how many."""

    def __new__(cls, wake_at: int = 262144) -> Self: ...
    def done(
        self,
        rid: str,
        method: str,
        path: str,
        route: str,
        status: int,
        seconds: float,
        sample: float,
        log: bool,
    ) -> bool:
        """One answered request: counted (a method other than GET, HEAD, POST, PUT, PATCH,
        DELETE, OPTIONS as ``other``), and its access line added when ``log`` is true and the
        answer is 400 or more or falls in ``sample`` (a fraction). True when the lines gathered
        reached ``wake_at`` bytes."""
    def put(self, line: str) -> bool:
        """Add a formatted log line; true when the lines gathered reached ``wake_at`` bytes."""
    def take(self) -> bytes:
        """The lines gathered so far (JSON lines, UTF-8), removed from the log."""
    def series(self) -> list[tuple[str, str, list[tuple[int, int]], list[int], float]]:
        """Every series counted: (method, route, [(status, requests)], requests per latency
        bucket (not cumulative; the last is above every bound), sum of seconds)."""

@final
class Scheme:
    """The serial scheme under a set of active key versions.

    Key material is derived once here, never exposed (``derive`` gives keys of a separate
    namespace), zeroised when the object is dropped, and absent from ``repr``. Instances cannot
    be pickled, subclassed or changed.
    """

    def __new__(
        cls,
        master_key: bytes,
        versions: Sequence[int],
        current_version: int,
        pin_length: int = 6,
    ) -> Self:
        """Derive the keys of every active version.

        ``master_key`` must be 32 bytes; ``versions`` 1 to 8 distinct ints >= 1 that include
        ``current_version`` (else ``UnknownKeyVersion``); ``pin_length`` 4 to 10. Raises
        ValueError otherwise.
        """

    @property
    def versions(self) -> tuple[int, ...]:
        """Active key versions, in the order given."""

    @property
    def current_version(self) -> int:
        """The version new serials are made with."""

    @property
    def pin_length(self) -> int:
        """Digits in a PIN."""

    def serial(self, batch_no: int, index: int, version: int | None = None) -> str:
        """The 20-character serial of (batch_no, index), both in 0..2**32-1 (else ValueError).

        ``version`` defaults to the current one; an inactive one raises ``UnknownKeyVersion``.
        """

    def verify(self, serial: str) -> tuple[int, int, int]:
        """(batch_no, index, key_version) of a genuine serial.

        Accepts lower case, O for 0, I/L for 1 and hyphens. Tries the active versions, current
        first, with a constant-time tag comparison. Raises ``MalformedSerial`` or
        ``ForgedSerial``; TypeError if ``serial`` is not a str. Does not check the batch size
        (see ``app.codes.scheme.check_in_batch``).
        """

    def pin(self, serial: str) -> str:
        """The PIN printed inside the pack of a genuine serial; raises like ``verify``."""

    def check_pin(self, serial: str, pin: str) -> bool:
        """Whether ``pin`` is the serial's PIN (constant-time); raises like ``verify``."""

    def generate(
        self,
        batch_no: int,
        start: int,
        end: int,
        with_pins: bool = True,
        version: int | None = None,
        threads: int | None = None,
        newline: bool = False,
    ) -> bytes:
        """Records for indexes ``start..end`` (end exclusive, at most 2**32) of a batch.

        Each record is fixed width: the 20-byte serial, then the PIN (``pin_length`` digits) if
        ``with_pins``; with ``newline`` it is ``SERIAL,PIN\\n`` (or ``SERIAL\\n``). Runs without
        the GIL on ``threads`` threads (None or 0: all cores; 1: the calling thread only). At
        most ``MAX_BULK`` records per call. Raises ValueError on bad ranges and
        ``UnknownKeyVersion`` for an inactive ``version``.
        """

    def print_lines(
        self,
        batch_no: int,
        start: int,
        end: int,
        kind: str,
        url_prefix: str = "",
        seq_base: int = 1,
        version: int | None = None,
        threads: int | None = None,
    ) -> bytes:
        """Printer-file CSV lines for indexes ``start..end`` of a batch, without the GIL.

        ``kind="outer"``: ``seq,SERIAL,{url_prefix}SERIAL\n`` (the QR print); ``kind="inner"``:
        ``seq,PIN\n`` (the hidden print). ``seq = index + seq_base``. At most ``MAX_BULK`` lines
        per call; raises ValueError on a bad range or kind.
        """

    def verify_buffer(
        self,
        records: bytes,
        record_size: int = 20,
        threads: int | None = None,
    ) -> bytes:
        """Verify fixed-width records whose first 20 bytes are a serial (no hyphens).

        ``record_size`` lets the output of ``generate`` be verified as is. Returns 16 bytes per
        record, little-endian ``<IIII``: status (``VERIFY_*``), batch_no, index, version (zeros
        unless status is ``VERIFY_OK``). Never raises per record; runs without the GIL.
        Raises ValueError if ``len(records)`` is not a multiple of ``record_size``.
        """

    def verify_many(
        self,
        serials: Sequence[str],
        threads: int | None = None,
    ) -> list[tuple[int, int, int, int]]:
        """(status, batch_no, index, version) per serial; never raises per item.

        Items that are not str, or not 20 symbols, are ``VERIFY_MALFORMED``. Raises TypeError
        if ``serials`` itself is a str or bytes.
        """

    def derive(self, purpose: str, version: int, length: int = 32) -> bytes:
        """A key for another purpose (e.g. ``"export"``), ``length`` 16-64 bytes.

        HKDF-SHA256 with info ``tracecode/v{version}/ext/{purpose}``: never equal to a key of
        the serial scheme. ``purpose`` is 1-64 characters of ``a-z 0-9 . _ -`` (else
        ValueError); ``version`` must be active (else ``UnknownKeyVersion``).
        """

def crockford_encode(value: int, length: int = 20) -> str:
    """Crockford Base32 of ``0 <= value < 32**length`` as exactly ``length`` (1-25) symbols."""

def crockford_decode(text: str) -> int:
    """Value of 1-25 Crockford Base32 symbols (case-insensitive, O=0, I=L=1, '-' ignored).

    Raises ``MalformedSerial``.
    """

def gs1_check_digit(data: str) -> int:
    """GS1 mod-10 check digit of 1-17 data digits; raises ``Gs1Error``."""

def normalize_gtin(gtin: str) -> str:
    """A GTIN-8/12/13/14 checked (digits, length, check digit; all zeros is no GTIN) and
    left-padded to 14 digits.

    Raises ``Gs1Error``.
    """

def is_valid_gtin(gtin: str) -> bool:
    """Whether ``normalize_gtin`` accepts ``gtin``."""

def build_sscc(extension: int, company_prefix: str, serial_ref: int) -> str:
    """SSCC-18: extension digit (0-9) + company prefix (6-12 digits) + serial reference
    zero-padded to 16 digits with the prefix + check digit. Raises ``Gs1Error``."""

def is_valid_sscc(sscc: str) -> bool:
    """Whether ``sscc`` is 18 digits with a correct check digit."""

def digital_link(
    host: str,
    gtin: str,
    serial: str | None = None,
    lot: str | None = None,
    expiry: str | None = None,
    prefix: str = "",
    cpv: str | None = None,
) -> str:
    """``https://{host}{prefix}/01/{gtin14}[/22/{cpv}][/10/{lot}][/21/{serial}][?17={expiry}]``.

    ``gtin`` may be GTIN-8/12/13/14; serial, lot and cpv are 1-20 characters of GS1 CSET 82,
    percent-encoded where needed; expiry is YYMMDD; ``prefix`` is empty or ``/seg[/seg...]``.
    Raises ``Gs1Error``.
    """

def sscc_link(host: str, sscc: str, prefix: str = "") -> str:
    """``https://{host}{prefix}/00/{sscc}``; raises ``Gs1Error``."""

def parse_digital_link(uri: str) -> dict[str, str]:
    """Parse a Digital Link URI (http/https) or its path and query.

    Returns ``{"prefix": custom path prefix or "", "01" or "00": ..., "22"/"10"/"21": ...,
    query AIs such as "17": ..., "linkType": ... if given}``; the GTIN is normalised to 14
    digits, check digits and AI syntax are validated, segments are percent-decoded, a trailing
    slash is tolerated. Every all-digit query key must be a GS1 AI (not a key or key qualifier:
    those are the path's) whose value fits its format (GS1 General Specifications: ``N6``,
    ``N..8``, ``X..20``, ``N6+N4``…; dates are calendar dates, the century by GS1's sliding
    window, day 00 only where GS1 allows it). Other query parameters (non-GS1 extensions) are
    ignored. Raises ``Gs1Error``.
    """

def sgtin_urn(gtin: str, serial: str, company_prefix_len: int) -> str:
    """``urn:epc:id:sgtin:CompanyPrefix.IndicatorItemRef.Serial`` (prefix length 6-12).

    Raises ``Gs1Error``.
    """

def sscc_urn(sscc: str, company_prefix_len: int) -> str:
    """``urn:epc:id:sscc:CompanyPrefix.ExtSerialRef`` (prefix length 6-12); raises ``Gs1Error``."""

def json_depth_ok(body: bytes, limit: int) -> bool:
    """Whether a JSON text's arrays and objects nest at most ``limit`` levels deep (strings
    skipped; an unbalanced text: the highest level its running count reaches). One linear pass,
    without the GIL for a large body."""
