"""Anchors: a brand's chain head (position, hash, time), signed with Ed25519.

The signing key is derived from the master key (``Settings.subkey("event-chain-anchor")`` is
the Ed25519 seed, ``app.signing``; its key id the first 16 hex digits of SHA-256 of the public
key, ``app.events.chainverify.key_id``) and never stored: whoever can write the database — a
DBA included — can rewrite events and recompute every link, but cannot sign the new heads, so
the anchors handed out before (``GET /chain/anchors``, kept by the brand's auditor) no longer
match. The signed bytes are ``app.events.chainverify.anchor_message``. A head is anchored once
(``UNIQUE (brand_id, position)``): the workers every ``TRACECODE_CHAIN_ANCHOR_SECONDS`` when the
head moved, a user on demand (``POST /chain/anchors``); asking again for an unchanged head
answers its anchor — never the anchor of another hash at the head's position (a chain trimmed
and extended again to it): that is ``chain_broken``, for the request as for the workers' pass.
A head the workers' pass cannot anchor (a hash that is not 32 bytes: the head was rewritten; its
position anchored with another hash) keeps the error on its row, as a chain that cannot be
extended does (``chainer.record_failure``), and the pass goes on with the other brands, in brand
order.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from app.chain.chainer import record_failure
from app.config import Settings
from app.db import Conn
from app.deadletters import is_poison
from app.errors import Conflict
from app.events.chainverify import anchor_message, ed25519_verify
from app.signing import Ed25519Key, ed25519_key

PURPOSE = "event-chain-anchor"
# ``anchored_at`` read as the text its signature covers (``signed_at``), made by PostgreSQL: a
# time moved past year 9999 (or to ``infinity``) is read all the same — as a datetime, psycopg
# could not load it and every read of the anchors failed (a probe: 400 ``validation_failed``),
# where its signature fails and the check names it ``anchor_signature``.
_COLUMNS = """id, brand_id, position, hash, coalesce(
    to_char(anchored_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), anchored_at::text
    ) AS anchored_at, key_id, signature, requested_by"""


class Anchor(msgspec.Struct, frozen=True):
    """An anchor as stored and exported (hex texts; ``anchored_at`` the exact signed text)."""

    id: int
    brand_id: int
    position: int
    hash: str
    anchored_at: str
    key_id: str
    signature: str
    requested_by: int | None = None


def signing_key(settings: Settings) -> Ed25519Key:
    """The anchors' Ed25519 key (``app.signing``); its ``key_id()`` (no prefix) is
    ``chainverify.key_id`` of its public key, as every anchor and export names it."""
    return ed25519_key(settings, PURPOSE)


def public_key(settings: Settings) -> bytes:
    """The anchors' Ed25519 public key (32 bytes)."""
    return signing_key(settings).public_raw


def signed_at(moment: datetime) -> str:
    """The text an anchor signs for its time: UTC, microseconds, ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def anchor_of(row: dict[str, Any]) -> Anchor:
    return Anchor(
        id=row["id"],
        brand_id=row["brand_id"],
        position=row["position"],
        hash=bytes(row["hash"]).hex(),
        anchored_at=row["anchored_at"],
        key_id=row["key_id"],
        signature=bytes(row["signature"]).hex(),
        requested_by=row["requested_by"],
    )


def verifies(anchor: Anchor, public: bytes) -> bool:
    """Whether the anchor's signature holds under ``public``."""
    message = anchor_message(anchor.brand_id, anchor.position, anchor.hash, anchor.anchored_at)
    return ed25519_verify(public, message, bytes.fromhex(anchor.signature))


async def anchor_head(
    conn: Conn, settings: Settings, brand_id: int, requested_by: int | None = None
) -> tuple[Anchor, bool]:
    """Anchor the brand's chain head as it is committed now: (the anchor, whether it is new).
    409 ``chain_empty`` before the first link; 409 ``chain_broken`` when the head's position
    was anchored already with another hash (the chain was trimmed and extended again): the
    anchor answered is always the head's own."""
    head = await (
        await conn.execute(
            "SELECT position, hash FROM event_chain_heads WHERE brand_id = %s", (brand_id,)
        )
    ).fetchone()
    if head is None or head["position"] == 0:
        raise Conflict("the brand's event chain has no link yet", code="chain_empty")
    # microseconds, as PostgreSQL keeps them: the stored time gives back the signed text
    moment = datetime.now(UTC)
    hash_hex = bytes(head["hash"]).hex()
    message = anchor_message(brand_id, head["position"], hash_hex, signed_at(moment))
    key = signing_key(settings)
    signature = key.sign(message)
    row = await (
        await conn.execute(
            f"""INSERT INTO event_chain_anchors
                    (brand_id, position, hash, anchored_at, key_id, signature, requested_by)
                VALUES (%s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (brand_id, position) DO NOTHING RETURNING {_COLUMNS}""",
            (
                brand_id,
                head["position"],
                bytes(head["hash"]),
                moment,
                key.key_id(),
                signature,
                requested_by,
            ),
        )
    ).fetchone()
    if row is not None:
        return anchor_of(row), True
    existing = await (
        await conn.execute(
            f"SELECT {_COLUMNS} FROM event_chain_anchors WHERE brand_id = %s AND position = %s",
            (brand_id, head["position"]),
        )
    ).fetchone()
    assert existing is not None  # the conflict was this row
    if bytes(existing["hash"]) != bytes(head["hash"]):
        # signed when the chain had other events at this position: it was trimmed and refilled
        raise Conflict(
            f"anchor {existing['id']} signed another hash at position {head['position']}: "
            "the brand's event chain was altered (tracecode chain check)",
            code="chain_broken",
            details={
                "reason": f"the head differs from anchor {existing['id']} at its position",
                "position": head["position"],
            },
        )
    return anchor_of(existing), False


async def anchor_due(conn: Conn, settings: Settings) -> int:
    """Anchor every head that moved since its brand's last anchor, when that anchor is older
    than ``TRACECODE_CHAIN_ANCHOR_SECONDS`` (or there is none); the number made. Run by every
    worker: two at once make each anchor once. ``conn`` autocommits; each head is anchored in a
    transaction of its own, and one that cannot be for a reason of its data keeps the error on
    its head (left out until it is cleared) while the others are anchored."""
    rows = await (
        await conn.execute(
            """SELECT h.brand_id FROM event_chain_heads h
               LEFT JOIN LATERAL (SELECT a.position, a.hash, a.anchored_at
                                    FROM event_chain_anchors a
                                   WHERE a.brand_id = h.brand_id ORDER BY a.id DESC LIMIT 1) a
                 ON true
               WHERE h.position > 0 AND h.error IS NULL
                 AND (a.position IS NULL OR ((a.position <> h.position OR a.hash <> h.hash)
                      AND a.anchored_at <= now() - make_interval(secs => %s)))
               ORDER BY h.brand_id""",
            (settings.chain_anchor_seconds,),
        )
    ).fetchall()
    made = 0
    for row in rows:
        try:
            async with conn.transaction():
                _, created = await anchor_head(conn, settings, row["brand_id"])
        except Exception as exc:
            broken = isinstance(exc, Conflict) and exc.code == "chain_broken"
            if not (broken or is_poison(exc)):
                raise  # the database is down, a lock conflict: the next pass tries again
            await record_failure(conn, row["brand_id"], exc, "anchored")
            continue  # this head cannot be anchored: the other brands go on
        made += created
    return made


async def list_anchors(
    conn: Conn, brand_id: int, page: int, per_page: int
) -> tuple[list[Anchor], int]:
    """The brand's anchors, newest first, and their number."""
    rows = await (
        await conn.execute(
            f"""SELECT {_COLUMNS}, count(*) OVER () AS total FROM event_chain_anchors
                WHERE brand_id = %s ORDER BY id DESC LIMIT %s OFFSET %s""",
            (brand_id, per_page, (page - 1) * per_page),
        )
    ).fetchall()
    if rows:
        return [anchor_of(r) for r in rows], int(rows[0]["total"])
    total = await (
        await conn.execute(
            "SELECT count(*) AS n FROM event_chain_anchors WHERE brand_id = %s", (brand_id,)
        )
    ).fetchone()
    return [], int(total["n"]) if total else 0


async def anchors_between(conn: Conn, brand_id: int, first: int, last: int) -> list[Anchor]:
    """The brand's anchors of positions ``first``..``last``, in position order."""
    rows = await (
        await conn.execute(
            f"""SELECT {_COLUMNS} FROM event_chain_anchors
                WHERE brand_id = %s AND position BETWEEN %s AND %s ORDER BY position""",
            (brand_id, first, last),
        )
    ).fetchall()
    return [anchor_of(r) for r in rows]


async def anchors_beyond_head(conn: Conn, brand_id: int, limit: int) -> list[Anchor]:
    """The brand's anchors of positions after its head (as this statement sees the head: no head
    row counts as position 0), in position order, the first ``limit``."""
    rows = await (
        await conn.execute(
            f"""SELECT {_COLUMNS} FROM event_chain_anchors
                WHERE brand_id = %(brand)s AND position > coalesce(
                    (SELECT position FROM event_chain_heads WHERE brand_id = %(brand)s), 0)
                ORDER BY position LIMIT %(limit)s""",
            {"brand": brand_id, "limit": limit},
        )
    ).fetchall()
    return [anchor_of(r) for r in rows]
