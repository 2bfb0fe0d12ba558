"""Paging of list endpoints: ``?page=&per_page=`` in, ``{items, page, per_page, total}`` out."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Generic, TypeVar

import msgspec
from litestar.params import Parameter

from app.db import Conn
from app.errors import BadRequest

T = TypeVar("T")

PageNo = Annotated[int, Parameter(ge=1, le=1_000_000, description="page number, from 1")]
PerPage = Annotated[int, Parameter(ge=1, le=200, description="items per page (max 200)")]


def contains(text: str) -> str:
    """A ``LIKE``/``ILIKE`` pattern of ``text`` anywhere, its ``%``, ``_`` and ``\\`` taken as
    themselves (a search for ``%`` matched every row)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class Page(msgspec.Struct, Generic[T], frozen=True):
    items: list[T]
    page: int
    per_page: int
    total: int


async def fetch_page(
    conn: Conn,
    *,
    columns: str,
    source: str,
    where: Sequence[str],
    params: Mapping[str, Any],
    order: str,
    page: int,
    per_page: int,
    make: Callable[[dict[str, Any]], T],
) -> Page[T]:
    """One page of ``SELECT columns FROM source WHERE where... ORDER BY order`` and the total.

    Placeholders in ``where`` are named (``%(name)s``); the total comes with the rows in the same
    query (a window count), and only a page past the end costs a second, counting query.
    """
    condition = " AND ".join(where) or "true"
    rows = await (
        await conn.execute(
            f"SELECT {columns}, count(*) OVER () AS page_total__ FROM {source} "
            f"WHERE {condition} ORDER BY {order} LIMIT %(limit__)s OFFSET %(offset__)s",
            {**params, "limit__": per_page, "offset__": (page - 1) * per_page},
        )
    ).fetchall()
    if rows:
        total = int(rows[0]["page_total__"])
    else:
        counted = await (
            await conn.execute(f"SELECT count(*) AS n FROM {source} WHERE {condition}", params)
        ).fetchone()
        total = int(counted["n"]) if counted else 0
    for row in rows:
        del row["page_total__"]
    return Page([make(row) for row in rows], page, per_page, total)


def page_of(items: Sequence[T], page: int, per_page: int) -> Page[T]:
    """One page of a list held in memory (a fixed catalogue such as the permissions)."""
    start = (page - 1) * per_page
    return Page(list(items[start : start + per_page]), page, per_page, len(items))


def check_period(start: Any, end: Any) -> None:
    """400 ``bad_period`` for a filter whose end (``to``) comes before its start (``from``):
    days or times alike. A list answered it with nothing (probe L), as if no row matched."""
    if start is not None and end is not None and start > end:
        raise BadRequest("the period ends before it starts", code="bad_period")
