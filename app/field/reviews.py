"""Store reviews (SPEC F3): on a visit the rep scores the store's shelf display and its staff's
product knowledge (1–5 each), writes a comment and attaches photos uploaded before
(``app.media``, the rep's own). ``client_id`` makes a review idempotent per rep, as check-ins.
``client_at`` is the phone's time of the review, checked as a check-in's: a review queued
offline with its check-in is dated, listed and scored by it (``AT``), as the check-in is (a
probe: dated at its upload, it left the visit's day).

Reviews are listed per store (and per rep, period), scored per store (count and averages, in
the caller's view), and exported as CSV; scoping is ``app.field.scope``'s.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from typing import Any

from app import idempotency, tabular
from app.auth.principal import Principal
from app.auth.service import org_status
from app.db import Conn
from app.errors import NotFound, Unprocessable
from app.field import scope
from app.field.checkins import check_client_at
from app.field.schemas import ReviewIn, ReviewOut, StoreScoreOut
from app.paging import Page, fetch_page

CSV_MAX_ROWS = 100_000

_COLUMNS = (
    "r.id, r.client_id, r.rep_id, coalesce(nullif(u.display_name, ''), u.username) AS rep, "
    "r.store_id, s.name AS store_name, s.erp_code AS store_erp_code, r.checkin_id, r.at, "
    "r.client_at, r.shelf_score, r.knowledge_score, r.comment, r.photo_ids"
)
AT = "coalesce(r.client_at, r.at)"  # the review's time: the phone's when it sent one
_SOURCE = (
    "field_reviews r JOIN users u ON u.id = r.rep_id JOIN orgs o ON o.id = r.org_id "
    "JOIN orgs s ON s.id = r.store_id"
)
CSV_COLUMNS = [
    "id", "client_id", "rep", "store_erp_code", "store_name", "at", "shelf_score",
    "knowledge_score", "comment", "photos", "checkin_id", "client_at",
]  # fmt: skip


def _out(row: dict[str, Any], replayed: bool = False) -> ReviewOut:
    return ReviewOut(**row, replayed=replayed)


async def _existing(conn: Conn, actor: Principal, data: ReviewIn) -> ReviewOut | None:
    """The review this rep made under ``data``'s client id, if any (409 if another)."""
    row = await (
        await conn.execute(
            f"SELECT {_COLUMNS}, r.client_hash FROM {_SOURCE} "
            "WHERE r.rep_id = %s AND r.client_id = %s",
            (actor.user_id, data.client_id),
        )
    ).fetchone()
    if row is None:
        return None
    idempotency.check(row.pop("client_hash"), data, "review")
    return _out(row, replayed=True)


async def _check(conn: Conn, actor: Principal, data: ReviewIn) -> None:
    """The store is one the rep covers; the check-in, if named, the rep's at that store; the
    photos the rep's own."""
    store = await (
        await conn.execute(
            f"SELECT kind, path, {org_status('o')} AS status FROM orgs o WHERE id = %s",
            (data.store_id,),
        )
    ).fetchone()
    if store is None or store["kind"] != "store" or not scope.covers(actor, store["path"]):
        raise NotFound("store not found")  # elsewhere, or the rep's own store
    if store["status"] != "active":  # as a check-in there (a probe: taken at a closed store)
        raise Unprocessable("the store is inactive", code="org_inactive")
    if data.checkin_id is not None:
        found = await (
            await conn.execute(
                "SELECT 1 FROM field_checkins WHERE id = %s AND rep_id = %s AND store_id = %s",
                (data.checkin_id, actor.user_id, data.store_id),
            )
        ).fetchone()
        if found is None:
            raise Unprocessable("not your check-in at this store", code="unknown_checkin")
    if data.photo_ids:
        rows = await (
            await conn.execute(
                "SELECT id FROM media_photos WHERE id = ANY(%s) AND owner_id = %s",
                (list(data.photo_ids), actor.user_id),
            )
        ).fetchall()
        missing = sorted({str(p) for p in data.photo_ids} - {str(r["id"]) for r in rows})
        if missing:
            raise Unprocessable(
                "photos must be uploaded first (POST /media/photos), by the same user",
                code="unknown_photo",
                details={"photo_ids": missing},
            )


async def create_review(conn: Conn, actor: Principal, data: ReviewIn) -> ReviewOut:
    """Record a review; ``replayed`` when ``client_id`` was seen before."""
    scope.require_rep(actor)
    if (found := await _existing(conn, actor, data)) is not None:
        return found
    check_client_at(data.client_at)  # after a replay, as a check-in's
    await _check(conn, actor, data)
    row = await (
        await conn.execute(
            """INSERT INTO field_reviews (rep_id, org_id, store_id, checkin_id, client_id,
                   client_hash, shelf_score, knowledge_score, comment, photo_ids, client_at)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (rep_id, client_id) DO NOTHING RETURNING id""",
            (actor.user_id, actor.org_id, data.store_id, data.checkin_id, data.client_id,
             idempotency.fingerprint(data), data.shelf_score, data.knowledge_score, data.comment,
             list(data.photo_ids), data.client_at),
        )
    ).fetchone()  # fmt: skip
    if row is None:
        found = await _existing(conn, actor, data)
        assert found is not None
        return found
    made = await (
        await conn.execute(f"SELECT {_COLUMNS} FROM {_SOURCE} WHERE r.id = %s", (row["id"],))
    ).fetchone()
    assert made is not None
    return _out(made)


def _where(
    actor: Principal,
    rep_id: int | None,
    store_id: int | None,
    date_from: date | None,
    date_to: date | None,
) -> tuple[list[str], dict[str, Any]]:
    return scope.filters(actor, "r", AT, rep_id, store_id, date_from, date_to)


async def list_reviews(
    conn: Conn,
    actor: Principal,
    *,
    rep_id: int | None,
    store_id: int | None,
    date_from: date | None,
    date_to: date | None,
    page: int,
    per_page: int,
) -> Page[ReviewOut]:
    """Reviews the caller sees, newest first."""
    where, params = _where(actor, rep_id, store_id, date_from, date_to)
    return await fetch_page(
        conn,
        columns=_COLUMNS,
        source=_SOURCE,
        where=where,
        params=params,
        order=f"{AT} DESC, r.id DESC",
        page=page,
        per_page=per_page,
        make=_out,
    )


async def store_scores(
    conn: Conn,
    actor: Principal,
    *,
    date_from: date | None,
    date_to: date | None,
    page: int,
    per_page: int,
) -> Page[StoreScoreOut]:
    """Per store: the reviews the caller sees, their average scores, the latest; lowest shelf
    average first (the stores to visit)."""
    where, params = _where(actor, None, None, date_from, date_to)
    source = (
        f"(SELECT r.store_id, s.name AS store_name, s.erp_code AS store_erp_code, "
        "count(*)::int AS reviews, round(avg(r.shelf_score), 2)::float AS shelf_avg, "
        f"round(avg(r.knowledge_score), 2)::float AS knowledge_avg, max({AT}) AS last_at "
        f"FROM {_SOURCE} WHERE {' AND '.join(where)} "
        "GROUP BY r.store_id, s.name, s.erp_code) t"
    )
    return await fetch_page(
        conn,
        columns="t.*",
        source=source,
        where=[],
        params=params,
        order="t.shelf_avg, t.store_erp_code",
        page=page,
        per_page=per_page,
        make=lambda row: StoreScoreOut(**row),
    )


async def reviews_csv(
    conn: Conn,
    actor: Principal,
    *,
    rep_id: int | None,
    store_id: int | None,
    date_from: date | None,
    date_to: date | None,
) -> AsyncIterator[bytes]:
    """Every matching review as CSV (``app.tabular``), oldest first; 422 ``too_many_rows``
    past ``CSV_MAX_ROWS``."""
    where, params = _where(actor, rep_id, store_id, date_from, date_to)
    rows = await (
        await conn.execute(
            f"SELECT {_COLUMNS} FROM {_SOURCE} WHERE {' AND '.join(where)} "
            f"ORDER BY {AT}, r.id LIMIT %(limit__)s",
            {**params, "limit__": CSV_MAX_ROWS + 1},
        )
    ).fetchall()
    if len(rows) > CSV_MAX_ROWS:
        raise Unprocessable(
            f"more than {CSV_MAX_ROWS} reviews: narrow the period", code="too_many_rows"
        )
    table = [
        [r["id"], r["client_id"], r["rep"], r["store_erp_code"], r["store_name"], r["at"],
         r["shelf_score"], r["knowledge_score"], r["comment"],
         " ".join(str(p) for p in r["photo_ids"]), r["checkin_id"], r["client_at"]]
        for r in rows
    ]  # fmt: skip
    return tabular.csv_chunks(CSV_COLUMNS, tabular.one_batch(table))
