"""The server-side check: re-hash the stored events and name what no longer matches.

For positions ``first``..``last`` of a brand's chain, each link is recomputed from the link
before it (as stored) and the event as it is now, with its codes — so each altered event is
named on its own, not only the first: ``event_changed`` (a row of ``events`` or of its
``event_codes`` updated, deleted or added), ``event_deleted`` (the event row is gone),
``link_missing`` (a link row is gone). Over the whole chain also ``event_unchained`` (an event of
the brand at or before the head's ``(xact, id)`` that no link names: one inserted afterwards,
back-dated; or one naming a transaction that has not begun, which the chainer never takes) and
``head_mismatch``. Every anchor in the range is checked against its signature
(``anchor_signature``) and against the stored link at its position (``anchor_mismatch``: the
links were rewritten after it was signed — the one change a consistent rewrite of the link table
cannot hide). A check that reaches the head also looks past it: a signed anchor of a position
beyond the head (``anchor_beyond_head``: the chain was trimmed under it and the head rewound) and a
link beyond the head or naming an event after the head's ``(xact, id)`` (``link_beyond_head``: the
head was rewound, the links left). A range that starts after 1 needs link ``from - 1`` to re-hash
its first event: when it is gone that is ``link_missing`` at ``from - 1``, never a pass.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from app.chain import anchors
from app.chain.chainer import EVENT_TEXT, codes_of, event_bytes
from app.config import Settings
from app.db import Conn
from app.events.chainverify import genesis, link

BATCH = 5000
MAX_PROBLEMS = 100

ProblemKind = Literal[
    "event_changed",
    "event_deleted",
    "event_unchained",
    "link_missing",
    "head_mismatch",
    "anchor_signature",
    "anchor_mismatch",
    "link_beyond_head",
    "anchor_beyond_head",
]


class Problem(msgspec.Struct, frozen=True):
    problem: ProblemKind
    position: int | None  # the link's position (None: an event no link names)
    event_id: int | None  # the event concerned, when known
    message: str


class CheckReport(msgspec.Struct, frozen=True):
    brand_id: int
    head_position: int
    head_hash: str
    first: int  # the positions checked
    last: int
    links_checked: int
    anchors_checked: int
    ok: bool
    first_problem: Problem | None
    problems: list[Problem]  # in position order (unchained events last), the first 100


class _Walk:
    """The state of one check: the problems so far and the previous link's stored hash."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.checked = 0
        self.stored: dict[int, bytes] = {}  # position -> stored hash, for the anchors

    def add(self, kind: ProblemKind, position: int | None, event_id: int | None, text: str) -> None:
        self.problems.append(Problem(kind, position, event_id, text))


async def _links(conn: Conn, brand_id: int, lo: int, hi: int) -> list[dict[str, Any]]:
    return await (
        await conn.execute(
            """SELECT position, event_id, hash FROM event_chain
               WHERE brand_id = %s AND position BETWEEN %s AND %s ORDER BY position""",
            (brand_id, lo, hi),
        )
    ).fetchall()


async def events_by_id(conn: Conn, ids: list[int]) -> dict[int, dict[str, Any]]:
    """The events of ``ids`` as their canonical texts (``EVENT_TEXT``), by id."""
    rows = await (
        await conn.execute(f"SELECT {EVENT_TEXT} FROM events e WHERE e.id = ANY(%s)", (ids,))
    ).fetchall()
    return {int(r["id"]): r for r in rows}


async def _walk_links(
    conn: Conn, walk: _Walk, brand_id: int, first: int, last: int, previous: bytes | None
) -> None:
    """Recompute links ``first``..``last``, batch by batch."""
    for lo in range(first, last + 1, BATCH):
        hi = min(lo + BATCH - 1, last)
        links = {r["position"]: r for r in await _links(conn, brand_id, lo, hi)}
        ids = [r["event_id"] for r in links.values()]
        events = await events_by_id(conn, ids)
        codes = await codes_of(conn, list(events))
        for position in range(lo, hi + 1):
            row = links.get(position)
            if row is None:
                walk.add("link_missing", position, None, f"link {position} is gone")
                previous = None
                continue
            stored, event_id = bytes(row["hash"]), row["event_id"]
            walk.stored[position] = stored
            walk.checked += 1
            event = events.get(event_id)
            if event is None:
                walk.add("event_deleted", position, event_id, f"event {event_id} is gone")
            elif previous is not None and link(previous, event_bytes(event, codes[event_id])) != (
                stored
            ):
                walk.add(
                    "event_changed",
                    position,
                    event_id,
                    f"event {event_id} (or its codes) no longer hashes to link {position}",
                )
            previous = stored


async def _unchained(conn: Conn, walk: _Walk, brand_id: int, head: dict[str, Any]) -> None:
    """The events of the brand inside its chained part that no link of its chain names (a link
    of another brand's chain does not count: a probe moved a chained event into a brand whose
    chain was past it, and its check passed)."""
    rows = await (
        await conn.execute(
            """SELECT e.id FROM events e
               WHERE e.brand_id = %s AND (e.xact, e.id) <= (%s::xid8, %s)
                 AND NOT EXISTS (SELECT 1 FROM event_chain c
                                  WHERE c.event_id = e.id AND c.brand_id = e.brand_id)
               ORDER BY e.xact, e.id LIMIT %s""",
            (brand_id, head["last_xact"], head["last_id"], MAX_PROBLEMS),
        )
    ).fetchall()
    for row in rows:
        walk.add(
            "event_unchained",
            None,
            row["id"],
            f"event {row['id']} lies inside the chained part but no link names it",
        )


async def _future(conn: Conn, walk: _Walk, brand_id: int) -> None:
    """The events of the brand whose ``xact`` no transaction has been given yet: the chainer waits
    for the horizon to pass it, so no link will ever name them, and they hold nothing back (a
    probe: one inserted by hand was served by every read of the log while the check said
    ``ok``). In one statement with the snapshot, so an event committed since is not one."""
    rows = await (
        await conn.execute(
            """SELECT e.id, e.xact::text AS xact FROM events e
               WHERE e.brand_id = %s AND e.xact >= pg_snapshot_xmax(pg_current_snapshot())
               ORDER BY e.xact, e.id LIMIT %s""",
            (brand_id, MAX_PROBLEMS),
        )
    ).fetchall()
    for row in rows:
        walk.add(
            "event_unchained",
            None,
            row["id"],
            f"event {row['id']} names transaction {row['xact']}, which has not begun: it was "
            "written by hand and will never be chained",
        )


def _unsigned(walk: _Walk, anchor: anchors.Anchor, public: bytes) -> bool:
    """Whether ``anchor`` is not signed by this server's key (then reported
    ``anchor_signature``): a forged row, whatever it names."""
    if anchors.verifies(anchor, public):
        return False
    walk.add(
        "anchor_signature",
        anchor.position,
        None,
        f"anchor {anchor.id} is not signed by this server's key",
    )
    return True


async def _anchors(
    conn: Conn, settings: Settings, walk: _Walk, brand_id: int, first: int, last: int
) -> int:
    public = anchors.public_key(settings)
    found = await anchors.anchors_between(conn, brand_id, first, last)
    for anchor in found:
        if _unsigned(walk, anchor, public):
            continue
        if walk.stored.get(anchor.position, b"").hex() != anchor.hash:
            walk.add(
                "anchor_mismatch",
                anchor.position,
                None,
                f"link {anchor.position} differs from anchor {anchor.id} ({anchor.anchored_at})",
            )
    return len(found)


# The head as the statement reading past it sees it (the chainer moves it with its links in one
# transaction, so one statement never sees a link committed after the head it compares with).
_HEAD_NOW = """head AS (
    SELECT coalesce(h.position, 0) AS position, coalesce(h.last_xact, '0'::xid8) AS last_xact,
           coalesce(h.last_id, 0) AS last_id
      FROM (SELECT 1) one LEFT JOIN event_chain_heads h ON h.brand_id = %(brand)s)"""

_LINKS_BEYOND = f"""WITH {_HEAD_NOW}
(SELECT c.position, c.event_id, head.position AS head FROM head, event_chain c
  WHERE c.brand_id = %(brand)s AND c.position > head.position
  ORDER BY c.position LIMIT %(limit)s)
UNION
(SELECT c.position, c.event_id, head.position AS head FROM head, events e
   JOIN event_chain c ON c.event_id = e.id
  WHERE e.brand_id = %(brand)s AND (e.xact, e.id) > (head.last_xact, head.last_id)
  ORDER BY e.xact, e.id LIMIT %(limit)s)
ORDER BY position LIMIT %(limit)s"""


async def _links_beyond(conn: Conn, walk: _Walk, brand_id: int) -> None:
    """The links past the head: of a position after it, or naming an event after its
    ``(xact, id)`` (the head was rewound and the links left in place)."""
    rows = await (
        await conn.execute(_LINKS_BEYOND, {"brand": brand_id, "limit": MAX_PROBLEMS})
    ).fetchall()
    for row in rows:
        walk.add(
            "link_beyond_head",
            row["position"],
            row["event_id"],
            f"link {row['position']} (event {row['event_id']}) lies beyond the head "
            f"(position {row['head']})",
        )


async def _anchors_beyond(conn: Conn, settings: Settings, walk: _Walk, brand_id: int) -> int:
    """The anchors of positions after the head: proof the chain once went further (its tail was
    trimmed and the head rewound), or — not signed by this server's key — a forged row."""
    public = anchors.public_key(settings)
    found = await anchors.anchors_beyond_head(conn, brand_id, MAX_PROBLEMS)
    for anchor in found:
        if not _unsigned(walk, anchor, public):
            walk.add(
                "anchor_beyond_head",
                anchor.position,
                None,
                f"anchor {anchor.id} ({anchor.anchored_at}) signed position {anchor.position}, "
                "beyond the head: the chain was trimmed after it",
            )
    return len(found)


async def _previous(conn: Conn, walk: _Walk, brand_id: int, first: int) -> bytes | None:
    """The hash the link at ``first`` is re-hashed from: the genesis, or the stored link
    ``first - 1`` — ``None`` when that is gone (``link_missing`` there: the first event of the
    range cannot be verified)."""
    if first == 1:
        return genesis(brand_id)
    before = await _links(conn, brand_id, first - 1, first - 1)
    if not before:
        walk.add(
            "link_missing",
            first - 1,
            None,
            f"link {first - 1} is gone: link {first} cannot be re-hashed",
        )
        return None
    return bytes(before[0]["hash"])


async def check_chain(
    conn: Conn, settings: Settings, brand_id: int, first: int = 1, last: int | None = None
) -> CheckReport:
    """Check positions ``first``..``last`` (default: to the head) of the brand's chain."""
    head = await (
        await conn.execute(
            """SELECT position, hash, last_xact::text AS last_xact, last_id
               FROM event_chain_heads WHERE brand_id = %s""",
            (brand_id,),
        )
    ).fetchone() or {"position": 0, "hash": genesis(brand_id), "last_xact": "0", "last_id": 0}
    end = head["position"] if last is None else min(last, head["position"])
    walk = _Walk()
    previous = await _previous(conn, walk, brand_id, first)
    await _walk_links(conn, walk, brand_id, first, end, previous)
    anchors_checked = await _anchors(conn, settings, walk, brand_id, first, end)
    if end == head["position"]:  # to the head: and what lies past it
        if end > 0 and walk.stored.get(end) != bytes(head["hash"]):
            walk.add("head_mismatch", end, None, "the head's hash is not its last link's")
        await _links_beyond(conn, walk, brand_id)
        anchors_checked += await _anchors_beyond(conn, settings, walk, brand_id)
    if first == 1 and end == head["position"]:
        await _unchained(conn, walk, brand_id, head)
        await _future(conn, walk, brand_id)
    kinds = list(ProblemKind.__args__)  # type: ignore[attr-defined]
    ordered = sorted(
        walk.problems,
        key=lambda p: (
            p.position is None,
            p.position or 0,
            kinds.index(p.problem),
            p.event_id or 0,
        ),
    )
    return CheckReport(
        brand_id=brand_id,
        head_position=head["position"],
        head_hash=bytes(head["hash"]).hex(),
        first=first,
        last=end,
        links_checked=walk.checked,
        anchors_checked=anchors_checked,
        ok=not ordered,
        first_problem=ordered[0] if ordered else None,
        problems=ordered[:MAX_PROBLEMS],
    )


async def brands_chained(conn: Conn) -> list[int]:
    """Every brand with a chain head."""
    rows = await (
        await conn.execute("SELECT brand_id FROM event_chain_heads ORDER BY brand_id")
    ).fetchall()
    return [r["brand_id"] for r in rows]
