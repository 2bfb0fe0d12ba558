"""Shared by the race tests (check-then-act): two requests at once that both read a row before
either writes it, made deterministic by a third transaction holding the row (``SELECT ... FOR
UPDATE``) while both requests read it and then queue up on their write."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from tests.helpers import assert_error, code_of


async def lock_waiters(conn: Any, at_least: int) -> bool:
    """Whether ``at_least`` transactions of this database wait for a lock, within ~5 s."""
    for _ in range(200):
        row = await (
            await conn.execute(
                """SELECT count(DISTINCT pid) AS n FROM pg_locks WHERE NOT granted AND pid IN
                       (SELECT pid FROM pg_stat_activity WHERE datname = current_database())"""
            )
        ).fetchone()
        await conn.commit()
        if row["n"] >= at_least:
            return True
        await asyncio.sleep(0.025)
    return False


async def twice_held(
    app: Any,
    client: Any,
    lock_sql: str,
    lock_args: tuple[Any, ...],
    method: str,
    url: str,
    headers: dict[str, str],
    json: Any = None,
    bodies: tuple[Any, Any] | None = None,
) -> list[Any]:
    """Send the same request twice at once (or with ``bodies``, one each) while a third
    transaction holds the row both of them read and then write; release it once both wait."""
    sent = bodies if bodies is not None else (json, json)
    async with app.state.pool.connection() as holder, app.state.pool.connection() as watch:
        await holder.execute(lock_sql, lock_args)
        racing = [
            asyncio.ensure_future(
                client.request(
                    method, url, headers=headers, **({"json": body} if body is not None else {})
                )
            )
            for body in sent
        ]
        assert await lock_waiters(watch, 2), "both requests should wait for the held row"
        await holder.commit()
        return list(await asyncio.gather(*racing))


async def held_in_turn(
    app: Any,
    lock_sql: str,
    lock_args: tuple[Any, ...],
    first: Callable[[], Awaitable[Any]],
    second: Callable[[], Awaitable[Any]],
) -> list[Any]:
    """Two different requests under way at once, in turn (a lock-order race): a third
    transaction holds a row, ``first`` is sent and waits for it, then ``second`` until it waits
    too (for ``first``'s rows, or the held one); the row released, both answers."""
    async with app.state.pool.connection() as holder, app.state.pool.connection() as watch:
        await holder.execute(lock_sql, lock_args)
        one = asyncio.ensure_future(first())
        assert await lock_waiters(watch, 1), "the first request should wait for the held row"
        two = asyncio.ensure_future(second())
        assert await lock_waiters(watch, 2), "the second request should wait too"
        await holder.commit()
        return list(await asyncio.wait_for(asyncio.gather(one, two), 60))


async def answered_while_unit_held(
    app: Any,
    serial: str,
    request: Callable[[], Awaitable[Any]],
    meanwhile: Callable[[], Awaitable[Any]],
    unheld: str,
) -> Any:
    """The answer to ``request()``, sent while another transaction holds ``serial``'s unit row
    (as a claim, a draw, a return or a sale of it in flight does); once the request waits for
    the row, ``meanwhile()`` runs and is answered, then the row is released. ``unheld``: the
    failure message should the request not wait for the row."""
    async with app.state.pool.connection() as holder, app.state.pool.connection() as watch:
        await holder.execute(
            "SELECT 1 FROM unit_state WHERE code = %s FOR UPDATE", (code_of(app, serial),)
        )
        waiting = asyncio.ensure_future(request())
        assert await lock_waiters(watch, 1), unheld
        await meanwhile()
        await holder.rollback()
        return await asyncio.wait_for(waiting, 30)


def voiding(
    client: Any, batch_no: Any, headers: dict[str, str], reason: str
) -> Callable[[], Awaitable[None]]:
    """A ``meanwhile`` for ``answered_while_unit_held``: void batch ``batch_no`` as ``headers``
    (200, ``void``)."""

    async def void() -> None:
        voided = await client.post(
            f"/batches/{batch_no}/void", headers=headers, json={"reason": reason}
        )
        assert voided.status_code == 200 and voided.json()["state"] == "void", voided.text

    return void


async def audit_rows(app: Any, entity: str, entity_id: Any, action: str) -> list[dict[str, Any]]:
    """The audit rows of ``action`` on the entity, oldest first."""
    async with app.state.pool.connection() as conn:
        return await (
            await conn.execute(
                "SELECT before, after FROM audit_log "
                "WHERE entity = %s AND action = %s AND entity_id = %s ORDER BY id",
                (entity, action, str(entity_id)),
            )
        ).fetchall()


async def deleted_once(
    app: Any, answers: list[Any], entity: str, entity_id: Any, action: str
) -> None:
    """As one after the other: one 204 and one 404, one ``action`` audit row."""
    audited = len(await audit_rows(app, entity, entity_id, action))
    assert audited == 1, f"{audited} {action} audit rows for one deletion"
    codes = sorted(a.status_code for a in answers)
    assert codes == [204, 404], f"{codes}: {[a.text for a in answers]}"
    assert_error(next(a for a in answers if a.status_code != 204), 404)
