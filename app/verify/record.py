"""One verification record: made per verification on the hot path, queued to Redis as JSON by
the round's script (``prefix``) or, when Redis is down, inserted directly (``fields``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from app.verify.regions import Place
from app.verify.schemas import VerifyIn


class RecordRow(msgspec.Struct, gc=False, omit_defaults=True):
    """A verification record as the flusher stores it (``records.py``), less the outcome.

    ``member_id`` names the signed-in member (a points claim, a member's PIN check),
    ``member_token`` the id of the token that signed a check in (the flusher drops the member
    when it was signed out), ``retry`` a claim's retry key; a verification of none leaves them
    out of the JSON altogether (``omit_defaults``), so the hot path's records are unchanged."""

    at: str
    record_key: str
    code_id: int | None
    serial: str | None
    brand_id: int | None
    product_id: int | None
    pin_given: bool
    client_ip: str | None
    client_id: str | None
    user_agent: str | None
    province: str | None
    city: str | None
    lat: float | None
    lng: float | None
    member_id: int | None = None
    retry: str | None = None  # a claim's retry key (``app.claims``)
    gtin: str | None = None  # the GTIN a ``wrong_product`` scan named (another product's)
    member_token: str | None = None  # a member token's id (``jti``, hex)


_ENCODE = msgspec.json.Encoder().encode

# How long a verification's retry key holds (the script's SET NX EX): a claim's a day (a till's
# or an app's retries of one claim); the H5 answer page's check (``h5:``: the form sent again,
# a reload, the points claimed from the answer) ten minutes — one key per consumer check at a
# peak of tens of thousands a second: kept a day, they would fill Redis.
CLAIM_RETRY_SECONDS = 86_400
CHECK_RETRY_SECONDS = 600


def retry_seconds(retry: str) -> int:
    """How long the retry key ``retry`` holds."""
    return CHECK_RETRY_SECONDS if retry.startswith("h5:") else CLAIM_RETRY_SECONDS


def swept_retry(column: str) -> str:
    """SQL: the stand-in of the retry key in ``column`` once its record's details are past
    their days (``app.retention``): its md5, which pairs the records it paired."""
    return f"'md5:' || md5({column})"


# what a record says of the phone and the member: cleared when the member is erased
PERSONAL = (
    "client_ip",
    "client_id",
    "user_agent",
    "lat",
    "lng",
    "member_id",
    "retry",
    "member_token",
)


def decoded(payload: bytes) -> dict[str, Any] | None:
    """A queued record's fields; None when it is no JSON object (a poison record: not JSON,
    too deep for the decoder, or another value)."""
    try:
        record = msgspec.json.decode(payload)
    except (msgspec.MsgspecError, RecursionError):
        return None
    return record if isinstance(record, dict) else None


def member_of(record: dict[str, Any]) -> int | None:
    """The member a record names: an id PostgreSQL's bigint holds, else None (a poison record
    may say ``true`` or a number out of range: review)."""
    member = record.get("member_id")
    return member if type(member) is int and 0 < member < 2**63 else None


def anonymous(record: dict[str, Any]) -> bytes:
    """A record without what it says of the phone and the member (an erased member's)."""
    return _ENCODE({**record, **dict.fromkeys(PERSONAL)})


class Record:
    """One verification record; the round sends it to Redis as JSON (``prefix``)."""

    __slots__ = (
        "at",
        "at_text",
        "brand_id",
        "code_id",
        "data",
        "gtin",
        "ip",
        "key",
        "member_id",
        "member_token",
        "place",
        "product_id",
        "retry",
        "serial",
        "ua",
    )

    def __init__(
        self,
        at: datetime,
        key: str,
        data: VerifyIn,
        ip: str | None,
        ua: str | None,
        place: Place | None,
    ) -> None:
        self.at, self.key, self.data, self.ip, self.ua, self.place = at, key, data, ip, ua, place
        self.at_text = _ENCODE(at)[1:-1].decode()  # ISO 8601, as msgspec writes it
        self.code_id: int | None = None
        self.serial: str | None = None
        self.brand_id: int | None = None
        self.product_id: int | None = None
        self.member_id: int | None = None  # the signed-in member's (claim or check), else None
        self.retry: str | None = None  # a claim's retry key (app.claims), else None
        self.gtin: str | None = None  # a wrong_product scan's GTIN, else None
        self.member_token: str | None = None  # the id of the member token of a check, else None

    def row(self) -> RecordRow:
        place = self.place
        return RecordRow(
            self.at_text,
            self.key,
            self.code_id,
            self.serial,
            self.brand_id,
            self.product_id,
            self.data.pin is not None,
            self.ip,
            self.data.client_id,
            (self.ua or "")[:200] or None,
            place.province if place else None,
            place.city if place else None,
            place.lat if place else None,
            place.lng if place else None,
            self.member_id,
            self.retry,
            self.gtin,
            self.member_token,
        )

    def fields(self) -> dict[str, Any]:
        return msgspec.structs.asdict(self.row())

    def prefix(self) -> bytes:
        """The record as JSON without its closing brace; the script appends the outcome."""
        return _ENCODE(self.row())[:-1]
