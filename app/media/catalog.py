"""Catalogue media (SPEC K1, W1): a product's image or video, uploaded by the brand's office and
served to everyone — consumers' phones load it on the product pages (``/p/{gtin}``, the brand's
product list).

An upload (``catalog.write``, by the brand's own staff: a medium is the brand's, and the
catalogue is written only where its owner is in the writer's subtree — 403 ``brand_staff_only``
below the brand, for a deletion too) is checked before anything is kept: a JPEG, PNG or WebP
image, or an MP4 or WebM video, told by its first bytes, never by a name or Content-Type (415
``unsupported_catalog_media``); at most ``TRACECODE_CATALOG_IMAGE_MAX_BYTES`` for an image and
``TRACECODE_CATALOG_VIDEO_MAX_BYTES`` for a video (413 ``catalog_media_too_large``, the rest of the
body never read). An image loses its metadata blocks — EXIF with the GPS position of the phone
that took it, XMP, IPTC, comments — before it is kept (``app.media.imagemeta``: no imaging library
is installed, and none is needed to drop blocks); one whose blocks do not add up is 400
``damaged_image``, one of more than ``imagemeta.MAX_SIDE`` pixels a side or ``MAX_PIXELS`` in all
(a decompression bomb for the consumers' phones) 400 ``image_too_large``. A video is kept as it
is.

The bytes go to the photos' store (``app.media.storage``: a directory or an S3 bucket) under
``catalog/<brand>/<yyyy>/<mm>/<uuid>.<ext>``; the row (``catalog_media``) says whose, what kind,
its size and digest. The same bytes uploaded again by the same brand are the same medium (one row
per brand and digest): a retried upload, or two sent at once, keep one object — the loser of a
race deletes its own object and answers the winner's row.

Served at ``GET /media/catalog/{id}`` to anyone, with no credentials: the id is random (a UUID)
and a medium never changes (no overwrite; a new upload is a new id), so the answer is cached for a
year (``immutable``), with a strong ETag of its digest, ``nosniff`` and its own type, and byte
ranges for a video's seeking. A product's ``image_url`` / ``video_url`` names it by its path
(``/media/catalog/{id}``, a same-origin URL for the console and the consumer pages; one given its
``absolute_url`` is kept as that path, ``app.catalog.service.own_media_paths``); the
catalogue checks that such a path names a medium of the product's brand and of the right kind
(``app.catalog.service.check_product_media``). The brand story's pictures and links name
media by their ``absolute_url`` (``app.catalog.service.check_brand_media``: the brand's, an image
for a picture), and so do a gift's picture and a promotion's picture and link
(``app.catalog.service.check_brand_urls``). ``DELETE /media/catalog/{id}`` removes one no product,
not the brand story and no gift or promotion not withdrawn names (409 ``in_use`` otherwise; 404
for another brand's).

The brand's office finds what it uploaded at ``GET /media/catalog`` (``catalog.read``, as the
products: any reader of the brand's tree, the brand's media only), paged, newest first, each
medium with the first ``NAMING_SHOWN`` products naming it and their count, and whether the
brand story shows it (``in_story``), whether a gift or promotion does (``in_offers``);
``unused=true`` keeps those none names — a file uploaded in the product dialog and never saved on
a product, to delete — looked up by path through the hash indexes of ``products.image_url`` /
``video_url`` (migration 0121), and among the ids the story's HTML holds (``_STORY_MEDIA``) and
the gifts' and promotions' URLs (``_OFFER_MEDIA``), each read once a list.

A brand keeps at most ``TRACECODE_CATALOG_BRAND_QUOTA_BYTES`` of media (its sizes summed; 409
``catalog_quota_exceeded``, ``GET /media/catalog/usage`` says how much is used): checked before
the store is written, and again with the row under the brand's transaction lock
(``Lock.CATALOG_QUOTA``) — uploads at the quota's edge sent at once each read the same total, and
all passed, without it. Bytes the brand already has are that medium, never counted twice (the
same-digest row is looked for under the lock before the quota).

No database connection is held while the store is written or read (as photos: S3 may take 30 s).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from psycopg_pool import AsyncConnectionPool

from app import audit, locks
from app.auth.principal import Principal
from app.db import Conn
from app.errors import (
    BadRequest,
    Conflict,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from app.locks import Lock
from app.media import imagemeta
from app.media.storage import PhotoStore
from app.members.principal import brand_of_staff
from app.paging import Page, fetch_page

log = logging.getLogger("tracecode.media")

Kind = Literal["image", "video"]
PATH_PREFIX = "/media/catalog/"
NAMING_SHOWN = 5  # products named with each listed medium (the rest counted)
# ISO base media files that browsers play as MP4 (a QuickTime "qt  " file or a HEIF image is not)
_MP4_BRANDS = {
    b"isom", b"iso2", b"iso3", b"iso4", b"iso5", b"iso6", b"mp41", b"mp42", b"avc1", b"M4V ",
    b"dash", b"mmp4", b"msnv", b"MSNV", b"3gp4", b"3gp5", b"3gp6",
}  # fmt: skip
_TYPES: dict[str, tuple[Kind, str]] = {
    "image/jpeg": ("image", "jpg"),
    "image/png": ("image", "png"),
    "image/webp": ("image", "webp"),
    "video/mp4": ("video", "mp4"),
    "video/webm": ("video", "webm"),
}


class CatalogMediaOut(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    kind: Kind
    content_type: str
    size_bytes: int
    sha256: str
    url: Annotated[
        str,
        msgspec.Meta(
            description="its path on this server, to put in a product's image_url or video_url"
        ),
    ]
    absolute_url: Annotated[
        str, msgspec.Meta(description="the same under TRACECODE_PUBLIC_SCHEME://RESOLVER_HOST")
    ]
    created_at: datetime


class NamingProduct(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    name: str


class CatalogMediaListed(CatalogMediaOut, frozen=True, kw_only=True):
    products: Annotated[
        list[NamingProduct],
        msgspec.Meta(
            description=f"the first {NAMING_SHOWN} products (by id) whose image_url or video_url "
            "names it"
        ),
    ]
    product_count: Annotated[
        int,
        msgspec.Meta(
            description="how many products name it (0, not in_story and not in_offers: unused, "
            "it may be deleted)"
        ),
    ]
    in_story: Annotated[
        bool,
        msgspec.Meta(
            description="whether the brand story shows it (a picture or a link): in use as well"
        ),
    ]
    in_offers: Annotated[
        bool,
        msgspec.Meta(
            description="whether a gift or a promotion of the brand, not withdrawn, names it (a "
            "gift's picture_url, a promotion's image_url or link_url): in use as well"
        ),
    ]


class CatalogUsageOut(msgspec.Struct, frozen=True, kw_only=True):
    used_bytes: Annotated[int, msgspec.Meta(description="the sizes of the brand's media, summed")]
    quota_bytes: Annotated[int, msgspec.Meta(description="TRACECODE_CATALOG_BRAND_QUOTA_BYTES")]
    count: Annotated[int, msgspec.Meta(description="how many media the brand keeps")]


def sniff(data: bytes) -> tuple[str, Kind, str]:
    """(media type, kind, extension) by the first bytes; 415 ``unsupported_catalog_media``."""
    content_type = None
    if data.startswith(b"\xff\xd8\xff"):
        content_type = "image/jpeg"
    elif data.startswith(imagemeta.PNG_SIGNATURE):
        content_type = "image/png"
    elif len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        content_type = "image/webp"
    elif len(data) >= 12 and data[4:8] == b"ftyp" and data[8:12] in _MP4_BRANDS:
        content_type = "video/mp4"
    elif data.startswith(b"\x1a\x45\xdf\xa3") and b"webm" in data[:64]:  # EBML, DocType webm
        content_type = "video/webm"
    if content_type is None:
        raise UnsupportedMediaType(
            "a product image is a JPEG, PNG or WebP; a product video an MP4 or WebM",
            code="unsupported_catalog_media",
        )
    kind, ext = _TYPES[content_type]
    return content_type, kind, ext


def too_large(max_bytes: int) -> PayloadTooLarge:
    """413 ``catalog_media_too_large`` (``details.max_bytes``), the connection closed: the rest
    of the body is never read."""
    return PayloadTooLarge(
        f"this upload is at most {max_bytes // 1024} KB",
        code="catalog_media_too_large",
        details={"max_bytes": max_bytes},
        headers={"Connection": "close"},
    )


def limit_of(kind: Kind | None, image_max: int, video_max: int) -> int:
    """The most an upload of ``kind`` may hold (of either kind: the larger)."""
    if kind == "image":
        return image_max
    if kind == "video":
        return video_max
    return max(image_max, video_max)


def writer(actor: Principal) -> int:
    """The brand whose media the caller writes (uploads, deletes): ``catalog.write`` and the
    brand's own staff (403 ``brand_staff_only`` below it, whatever role grants the permission).
    A medium is the brand's — counted in its quota, named by any product of its tree — and the
    catalogue is written only where the owner is in the writer's subtree
    (``app.catalog.service``): staff of a factory holding ``catalog.write`` write its products,
    never the brand's (a probe: such a user deleted the brand's media from under its products'
    pages and uploaded against its quota). The upload's route runs it before the body too
    (``app.deps.caller_first``, its ``before_body``)."""
    return brand_of_staff(actor, "catalog.write", "catalogue media are uploaded and deleted")


def _columns() -> str:
    return "id, kind, content_type, size_bytes, sha256, created_at"


def _out(row: dict[str, Any], public_url: str) -> CatalogMediaOut:
    path = f"{PATH_PREFIX}{row['id']}"
    return CatalogMediaOut(
        id=row["id"],
        kind=row["kind"],
        content_type=row["content_type"],
        size_bytes=row["size_bytes"],
        sha256=bytes(row["sha256"]).hex(),
        url=path,
        absolute_url=public_url + path,
        created_at=row["created_at"],
    )


def _an(kind: Kind) -> str:
    """The kind with its article: "an image", "a video"."""
    return f"an {kind}" if kind == "image" else f"a {kind}"


def prepare(
    data: bytes, kind: Kind | None, image_max: int, video_max: int
) -> tuple[bytes, str, Kind, str]:
    """(bytes to keep, media type, kind, extension) of an upload: typed by its first bytes, of
    the ``kind`` asked for (if any), within its kind's limit, an image without its metadata."""
    if not data:
        raise BadRequest("the body is empty: send the file's bytes", code="empty_body")
    content_type, found, ext = sniff(data)
    if kind is not None and found != kind:
        raise UnsupportedMediaType(
            f"this is {_an(found)}, not {_an(kind)}",
            code="unsupported_catalog_media",
            details={"kind": found},
        )
    limit = limit_of(found, image_max, video_max)
    if len(data) > limit:
        raise too_large(limit)
    if found == "image":
        data = imagemeta.checked(data, content_type)
    return data, content_type, found, ext


def _prepared(
    data: bytes, kind: Kind | None, image_max: int, video_max: int
) -> tuple[bytes, str, Kind, str, bytes]:
    """``prepare``'s answer and the kept bytes' SHA-256."""
    data, content_type, found, ext = prepare(data, kind, image_max, video_max)
    return data, content_type, found, ext, hashlib.sha256(data).digest()


async def upload(
    pool: AsyncConnectionPool[Conn],
    actor: Principal,
    store: PhotoStore,
    data: bytes,
    *,
    kind: Kind | None,
    image_max: int,
    video_max: int,
    quota: int,
    public_url: str,
) -> CatalogMediaOut:
    """Keep one image or video of the caller's brand (the reader bounded the body by the larger
    limit; type, kind and its own limit are checked here), within the brand's ``quota`` of bytes
    (409 ``catalog_quota_exceeded``: before the store is written, and again under the brand's
    lock with the row). The same bytes of the brand already kept: that medium, nothing written,
    nothing counted."""
    brand = writer(actor)
    # in a thread: up to a video's limit of bytes to sniff, strip and hash (a probe: a crafted
    # JPEG held every other request of the process for over a second)
    data, content_type, found, ext, digest = await asyncio.to_thread(
        _prepared, data, kind, image_max, video_max
    )
    async with pool.connection() as conn:  # not held while the store writes
        # the total before the copy is looked for: a copy kept in between is found, not refused
        used, _ = await _usage(conn, brand)
        row = await _same(conn, brand, digest)
        if row is None:
            _check_quota(used, len(data), quota)
        now = await _now(conn)
    if row is not None:
        return _out(row, public_url)
    media_id = uuid.uuid4()
    key = f"catalog/{brand}/{now:%Y}/{now:%m}/{media_id.hex}.{ext}"
    await store.put(key, data)
    try:
        async with pool.connection() as conn:  # committed as the block ends
            row = await _keep(conn, actor, media_id, key, data, digest, found, content_type, quota)
            out = _out(row, public_url)
            if row["ours"]:  # filed under the brand, whose medium it is
                await audit.record(
                    conn, actor, "upload", "catalog_media", media_id, after=out, org_id=brand
                )
    except BaseException:
        await _forget(store, key)
        raise
    if not row["ours"]:
        await _forget(store, key)
    return out


async def _keep(
    conn: Conn,
    actor: Principal,
    media_id: uuid.UUID,
    key: str,
    data: bytes,
    digest: bytes,
    kind: Kind,
    content_type: str,
    quota: int,
) -> dict[str, Any]:
    """The medium's row, written under the brand's quota lock (``Lock.CATALOG_QUOTA``: uploads
    at the quota's edge are counted one after the other, never all against the same total), its
    ``ours`` false when the same bytes were kept meanwhile (a race of two uploads: that row,
    locked, counted once)."""
    brand = actor.brand_id
    await locks.xact_lock(conn, Lock.CATALOG_QUOTA, brand)
    same = await _same(conn, brand, digest)
    if same is not None:
        return {**same, "ours": False}
    _check_quota((await _usage(conn, brand))[0], len(data), quota)
    row = await (
        await conn.execute(
            f"""INSERT INTO catalog_media (id, brand_id, kind, content_type, size_bytes,
                                           sha256, storage_key, created_by)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (brand_id, sha256)
                  DO UPDATE SET brand_id = catalog_media.brand_id
                RETURNING {_columns()}, storage_key = %s AS ours""",
            (media_id, brand, kind, content_type, len(data), digest, key, actor.person, key),
        )
    ).fetchone()
    assert row is not None
    return row  # type: ignore[no-any-return]


async def _usage(conn: Conn, brand: int) -> tuple[int, int]:
    """(bytes, media) the brand keeps."""
    row = await (
        await conn.execute(
            "SELECT coalesce(sum(size_bytes), 0)::bigint AS used, count(*) AS n "
            "FROM catalog_media WHERE brand_id = %s",
            (brand,),
        )
    ).fetchone()
    assert row is not None
    return int(row["used"]), int(row["n"])


def _check_quota(used: int, size: int, quota: int) -> None:
    """409 ``catalog_quota_exceeded`` unless ``size`` more bytes keep the brand's ``used`` within
    ``quota`` (``details``: ``used_bytes``, ``quota_bytes``, ``size_bytes``)."""
    if used + size > quota:
        raise Conflict(
            f"the brand's catalogue media would pass its quota of {quota // (1024 * 1024)} MB: "
            "delete unused media first",
            code="catalog_quota_exceeded",
            details={"used_bytes": used, "quota_bytes": quota, "size_bytes": size},
        )


async def usage(conn: Conn, actor: Principal, quota: int) -> CatalogUsageOut:
    """What the caller's brand keeps in catalogue media, and its quota (``catalog.read``)."""
    actor.require("catalog.read")
    used, count = await _usage(conn, actor.brand_id)
    return CatalogUsageOut(used_bytes=used, quota_bytes=quota, count=count)


# each medium's products: by its path, through the hash indexes of migration 0121
_USES = f"""JOIN LATERAL (
    SELECT count(*) AS product_count,
           (array_agg(p.id ORDER BY p.id))[1:{NAMING_SHOWN}] AS product_ids,
           (array_agg(p.name ORDER BY p.id))[1:{NAMING_SHOWN}] AS product_names
      FROM products p
     WHERE p.image_url = '{PATH_PREFIX}' || m.id OR p.video_url = '{PATH_PREFIX}' || m.id
    ) u ON true"""


# the media the brand story (``app.content.story``) names: every ``/media/catalog/{id}`` in
# its HTML as kept — a picture or link naming a medium of this server is let in only in an
# exact ``absolute_url`` form (``app.catalog.service.medium_of_url``), its id written out so
# (in either case); other text of that shape names a medium too, which only keeps it
_STORY_MEDIA = r"""SELECT DISTINCT lower(x[1])::uuid AS id
      FROM brand_stories s,
           regexp_matches(s.html,
               '/media/catalog/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})',
               'gi') AS x
     WHERE s.brand_id = %(brand)s"""


# the media the brand's gifts and promotions not withdrawn name (``app.members.gifts``,
# ``app.marketing.promotions``), each with the gift or promotion: a ``/media/catalog/{id}`` in a
# gift's ``picture_url``, a promotion's ``image_url`` or ``link_url`` — a URL naming a medium of
# this server is let in only in an exact ``absolute_url`` form
# (``app.catalog.service.check_brand_urls``); other text of that shape only keeps one
_OFFER_MEDIA = r"""SELECT lower(x[1])::uuid AS id, o.gift_id, o.promotion_id
      FROM (SELECT id AS gift_id, NULL::bigint AS promotion_id, picture_url AS url
              FROM gifts WHERE brand_id = %(brand)s AND deleted_at IS NULL
            UNION ALL
            SELECT NULL, id, unnest(ARRAY[image_url, link_url])
              FROM promotions WHERE brand_id = %(brand)s AND deleted_at IS NULL) o,
           regexp_matches(o.url,
               '/media/catalog/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})',
               'gi') AS x"""


def _listed(row: dict[str, Any], public_url: str) -> CatalogMediaListed:
    base = _out(row, public_url)
    names = zip(row["product_ids"] or [], row["product_names"] or [], strict=True)
    return CatalogMediaListed(
        **msgspec.structs.asdict(base),
        products=[NamingProduct(id=i, name=n) for i, n in names],
        product_count=row["product_count"],
        in_story=row["in_story"],
        in_offers=row["in_offers"],
    )


async def list_media(
    conn: Conn,
    actor: Principal,
    *,
    kind: Kind | None,
    unused: bool | None,
    page: int,
    per_page: int,
    public_url: str,
) -> Page[CatalogMediaListed]:
    """The media of the caller's brand (``catalog.read``: the catalogue's readers, anywhere in
    its tree, as ``GET /products``), newest first, each with the products naming it and whether
    the brand story, a gift or a promotion shows it; ``unused``: only those none names (or only
    those one names)."""
    actor.require("catalog.read")
    where = ["m.brand_id = %(brand)s"]
    params: dict[str, Any] = {"brand": actor.brand_id}
    if kind is not None:
        where.append("m.kind = %(kind)s")
        params["kind"] = kind
    if unused is not None:
        where.append(
            "u.product_count = 0 AND st.id IS NULL AND ofr.id IS NULL"
            if unused
            else "(u.product_count > 0 OR st.id IS NOT NULL OR ofr.id IS NOT NULL)"
        )
    return await fetch_page(
        conn,
        columns=f"m.{_columns().replace(', ', ', m.')}, u.*, st.id IS NOT NULL AS in_story, "
        "ofr.id IS NOT NULL AS in_offers",
        source=f"catalog_media m {_USES} LEFT JOIN ({_STORY_MEDIA}) st ON st.id = m.id "
        f"LEFT JOIN (SELECT DISTINCT id FROM ({_OFFER_MEDIA}) o) ofr ON ofr.id = m.id",
        where=where,
        params=params,
        order="m.created_at DESC, m.id",
        page=page,
        per_page=per_page,
        make=lambda row: _listed(row, public_url),
    )


async def _same(conn: Conn, brand: int, digest: bytes) -> dict[str, Any] | None:
    return await (  # type: ignore[no-any-return]
        await conn.execute(
            f"SELECT {_columns()} FROM catalog_media WHERE brand_id = %s AND sha256 = %s",
            (brand, digest),
        )
    ).fetchone()


async def _now(conn: Conn) -> datetime:
    row = await (await conn.execute("SELECT now() AS now")).fetchone()
    assert row is not None
    return row["now"]  # type: ignore[no-any-return]


async def _forget(store: PhotoStore, key: str) -> None:
    """Delete an object no row names, best effort: one left behind is an orphan never served."""
    try:
        await store.delete(key)
    except Exception as exc:
        log.warning("catalogue object left without a row", extra={"key": key, "error": str(exc)})


async def public_row(pool: AsyncConnectionPool[Conn], media_id: uuid.UUID) -> dict[str, Any]:
    """The medium's row (anyone may read it); 404 when there is none."""
    async with pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT content_type, size_bytes, sha256, storage_key FROM catalog_media "
                "WHERE id = %s",
                (media_id,),
            )
        ).fetchone()
    if row is None:
        raise NotFound("no such catalogue medium")
    return row  # type: ignore[no-any-return]


async def delete(
    pool: AsyncConnectionPool[Conn],
    actor: Principal,
    store: PhotoStore,
    media_id: uuid.UUID,
    *,
    public_url: str,
) -> None:
    """Delete a medium of the caller's brand that no product, not the brand story and no gift or
    promotion names (409 ``in_use``; 404 for another brand's or none). The row goes first, in
    its transaction, with the checks under its lock (a product, story, gift or promotion save
    naming it waits, then finds it gone: 400; one that held it first has committed when the
    checks read); the object after.
    Audited as the upload is, under the brand, with the medium as it was (never its bytes).
    The brand's own staff only (``writer``)."""
    brand = writer(actor)
    async with pool.connection() as conn:
        row = await (
            await conn.execute(
                f"""SELECT {_columns()}, storage_key FROM catalog_media
                    WHERE id = %s AND brand_id = %s FOR UPDATE""",
                (media_id, brand),
            )
        ).fetchone()
        if row is None:
            raise NotFound("no such catalogue medium")
        path = f"{PATH_PREFIX}{media_id}"
        used = await (
            await conn.execute(
                "SELECT id FROM products WHERE image_url = %s OR video_url = %s LIMIT 1",
                (path, path),
            )
        ).fetchone()
        if used is not None:
            raise Conflict(
                "a product shows this file: change the product first",
                code="in_use",
                details={"product_id": used["id"]},
            )
        await _check_not_in_story(conn, brand, media_id)
        await _check_not_offered(conn, brand, media_id)
        await conn.execute("DELETE FROM catalog_media WHERE id = %s", (media_id,))
        await audit.record(
            conn,
            actor,
            "delete",
            "catalog_media",
            media_id,
            before=_out(row, public_url),
            org_id=brand,
        )
    await _forget(store, row["storage_key"])


async def _check_not_in_story(conn: Conn, brand: int, media_id: uuid.UUID) -> None:
    """409 ``in_use`` (``details.brand_story``) while the brand story shows the medium (a probe:
    deleted, 204, and the phone's story page showed a broken picture). Read under the medium's
    row lock, which a story save naming it holds (``FOR KEY SHARE``) until it commits."""
    named = await (
        await conn.execute(
            f"SELECT 1 FROM ({_STORY_MEDIA}) st WHERE st.id = %(id)s",
            {"brand": brand, "id": media_id},
        )
    ).fetchone()
    if named is not None:
        raise Conflict(
            "the brand story shows this file: take it out of the story first",
            code="in_use",
            details={"brand_story": True},
        )


async def _check_not_offered(conn: Conn, brand: int, media_id: uuid.UUID) -> None:
    """409 ``in_use`` (``details.gift_id`` or ``details.promotion_id``) while a gift or a
    promotion of the brand, not withdrawn, names the medium (a probe: deleted, 204, under a
    gift's picture). Read under the medium's row lock, which a save naming it holds (``FOR KEY
    SHARE``, ``app.catalog.service.check_brand_urls``) until it commits."""
    named = await (
        await conn.execute(
            f"""SELECT gift_id, promotion_id FROM ({_OFFER_MEDIA}) o WHERE o.id = %(id)s
                 ORDER BY o.gift_id NULLS LAST, o.promotion_id LIMIT 1""",
            {"brand": brand, "id": media_id},
        )
    ).fetchone()
    if named is not None:
        what = "gift" if named["gift_id"] is not None else "promotion"
        raise Conflict(
            f"a {what} shows this file: change the {what} first",
            code="in_use",
            details={f"{what}_id": named[f"{what}_id"]},
        )
