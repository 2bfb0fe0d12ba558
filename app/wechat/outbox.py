"""The template messages' outbox: a row per cause, written in the caller's transaction.

Other domains call one function each, where their cause happens, in their transaction:
``redemption_issued`` (``app.members.redemptions.redeem``), ``points_reminder``
(``app.sms.reminders``, when the reminder SMS is queued) and ``complaint_replied``
(``app.marketing.handling``, a staff reply). A row is queued only for a member bound to the
brand's WeChat, when the brand's account is enabled and has a template for the kind: anyone
else gets nothing here (their SMS, if any, is the SMS domain's, unchanged). The row is keyed by
its cause (``UNIQUE (brand_id, kind, cause_key)``: a redemption's id, a reminder SMS's id, a
complaint's id and reply time), so a cause queued twice — a retried request, a scan run twice —
is one message (``ON CONFLICT DO NOTHING``).

A row holds what the message says (``data``: short texts, never a secret — a redemption's
message names the gift and the expiry, not the code, which stays in the SMS and on the member's
page) and the member page it links to. The template id and the openid are read when it is sent
(``app.wechat.sender``): a template unmapped or an account removed meanwhile fails the row with
the reason; a member unbound meanwhile is not messaged.

The job that sends rows (``send_wechat``, workers/wechat.py) is handed to the broker after the
caller's commit (``after_commit``, from ``app.deps.provide_conn`` and the reminder scan); the
workers' sweep sends whatever it misses.
"""

from __future__ import annotations

import weakref
from datetime import datetime
from typing import Any

from psycopg.pq import TransactionStatus
from psycopg.types.json import Jsonb

from app import jobs
from app.config import Settings
from app.db import Conn
from app.localtime import ZONE
from app.wechat.schemas import Kind

SEND_ACTOR = "send_wechat"  # workers/wechat.py
VALUE_MAX = 200  # characters of one data value (WeChat's own limits are shorter per type)

_pending: weakref.WeakKeyDictionary[Any, list[int]] = weakref.WeakKeyDictionary()


def _short(text: str, size: int = 20) -> str:
    """A text cut for a template field (WeChat's ``thing`` fields take 20 characters)."""
    text = " ".join(text.split())
    return text if len(text) <= size else text[: size - 1] + "…"


def _when(at: datetime) -> str:
    return at.astimezone(ZONE).strftime("%Y-%m-%d %H:%M")


async def enqueue(
    conn: Conn,
    *,
    brand_id: int,
    member_id: int,
    kind: Kind,
    cause_key: str,
    data: dict[str, str],
    url: str | None,
) -> int:
    """Queue one message for the member when it is bound and the brand's account is enabled
    with a template of ``kind``; its id, or 0 (not queued: nobody to send to, or the cause was
    queued before)."""
    cur = await conn.execute(
        """INSERT INTO wechat_messages (brand_id, member_id, kind, cause_key, data, url)
           SELECT %(b)s, %(m)s, %(k)s, %(c)s, %(d)s, %(u)s
            WHERE EXISTS (SELECT 1 FROM wechat_bindings w
                           WHERE w.member_id = %(m)s AND w.brand_id = %(b)s)
              AND EXISTS (SELECT 1 FROM wechat_accounts a
                           WHERE a.brand_id = %(b)s AND a.enabled AND a.templates ? %(k)s)
           ON CONFLICT (brand_id, kind, cause_key) DO NOTHING
           RETURNING id""",
        {
            "b": brand_id,
            "m": member_id,
            "k": kind,
            "c": cause_key[:200],
            "d": Jsonb({k: v[:VALUE_MAX] for k, v in data.items()}),
            "u": url,
        },
    )
    row = await cur.fetchone()
    if row is None:
        return 0
    await _track(conn, [int(row["id"])])
    return int(row["id"])


def _page(settings: Settings, path: str) -> str:
    """The member page a message links to, on the public host (the app's own settings: a
    review found the complaint's read from the environment, another host than the app's)."""
    return f"{settings.public_url}{path}"


async def redemption_issued(
    conn: Conn,
    settings: Settings,
    *,
    brand_id: int,
    member_id: int,
    redemption_id: int,
    gift: str,
    until: datetime,
) -> int:
    """A redemption code was issued: "your code for {gift} is ready, valid until …" (the code
    itself is on the member's page, where the message links)."""
    data = {
        "first": "兑换码已发放",
        "keyword1": _short(gift),
        "keyword2": _when(until),
        "remark": "点击查看兑换码",
    }
    return await enqueue(
        conn,
        brand_id=brand_id,
        member_id=member_id,
        kind="redemption",
        cause_key=f"redemption:{redemption_id}",
        data=data,
        url=_page(settings, "/member/codes"),
    )


async def points_reminder(
    conn: Conn,
    settings: Settings,
    *,
    brand_id: int,
    member_id: int,
    sms_id: int,
    gift: str,
    points: str,
) -> int:
    """The points reminder queued as SMS ``sms_id``: its WeChat twin."""
    data = {
        "first": "您的积分可以兑换礼品了",
        "keyword1": points,
        "keyword2": _short(gift),
        "remark": "点击查看可兑换的礼品",
    }
    return await enqueue(
        conn,
        brand_id=brand_id,
        member_id=member_id,
        kind="points_reminder",
        cause_key=f"reminder:{sms_id}",
        data=data,
        url=_page(settings, "/member/gifts"),
    )


async def complaint_replied(
    conn: Conn,
    settings: Settings,
    *,
    brand_id: int,
    member_id: int,
    complaint_id: int,
    reply: str,
    replied_at: datetime,
) -> int:
    """Staff answered the member's complaint or suggestion (each reply is a cause: a later
    answer replaces the earlier and is messaged too)."""
    data = {
        "first": "您的反馈已有回复",
        "keyword1": _short(reply),
        "keyword2": _when(replied_at),
        "remark": "点击查看完整回复",
    }
    return await enqueue(
        conn,
        brand_id=brand_id,
        member_id=member_id,
        kind="complaint_reply",
        cause_key=f"complaint:{complaint_id}:{replied_at.timestamp():.6f}",
        data=data,
        url=_page(settings, "/member/complaints"),
    )


async def _track(conn: Conn, ids: list[int]) -> None:
    if conn.info.transaction_status == TransactionStatus.IDLE:
        await dispatch(ids)
    else:
        _pending.setdefault(conn, []).extend(ids)


async def after_commit(conn: Conn) -> None:
    """The caller's transaction committed: hand the job for its rows to the broker."""
    ids = _pending.pop(conn, None)
    if ids:
        await dispatch(ids)


def discard(conn: Conn) -> None:
    """The caller's transaction rolled back: its rows do not exist."""
    _pending.pop(conn, None)


async def dispatch(ids: list[int]) -> None:
    """``send_wechat(ids)`` to the broker; on any failure the sweep sends the rows."""
    await jobs.hand_over(SEND_ACTOR, ids)
