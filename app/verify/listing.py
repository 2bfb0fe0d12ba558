"""The verification records list (SPEC V3/V4, the console's "verification records"): every stored
verification of the caller's brand, filtered, paged and exportable.

Reads only. The records are written behind by ``app.verify.records`` (the write-behind of the
``/v1/verify`` fast path, which this module never touches); a record appears here once flushed.

Who sees what. ``alerts.read`` or ``reports.read``. A brand's own staff see every record of the
brand. Staff of an organisation below it (a factory, an agent, a store) see the records of the
units of their subtree: units whose designated channel agent, designated store or current holder
lies in it; a scan of a code that names no unit (forged, malformed) is the brand's alone. Another
brand's records are never read: every query is bounded by the caller's brand. The consumer's
data of a record — the client address and the member of a claim, what a member's erasure
clears (``app.verify.record.PERSONAL``) — is the brand head office's, as the members are
(``app.members.admin``): below the brand both are null, and the ``member_id`` filter answers 403
``brand_staff_only`` (a probe: an agent's administrator read each record's member and IP, and a
member's scan history through the filter).

Filters. A period of Asia/Shanghai days (``from``/``to`` inclusive; without ``from`` the last
30 days, at most 366 days: ``verifications`` is partitioned by month and read through its
``(brand_id, at)`` index), the result, the reason, the product, the province and city the IP
was placed in (as the records spell them: 浙江省, 杭州市), the serial (its start, case-insensitive)
and the member of a claim. Newest first.

Severity. Each row carries the severity the console colours it by, from its result: ``ok``
(genuine), ``info`` (unconfirmed: asked without its PIN), ``warning`` (wrong PIN, suspicious) and
``critical`` (not genuine, locked) — the alerts' info/warning/critical plus ``ok``.

Exports go through ``app.logistics.center_routes.answer`` (CSV or XLSX of every match, as the
management center and the rebate queries do).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from app.auth.principal import Principal
from app.errors import BadRequest, Forbidden
from app.localtime import REPORT_TZ
from app.logistics.center import Query
from app.verify.schemas import Result
from app.verify.schemas_records import VerificationRow

READ = ("alerts.read", "reports.read")
DEFAULT_DAYS = 30  # without ``from``: the last 30 days
MAX_DAYS = 366
COLUMNS = list(VerificationRow.__struct_fields__)

SEVERITY_SQL = """CASE v.result WHEN 'genuine' THEN 'ok' WHEN 'unconfirmed' THEN 'info'
    WHEN 'wrong_pin' THEN 'warning' WHEN 'suspicious' THEN 'warning' ELSE 'critical' END"""

# The column order is VerificationRow's, which the exports' header follows. The consumer's
# address and member (``_PERSONAL``, last) are the brand's alone: NULL below it.
_SELECT = f"""v.id, v.at, v.result, {SEVERITY_SQL} AS severity, v.reason, v.serial, v.code_id,
    v.product_id, p.name AS product_name, v.queries, v.pin_given, v.province, v.city"""
_PERSONAL = "host(v.client_ip) AS client_ip, v.member_id"
_PERSONAL_BELOW = "NULL::text AS client_ip, NULL::bigint AS member_id"
_SOURCE = "verifications v LEFT JOIN products p ON p.id = v.product_id"
_ORDER = "v.at DESC, v.id DESC"
# below the brand: the units of the caller's subtree (channel agent, designated store, holder),
# ``%(scope)s`` its path + ``%``; the evidence packs' records too (``app.triage.evidence``)
SUBTREE = """EXISTS (SELECT 1 FROM unit_state u
    JOIN orgs o ON o.id IN (u.channel_org_id, u.store_org_id, u.holder_org_id)
    WHERE u.code = v.code_id AND o.path LIKE %(scope)s)"""


@dataclass(frozen=True)
class RecordFilters:
    date_from: date | None = None
    date_to: date | None = None
    result: Result | None = None
    reason: str | None = None
    product_id: int | None = None
    province: str | None = None
    city: str | None = None
    serial: str | None = None
    member_id: int | None = None


def period(f: RecordFilters, today: date) -> tuple[date, date]:
    """The filters' days: ``to`` defaults to today, ``from`` to 30 days before ``to``; 400
    ``bad_period`` when it ends before it starts or spans more than 366 days."""
    end = f.date_to or today
    start = f.date_from or date.fromordinal(max(1, end.toordinal() - (DEFAULT_DAYS - 1)))
    if start > end:
        raise BadRequest("the period ends before it starts", code="bad_period")
    if (end - start).days >= MAX_DAYS:
        raise BadRequest(
            f"a period of at most {MAX_DAYS} days", code="bad_period", details={"max": MAX_DAYS}
        )
    return start, end


def records_query(actor: Principal, f: RecordFilters, today: date) -> Query:
    """The verifications of the caller's brand (and subtree) matching ``f``, newest first."""
    actor.require_any(*READ)
    start, end = period(f, today)
    where = [
        "v.brand_id = %(brand)s",
        f"v.at >= (%(start)s::date::timestamp AT TIME ZONE '{REPORT_TZ}')",
        f"v.at < ((%(end)s::date + 1)::timestamp AT TIME ZONE '{REPORT_TZ}')",
    ]
    params: dict[str, Any] = {"brand": actor.brand_id, "start": start, "end": end}
    personal = _PERSONAL
    if actor.org_id != actor.brand_id:
        where.append(SUBTREE)
        params["scope"] = actor.org_path + "%"
        personal = _PERSONAL_BELOW
        if f.member_id is not None:  # a member's scan history, as GET /members/{id}/scans
            raise Forbidden(
                "members' scans are read by the brand's own staff", code="brand_staff_only"
            )
    for column, key, value in (
        ("v.result", "result", f.result),
        ("v.reason", "reason", f.reason),
        ("v.product_id", "product", f.product_id),
        ("v.province", "province", f.province),
        ("v.city", "city", f.city),
        ("v.member_id", "member", f.member_id),
    ):
        if value is not None:
            where.append(f"{column} = %({key})s")
            params[key] = value
    if f.serial:
        where.append("upper(v.serial) LIKE %(serial)s")
        params["serial"] = _like_prefix(f.serial.strip().upper())
    select = f"{_SELECT}, {personal}"
    return Query(select, _SOURCE, where, params, _ORDER, COLUMNS, "verifications")


def _like_prefix(text: str) -> str:
    """``text`` as a LIKE pattern matching what starts with it (its wildcards escaped)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def record_row(row: dict[str, Any]) -> VerificationRow:
    return VerificationRow(**row)
