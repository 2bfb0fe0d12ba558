"""Catalogue: categories and products of a brand (SPEC K1).

A brand's catalogue is read by everyone in its tree (agents and stores sell its products),
whichever of its organisations owns an entry, and written by holders of ``catalog.write`` whose
subtree contains the owning organisation.
"""

from __future__ import annotations

import posixpath
import re
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

import msgspec

from app import audit, locks
from app._core import Gs1Error, normalize_gtin
from app.auth.principal import Principal, brand_of
from app.catalog.schemas import (
    CATALOG_PATH,
    MEDIA_ID,
    CategoryIn,
    CategoryOut,
    CategoryPatch,
    ProductIn,
    ProductOut,
    ProductPatch,
)
from app.db import Conn, changed, changes_of, update_row
from app.errors import Conflict, NotFound, Unprocessable, ValidationFailed
from app.orgs.service import org_path, visible
from app.paging import Page, contains, fetch_page

# The owner is an organisation of the caller's brand (``brand`` from ``_brand``): a product
# the brand keeps under its factory is read by a store of another branch, which receives and
# sells it (a probe: 404, its order line and stock row named a product it could not look up).
_READABLE = "o.path LIKE %(brand)s"


def _brand(actor: Principal) -> str:
    """The ``brand`` parameter of ``_READABLE``: every path of the caller's brand's tree."""
    return f"/{actor.brand_id}/%"


def _gtin14(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return normalize_gtin(value)
    except Gs1Error as exc:
        raise ValidationFailed(str(exc), code="invalid_gtin", details={"field": "gtin"}) from None


async def _owner(conn: Conn, actor: Principal, org_id: int | None) -> int:
    """The owning organisation of new catalogue entries: given, or the caller's own."""
    actor.require("catalog.write")
    target = org_id if org_id is not None else actor.org_id
    await visible(conn, actor, target)
    return target


async def _writable(conn: Conn, actor: Principal, table: str, entity_id: int, what: str) -> None:
    actor.require("catalog.write")
    row = await (
        await conn.execute(
            f"SELECT o.path FROM {table} t JOIN orgs o ON o.id = t.org_id WHERE t.id = %s",
            (entity_id,),
        )
    ).fetchone()
    actor.ensure_sees(row["path"] if row else None, what)


async def writable_product(conn: Conn, actor: Principal, product_id: int) -> None:
    """The catalogue's write check of a product, for what another domain writes per product
    (its packing rules): ``catalog.write`` and the owner in the caller's subtree, else 404 as
    ``PATCH /products/{id}`` answers."""
    await _writable(conn, actor, "products", product_id, "product")


# Categories ----------------------------------------------------------------------------------

_CAT = "c.id, c.org_id, c.name, c.display_order, c.created_at, c.updated_at"


async def _category(conn: Conn, category_id: int, lock: str = "") -> CategoryOut:
    """The category; with ``lock`` (``FOR UPDATE``, ``FOR NO KEY UPDATE``) its row held to the
    end of the transaction, so a concurrent change or deletion goes before or after this one."""
    row = await (
        await conn.execute(
            f"SELECT {_CAT} FROM categories c WHERE c.id = %s {lock}", (category_id,)
        )
    ).fetchone()
    if row is None:
        raise NotFound("category not found")
    return CategoryOut(**row)


async def create_category(conn: Conn, actor: Principal, data: CategoryIn) -> CategoryOut:
    owner = await _owner(conn, actor, data.org_id)
    if await (
        await conn.execute(
            "SELECT 1 FROM categories WHERE org_id = %s AND name = %s", (owner, data.name)
        )
    ).fetchone():
        raise Conflict(f"category {data.name} exists", code="duplicate_category")
    row = await (
        await conn.execute(
            "INSERT INTO categories (org_id, name, display_order) VALUES (%s, %s, %s) RETURNING id",
            (owner, data.name, data.display_order),
        )
    ).fetchone()
    assert row is not None
    out = await _category(conn, row["id"])
    await audit.record(conn, actor, "create", "category", out.id, after=out, org_id=owner)
    return out


async def list_categories(
    conn: Conn, actor: Principal, page: int, per_page: int
) -> Page[CategoryOut]:
    actor.require("catalog.read")
    return await fetch_page(
        conn,
        columns=_CAT,
        source="categories c JOIN orgs o ON o.id = c.org_id",
        where=[_READABLE],
        params={"brand": _brand(actor)},
        order="c.display_order, c.id",
        page=page,
        per_page=per_page,
        make=lambda row: CategoryOut(**row),
    )


async def update_category(
    conn: Conn, actor: Principal, category_id: int, patch: CategoryPatch
) -> CategoryOut:
    await _writable(conn, actor, "categories", category_id, "category")
    # locked: a concurrent change is audited before or after this one, never skipped (a probe)
    before = await _category(conn, category_id, "FOR NO KEY UPDATE")
    changes = changed(before, changes_of(patch))
    if not changes:  # saved unchanged (a form, a retry): no write and no row, as PATCH /orgs/{id}
        # {} (a probe: an ``update`` row, before and after the same, and updated_at moved)
        return before
    if (
        "name" in changes
        and await (
            await conn.execute(
                "SELECT 1 FROM categories WHERE org_id = %s AND name = %s AND id <> %s",
                (before.org_id, changes["name"], category_id),
            )
        ).fetchone()
    ):
        raise Conflict(f"category {changes['name']} exists", code="duplicate_category")
    await update_row(conn, "categories", category_id, changes)
    after = await _category(conn, category_id)
    await audit.record(
        conn,
        actor,
        "update",
        "category",
        category_id,
        before=before,
        after=after,
        org_id=after.org_id,
    )
    return after


async def delete_category(conn: Conn, actor: Principal, category_id: int) -> None:
    """Delete an empty category: 409 ``category_in_use`` while products name it. Its row is
    locked first, so of two deletions at once the second finds it gone (404) — a probe: both
    answered 204 and both were audited."""
    await _writable(conn, actor, "categories", category_id, "category")
    before = await _category(conn, category_id, "FOR UPDATE")
    if await (
        await conn.execute("SELECT 1 FROM products WHERE category_id = %s LIMIT 1", (category_id,))
    ).fetchone():
        raise Conflict("the category still has products", code="category_in_use")
    await conn.execute("DELETE FROM categories WHERE id = %s", (category_id,))
    await audit.record(
        conn, actor, "delete", "category", category_id, before=before, org_id=before.org_id
    )


# Products ------------------------------------------------------------------------------------

_PROD = """p.id, p.org_id, p.category_id, p.name, p.spec, p.product_type, p.product_no, p.barcode,
    p.gtin, p.image_url, p.colour_no, p.efficacy, p.video_url, p.display_order, p.published,
    p.erp_code, p.created_at, p.updated_at"""


async def _product(conn: Conn, product_id: int, lock: str = "") -> ProductOut:
    """The product; with ``lock`` (``FOR UPDATE``, ``FOR NO KEY UPDATE``) its row held to the
    end of the transaction, so a concurrent change or deletion goes before or after this one."""
    row = await (
        await conn.execute(f"SELECT {_PROD} FROM products p WHERE p.id = %s {lock}", (product_id,))
    ).fetchone()
    if row is None:
        raise NotFound("product not found")
    return ProductOut(**row)


async def _check_category(conn: Conn, category_id: int | None, owner: int) -> None:
    """400 ``unknown_category`` unless the category is the owner's. Its row held ``FOR KEY
    SHARE`` to the end of the transaction: a deletion in flight is waited for and the category
    then found gone, as one after the other (a probe: the product's foreign key met it, 409
    ``in_use``); an edit of the category (``FOR NO KEY UPDATE``) is not held up."""
    if category_id is None:
        return
    row = await (
        await conn.execute(
            "SELECT org_id FROM categories WHERE id = %s FOR KEY SHARE", (category_id,)
        )
    ).fetchone()
    if row is None or row["org_id"] != owner:
        raise ValidationFailed(
            "category not found for this product's owner",
            code="unknown_category",
            details={"field": "category_id"},
        )


# the GS1 company prefixes a GTIN-14 may carry (orgs' CHECK: 6 to 12 digits), after its
# indicator digit; a GTIN-12 or -13 is zero-padded so its prefix lands there too
_PREFIX_LENGTHS = range(6, 13)


async def _check_gtin_brand(conn: Conn, owner: int, gtin: str) -> None:
    """422 ``gtin_of_other_brand`` when ``gtin`` falls under a GS1 company prefix that is another
    brand's than the owner's brand, as ``app.orgs.service.check_company_prefix`` would refuse it
    to the owner's brand: one another brand has for its own (``orgs.gs1_company_prefix``), or
    one another brand's case codes (SSCCs) were issued under (``case_batches.company_prefix``:
    the platform's ``TRACECODE_GS1_COMPANY_PREFIX``, taken by a brand without its own — a probe:
    a new tenant took GTINs under the demo brand's, and that brand could then never be given
    it). Of the prefixes the GTIN's digits after the indicator start with, the longest so
    claimed decides (its claimants all the owner's brand: the owner's own); one no brand has
    and no case codes carry claims nothing. GTINs are printed on every pack, so a tenant could
    take another brand's product page ``/p/{gtin}`` and its Digital Link ``/01/{gtin}``, and the
    brand could no longer catalogue its own product (a probe). Checked before uniqueness, so
    the answer tells nothing of the GTIN's use elsewhere. Under the SSCC block lock, shared
    (GTINs checked at once do not wait for each other), as a brand is given a prefix and a
    brand's first case batch takes the platform's under it exclusively (``check_company_prefix``,
    ``app.codes.cases``): of a product catalogued and a prefix given or taken at once, the
    second sees the first (the owner held ``FOR KEY SHARE`` first — the product's row will — as
    the prefix's change holds the brand's row before the lock: the same order, no deadlock)."""
    await conn.execute("SELECT 1 FROM orgs WHERE id = %s FOR KEY SHARE", (owner,))
    await locks.xact_lock_shared(conn, locks.Lock.SSCC_BLOCK, 0)
    candidates = [gtin[1 : 1 + n] for n in _PREFIX_LENGTHS]
    claim = await (await conn.execute(_LONGEST_CLAIM, {"p": candidates, "owner": owner})).fetchone()
    if claim is not None and claim["theirs"]:
        raise Unprocessable(
            f"GTIN {gtin} is under another brand's GS1 company prefix: its products are that "
            "brand's to catalogue",
            code="gtin_of_other_brand",
            details={"field": "gtin"},
        )


# the longest of the prefixes ``p`` a brand claims (its own, or its case codes carry it), and
# whether a brand other than the owner's claims it (case batches looked up by their
# (company_prefix, brand_id) index, on either side of the owner's brand)
_LONGEST_CLAIM = """
    WITH owner AS (SELECT split_part(path, '/', 2)::bigint AS brand FROM orgs WHERE id = %(owner)s)
    SELECT c.prefix,
           EXISTS (SELECT 1 FROM orgs b
                    WHERE b.kind = 'brand' AND b.gs1_company_prefix = c.prefix
                      AND b.id <> owner.brand)
        OR EXISTS (SELECT 1 FROM case_batches cb
                    WHERE cb.company_prefix = c.prefix AND cb.brand_id < owner.brand)
        OR EXISTS (SELECT 1 FROM case_batches cb
                    WHERE cb.company_prefix = c.prefix AND cb.brand_id > owner.brand) AS theirs
      FROM owner, unnest(%(p)s::text[]) AS c(prefix)
     WHERE EXISTS (SELECT 1 FROM orgs b
                    WHERE b.kind = 'brand' AND b.gs1_company_prefix = c.prefix)
        OR EXISTS (SELECT 1 FROM case_batches cb WHERE cb.company_prefix = c.prefix)
     ORDER BY length(c.prefix) DESC
     LIMIT 1"""


async def _check_unique(
    conn: Conn, owner: int, product_no: str | None, gtin: str | None, exclude: int = 0
) -> None:
    if gtin is not None:
        await _check_gtin_brand(conn, owner, gtin)
    if (
        product_no is not None
        and await (
            await conn.execute(
                "SELECT 1 FROM products WHERE org_id = %s AND product_no = %s AND id <> %s",
                (owner, product_no, exclude),
            )
        ).fetchone()
    ):
        raise Conflict(f"product number {product_no} exists", code="duplicate_product_no")
    if (
        gtin is not None
        and await (
            await conn.execute(
                "SELECT 1 FROM products WHERE gtin = %s AND id <> %s", (gtin, exclude)
            )
        ).fetchone()
    ):
        raise Conflict(f"GTIN {gtin} is already used", code="duplicate_gtin")


async def create_product(conn: Conn, actor: Principal, data: ProductIn) -> ProductOut:
    owner = await _owner(conn, actor, data.org_id)
    fields = msgspec.structs.asdict(data)
    fields["org_id"] = owner
    fields["gtin"] = _gtin14(data.gtin)
    await _check_category(conn, data.category_id, owner)
    await _check_unique(conn, owner, data.product_no, fields["gtin"])
    await check_product_media(conn, owner, fields)
    columns = ", ".join(fields)
    row = await (
        await conn.execute(
            f"INSERT INTO products ({columns}) VALUES ({', '.join(['%s'] * len(fields))}) "
            "RETURNING id",
            list(fields.values()),
        )
    ).fetchone()
    assert row is not None
    out = await _product(conn, row["id"])
    await audit.record(conn, actor, "create", "product", out.id, after=out, org_id=owner)
    return out


async def get_product(conn: Conn, actor: Principal, product_id: int) -> ProductOut:
    actor.require("catalog.read")
    row = await (
        await conn.execute(
            f"SELECT p.id FROM products p JOIN orgs o ON o.id = p.org_id "
            f"WHERE p.id = %(id)s AND {_READABLE}",
            {"id": product_id, "brand": _brand(actor)},
        )
    ).fetchone()
    if row is None:
        raise NotFound("product not found")
    return await _product(conn, product_id)


async def list_products(
    conn: Conn,
    actor: Principal,
    *,
    category_id: int | None,
    q: str | None,
    published: bool | None,
    product_type: str | None,
    gtin: str | None,
    page: int,
    per_page: int,
) -> Page[ProductOut]:
    actor.require("catalog.read")
    where = [_READABLE]
    params: dict[str, Any] = {"brand": _brand(actor)}
    if category_id is not None:
        where.append("p.category_id = %(category_id)s")
        params["category_id"] = category_id
    if q:
        where.append("(p.name ILIKE %(q)s OR p.product_no ILIKE %(q)s)")
        params["q"] = contains(q)
    if published is not None:
        where.append("p.published = %(published)s")
        params["published"] = published
    if product_type:
        where.append("p.product_type = %(product_type)s")
        params["product_type"] = product_type
    if gtin:
        where.append("p.gtin = %(gtin)s")
        params["gtin"] = _gtin14(gtin)
    return await fetch_page(
        conn,
        columns=_PROD,
        source="products p JOIN orgs o ON o.id = p.org_id",
        where=where,
        params=params,
        order="p.display_order, p.id",
        page=page,
        per_page=per_page,
        make=lambda row: ProductOut(**row),
    )


async def update_product(
    conn: Conn, actor: Principal, product_id: int, patch: ProductPatch
) -> ProductOut:
    await _writable(conn, actor, "products", product_id, "product")
    # locked: a concurrent change is audited before or after this one, never skipped (a probe);
    # a GTIN change also waits for a batch being issued for the product (its foreign key holds
    # the row FOR KEY SHARE until it commits) and then sees it (a probe: the GTIN changed under a
    # batch issued meanwhile)
    changes = changes_of(patch)
    before = await _product(
        conn, product_id, "FOR UPDATE" if "gtin" in changes else "FOR NO KEY UPDATE"
    )
    if "gtin" in changes:
        changes["gtin"] = _gtin14(changes["gtin"])
    await own_media_paths(conn, changes)
    changes = changed(before, changes)  # the GTIN, a medium's URL compared as stored
    if not changes:  # saved unchanged: no write and no row, as a category's (a probe)
        return before
    if "gtin" in changes:
        await _check_gtin_change(conn, before, changes["gtin"])
    if "category_id" in changes:
        await _check_category(conn, changes["category_id"], before.org_id)
    await check_product_media(conn, before.org_id, changes)
    await _check_unique(
        conn, before.org_id, changes.get("product_no"), changes.get("gtin"), exclude=product_id
    )
    await update_row(conn, "products", product_id, changes)
    after = await _product(conn, product_id)
    await audit.record(
        conn,
        actor,
        "update",
        "product",
        product_id,
        before=before,
        after=after,
        org_id=after.org_id,
    )
    return after


async def delete_product(conn: Conn, actor: Principal, product_id: int) -> None:
    """Delete a product no record uses: 409 ``in_use`` when a batch, a line or a rule names it
    (their foreign keys) or when units of it were ever activated. Units name their product
    without a foreign key (the hot tables keep none), so stock tells: every activation writes
    the product's stock delta, and ``stock`` keeps a row for each product that ever had stock
    (a probe: a product whose units were activated from a batch issued without one, by a line
    since moved on, was deleted, and its genuine units then verified as never activated). Its
    row is locked first, so of two deletions at once the second finds it gone (404) — a probe:
    both answered 204 and both were audited. A lucky-draw campaign names it too
    (``_check_not_drawn``)."""
    await _writable(conn, actor, "products", product_id, "product")
    before = await _product(conn, product_id, "FOR UPDATE")
    if await _activated(conn, product_id):
        raise Conflict(
            "units of this product were activated: it stays in the catalogue (unpublish it to "
            "take it off the consumer pages)",
            code="in_use",
        )
    await _check_not_drawn(conn, before)
    await conn.execute("DELETE FROM products WHERE id = %s", (product_id,))
    await audit.record(
        conn, actor, "delete", "product", product_id, before=before, org_id=before.org_id
    )


async def _check_not_drawn(conn: Conn, product: ProductOut) -> None:
    """409 ``in_use`` (``details.draw_campaign_id``) while a lucky-draw campaign not withdrawn
    names the product: ``draw_campaigns.product_ids`` is an array, with no foreign key (a probe:
    the product was deleted, 204, and saving the campaign's own product list was then 422
    ``unknown_product``). Looked for under the product's brand's lock (``Lock.DRAW_PRODUCTS``,
    taken after the product's row, held ``FOR UPDATE`` by the caller), which a campaign's
    creation or edit takes as it checks its products (``app.draws.service._products``): of a
    deletion and a campaign naming the product at once, the second waits for the first and
    sees it — the campaign here, or the product gone there (422 ``unknown_product``)."""
    owner = await org_path(conn, product.org_id)
    assert owner is not None  # the product's foreign key
    await locks.xact_lock(conn, locks.Lock.DRAW_PRODUCTS, brand_of(owner))
    row = await (
        await conn.execute(
            "SELECT id FROM draw_campaigns WHERE product_ids @> ARRAY[%s]::bigint[] "
            "AND deleted_at IS NULL ORDER BY id LIMIT 1",
            (product.id,),
        )
    ).fetchone()
    if row is not None:
        raise Conflict(
            "a lucky-draw campaign names this product: take it off the campaign's products (or "
            "withdraw the campaign) first",
            code="in_use",
            details={"draw_campaign_id": row["id"]},
        )


async def _activated(conn: Conn, product_id: int) -> bool:
    """Whether units of the product were ever activated: its stock rows tell (every activation
    writes the product's stock delta, and ``stock`` keeps a row for each product that ever had
    stock)."""
    row = await (
        await conn.execute(
            """SELECT EXISTS (SELECT 1 FROM stock WHERE product_id = %(p)s)
                   OR EXISTS (SELECT 1 FROM stock_deltas WHERE product_id = %(p)s) AS used""",
            {"p": product_id},
        )
    ).fetchone()
    return row is not None and bool(row["used"])


async def _check_gtin_change(conn: Conn, before: ProductOut, gtin: str | None) -> None:
    """A product's GTIN is printed into its batches' labels (``…/01/{GTIN}/21/{serial}``, the
    printer files of ``app.codes.exports``), and a Digital Link naming another GTIN than its
    product's is ``wrong_product``: once codes were issued for the product (a batch names it) or
    units of it activated, its GTIN stays (409 ``in_use``, as its deletion) — a probe: changed,
    every printed label answered "not genuine" and the resolver route on it 404. A GTIN given
    to a product that had none changes no printed label (they carry none): allowed."""
    if gtin == before.gtin or before.gtin is None:
        return
    issued = await (
        await conn.execute("SELECT 1 FROM code_batches WHERE product_id = %s LIMIT 1", (before.id,))
    ).fetchone()
    if issued is not None or await _activated(conn, before.id):
        raise Conflict(
            "codes were issued for this product and its GTIN is printed on their labels: it "
            "cannot change (create a new product for a new GTIN)",
            code="in_use",
            details={"field": "gtin"},
        )


async def check_rule_target(
    conn: Conn, actor: Principal, product_id: int, agent_id: int | None
) -> None:
    """The target of a per-product rule (K2: points and rebates, overridable per agent): the
    product is the caller's brand's (422 ``unknown_product``) and the agent, if any, an
    organisation of the caller's tree other than the brand (422 ``unknown_org``)."""
    row = await (
        await conn.execute(
            "SELECT o.path FROM products p JOIN orgs o ON o.id = p.org_id WHERE p.id = %s",
            (product_id,),
        )
    ).fetchone()
    if row is None or not row["path"].startswith(f"/{actor.brand_id}/"):
        raise Unprocessable(
            "no such product in this brand", code="unknown_product", details={"field": "product_id"}
        )
    if agent_id is None:
        return
    org = await (
        await conn.execute("SELECT path, kind FROM orgs WHERE id = %s", (agent_id,))
    ).fetchone()
    if org is None or not actor.sees(org["path"]) or org["kind"] == "brand":
        raise Unprocessable(
            "no such channel organisation in your tree",
            code="unknown_org",
            details={"field": "agent_id"},
        )


# Media ---------------------------------------------------------------------------------------

_MEDIA_PATH = re.compile(CATALOG_PATH)
# a catalogue medium named by an absolute URL: its upload's ``absolute_url``
# (``{TRACECODE_PUBLIC_SCHEME}://{RESOLVER_HOST}/media/catalog/{id}``), with any query or
# fragment; its scheme and host in any case, as a browser reads them (``HTTPS://`` is https)
_MEDIA_URL = re.compile(rf"(?i:https?)://[^/?#\s]+/media/catalog/({MEDIA_ID})(?:[?#]\S*)?")
_MEDIA_ID = re.compile(MEDIA_ID)
_MEDIA_DIR = "/media/catalog/"


def _media_id(url: str | None) -> uuid.UUID | None:
    """The medium a product's URL names (``/media/catalog/{id}``), or None for another URL."""
    found = _MEDIA_PATH.fullmatch(url or "")
    return uuid.UUID(url.rsplit("/", 1)[1]) if found and url else None


def _under_media(url: str | None) -> str | None:
    """What an ``http(s)://`` URL or a path names under ``/media/catalog/``, as a browser and
    this server resolve it — its path percent-decoded (``%2F`` is a ``/``), a backslash taken
    for a slash, dot segments resolved and trailing slashes dropped — or None when it names
    nothing there (another URL)."""
    try:
        parts = urlsplit((url or "").replace("\\", "/"))
    except ValueError:  # an unbalanced IPv6 host: no URL a browser loads
        return None
    if parts.scheme.lower() not in ("http", "https") and (parts.scheme or parts.netloc):
        return None
    path = posixpath.normpath("/" + unquote(parts.path).lstrip("/"))
    return path.removeprefix(_MEDIA_DIR) if path.startswith(_MEDIA_DIR) else None


async def own_media_paths(conn: Conn, changes: dict[str, Any]) -> None:
    """Each of a product's ``image_url`` / ``video_url`` among ``changes`` that names a
    catalogue medium of this server by another URL than its path — its upload's
    ``absolute_url``, or any ``http(s)://`` URL whose path resolves to it (``_under_media``: a
    trailing ``/``, ``/.``, ``%2F``, which this server and a browser resolve to the medium) —
    becomes its path, ``/media/catalog/{id}``, as the catalogue keeps it: the brand's and kind's
    check, the medium's in-use check (``DELETE /media/catalog/{id}``) and its unused list look
    for that path (probes: a product naming its medium by ``absolute_url``, then by it with a
    trailing ``/``, was not seen — the medium was listed as unused and deleted from under the
    published product, and another brand's product took it past the brand check). Whatever the
    URL's host (the public one, an older one, a proxy in front): a medium's id is random, so a
    URL naming one of this server's media ids was made from that medium's URL. One naming no
    medium here is left as it is: ``check_product_media`` keeps an exact ``absolute_url`` form
    (another site's) and refuses any other under ``/media/catalog/``."""
    for field in ("image_url", "video_url"):
        value = changes.get(field)
        name = None if _MEDIA_PATH.fullmatch(value or "") else _under_media(value)
        if name is None or not _MEDIA_ID.fullmatch(name):
            continue
        media_id = uuid.UUID(name)
        row = await (
            await conn.execute("SELECT 1 FROM catalog_media WHERE id = %s", (media_id,))
        ).fetchone()
        if row is not None:
            changes[field] = f"{_MEDIA_DIR}{media_id}"


def _check_media_form(field: str, url: str | None) -> None:
    """400 ``unknown_catalog_media`` for a URL (after ``own_media_paths``) that names a medium's
    id under ``/media/catalog/`` but is neither a medium's path nor an exact ``absolute_url``
    form (``_MEDIA_URL``: kept, naming no medium here, as another site's): a variant of a
    medium's URL naming none of this server's media. Other URLs under a ``/media/catalog/``
    are other sites' files and stay (a review: a shop's images, ``https://shop…/media/catalog/
    product/a.jpg``, as Magento keeps them, were refused)."""
    if url is None or _MEDIA_PATH.fullmatch(url) or _MEDIA_URL.fullmatch(url):
        return
    name = _under_media(url)
    if name is not None and _MEDIA_ID.fullmatch(name):
        raise ValidationFailed(
            f"{field} names no catalogue medium of this server by its path "
            "(/media/catalog/{id}) or its absolute_url",
            code="unknown_catalog_media",
            details={"field": field},
        )


def medium_of_url(field: str, url: str) -> uuid.UUID | None:
    """The medium's id an absolute ``url`` names in an exact ``absolute_url`` form
    (``_MEDIA_URL``: any host, any query or fragment), None when it names no medium's id under
    ``/media/catalog/``; 400 ``unknown_catalog_media`` (``details.field``) for another URL naming
    one (``_check_media_form``: a variant such as a trailing ``/`` or a ``%2F``, which a
    product's check keeps as the medium's path, and the brand story, which keeps absolute URLs
    only, cannot keep so — nor could a medium's in-use check find it)."""
    _check_media_form(field, url)
    found = _MEDIA_URL.fullmatch(url)
    return uuid.UUID(found.group(1)) if found else None


def _unknown_medium(field: str, url: str, kind: str | None) -> ValidationFailed:
    return ValidationFailed(
        f"{field} names a catalogue medium that is no {kind or 'medium'} uploaded by this brand: "
        f"{url}",
        code="unknown_catalog_media",
        details={"field": field},
    )


async def check_brand_media(
    conn: Conn, brand_id: int, named: list[tuple[str, str | None]], field: str, origin: str
) -> None:
    """400 ``unknown_catalog_media`` (``details.field``) unless each absolute URL of ``named``
    (with the kind it must name: ``image``, or None for either) that names a catalogue medium
    of this server names one of the brand ``brand_id``, of that kind — the brand story's
    pictures and links. A URL names one as a product's does (``medium_of_url``, then the id a
    medium here: ``own_media_paths``), or by its exact form under ``origin`` (this server's
    ``TRACECODE_PUBLIC_SCHEME://RESOLVER_HOST``: a medium deleted just before is no other site's
    file). As ``check_product_media``: the media looked up first, then their rows held ``FOR KEY
    SHARE`` to the end of the transaction — a deletion in flight (``DELETE /media/catalog/{id}``
    holds the row ``FOR UPDATE`` while it looks for what names it) is waited for, and the
    medium then found gone (400); a deletion after waits for this transaction and sees it."""
    wanted: dict[uuid.UUID, tuple[str, str | None]] = {}
    host = urlsplit(origin).netloc.lower()
    ours: set[uuid.UUID] = set()
    for url, kind in named:
        media_id = medium_of_url(field, url)
        if media_id is None:
            continue
        if media_id not in wanted or kind is not None:
            wanted[media_id] = (url, kind)
        if urlsplit(url).netloc.lower() == host:
            ours.add(media_id)
    if not wanted:
        return
    ids = sorted(wanted)
    sql = "SELECT id, brand_id, kind FROM catalog_media WHERE id = ANY(%s) ORDER BY id"
    ours.update(row["id"] for row in await (await conn.execute(sql, (ids,))).fetchall())
    rows = await (await conn.execute(sql + " FOR KEY SHARE", (ids,))).fetchall()
    found = {row["id"]: row for row in rows}
    for media_id, (url, kind) in wanted.items():
        row = found.get(media_id)
        if row is None and media_id not in ours:
            continue  # another site's file of the same shape
        if row is None or row["brand_id"] != brand_id or kind not in (None, row["kind"]):
            raise _unknown_medium(field, url, kind)


async def check_brand_urls(
    conn: Conn,
    brand_id: int,
    changes: Mapping[str, Any],
    kinds: Mapping[str, str | None],
    origin: str,
) -> None:
    """``check_brand_media`` for each URL field of ``kinds`` (its kind: ``image``, or None
    for either) set among ``changes`` — a gift's picture, a promotion's picture and link: a
    catalogue medium of this server they name by its ``absolute_url`` is the brand's, its row
    held to the end of the transaction, so ``DELETE /media/catalog/{id}`` sees it in use (a
    probe: brand B's gift showed brand A's upload, and a brand's own was deleted under it)."""
    for field, kind in kinds.items():
        url = changes.get(field)
        if url is not None:
            await check_brand_media(conn, brand_id, [(url, kind)], field, origin)


async def check_product_media(conn: Conn, owner: int, changes: dict[str, Any]) -> None:
    """400 ``unknown_catalog_media`` (``details.field``) unless each of the product's
    ``image_url`` / ``video_url`` among ``changes`` that names a medium of this server (by its
    path, or by an absolute URL: made its path first, ``own_media_paths``; another URL under
    ``/media/catalog/`` than an exact ``absolute_url`` form: refused) names one of the
    owner's brand, of its kind (an image for ``image_url``). Its row held ``FOR KEY SHARE`` to
    the end of the transaction: a deletion in flight is waited for, then found."""
    await own_media_paths(conn, changes)
    for field, kind in (("image_url", "image"), ("video_url", "video")):
        _check_media_form(field, changes.get(field))
        media_id = _media_id(changes.get(field))
        if media_id is None:
            continue
        row = await (
            await conn.execute(
                """SELECT 1 FROM catalog_media m JOIN orgs o ON o.id = %s
                    WHERE m.id = %s AND m.kind = %s AND o.path LIKE '/' || m.brand_id || '/%%'
                      FOR KEY SHARE OF m""",
                (owner, media_id, kind),
            )
        ).fetchone()
        if row is None:
            raise ValidationFailed(
                f"{field} names no {kind} uploaded by this product's brand",
                code="unknown_catalog_media",
                details={"field": field},
            )
