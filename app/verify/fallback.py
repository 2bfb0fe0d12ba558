"""Verification when Redis is unavailable: answer from PostgreSQL and record directly.

The counters and lockout are recomputed from the verification records themselves, so the answer
is the one the Redis path would give (``decide`` mirrors the Lua script's rules).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg_pool import AsyncConnectionPool

from app.config import Settings
from app.verify import messages
from app.verify.record import Record
from app.verify.regions import Place, place_name
from app.verify.schemas import VerifyOut
from app.verify.units import VOID_STATES, UnitInfo

COUNTED = "pin_given AND result IN ('genuine', 'suspicious')"

INSERT = """INSERT INTO verifications
    (at, record_key, code_id, serial, brand_id, product_id, result, reason, queries, pin_given,
     client_ip, client_id, user_agent, province, city, lat, lng, member_id)
    VALUES (%(at)s, %(record_key)s, %(code_id)s, %(serial)s, %(brand_id)s, %(product_id)s,
     %(result)s, %(reason)s, %(queries)s, %(pin_given)s, %(client_ip)s, %(client_id)s,
     %(user_agent)s, %(province)s, %(city)s, %(lat)s, %(lng)s, %(member_id)s)
    ON CONFLICT (at, record_key) DO NOTHING"""


def decide(
    pin_state: str, queries: int, first_place: str, place: str, threshold: int, never_shipped: bool
) -> tuple[str, str]:
    """(result, reason) of a counted verification — the same rules as the Redis script."""
    result, reason = "unconfirmed", "pin_required"  # the code is real; the pack is not proven
    if pin_state == "ok":
        result, reason = "genuine", "first_query" if queries == 1 else "repeat_query"
    if queries > threshold:
        return "suspicious", "over_threshold"
    if pin_state == "ok" and queries > 1 and first_place and place and first_place != place:
        return "suspicious", "region_jump"
    if never_shipped:
        return "suspicious", "never_shipped"
    return result, reason


async def insert_record(
    pool: AsyncConnectionPool, record: Record, result: str, reason: str, queries: int
) -> None:
    async with pool.connection() as conn:
        await conn.execute(
            INSERT, {**record.fields(), "result": result, "reason": reason, "queries": queries}
        )


async def verify_without_redis(
    pool: AsyncConnectionPool,
    settings: Settings,
    unit: UnitInfo | None,
    record: Record,
    serial: str,
    code: int,
    pin_state: str,
    lang: str,
) -> VerifyOut:
    """The answer and its record from PostgreSQL alone; ``unit`` is the code's unit as the
    database has it (None: never activated)."""
    if unit is None:
        await insert_record(pool, record, "not_genuine", "not_activated", 0)
        return VerifyOut(
            result="not_genuine",
            reason="not_activated",
            serial=serial,
            message=messages.text("not_activated", lang),
        )
    if unit.status in VOID_STATES:
        await insert_record(pool, record, "not_genuine", "void", 0)
        return VerifyOut(
            result="not_genuine", reason="void", serial=serial, message=messages.text("void", lang)
        )
    record.product_id = unit.product.id if unit.product else None
    base: dict[str, Any] = {
        "serial": serial,
        "product": unit.product,
        "lot": unit.lot,
        "production_date": unit.production_date,
    }
    window = timedelta(seconds=settings.pin_lockout_seconds)
    async with pool.connection() as conn:
        stats = await (
            await conn.execute(
                f"""SELECT
                      count(*) FILTER (WHERE {COUNTED}) AS queries,
                      min(at) FILTER (WHERE {COUNTED}) AS first_at,
                      count(*) FILTER (WHERE reason = 'wrong_pin' AND at > %(since)s
                        AND at > coalesce((SELECT max(at) FROM verifications
                                            WHERE code_id = %(code)s AND {COUNTED}), '-infinity'))
                        AS fails,
                      max(at) FILTER (WHERE reason IN ('wrong_pin', 'locked')) AS last_fail
                    FROM verifications WHERE code_id = %(code)s""",
                {"code": code, "since": record.at - window},
            )
        ).fetchone()
        first = await (
            await conn.execute(
                f"SELECT province, city FROM verifications WHERE code_id = %s AND {COUNTED} "
                "ORDER BY at LIMIT 1",
                (code,),
            )
        ).fetchone()
    assert stats is not None
    fails = int(stats["fails"])
    if fails >= settings.pin_max_failures:
        retry = int((stats["last_fail"] + window - datetime.now(UTC)).total_seconds()) + 1
        await insert_record(pool, record, "locked", "locked", 0)
        return VerifyOut(
            result="locked",
            reason="locked",
            retry_after=max(retry, 1),
            message=messages.text("locked", lang, minutes=-(-retry // 60)),
            **base,
        )
    if pin_state == "bad":
        left = settings.pin_max_failures - fails - 1
        if left <= 0:
            await insert_record(pool, record, "locked", "locked", 0)
            return VerifyOut(
                result="locked",
                reason="locked",
                retry_after=settings.pin_lockout_seconds,
                message=messages.text(
                    "locked", lang, minutes=-(-settings.pin_lockout_seconds // 60)
                ),
                **base,
            )
        await insert_record(pool, record, "wrong_pin", "wrong_pin", 0)
        return VerifyOut(
            result="wrong_pin",
            reason="wrong_pin",
            pin_attempts_left=left,
            message=messages.text("wrong_pin", lang, left=left),
            **base,
        )
    queries = int(stats["queries"]) + (1 if pin_state == "ok" else 0)
    first_at = stats["first_at"] or (record.at if pin_state == "ok" else None)
    place = record.place.label if record.place else ""
    first_place = _label(first) if first else (place if pin_state == "ok" else "")
    never_shipped = settings.verify_flag_never_shipped and not unit.shipped
    result, reason = decide(
        pin_state, queries, first_place, place, settings.verify_repeat_threshold, never_shipped
    )
    await insert_record(pool, record, result, reason, queries)
    first_place = place_name(first_place, lang)  # recorded in Chinese; named in the reader's
    return VerifyOut(
        result=result,  # type: ignore[arg-type]
        reason=reason,
        message=messages.text(
            reason, lang, queries=queries, first_at=first_at, first_place=first_place or None
        ),
        queries=queries,
        first_query_at=first_at,
        first_query_place=first_place or None,
        **base,
    )


def _label(row: dict[str, Any]) -> str:
    if not row.get("province"):
        return ""
    return Place(row["province"], row.get("city")).label
