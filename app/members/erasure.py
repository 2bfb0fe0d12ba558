"""A member's personal information: a copy of it, and its erasure (PIPL: the rights to access and
copy one's personal information, and to have it deleted; probe U found neither).

``export`` is everything the brand holds about the signed-in member, in one JSON document: the
profile, the points (balance, ledger, claims), the redemptions, the complaints and suggestions,
and the verifications they made signed in. ``erase`` closes the membership, by the member
(``DELETE /members/me``) or by member service on their request (``POST /members/{id}/erase``),
in one transaction:

* what goes: the phone (replaced by a tombstone that is no phone: 15 digits from 0, the id), the
  profile (gender, birthday, age band, e-mail, WeChat id, province, city), the words of its
  complaints and suggestions (closed, the brand's reply kept), the verifications'
  link to the member and their client address and id, user agent and position, the phone and
  variables of every SMS sent to the number (its one-time codes too; those not sent yet are
  failed) and of their copies in ``dead_letters``, the same of its verification records kept
  there, its WeChat binding and the openid and words of its WeChat template messages (those
  not sent yet are failed), its lucky draws' fulfilment notes, the client address and user
  agent in the evidence of its fraud holds and the staff's notes on them (its held claims and
  draws are rejected: a release after the erasure credited them), the one-time codes it asked
  for, open redemption codes (expired as at their date: refunded, the gift back in stock),
  the points balance (forfeited by an ``expiry`` entry: the ledger is append-only) and the
  reasons staff wrote on its ledger's adjustments and expiries (``_ledger_reasons``); and, once
  the rest is done, the sign-in limits' memory of the phone in Redis (the addresses it signed
  in from);
* what stays, anonymous: the row (status ``erased``), the claims, the draws, the ledger, the
  redemptions and the fraud holds under its id — a code claimed stays claimed — and the
  analytics' counts (the status change queues the member: the next people roll-up leaves its
  facts no region and of the birthday its month, ``app.analytics.people``); the marketing
  opt-out list (a number that asked not to be messaged stays so: the member's own switch,
  ``marketing_opt_out``, goes onto the brand's list, ``sms_opt_outs``, source ``member`` — a
  probe: it went with the profile, and the number signed up again was messaged); a freeze, by
  a keyed hash of the phone (``app.members.freezes``); the SMS throttles, by another keyed hash
  of the phone on the brand's SMS they still read, until the retention sweep clears it
  (``_erase_sms``);
* the same phone can sign up again: a new membership, with nothing of the old one but the
  opt-out, the freeze and the throttles.

Locks: what is the phone's before the member's row — its one-time codes (deleted) and its
opt-out (written), in the order a sign-in (the code, then the member) and a staff opt-out (the
list, then the member) take them (a probe: a sign-in racing the member's own erasure deadlocked,
409 ``retry``) —, then the member's row, its fraud holds, its draws (held ones, and those
with a fulfilment note) and its held claims (in a hold's release's and a consumer return's
order: draws, claims, balance), its balance, its codes, its complaints — before its phone
changes, which takes the member's row FOR UPDATE (a unique key): a reply holding a complaint
writes the member a WeChat message, a foreign key's KEY SHARE —, the brand's marketing lock. A
draw's fulfilment takes the member's row first (``app.draws.service.fulfil``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app import audit, locks
from app.auth.principal import Principal
from app.config import Settings, load_settings
from app.db import Conn
from app.deadletters import MAX_REASON, SMS_OUTBOX, VERIFICATIONS, first_line
from app.errors import Conflict, NotFound
from app.locks import Lock
from app.members import freezes, points
from app.members.limits import MemberLimits
from app.members.redemptions import STATUS_NOW
from app.members.returns import DRAW_WITHDRAWN, REPAID, WITHDRAWN
from app.sms.outbox import erased_phone_hash
from app.verify.record import anonymous, decoded, member_of
from app.wechat import bindings as wechat_bindings

ERASED = "membership erased"  # what an erased member's words are replaced with
MAX_ROWS = 10_000  # of each kind in an export (a member's scans: the newest)


def tombstone(member_id: int) -> str:
    """The phone an erased member keeps: digits (the column's rule), unique, no phone's."""
    return f"{member_id:015d}"


async def erase(
    conn: Conn,
    actor: Principal | None,
    brand_id: int,
    member_id: int,
    settings: Settings | None = None,
    limits: MemberLimits | None = None,
) -> None:
    """Erase a member of ``brand_id`` (see the module docstring); ``actor``: the staff member
    who did it on the member's request, None for the member; ``settings``: the service's (None:
    the process's, ``load_settings``); ``limits``: the service's member limits, whose memory of
    the phone in Redis goes last (None: left to expire, as for a test of the database's part).
    404 ``unknown_member``, 409 ``member_erased`` when it is already."""
    settings = settings or load_settings()
    seen = await _member(conn, brand_id, member_id, lock=False)
    opted_out = seen["marketing_opt_out"]
    await _before_the_member(conn, brand_id, seen["phone"], opted_out)
    # not FOR UPDATE: a redemption or the expiry sweep holds the balance and then refers to the
    # member (a foreign key's KEY SHARE), which FOR UPDATE blocks — a deadlock (probe). A
    # claim's credit reads the member FOR SHARE, which this waits for and holds
    row = await _member(conn, brand_id, member_id, lock=True)
    phone, gone = row["phone"], tombstone(member_id)
    if row["marketing_opt_out"] and not opted_out:  # switched on meanwhile
        await _opt_out(conn, brand_id, phone)
    if row["status"] == "frozen":  # the freeze outlives the membership (app.members.freezes)
        await freezes.keep(conn, settings, brand_id, phone, row["frozen_reason"])
    await _holds_and_draws(conn, member_id)  # before the balance: a release's, a return's order
    # the balance first, as a redemption takes it: one in flight is committed before the open
    # codes are read, and expires with them (review R6: it stayed issued, and refunded the
    # erased member later). A claim's credit reads its member FOR SHARE: one under way is
    # committed before the member's row is taken above, and forfeited with the rest; one that
    # comes later waits for this transaction, then finds the member erased (before, a credit
    # that read the member as active while the erasure was under way was credited after it)
    await conn.execute("SELECT 1 FROM point_balances WHERE member_id = %s FOR UPDATE", (member_id,))
    # open codes expire as at their date (review R5: the gift goes back into stock, the points
    # back to the balance), then the whole balance is forfeited
    expired = await (
        await conn.execute(
            """UPDATE redemptions SET status = 'expired', expired_at = now()
                WHERE member_id = %s AND status = 'issued' RETURNING id, points, gift_id""",
            (member_id,),
        )
    ).fetchall()
    stock: dict[int, int] = {}
    for code in sorted(expired, key=lambda r: r["id"]):
        await points.post_entry(
            conn,
            member_id=member_id,
            brand_id=brand_id,
            kind="refund",
            points=code["points"],
            redemption_id=code["id"],
        )
        stock[code["gift_id"]] = stock.get(code["gift_id"], 0) + 1
    for gift_id in sorted(stock):  # in the expiry sweep's order (review: a deadlock with it)
        await conn.execute(
            "UPDATE gifts SET stock = stock + %s, updated_at = now() WHERE id = %s",
            (stock[gift_id], gift_id),
        )
    balance = await points.balance(conn, member_id)
    if balance > 0:
        await points.post_entry(
            conn,
            member_id=member_id,
            brand_id=brand_id,
            kind="expiry",
            points=-balance,
            reason="membership erased",
            recorded_by=actor.person if actor else None,
        )
    # the member's own words go (their complaints and suggestions: a closed record of the
    # brand's, its reply and product kept; one still open is closed, nobody left to answer) —
    # before the phone changes: that UPDATE takes the member's row FOR UPDATE (the phone is a
    # unique key), which a staff reply holding its complaint and writing the member a WeChat
    # message (a foreign key's KEY SHARE) waited for while this waited for the complaint (a
    # probe: 409 retry)
    await conn.execute(
        """UPDATE complaints SET body = 'membership erased', serial = NULL, store_name = NULL,
                  contact = 'none', client_id = NULL, client_hash = NULL, status = 'closed',
                  closed_at = coalesce(closed_at, now()), updated_at = now()
            WHERE member_id = %s""",
        (member_id,),
    )
    await conn.execute(
        """UPDATE members SET status = 'erased', erased_at = now(), phone = %s, gender = NULL,
                  birthday = NULL, age_band = NULL, email = NULL, wechat_id = NULL,
                  province = NULL, city = NULL, marketing_opt_out = true, frozen_reason = NULL,
                  updated_at = now()
            WHERE id = %s""",
        (gone, member_id),
    )
    await _ledger_reasons(conn, member_id)  # the member erased first: the ledger's trigger
    await conn.execute(
        """UPDATE verifications SET member_id = NULL, client_ip = NULL, client_id = NULL,
                  user_agent = NULL, lat = NULL, lng = NULL, retry = NULL
            WHERE member_id = %s""",
        (member_id,),
    )
    await _erase_sms(conn, settings, brand_id, phone, gone)
    await _scrub_dead_verifications(conn, member_id, row["created_at"])
    await wechat_bindings.erase(conn, member_id)  # the WeChat binding and messages' openid
    # the record names the member by id only: the audit log is read by staff
    await audit.record(
        conn, actor, "erase", "member", member_id, after={"points_forfeited": balance},
        org_id=brand_id,
    )  # fmt: skip
    if limits is not None:  # last: Redis is not rolled back with the transaction
        await limits.forget_phone(brand_id, phone)


async def _erase_sms(conn: Conn, settings: Settings, brand_id: int, phone: str, gone: str) -> None:
    """The brand's SMS to ``phone`` name ``gone`` instead, their variables and those of their
    copies in ``dead_letters`` emptied, those not sent yet failed; the rows the throttles still
    read (sign-in codes of the last day, marketing of the last interval) keep the phone's keyed
    hash (``app.sms.outbox.erased_phone_hash``, until ``app.retention`` clears it): a probe's
    code, sign-in, erasure and code again sent 4 codes in seconds, the throttle counting by the
    number the erasure had rewritten."""
    # a campaign or a reminder queued meanwhile commits first, its row rewritten here, or
    # sees the member erased (a probe: queued during the erasure, it kept the whole phone and
    # went out)
    await locks.xact_lock(conn, Lock.SMS_MARKETING, brand_id)
    sms = await (
        await conn.execute(  # the rows the throttles still read keep the phone's keyed hash
            """UPDATE sms_outbox
                  SET phone = %(gone)s, variables = '{}',
                      phone_hash = CASE
                          WHEN purpose = 'otp'
                               AND created_at > clock_timestamp() - interval '1 day'
                            OR purpose IN ('reminder', 'campaign')
                               AND created_at > clock_timestamp()
                                                - make_interval(hours => %(hours)s)
                          THEN %(hash)s END,
                      state = CASE WHEN state = 'pending' THEN 'failed' ELSE state END,
                      last_error = CASE WHEN state = 'pending' THEN 'membership erased'
                                        ELSE last_error END
                WHERE phone = %(phone)s AND brand_id = %(brand)s
                RETURNING id""",  # by the phone's index: a member's SMS go to its phone
            {
                "gone": gone,
                "brand": brand_id,
                "phone": phone,
                "hash": erased_phone_hash(settings, phone),
                "hours": settings.sms_marketing_interval_hours,
            },
        )
    ).fetchall()
    if sms:  # the copies of its failed messages kept for the operators (app.sms.sender): one
        # pass over them, each read by its id (row_to_json writes it first), no byte decoded
        letters = await conn.execute(
            """UPDATE dead_letters d
                  SET payload = convert_to(jsonb_set(jsonb_set(
                          convert_from(d.payload, 'UTF8')::jsonb,
                          '{phone}', to_jsonb(%(gone)s::text)), '{variables}', '{}')::text,
                          'UTF8')
                WHERE d.queue = %(queue)s
                  AND (regexp_match(encode(substring(d.payload FROM 1 FOR 32), 'escape'),
                                    '^\\{"id":(\\d{1,18}),'))[1]::bigint = ANY(%(ids)s)
                RETURNING d.id, d.reason""",
            {"gone": gone, "queue": SMS_OUTBOX, "ids": [row["id"] for row in sms]},
        )
        await _first_lines(conn, await letters.fetchall())


async def _holds_and_draws(conn: Conn, member_id: int) -> None:
    """The member's fraud holds (``app.forensics.holds``) and draws: the evidence loses the
    client address and user agent the ring detector copied from the member's verification
    records (cleared with them), and the staff's notes (why it was held, why it was decided:
    words about the member, as a draw's fulfilment note) go; the hold stays, its rule, counts,
    the other members' ids and who decided it when. The held claims and draws are rejected —
    forfeited as the balance is: a release after the erasure credited them to the erased
    membership (a review) —, their codes kept taken; the draws' fulfilment notes go. In a
    release's order: the holds' rows, the draws', the claims' (then the balance, taken
    next)."""
    await conn.execute(
        """UPDATE fraud_holds SET evidence = evidence - 'client_ip' - 'user_agent',
                  note = CASE WHEN note = '' THEN '' ELSE %(gone)s END,
                  decision_note = CASE WHEN decision_note = '' THEN '' ELSE %(gone)s END
            WHERE party_kind = 'member' AND party_id = %(member)s""",
        {"gone": ERASED, "member": member_id},
    )
    # the draws' fulfilment notes go too (a parcel's address, a voucher sent to the phone:
    # ``app.draws``), here, before the claims and the balance, as a consumer's return takes a
    # draw (a probe: cleared after the balance, a return racing the erasure deadlocked, 409)
    await conn.execute(
        """UPDATE draws
              SET hold_state = CASE WHEN hold_state = 'held' THEN 'rejected' ELSE hold_state END,
                  fulfil_note = CASE WHEN fulfil_note IS NULL THEN NULL ELSE %s END
            WHERE member_id = %s AND (hold_state = 'held' OR fulfil_note IS NOT NULL)""",
        (ERASED, member_id),
    )
    await conn.execute(
        """UPDATE point_claims SET hold_state = 'rejected'
            WHERE member_id = %s AND hold_state = 'held'""",
        (member_id,),
    )


# The ledger's reasons the service writes itself (no words about the member): kept
_SYSTEM_REASONS = [WITHDRAWN, DRAW_WITHDRAWN, REPAID, ERASED]


async def _ledger_reasons(conn: Conn, member_id: int) -> None:
    """The reasons staff wrote on the member's adjustments and manual expiries (a call, a name,
    an address: a probe read them on the erased member's points) become ``ERASED``; the entries
    stay, their points and kinds. The ledger's append-only trigger allows just that, inside an
    erasure (``tracecode.erasing``, set around the statement) and on an erased member's rows
    (migration 0135)."""
    await conn.execute("SELECT set_config('tracecode.erasing', 'on', true)")
    await conn.execute(
        """UPDATE points_ledger SET reason = %s
            WHERE member_id = %s AND kind IN ('adjustment', 'expiry') AND reason <> ALL(%s)""",
        (ERASED, member_id, _SYSTEM_REASONS),
    )
    await conn.execute("SELECT set_config('tracecode.erasing', 'off', true)")


async def _member(conn: Conn, brand_id: int, member_id: int, *, lock: bool) -> dict[str, Any]:
    """The member's row (``FOR NO KEY UPDATE`` with ``lock``); 404 ``unknown_member``, 409
    ``member_erased`` (also for an erasure that committed while this one waited)."""
    row = await (
        await conn.execute(
            """SELECT phone, status, created_at, marketing_opt_out, frozen_reason FROM members
                WHERE id = %s AND brand_id = %s"""
            + (" FOR NO KEY UPDATE" if lock else ""),
            (member_id, brand_id),
        )
    ).fetchone()
    if row is None:
        raise NotFound("member not found", code="unknown_member")
    if row["status"] == "erased":
        raise Conflict("the member is erased already", code="member_erased")
    return row  # type: ignore[no-any-return]


async def _before_the_member(conn: Conn, brand_id: int, phone: str, opted_out: bool) -> None:
    """Before the member's row (see the module's locks): the one-time codes the phone asked
    for go; its opt-out, when the member had switched marketing off, goes onto the brand's list.
    The phone cannot change but by an erasure, which the member's row, taken next, tells."""
    await conn.execute(
        "DELETE FROM member_otps WHERE brand_id = %s AND phone = %s", (brand_id, phone)
    )
    if opted_out:
        await _opt_out(conn, brand_id, phone)


async def _opt_out(conn: Conn, brand_id: int, phone: str) -> None:
    """The phone on the brand's opt-out list (``sms_opt_outs``; a member's phone is stored in
    the form the list takes, ``app.sms.outbox.outbox_phone``)."""
    await conn.execute(
        """INSERT INTO sms_opt_outs (brand_id, phone, source) VALUES (%s, %s, 'member')
           ON CONFLICT DO NOTHING""",
        (brand_id, phone),
    )


async def _scrub_dead_verifications(conn: Conn, member_id: int, since: datetime) -> None:
    """The member's verification records that PostgreSQL refused, kept for the operators in
    ``dead_letters`` (``app.verify.records``; a NUL in a claim's client id, say), lose what the
    stored ones lose (review R6). A record is JSON of one line, ``"member_id":<id>`` as msgspec
    writes it; one that no longer reads as JSON and names the member loses its whole payload.
    Only those set aside ``since`` the member signed up are read (the queue's index by time)."""
    mark = f'"member_id":{member_id}'.encode()
    rows = await (
        await conn.execute(
            """SELECT id, payload, reason FROM dead_letters
                WHERE queue = %s AND at >= %s AND position(%s::bytea IN payload) > 0
                  FOR UPDATE""",
            (VERIFICATIONS, since, mark),
        )
    ).fetchall()
    for row in rows:
        payload: bytes = row["payload"]
        fields = decoded(payload)
        if fields is None:  # no JSON: what follows the member's id tells
            at = payload.index(mark) + len(mark)
            if payload[at : at + 1].isdigit():  # another member's id that starts with this one
                continue
            scrubbed, note = b"", " (payload removed: its member was erased)"
        elif member_of(fields) != member_id:  # another's, or the mark in another field
            continue
        else:
            scrubbed, note = anonymous(fields), ""
        reason = (first_line(row["reason"]) + note)[:MAX_REASON]  # PostgreSQL's DETAIL quotes it
        await conn.execute(
            "UPDATE dead_letters SET payload = %s, reason = %s WHERE id = %s",
            (scrubbed, reason, row["id"]),
        )


async def _first_lines(conn: Conn, letters: list[dict[str, Any]]) -> None:
    """The reasons of ``letters`` (id, reason) cleared by the erasure cut to their first line
    (``app.deadletters.first_line``): what follows quotes the record (a probe)."""
    cut = {r["id"]: line for r in letters if (line := first_line(r["reason"])) != r["reason"]}
    if cut:
        await conn.execute(
            """UPDATE dead_letters d SET reason = c.reason
                 FROM unnest(%s::bigint[], %s::text[]) AS c(id, reason) WHERE d.id = c.id""",
            (list(cut), list(cut.values())),
        )


# A claim's or a draw's status as its answer tells the member (``app.forensics.status``): held
# by a fraud hold (under review), rejected (the hold confirmed, or the membership erased while
# held), else credited (a claim) or drawn (a draw)
_HOLD_STATUS = """CASE {t}.hold_state WHEN 'held' THEN 'under_review'
                    WHEN 'rejected' THEN 'rejected' ELSE '{ok}' END"""

_EXPORT = {
    "profile": """SELECT id, phone, status, gender, birthday, age_band, email, wechat_id,
                         province, city, marketing_opt_out, created_at, last_login_at
                    FROM members WHERE id = %(member)s""",
    "points_ledger": """SELECT id, kind, points, reason, at FROM points_ledger
                         WHERE member_id = %(member)s ORDER BY id LIMIT %(limit)s""",
    "point_claims": f"""SELECT c.id, c.claimed_at, c.points, p.name AS product, p.gtin,
                              {_HOLD_STATUS.format(t="c", ok="credited")} AS status, c.withdrawn_at
                         FROM point_claims c JOIN products p ON p.id = c.product_id
                        WHERE c.member_id = %(member)s ORDER BY c.id LIMIT %(limit)s""",
    "draws": f"""SELECT d.id, c.name AS campaign, p.name AS product, d.drawn_at, d.prize_name,
                       d.prize_kind, d.points, d.fulfil_status, d.fulfilled_at, d.fulfil_note,
                       {_HOLD_STATUS.format(t="d", ok="drawn")} AS status, d.withdrawn_at
                  FROM draws d JOIN draw_campaigns c ON c.id = d.campaign_id
                  JOIN products p ON p.id = d.product_id
                 WHERE d.member_id = %(member)s ORDER BY d.id LIMIT %(limit)s""",
    "redemptions": f"""SELECT r.id, g.name AS gift, r.gift_kind, r.points,
                             {STATUS_NOW} AS status, r.created_at,
                             r.expires_at, r.fulfilled_at, r.expired_at
                        FROM redemptions r JOIN gifts g ON g.id = r.gift_id
                       WHERE r.member_id = %(member)s ORDER BY r.id LIMIT %(limit)s""",
    "complaints": """SELECT id, kind, body, serial, gtin, store_name, contact, status, reply,
                            created_at, replied_at, closed_at
                       FROM complaints WHERE member_id = %(member)s
                      ORDER BY id LIMIT %(limit)s""",
    "verifications": """SELECT at, serial, result, reason, province, city,
                               host(client_ip) AS client_ip, user_agent, lat, lng
                          FROM verifications WHERE member_id = %(member)s
                         ORDER BY at DESC LIMIT %(limit)s""",
}


async def export(conn: Conn, member_id: int) -> dict[str, Any]:
    """Everything held about the member (``MAX_ROWS`` of each kind at most, the newest scans),
    as JSON-ready rows."""
    params = {"member": member_id, "limit": MAX_ROWS}
    out: dict[str, Any] = {}
    for name, sql in _EXPORT.items():
        out[name] = await (await conn.execute(sql, params)).fetchall()
    out["profile"] = out["profile"][0] if out["profile"] else None
    out["points_balance"] = await points.balance(conn, member_id)
    out.update(await wechat_bindings.export(conn, member_id, MAX_ROWS))  # W5
    return out
