"""SMS domain logic behind the HTTP face: gateway callbacks, marketing opt-outs, a brand's
campaign templates and campaigns (I2, W4, seed 1.12).

Callbacks come from the gateway, not from a user: each is signed (``verify_signature``:
HMAC-SHA256 of ``<timestamp>.<body>`` with ``TRACECODE_SMS_CALLBACK_SECRET``, the timestamp
within five minutes) and refused without a configured secret. A delivery report moves a ``sent``
row of that provider to ``delivered`` or ``undelivered`` once (a repeated or late report changes
nothing). A reply saying "TD" (or 退订, "T", "N", "回复TD退订") opts its phone out of the
marketing of the brand named in the reply (a reply naming no brand is ignored, as a report of
an unknown message id is), or else of every brand that has written to it.

Templates and campaigns belong to the caller's brand (permission ``sms.campaigns``); a campaign
reaches the brand's members, or the store managers of the caller's own subtree, and is queued in
one statement: opted-out phones and phones that had marketing in the last
``SMS_MARKETING_INTERVAL_HOURS`` are skipped, and the rows are spread over time, after the
brand's campaign messages already waiting, so that the brand's campaigns together leave at
``SMS_CAMPAIGN_RATE`` messages per second at most.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
import time
import unicodedata
from datetime import UTC, datetime
from typing import Any

import msgspec
from psycopg.types.json import Jsonb

from app import audit, idempotency, locks
from app.auth.principal import Principal
from app.auth.service import org_status
from app.config import Settings
from app.db import Conn, changed, changes_of, update_row
from app.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    Unauthorized,
    Unprocessable,
    ValidationFailed,
)
from app.localtime import REPORT_TZ, aware
from app.locks import Lock
from app.members.mask import mask_phone, shown_phone
from app.members.profile import AGE_BAND_SQL, member_provinces
from app.orgs.service import org_path
from app.paging import Page, fetch_page
from app.sms import sender
from app.sms.optouts import list_and_switch, set_opt_out
from app.sms.outbox import (
    OPTED_OUT,
    drop_marketing,
    erased_in_audience,
    erased_phone_hash,
    outbox_phone,
)
from app.sms.schemas import (
    AudienceFilter,
    CampaignIn,
    CampaignOut,
    DeliveryReportsIn,
    DeliveryReportsOut,
    OptOutOut,
    RepliesIn,
    RepliesOut,
    TemplateIn,
    TemplateOut,
    TemplatePatch,
)
from app.sms.templates import BUILTIN, LANG, placeholders, stray_braces
from app.textguard import without_blanks

PERMISSION = "sms.campaigns"
SIGNATURE_HEADER = "x-tracecode-signature"
TIMESTAMP_HEADER = "x-tracecode-timestamp"
SIGNATURE_WINDOW = 300  # seconds a signed callback stays valid
_OPT_OUT = re.compile(r"^\s*(?:回复)?\s*(TD|T|N|退订)\s*(?:退订)?\s*[。.!！]?\s*$", re.IGNORECASE)


# -- callbacks --------------------------------------------------------------------------------


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature of a callback: hex HMAC-SHA256 of ``<timestamp>.<body>``."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify_signature(
    settings: Settings, timestamp: str | None, signature: str | None, body: bytes
) -> None:
    """401 ``invalid_signature`` unless the callback is signed with the shared secret, now."""
    secret = settings.sms_callback_secret
    if not secret:
        raise Forbidden("SMS callbacks are not configured", code="callbacks_disabled")
    try:
        age = abs(time.time() - int(timestamp or ""))
    except (ValueError, OverflowError):  # 400 digits overflow the float (a probe: a 500)
        age = float("inf")
    expected = sign(secret, timestamp or "", body)
    # Bytes, not str: compare_digest raises TypeError on non-ASCII str (a forged header).
    given = (signature or "").lower().encode("utf-8", "surrogateescape")
    if age > SIGNATURE_WINDOW or not hmac.compare_digest(expected.encode(), given):
        raise Unauthorized("the callback's signature is wrong or too old", code="invalid_signature")


async def delivery_reports(
    conn: Conn, provider: str, data: DeliveryReportsIn
) -> DeliveryReportsOut:
    """Apply delivery reports of ``provider``: ``sent`` → ``delivered``/``undelivered``, once.
    A report's time is kept when it is plausible — from 2000 to a day ahead of this server's
    clock — else the report is dated when it came (a probe's year 10000 was stored, and no
    client could read the row back). A report of a message id no row has yet is held for a day
    (``sms_early_reports``): the sender records a message sent only once the gateway has
    answered for its whole batch, and applies a report held for it then
    (``sender.apply_held_reports``). A time without an offset is the gateway's Beijing wall
    clock (a probe: read in the database session's zone, UTC, delivered 8 hours ahead)."""
    params = {
        "provider": provider,
        "mids": [r.message_id for r in data.reports],
        "statuses": [r.status for r in data.reports],
        "errors": [r.error for r in data.reports],
        "ats": [_report_time(r.at) for r in data.reports],
    }
    cur = await conn.execute(
        f"""UPDATE sms_outbox o
              SET state = r.status, status_at = r.at, last_error = r.error
             FROM ({_REPORTS}) r
            WHERE o.provider = %(provider)s AND o.provider_message_id = r.mid
              AND o.state = 'sent'
           RETURNING o.provider_message_id""",
        params,
    )
    matched = {row["provider_message_id"] for row in await cur.fetchall()}
    await conn.execute("DELETE FROM sms_early_reports WHERE received_at < now() - interval '1 day'")
    await conn.execute(
        f"""INSERT INTO sms_early_reports (provider, message_id, status, error, at)
            SELECT %(provider)s, r.mid, r.status, r.error, r.at FROM ({_REPORTS}) r
             WHERE NOT EXISTS (SELECT 1 FROM sms_outbox o
                                WHERE o.provider = %(provider)s AND o.provider_message_id = r.mid)
            ON CONFLICT (provider, message_id) DO UPDATE
               SET status = EXCLUDED.status, error = EXCLUDED.error, at = EXCLUDED.at""",
        params,
    )
    await sender.apply_held_reports(conn)  # a send committed since the update above
    unknown = sum(1 for r in data.reports if r.message_id not in matched)
    return DeliveryReportsOut(updated=len(matched), unknown=unknown)


def _report_time(at: datetime | None) -> datetime | None:
    """A report's time, in UTC: the times are bound as an array, where PostgreSQL reads each
    offset itself and refuses one past ±15:59 (a gateway's +23:59 failed every report of the
    call; ``app.db.in_utc``). Past year 1 or 9999 in UTC it is none: dated when it came, as
    ``_REPORTS`` dates a time before 2000."""
    if at is None:
        return None
    try:
        return aware(at).astimezone(UTC)
    except OverflowError:
        return None


# The reports of one call, one row per message id (its last report), dated.
_REPORTS = """
SELECT DISTINCT ON (mid) mid, status, error,
       CASE WHEN at >= '2000-01-01' AND at <= now() + interval '1 day'
            THEN at ELSE clock_timestamp() END AS at
  FROM unnest(%(mids)s::text[], %(statuses)s::text[], %(errors)s::text[], %(ats)s::timestamptz[])
       WITH ORDINALITY AS r(mid, status, error, at, n)
 ORDER BY mid, n DESC"""


# The brands that wrote to a phone: by its number, or by an erased member's keyed hash of it
# (each by its own index).
_WROTE_TO = """
SELECT brand_id FROM sms_outbox WHERE phone = %s
 UNION
SELECT brand_id FROM sms_outbox WHERE phone_hash = %s"""


def is_opt_out(text: str) -> bool:
    """Whether a reply asks to opt out; in full-width letters too ("ＴＤ" from a Chinese input
    method in full-width mode was ignored, probe Q)."""
    text = unicodedata.normalize("NFKC", text)
    return _OPT_OUT.match(text) is not None or "退订" in text


async def replies(conn: Conn, data: RepliesIn, settings: Settings) -> RepliesOut:
    """Opt the phones that answered "TD" out of marketing (see the module's docstring): the
    brands that wrote to a phone are found by its number, or by the keyed hash an erasure keeps
    on its SMS instead (``erased_phone_hash``, until the retention clears it: a probe's TD after
    the member erased the membership opted the number out of nothing)."""
    opted = ignored = 0
    pairs: set[tuple[int, str]] = set()
    # the brands the replies name, as an unknown message id of a delivery report: a reply naming
    # no brand is ignored and the others applied (a probe: its opt-out broke the foreign key and
    # the whole batch was 409 in_use, the gateway's every retry too)
    named = list({r.brand_id for r in data.replies if r.brand_id and 0 < r.brand_id < 2**63})
    cur = await conn.execute(
        "SELECT id FROM orgs WHERE id = ANY(%s::bigint[]) AND kind = 'brand'", (named,)
    )
    known = {int(r["id"]) for r in await cur.fetchall()}
    for reply in data.replies:
        try:
            phone = outbox_phone(reply.phone)
        except Exception:
            ignored += 1
            continue
        if not is_opt_out(reply.text):
            ignored += 1
            continue
        if reply.brand_id is not None:
            brands = [reply.brand_id] if reply.brand_id in known else []
        else:
            cur = await conn.execute(_WROTE_TO, (phone, erased_phone_hash(settings, phone)))
            brands = [int(r["brand_id"]) for r in await cur.fetchall()]
        if not brands:
            ignored += 1
        pairs.update((brand_id, phone) for brand_id in brands)
    # in one order, whatever the batch's: two batches at once lock brands and members alike
    # (a probe: listed the other way round, they deadlocked); every member's row before any
    # brand's marketing lock, as an erasure takes them (a probe: the lock of a phone before,
    # then the row of another phone's member being erased, deadlocked with that erasure)
    ordered = sorted(pairs)
    for brand_id, phone in ordered:
        opted += await list_and_switch(conn, brand_id, phone, True, "reply")
    for brand_id, phone in ordered:
        await drop_marketing(conn, brand_id, phone, OPTED_OUT)
    return RepliesOut(opted_out=opted, ignored=ignored)


# -- opt-outs ---------------------------------------------------------------------------------


async def put_opt_out(conn: Conn, actor: Principal, phone: str, opted_out: bool) -> None:
    """Staff opt a phone out of (or back into) the caller's brand's marketing (audited)."""
    actor.require(PERMISSION)
    if not opted_out:  # taking back a member's "stop": the brand's decision, not a branch's
        _brand_staff(actor, "only the brand's own staff take a phone back into its marketing")
    phone = outbox_phone(phone)
    if await set_opt_out(conn, actor.brand_id, phone, opted_out, "api"):
        await audit.record(
            conn,
            actor,
            "sms.opt_out" if opted_out else "sms.opt_in",
            "sms_opt_out",
            mask_phone(phone),
            after={"brand_id": actor.brand_id},
        )


async def list_opt_outs(conn: Conn, actor: Principal, page: int, per_page: int) -> Page[OptOutOut]:
    """The brand's opt-out list, newest first. Below the brand, the part its own campaigns
    could reach: the opt-outs of its store managers' phones, none a member's own switch
    (source ``member``). The whole list is the brand's members' phones and when each switched
    marketing off (or erased the membership), and staff below the brand see no member (a probe:
    an agent's and a store's ``org_admin`` read it all)."""
    actor.require(PERMISSION)
    where = ["brand_id = %(brand)s"]
    params: dict[str, Any] = {"brand": actor.brand_id}
    if actor.org_id != actor.brand_id:
        where += ["source <> 'member'", "phone = ANY(%(phones)s)"]
        params["phones"] = await _store_manager_phones(conn, actor.org_path)
    return await fetch_page(
        conn,
        columns="phone, source, at",
        source="sms_opt_outs",
        where=where,
        params=params,
        order="at DESC, phone",
        page=page,
        per_page=per_page,
        make=lambda r: OptOutOut(
            phone=shown_phone(actor, r["phone"]), source=r["source"], at=r["at"]
        ),
    )


# -- templates --------------------------------------------------------------------------------

_TEMPLATE_COLUMNS = "id, name, body, provider_template_id, created_at, updated_at"


def _template(row: dict[str, Any]) -> TemplateOut:
    return TemplateOut(**row, placeholders=sorted(placeholders(row["body"])))


def _check_body(body: str) -> None:
    """400 ``validation_failed`` naming what of a template's body is in braces but no
    placeholder (``templates.stray_braces``): it would go out in every text as it is."""
    stray = stray_braces(body)
    if stray:
        named = " ".join(stray[:5])
        raise ValidationFailed(
            f"{named} is no placeholder: a placeholder is {{name}}, the name ASCII letters, digits "
            "and _ (not first a digit, at most 40); nothing else may be in braces",
            details=[{"field": "body", "message": f"no placeholder: {named}", "source": "body"}],
        )


def _brand_staff(actor: Principal, message: str) -> None:
    """403 ``brand_only`` below the brand: the brand's templates and its members' marketing
    consent are the brand's; its agents and stores use them (campaigns in their own subtree)."""
    if actor.org_id != actor.brand_id:
        raise Forbidden(message, code="brand_only")


async def create_template(conn: Conn, actor: Principal, data: TemplateIn) -> TemplateOut:
    actor.require(PERMISSION)
    _brand_staff(actor, "only the brand's own staff write its templates")
    if data.name in BUILTIN:
        raise Conflict(f"{data.name!r} is a built-in template", code="template_reserved")
    _check_body(data.body)
    cur = await conn.execute(
        f"""INSERT INTO sms_templates (brand_id, name, body, provider_template_id, created_by)
            VALUES (%s, %s, %s, %s, %s)
            ON CONFLICT (brand_id, name) DO NOTHING RETURNING {_TEMPLATE_COLUMNS}""",
        (actor.brand_id, data.name, data.body, data.provider_template_id, actor.person),
    )
    row = await cur.fetchone()
    if row is None:
        raise Conflict("a template of that name exists", code="template_exists")
    await audit.record(conn, actor, "sms.template.create", "sms_template", row["id"], after=data)
    return _template(row)


async def list_templates(
    conn: Conn, actor: Principal, page: int, per_page: int
) -> Page[TemplateOut]:
    actor.require(PERMISSION)
    return await fetch_page(
        conn,
        columns=_TEMPLATE_COLUMNS,
        source="sms_templates",
        where=["brand_id = %(brand)s"],
        params={"brand": actor.brand_id},
        order="name",
        page=page,
        per_page=per_page,
        make=_template,
    )


async def _own_template(
    conn: Conn, actor: Principal, template_id: int, lock: str = ""
) -> dict[str, Any]:
    """The brand's template; with ``lock`` (``FOR UPDATE``, ``FOR NO KEY UPDATE``) its row held
    to the end of the transaction, so a concurrent change or deletion goes before or after."""
    cur = await conn.execute(
        f"SELECT {_TEMPLATE_COLUMNS} FROM sms_templates WHERE id = %s AND brand_id = %s {lock}",
        (template_id, actor.brand_id),
    )
    row = await cur.fetchone()
    if row is None:
        raise NotFound("template not found")
    return row


async def update_template(
    conn: Conn, actor: Principal, template_id: int, data: TemplatePatch
) -> TemplateOut:
    actor.require(PERMISSION)
    _brand_staff(actor, "only the brand's own staff write its templates")
    if isinstance(data.body, str):
        _check_body(data.body)
    # locked: a concurrent change is audited before or after this one, never skipped (a probe)
    before = await _own_template(conn, actor, template_id, "FOR NO KEY UPDATE")
    changes = changed(before, changes_of(data))
    if not changes:
        return _template(before)
    await update_row(conn, "sms_templates", template_id, changes)
    await audit.record(
        conn,
        actor,
        "sms.template.update",
        "sms_template",
        template_id,
        before=before,
        after=changes,
    )
    return _template(await _own_template(conn, actor, template_id))


async def delete_template(conn: Conn, actor: Principal, template_id: int) -> None:
    """Delete a template no campaign used (409 ``in_use`` otherwise). Its row is locked before
    the check: of two deletions at once the second finds it gone (404; a probe: both answered
    204 and both were audited), and a campaign cannot name it in between (its foreign key)."""
    actor.require(PERMISSION)
    _brand_staff(actor, "only the brand's own staff write its templates")
    before = await _own_template(conn, actor, template_id, "FOR UPDATE")
    used = await conn.execute(
        "SELECT 1 FROM sms_campaigns WHERE template_id = %s LIMIT 1", (template_id,)
    )
    if await used.fetchone():
        raise Conflict("campaigns used this template", code="in_use")
    await conn.execute("DELETE FROM sms_templates WHERE id = %s", (template_id,))
    await audit.record(
        conn, actor, "sms.template.delete", "sms_template", template_id, before=before
    )


# -- campaigns --------------------------------------------------------------------------------


# The store managers of the subtree ``%(scope)s``: of its active stores (active with every
# organisation above them: probe U), the store's own contact phone — its person in charge, as
# ``POST /orgs`` and the ERP's import record it, often with no user at all (seed 1.12; a probe:
# such a store's notice reached nobody) — and its active users' phones, all as saved.
_STORE_MANAGERS = f"""SELECT DISTINCT p.phone FROM orgs o
 CROSS JOIN LATERAL (SELECT o.contact_phone
                     UNION ALL
                     SELECT u.phone FROM users u
                      WHERE u.org_id = o.id AND u.status = 'active') AS p(phone)
 WHERE o.path LIKE %(scope)s AND o.kind = 'store' AND {org_status("o")} = 'active'
   AND p.phone IS NOT NULL"""


async def _audience(
    conn: Conn, actor: Principal, data: CampaignIn, scope: str
) -> tuple[str, dict[str, Any]]:
    """``SELECT phone, member_id`` of the campaign's audience (distinct phones), every phone in
    the outbox's form (``outbox_phone``), the form opt-outs are stored and replies looked up in.
    Members' phones are stored so; staff users' phones are as entered (``8613912345678``,
    ``+86 139-1234-5678``) and are made so here, a few per store (a probe: compared raw, a store
    manager's opt-out never matched their ``86…`` phone, the campaign still texted it, and their
    "TD" reply found no brand that had written to them)."""
    sql, params = _audience_sql(actor, data, scope)
    if data.audience == "members":
        return sql, params
    phones = await _outbox_phones(conn, sql, params)
    sql = "SELECT a.phone, NULL::bigint AS member_id FROM unnest(%(phones)s::text[]) AS a(phone)"
    return sql, params | {"phones": phones}


async def _outbox_phones(conn: Conn, sql: str, params: dict[str, Any]) -> list[str]:
    """The store managers' phones ``sql`` selects, in the outbox's form, sorted."""
    cur = await conn.execute(sql, params)
    phones: set[str] = set()
    for row in await cur.fetchall():
        with contextlib.suppress(ValidationFailed):  # not a phone: no message, as before
            phones.add(outbox_phone(row["phone"]))
    return sorted(phones)


async def _store_manager_phones(conn: Conn, scope: str) -> list[str]:
    """Every phone a store-manager campaign of the subtree ``scope`` reaches (no filter)."""
    return await _outbox_phones(conn, _STORE_MANAGERS, {"scope": scope + "%"})


def _audience_sql(actor: Principal, data: CampaignIn, scope: str) -> tuple[str, dict[str, Any]]:
    """``SELECT phone, member_id`` of the campaign's members (distinct phones), or ``SELECT
    phone`` of its store managers as their users were saved (``_audience`` normalises them)."""
    f = data.filter
    params: dict[str, Any] = {"brand": actor.brand_id, "scope": scope + "%"}
    where: list[str] = []
    if data.audience == "members":
        if f.org_id is not None:
            raise Unprocessable("org_id selects store managers, not members", code="bad_filter")
        where += ["m.brand_id = %(brand)s", "m.status = 'active'"]
        if f.provinces:
            where.append("m.province = ANY(%(provinces)s)")
            params["provinces"] = member_provinces(f.provinces, "filter.provinces")
        if f.age_bands:
            where.append(f"({AGE_BAND_SQL.format(m='m')}) = ANY(%(bands)s)")
            params["bands"] = list(f.age_bands)
        last = "(SELECT max(c.claimed_at) FROM point_claims c WHERE c.member_id = m.id)"
        if f.never_claimed:
            if f.last_claim_after or f.last_claim_before:
                raise Unprocessable("never_claimed excludes a last-claim range", code="bad_filter")
            where.append(f"{last} IS NULL")
        # [after, before): an empty range is a mistake, not an audience of none (probe P)
        if f.last_claim_after and f.last_claim_before and f.last_claim_after >= f.last_claim_before:
            raise BadRequest("the last-claim range is empty", code="bad_period")
        # days of the brands' calendar (probe L: compared as UTC midnights, a claim just after
        # midnight in Beijing fell on the day before)
        midnight = f"::date::timestamp AT TIME ZONE '{REPORT_TZ}'"
        if f.last_claim_after:
            where.append(f"{last} >= (%(after)s{midnight})")
            params["after"] = f.last_claim_after
        if f.last_claim_before:
            where.append(f"{last} < (%(before)s{midnight})")
            params["before"] = f.last_claim_before
        sql = f"SELECT m.phone, m.id AS member_id FROM members m WHERE {' AND '.join(where)}"
        return sql, params
    if f.age_bands or f.never_claimed or f.last_claim_after or f.last_claim_before:
        raise Unprocessable(
            "store managers are chosen by organisation and province", code="bad_filter"
        )
    if not f.provinces:
        return _STORE_MANAGERS, params
    # organisations' provinces are stored by their full names, as members' (migration 0147)
    params["provinces"] = member_provinces(f.provinces, "filter.provinces")
    return f"{_STORE_MANAGERS} AND o.province_name = ANY(%(provinces)s)", params


async def _scope(conn: Conn, actor: Principal, org_id: int | None) -> str:
    if org_id is None:
        return actor.org_path
    path = await org_path(conn, org_id)
    actor.ensure_sees(path)
    assert path is not None
    return path


_SKIP = """(EXISTS (SELECT 1 FROM sms_opt_outs x WHERE x.brand_id = %(brand)s AND x.phone = a.phone)
   OR EXISTS (SELECT 1 FROM members x WHERE x.brand_id = %(brand)s AND x.phone = a.phone
                                        AND x.marketing_opt_out)
   OR EXISTS (SELECT 1 FROM sms_outbox x
               WHERE x.phone = a.phone AND x.brand_id = %(brand)s
                 AND x.purpose IN ('reminder', 'campaign')
                 AND x.created_at > clock_timestamp() - make_interval(hours => %(hours)s))
   OR a.phone = ANY(%(erased)s::text[]))"""  # sent within it under a membership erased since


async def _earlier_campaign(conn: Conn, actor: Principal, data: CampaignIn) -> CampaignOut | None:
    """The campaign the caller's organisation already queued under ``data.client_id``, if any
    (409 ``client_id_reused`` if it was another campaign). Called under the brand's marketing
    lock, so a concurrent retry waits for the first and finds it."""
    if data.client_id is None:
        return None
    cur = await conn.execute(
        # the organisation's own (migration 0061): a sibling's id is no retry of the caller's
        "SELECT id, client_hash FROM sms_campaigns WHERE org_id = %s AND client_id = %s",
        (actor.org_id, data.client_id),
    )
    found = await cur.fetchone()
    if found is None:
        return None
    idempotency.check(found["client_hash"], data, "campaign")
    return await get_campaign(conn, actor, int(found["id"]))


def _check_variables(body: str, variables: dict[str, str]) -> None:
    """422 ``missing_variables`` for a placeholder of ``body`` without a value — a blank one
    (spaces, zero-width marks) is none: a probe's ``""`` was sent as a hole — or for braces of
    a template saved before they were refused, which no variable fills; 400
    ``validation_failed`` for a variable no placeholder takes (a probe's ``discount-rate`` of a
    ``{discount-rate}`` that was none), but ``lang`` (the opt-out line's language)."""
    given = {name for name, value in variables.items() if without_blanks(value)}
    missing = sorted(placeholders(body) - given)
    stray = stray_braces(body)
    if missing or stray:
        raise Unprocessable(
            f"the template needs {', '.join(missing + stray[:5])}",
            code="missing_variables",
            details={"missing": missing + stray},
        )
    unused = sorted(variables.keys() - placeholders(body) - {LANG})
    if unused:
        raise ValidationFailed(
            f"no placeholder of the template takes {', '.join(unused)}",
            details=[
                {"field": f"variables.{name}", "message": "no such placeholder", "source": "body"}
                for name in unused
            ],
        )


async def create_campaign(
    conn: Conn, actor: Principal, settings: Settings, data: CampaignIn
) -> tuple[CampaignOut, bool]:
    """Queue a campaign (or count it: ``dry_run``); with whether it was made before. A repeated
    ``client_id`` answers the campaign it made, without queueing again (409
    ``client_id_reused`` for another campaign). Campaigns of a brand are queued one at a time
    (its marketing lock), so two at once still send a phone one marketing message per
    interval. The client id is looked up first, before the template and the audience are
    checked: a retry answers the first campaign whatever changed since (a probe: a placeholder
    added to the template meanwhile made the retry 422 ``missing_variables``, and the tool sent
    the campaign again under a new id). A dry run queues nothing and looks nothing up."""
    actor.require(PERMISSION)
    if not data.dry_run:
        await locks.xact_lock(conn, Lock.SMS_MARKETING, actor.brand_id)
        earlier = await _earlier_campaign(conn, actor, data)
        if earlier is not None:
            return earlier, True
    template = await _own_template(conn, actor, data.template_id)
    _check_variables(template["body"], data.variables)
    if data.audience == "members":
        _brand_staff(actor, "only the brand's own staff message its members")
    scope = await _scope(conn, actor, data.filter.org_id)
    audience, params = await _audience(conn, actor, data, scope)
    params |= {"hours": settings.sms_marketing_interval_hours}
    params["erased"] = await erased_in_audience(conn, settings, actor.brand_id, audience, params)
    if data.dry_run:
        cur = await conn.execute(
            f"""SELECT count(*) FILTER (WHERE NOT {_SKIP}) AS recipients,
                       count(*) FILTER (WHERE {_SKIP}) AS skipped
                  FROM ({audience}) a""",
            params,
        )
        row = await cur.fetchone()
        assert row is not None
        dry = CampaignOut(
            id=None,
            template_id=data.template_id,
            audience=data.audience,
            filter=data.filter,
            variables=data.variables,
            recipients=int(row["recipients"]),
            skipped=int(row["skipped"]),
            created_at=None,
        )
        return dry, False
    # the template's body as the variables were checked against: its messages go out so, an
    # edit of the template meanwhile notwithstanding (a probe: a placeholder added for the next
    # campaign failed every message of the one queued as not renderable)
    cur = await conn.execute(
        """INSERT INTO sms_campaigns (brand_id, org_id, template_id, body, provider_template_id,
               audience, filter, variables, client_id, client_hash, created_by)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
        (
            actor.brand_id,
            actor.org_id,
            data.template_id,
            template["body"],
            template["provider_template_id"],
            data.audience,
            Jsonb(msgspec.to_builtins(data.filter)),
            Jsonb(data.variables),
            data.client_id,
            idempotency.fingerprint(data) if data.client_id is not None else None,
            actor.person,
        ),
    )
    row = await cur.fetchone()
    assert row is not None
    campaign_id = int(row["id"])
    # One statement queues the whole audience; row n leaves n / rate seconds after the start:
    # now, or 1 / rate after the last of the brand's campaign messages already waiting (the rate
    # is the brand's, its gateway account's: a probe queued two campaigns side by side, leaving
    # at twice the rate). The marketing lock above keeps the brand's campaigns in turn.
    cur = await conn.execute(
        f"""WITH a AS ({audience}),
                 kept AS (SELECT a.phone, a.member_id, {_SKIP} AS skip FROM a),
                 start AS (
                   SELECT greatest(clock_timestamp(),
                                   max(next_attempt_at) + make_interval(secs => 1.0 / %(rate)s))
                            AS at
                     FROM sms_outbox
                    WHERE brand_id = %(brand)s AND purpose = 'campaign' AND state = 'pending'
                      AND attempts = 0),  -- a retry waits its back-off, off the schedule
                 queued AS (
                   INSERT INTO sms_outbox (brand_id, member_id, campaign_id, phone, template,
                                           variables, purpose, next_attempt_at)
                   SELECT %(brand)s, k.member_id, %(campaign)s, k.phone, %(template)s,
                          %(variables)s, 'campaign',
                          s.at + make_interval(
                            secs => (row_number() OVER (ORDER BY k.phone) - 1)::float8 / %(rate)s)
                     FROM kept k CROSS JOIN start s WHERE NOT k.skip
                   RETURNING 1)
            SELECT (SELECT count(*) FROM queued) AS recipients,
                   (SELECT count(*) FROM kept WHERE skip) AS skipped""",
        params
        | {
            "campaign": campaign_id,
            "template": template["name"],
            "variables": Jsonb(data.variables),
            "rate": settings.sms_campaign_rate,
        },
    )
    counts = await cur.fetchone()
    assert counts is not None
    await conn.execute(
        "UPDATE sms_campaigns SET recipients = %s, skipped = %s WHERE id = %s",
        (counts["recipients"], counts["skipped"], campaign_id),
    )
    await audit.record(
        conn,
        actor,
        "sms.campaign.create",
        "sms_campaign",
        campaign_id,
        after={
            "template_id": data.template_id,
            "audience": data.audience,
            "recipients": counts["recipients"],
        },
    )
    return await get_campaign(conn, actor, campaign_id), False


_CAMPAIGN_COLUMNS = """c.id, c.template_id, c.audience, c.filter, c.variables, c.recipients,
    c.skipped, c.created_at"""


def _campaign(row: dict[str, Any], states: dict[str, int] | None = None) -> CampaignOut:
    return CampaignOut(
        id=row["id"],
        template_id=row["template_id"],
        audience=row["audience"],
        filter=msgspec.convert(row["filter"], AudienceFilter),
        variables=row["variables"],
        recipients=row["recipients"],
        skipped=row["skipped"],
        created_at=row["created_at"],
        states=states or {},
    )


async def get_campaign(conn: Conn, actor: Principal, campaign_id: int) -> CampaignOut:
    """One campaign of the caller's subtree, with its messages counted per state."""
    actor.require(PERMISSION)
    cur = await conn.execute(
        f"""SELECT {_CAMPAIGN_COLUMNS}, o.path FROM sms_campaigns c JOIN orgs o ON o.id = c.org_id
             WHERE c.id = %s""",
        (campaign_id,),
    )
    row = await cur.fetchone()
    actor.ensure_sees(row["path"] if row else None, "campaign")
    assert row is not None
    cur = await conn.execute(
        "SELECT state, count(*) AS n FROM sms_outbox WHERE campaign_id = %s GROUP BY state",
        (campaign_id,),
    )
    states = {r["state"]: int(r["n"]) for r in await cur.fetchall()}
    return _campaign(row, states)


async def list_campaigns(
    conn: Conn, actor: Principal, page: int, per_page: int
) -> Page[CampaignOut]:
    actor.require(PERMISSION)
    return await fetch_page(
        conn,
        columns=_CAMPAIGN_COLUMNS,
        source="sms_campaigns c JOIN orgs o ON o.id = c.org_id",
        where=["o.path LIKE %(scope)s"],
        params={"scope": actor.org_path + "%"},
        order="c.id DESC",
        page=page,
        per_page=per_page,
        make=_campaign,
    )
