"""The brand story (品牌介绍, seed 1.10.1 and 1.10.2, SPEC W1): one rich-text page per brand.

Written by the brand's own staff holding ``content.write`` (403 ``brand_staff_only`` below the
brand, as the member-facing settings: a story speaks for the brand, not for an agent); read by
anyone of the brand's tree who reads its catalogue, and by every consumer on the phone site
(``/brand/story``, ``app.web.content_pages``).

The HTML is sanitised by an allow-list as it is written (``app.content.sanitise``) and kept so;
the answer of a save is the HTML as kept, which the console shows as the preview. Every save
names the ``version`` it was made from (``GET``'s; 0 before the first): a save made from an
older one is 409 ``story_changed`` with the current version, so two editors never overwrite
each other unseen. The row is locked for the check and the write (the first save of a brand,
which has no row to lock, inserts ``ON CONFLICT DO NOTHING``: of two first saves one wins, the
other is 409 — unless it is the same story, a double-click, answered as kept). A save identical
to the story kept (a retry whose answer was lost) answers it as it is, whatever version it
names, and writes nothing (no version, no audit row); every other one is audited with the story
before and after. ``updated_by`` is the user, or the maker of the API key that saved it. What
is kept is at most ``KEPT_MAX`` characters once sanitised (400 on ``html`` beyond: escaping can
make it several times what was sent), its elements nested at most ``MAX_DEPTH`` deep (400
``too_deep`` on ``html`` beyond: the sanitiser's parse is quadratic in nesting), without
control characters or bidi overrides (400 ``invalid_character`` on ``html``: character
references smuggled them past the JSON edge). A picture or link naming a catalogue medium of
this server names one of the brand's own, an image for a picture, by its ``absolute_url`` (400
``unknown_catalog_media`` on ``html``: a probe, brand B's story showed brand A's upload), its
row held as a product's is (``app.catalog.service.check_brand_media``): the medium is then in
use, and ``DELETE /media/catalog/{id}`` is 409 ``in_use`` while the story shows it.
Sanitising runs off the event loop, a few at a time (``sanitising``), before any connection is
taken: a save holds a pooled connection only for the short transaction of its write.

The phone page (``public_story``) sanitises a version once under today's list, off the event
loop, and keeps the result per brand and version (``_SHOWN``): a view never parses the story
again (a probe: a story of 22,000 nested lists held the event loop 1.4 s on every anonymous
view). A story kept deeper than ``MAX_DEPTH`` (before that bound) is not parsed: the page shows
none until it is saved again.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from psycopg_pool import AsyncConnectionPool

from app import audit
from app.auth.principal import Principal
from app.catalog.service import check_brand_media
from app.content.sanitise import MAX_DEPTH, clean, depth, urls
from app.content.schemas import StoryIn, StoryOut
from app.db import Conn
from app.errors import BadRequest, Conflict, ValidationFailed
from app.members.principal import brand_of_staff
from app.textguard import check_text, without_blanks, without_controls

_COLUMNS = "brand_id, title, html, version, updated_at, updated_by"
KEPT_MAX = 200_000  # characters of sanitised HTML: the column's CHECK (migration 0105)
_SHOWN_MAX = 64  # stories kept sanitised for the phone pages, the least recently shown goes
# (brand, version, updated_at) -> the HTML the phone page shows (None: none, too deep)
_SHOWN: OrderedDict[tuple[int, int, Any], str | None] = OrderedDict()
log = logging.getLogger("tracecode.content")
# A save's sanitising runs in the default thread pool (``asyncio.to_thread``), at most this
# many at once per process: a probe's burst of 24 deep saves, each seconds of parse, held every
# thread (and, then taken before the parse, every pooled connection): the API answered 503.
SANITISE_SLOTS = 2
_SANITISING: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


async def _row(conn: Conn, brand_id: int, lock: bool = False) -> dict[str, Any] | None:
    sql = f"SELECT {_COLUMNS} FROM brand_stories WHERE brand_id = %s"
    return await (await conn.execute(sql + (" FOR UPDATE" if lock else ""), (brand_id,))).fetchone()


def _out(brand_id: int, row: dict[str, Any] | None) -> StoryOut:
    if row is None:  # never written: an empty story of version 0
        return StoryOut(
            brand_id=brand_id, title="", html="", version=0, updated_at=None, updated_by=None
        )
    return StoryOut(**row)


async def get_story(conn: Conn, actor: Principal) -> StoryOut:
    """The caller's brand's story (``catalog.read``: the story is the catalogue's companion)."""
    actor.require("catalog.read")
    return _out(actor.brand_id, await _row(conn, actor.brand_id))


def _stale(current: int) -> Conflict:
    return Conflict(
        f"the brand story was changed meanwhile (now version {current}): load it again",
        code="story_changed",
        details={"version": current},
    )


async def _first(
    conn: Conn, actor: Principal, brand_id: int, title: str, html: str
) -> tuple[dict[str, Any], bool]:
    """The brand's first story (version 1): (the row, whether this save wrote it). When another
    first save committed meanwhile: its row, unwritten, if it is this very story (a
    double-click: a probe was told another editor had changed it), else 409."""
    row = await (
        await conn.execute(
            f"""INSERT INTO brand_stories (brand_id, title, html, version, updated_by)
                VALUES (%s, %s, %s, 1, %s) ON CONFLICT (brand_id) DO NOTHING
                RETURNING {_COLUMNS}""",
            (brand_id, title, html, actor.person),
        )
    ).fetchone()
    if row is not None:
        return row, True
    won = await _row(conn, brand_id, lock=True)
    if won is not None and (won["title"], won["html"]) == (title, html):
        return won, False
    raise _stale(won["version"] if won else 1)


def sanitising() -> asyncio.Semaphore:
    """The running event loop's turns of sanitising a save (``SANITISE_SLOTS``), taken before
    the thread and before any connection: a burst of saves waits here holding nothing, and
    never has every thread of the default pool (shared with the log-ins' argon2) to itself."""
    loop = asyncio.get_running_loop()
    slots = _SANITISING.get(loop)
    if slots is None:
        slots = _SANITISING[loop] = asyncio.Semaphore(SANITISE_SLOTS)
    return slots


def _kept(html: str) -> str:
    """``html`` sanitised, as it is kept: 400 ``validation_failed`` on ``html`` when that is
    over ``KEPT_MAX`` characters, ``too_deep`` when its elements nest deeper than
    ``MAX_DEPTH``. The sanitiser escapes text (``&`` is ``&amp;``, a no-break space
    ``&nbsp;``) and closes what it opens, so what is kept can be several times what was sent
    (a probe: a 96,000-character story broke the column's CHECK, an opaque 422). Run in a
    thread (``sanitising``'s turn): a story of 64 levels takes the sanitiser milliseconds, a
    much deeper one seconds (of one of the turns, with no connection held). The sanitiser
    decodes character references (``&#x1b;``, ``&#x202e;``) and writes the characters back raw:
    400 ``invalid_character`` on ``html`` when what is kept holds a control character or a bidi
    override (``app.textguard``: refused every way text enters)."""
    kept = clean(html)
    if depth(kept) > MAX_DEPTH:
        raise BadRequest(
            f"the story's tags nest more than {MAX_DEPTH} levels deep (html)",
            code="too_deep",
            details={"field": "html", "max_depth": MAX_DEPTH},
        )
    check_text(kept, "html", "body")
    if len(kept) > KEPT_MAX:
        message = (
            f"the story as kept (sanitised: escaped text, closed tags) has {len(kept):,} "
            f"characters, more than {KEPT_MAX:,}"
        )
        raise ValidationFailed(
            f"invalid request (html): {message}",
            details=[{"field": "html", "message": message, "source": "body"}],
        )
    return kept


def _named(html: str) -> tuple[str, list[tuple[str, str | None]]]:
    """``html`` as kept (``_kept``), and the URL of each of its pictures and links with the
    kind of catalogue medium it may name (``image`` for a picture, either for a link)."""
    kept = _kept(html)
    return kept, [(url, "image" if tag == "img" else None) for tag, url in urls(kept)]


Reload = Callable[[Conn], Awaitable[Principal]]  # the request's caller, loaded on a connection


async def put_story(
    pool: AsyncConnectionPool[Conn],
    actor: Principal,
    data: StoryIn,
    *,
    reload: Reload,
    public_url: str,
) -> StoryOut:
    """Save the story (sanitised) made from ``data.version``; the story as kept. Sanitised
    before any connection is taken (``sanitising``); the caller is loaded again (``reload``)
    in the short transaction that reads, checks and writes the row. A picture or link naming a
    catalogue medium of this server names one of the brand's (an image for a picture): 400
    ``unknown_catalog_media`` on ``html`` otherwise (``check_brand_media``, ``public_url`` this
    server's origin), the media held in the same transaction as a product's (a probe: a brand's
    story showed another brand's upload)."""
    brand_of_staff(actor, "content.write", "the brand story is written")
    title = data.title.strip() if without_blanks(data.title) else ""
    async with sanitising():  # a save queued here holds no connection
        html, named = await asyncio.to_thread(_named, data.html)
    async with pool.connection() as conn:  # committed as the block ends
        actor = await reload(conn)
        brand_id = brand_of_staff(actor, "content.write", "the brand story is written")
        await check_brand_media(conn, brand_id, named, "html", public_url)
        return await _save(conn, actor, brand_id, title, html, data.version)


async def _save(
    conn: Conn, actor: Principal, brand_id: int, title: str, html: str, version: int
) -> StoryOut:
    """``put_story``'s write, under the row's lock: the story as kept."""
    row = await _row(conn, brand_id, lock=True)
    if row is not None and (row["title"], row["html"]) == (title, html):
        # saved unchanged (a retry whose answer was lost, a second click): no write, whatever
        # version it names — a probe: a retry was told another editor had changed the story
        return _out(brand_id, row)
    current = row["version"] if row else 0
    if version != current:
        raise _stale(current)
    before = _out(brand_id, row) if row else None
    saved: dict[str, Any] | None
    if row is None:
        saved, written = await _first(conn, actor, brand_id, title, html)
        if not written:  # the same first story, saved meanwhile by a twin of this request
            return _out(brand_id, saved)
    else:
        saved = await (
            await conn.execute(
                f"""UPDATE brand_stories
                       SET title = %s, html = %s, version = version + 1, updated_by = %s,
                           updated_at = now()
                     WHERE brand_id = %s RETURNING {_COLUMNS}""",
                (title, html, actor.person, brand_id),
            )
        ).fetchone()
        assert saved is not None  # locked above
    out = _out(brand_id, saved)
    action = "create" if before is None else "update"
    await audit.record(
        conn, actor, action, "brand_story", brand_id, before=before, after=out, org_id=brand_id
    )
    return out


def _shown(kept: str) -> str | None:
    """A story as kept, sanitised again under today's allow-list; None when its elements nest
    deeper than ``MAX_DEPTH`` (kept before that bound: never parsed again). Control
    characters and bidi overrides (a story kept before they were refused) are taken out."""
    if depth(kept) > MAX_DEPTH:
        log.warning("a brand story nested over %s levels deep is not shown", MAX_DEPTH)
        return None
    return without_controls(clean(kept))


async def public_story(conn: Conn, brand_id: int) -> tuple[str, str] | None:
    """(title, HTML) of a brand's story for the phone site, the HTML sanitised again under
    today's allow-list — once a version, off the event loop; None when it has none (or an
    empty one, or one too deep to show)."""
    row = await _row(conn, brand_id)
    if row is None or not row["html"]:
        return None
    key = (brand_id, row["version"], row["updated_at"])
    if key in _SHOWN:
        _SHOWN.move_to_end(key)
        shown = _SHOWN[key]
    else:  # no sanitising turn: a story as kept nests 64 levels at most (``_shown`` measures
        # it first), milliseconds of parse — waiting behind the saves' turns, a burst of deep
        # saves held every view's connection (a review: the rest of the API 503 again)
        shown = await asyncio.to_thread(_shown, row["html"])
        _SHOWN[key] = shown
        while len(_SHOWN) > _SHOWN_MAX:
            _SHOWN.popitem(last=False)
    return (row["title"], shown) if shown else None
