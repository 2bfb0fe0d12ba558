"""Organisation tree: create, read, update, (de)activate, move, list a subtree (SPEC U1)."""

from __future__ import annotations

from typing import Any

import msgspec

from app import audit, locks
from app.auth.principal import Principal, brand_of
from app.auth.service import ensure_not_stronger, org_status, permissions_held_below
from app.db import Conn, changed, changes_of, update_row
from app.errors import Conflict, NotFound, Unprocessable, ValidationFailed
from app.orgs.schemas import OrgIn, OrgOut, OrgPatch
from app.paging import Page, contains, fetch_page
from app.provinces import CODE_OF, PROVINCE_CODES, province_named

# Which kinds may sit directly below which.
CHILD_KINDS: dict[str, frozenset[str]] = {
    "brand": frozenset(
        {"factory", "warehouse", "branch", "agent", "distributor", "store", "printer"}
    ),
    "factory": frozenset({"warehouse"}),
    "branch": frozenset({"agent", "distributor", "store", "warehouse"}),
    "agent": frozenset({"distributor", "store", "warehouse"}),
    "distributor": frozenset({"store", "warehouse"}),
    "warehouse": frozenset(),
    "store": frozenset(),
    "printer": frozenset(),
}

_COLUMNS = (
    "id, parent_id, kind, name, erp_code, province_code, province_name, city_code, city_name, "
    "address, contact_name, contact_phone, latitude, longitude, gs1_company_prefix, status, "
    "array_length(string_to_array(trim(both '/' from path), '/'), 1) - 1 AS depth, "
    "created_at, updated_at"
)


# SQL: a brand's name as brands are told apart, as it shows — without the characters that show
# nothing (``app.textguard.FORMAT``, ``MARKS``), in NFKC, lower case, each run of blanks
# (``app.textguard.SPACES``) one space, none at either end. Migration 0142's function, which its
# unique index (``orgs_brand_name_uq``) is on: this check and the index are one expression (a
# probe: a decomposed accent, a zero-width space inside, a no-break space between words made a
# second brand of the demo brand's name).
BRAND_NAME_KEY = "brand_name_key(name)"


def _out(row: dict[str, Any]) -> OrgOut:
    return OrgOut(**row)


async def org_path(conn: Conn, org_id: int) -> str | None:
    """The path of an organisation (``/brand/…/id/``), ``None`` when there is none. Callers
    decide whether the caller may see it (``Principal.ensure_sees`` and the like)."""
    row = await (await conn.execute("SELECT path FROM orgs WHERE id = %s", (org_id,))).fetchone()
    return row["path"] if row else None


def check_region(
    province_code: str | None,
    province_name: str | None,
    city_code: str | None,
    city_name: str | None,
) -> None:
    """GB/T 2260: a city code lies inside its province (same first two digits)."""
    if city_code and not province_code:
        raise ValidationFailed("a city needs its province", details={"field": "province_code"})
    if province_code and not province_name:
        raise ValidationFailed("province_name is required", details={"field": "province_name"})
    if city_code and not city_name:
        raise ValidationFailed("city_name is required", details={"field": "city_name"})
    if province_code and city_code and city_code[:2] != province_code[:2]:
        raise ValidationFailed(
            f"city {city_code} is not in province {province_code}",
            code="region_mismatch",
            details={"field": "city_code"},
        )


def settled_province(
    province_code: str | None, province_name: str | None
) -> tuple[str | None, str | None]:
    """An organisation's province as it is stored: its GB/T 2260 code and the code's full name
    (``浙江省`` for 330000, however it was written: full, short, English, ``app.provinces``), a
    name alone giving its code — what the SMS audiences, the draws, the leak and ring detectors
    compare with members' and verifications' provinces (a probe: "Zhejiang" kept as typed was
    in no province). 400 ``region_mismatch`` on ``province_name`` when the name is not the
    code's (a probe: 330000 named 广东省 was kept), ``validation_failed`` on it when a name
    without a code is no province's (a probe: "Atlantis" was kept)."""
    if province_name is None:
        return province_code, None  # a code without its name: ``check_region``
    named = province_named(province_name)
    if province_code is None:
        if named is None:
            raise ValidationFailed(
                f"{province_name[:40]!r} is no province-level division of China",
                details={"field": "province_name"},
            )
        return CODE_OF[named], named
    expected = PROVINCE_CODES.get(province_code[:2])
    if expected is None or named != expected:
        raise ValidationFailed(
            f"province {province_code} is {expected or 'no province of GB/T 2260'}, "
            f"not {province_name[:40]!r}",
            code="region_mismatch",
            details={"field": "province_name"},
        )
    return province_code, expected


def with_settled_province(current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``changes`` to an organisation (``current``: its columns) with its province as it would
    be stored (``settled_province``) when they touch it, so that the same province written
    another way is no change; as sent when it does not settle (refused when it is applied)."""
    if not {"province_code", "province_name"} & set(changes):
        return changes
    merged = {**current, **changes}
    try:
        code, name = settled_province(merged["province_code"], merged["province_name"])
    except ValidationFailed:
        return changes
    return {**changes, "province_code": code, "province_name": name}


def _check_code_cleared(changes: dict[str, Any], name: str | None) -> None:
    """A province's code cleared while its name stays would be given back by the name (a
    review: 200, and nothing changed): 400 on ``province_code`` — clear the name too."""
    if "province_code" in changes and changes["province_code"] is None:
        if "province_name" not in changes and name is not None:
            raise ValidationFailed(
                "a province's code goes with its name: clear province_name too",
                details={"field": "province_code"},
            )


def check_position(latitude: float | None, longitude: float | None) -> None:
    """A position is both coordinates or neither (400 ``bad_coordinates``)."""
    if (latitude is None) != (longitude is None):
        field = "longitude" if longitude is None else "latitude"
        raise ValidationFailed(
            "latitude and longitude go together: both or neither",
            code="bad_coordinates",
            details={"field": field},
        )


async def _get_row(conn: Conn, org_id: int, *, lock: bool = False) -> dict[str, Any] | None:
    sql = "SELECT id, parent_id, kind, path, status FROM orgs WHERE id = %s"
    if lock:
        sql += " FOR UPDATE"
    return await (await conn.execute(sql, (org_id,))).fetchone()


async def visible(conn: Conn, actor: Principal, org_id: int) -> dict[str, Any]:
    """The org's id/kind/path/status if it is in the caller's subtree, else 404."""
    row = await _get_row(conn, org_id)
    actor.ensure_sees(row["path"] if row else None)
    assert row is not None
    return row


async def administered(
    conn: Conn, actor: Principal, org_id: int, *, lock: bool = False
) -> dict[str, Any]:
    """Like ``visible``, over the organisations the caller administers (a platform operator:
    every brand's tree), for the organisation and user endpoints."""
    row = await _get_row(conn, org_id, lock=lock)
    actor.ensure_administers(row["path"] if row else None)
    assert row is not None
    return row


async def _ensure_not_stronger(conn: Conn, actor: Principal, org_path: str) -> None:
    """(De)activating or moving an organisation changes what its users and API keys can do:
    only for someone who holds every permission they hold."""
    ensure_not_stronger(
        actor,
        await permissions_held_below(conn, org_path),
        "organisation (a user or API key in it)",
    )


async def create_org(conn: Conn, actor: Principal | None, data: OrgIn) -> OrgOut:
    """Create an organisation below a parent in the caller's subtree (a brand has no parent).

    ``actor=None`` is the system itself (demo data, CLI); it may create brands.
    """
    code, name = settled_province(data.province_code, data.province_name)
    data = msgspec.structs.replace(data, province_code=code, province_name=name)
    check_region(data.province_code, data.province_name, data.city_code, data.city_name)
    check_position(data.latitude, data.longitude)
    if data.gs1_company_prefix is not None and data.kind != "brand":
        raise ValidationFailed(
            "only a brand has a GS1 company prefix", details={"field": "gs1_company_prefix"}
        )
    if data.kind == "brand":
        if data.parent_id is not None:
            raise ValidationFailed("a brand has no parent", details={"field": "parent_id"})
        if actor is not None:
            actor.require("platform.admin")
        parent_path = "/"
    else:
        if actor is not None:
            actor.require("orgs.write")
        if data.parent_id is None:
            raise ValidationFailed("parent_id is required", details={"field": "parent_id"})
        parent = await _get_row(conn, data.parent_id)
        if actor is not None:
            actor.ensure_administers(parent["path"] if parent else None, "parent organisation")
        if parent is None:
            raise NotFound("parent organisation not found")
        # a move of the parent (or above) in flight holds the brand's lock to its commit: the
        # parent read again after it (a probe: created meanwhile, the store kept the old path,
        # seen by the old agent and not by the new)
        await locks.xact_lock(conn, locks.Lock.ROLE_NAMES, brand_of(parent["path"]))
        parent = await _get_row(conn, data.parent_id)
        if actor is not None:  # moved meanwhile, perhaps out of the caller's reach (a probe)
            actor.ensure_administers(parent["path"] if parent else None, "parent organisation")
        assert parent is not None  # organisations are deactivated, never deleted
        if data.kind not in CHILD_KINDS[parent["kind"]]:
            raise Unprocessable(
                f"a {data.kind} cannot be placed under a {parent['kind']}", code="bad_hierarchy"
            )
        if not await path_live(conn, parent["path"]):  # a probe: under a deactivated agent
            raise Unprocessable(
                "the parent organisation (or one above it) is inactive", code="parent_inactive"
            )
        parent_path = parent["path"]
    await _check_erp_code(conn, data.erp_code, parent_path, data.kind == "brand")
    if data.gs1_company_prefix is not None:
        await check_company_prefix(conn, data.gs1_company_prefix)
    if data.kind == "brand":  # after the prefix's lock, as ``update_org`` takes the two
        await _check_brand_name(conn, data.name)
    fields = msgspec.structs.asdict(data)
    columns = ", ".join(fields)
    placeholders = ", ".join(["%s"] * len(fields))
    row = await (
        await conn.execute(
            f"INSERT INTO orgs ({columns}) VALUES ({placeholders}) RETURNING id",
            list(fields.values()),
        )
    ).fetchone()
    assert row is not None
    org_id = row["id"]
    await conn.execute(
        "UPDATE orgs SET path = %s WHERE id = %s", (f"{parent_path}{org_id}/", org_id)
    )
    out = await get_org(conn, None, org_id)
    await audit.record(conn, actor, "create", "org", org_id, after=out, org_id=org_id)
    return out


async def _check_erp_code(
    conn: Conn, erp_code: str, path: str, brand: bool, org_id: int = 0
) -> None:
    """409 ``duplicate_erp_code`` when an organisation other than ``org_id`` has the code in
    the brand of ``path`` or, for a ``brand``, among the brands: codes are unique within a
    brand and a brand's among brands (migration 0045); other brands' codes are not looked at."""
    taken = await conn.execute(
        """SELECT 1 FROM orgs
           WHERE erp_code = %(code)s AND id <> %(id)s
             AND (split_part(path, '/', 2) = split_part(%(path)s, '/', 2)
                  OR (%(brand)s AND kind = 'brand'))""",
        {"code": erp_code, "id": org_id, "path": path, "brand": brand},
    )
    if await taken.fetchone():
        raise Conflict(f"ERP code {erp_code} is taken", code="duplicate_erp_code")


async def _check_brand_name(conn: Conn, name: str, brand_id: int = 0) -> None:
    """409 ``duplicate_brand_name`` when a brand other than ``brand_id`` has ``name`` (as
    ``BRAND_NAME_KEY`` compares: as the names show, in any case). A brand's name is its
    face to consumers — every H5 page shows it, every SMS is signed with it — so a tenant
    naming itself as another brand spoke as that brand (a probe). Under the brand-name lock
    (``Lock.BRAND_NAMES``): two brands given one name at once, the second sees the first. The
    unique index (migrations 0130, 0142) holds it too, except between brands that shared a
    name before it (kept as they were)."""
    await locks.xact_lock(conn, locks.Lock.BRAND_NAMES, 0)
    taken = await (
        await conn.execute(
            f"""SELECT 1 FROM orgs
                 WHERE kind = 'brand' AND id <> %(brand)s
                   AND {BRAND_NAME_KEY} = brand_name_key(%(name)s::text)""",
            {"name": name, "brand": brand_id},
        )
    ).fetchone()
    if taken is not None:
        raise Conflict(
            "another brand has this name",
            code="duplicate_brand_name",
            details={"field": "name"},
        )


async def check_company_prefix(conn: Conn, prefix: str, brand_id: int = 0) -> None:
    """409 ``duplicate_company_prefix`` when ``prefix`` is another brand's than ``brand_id``'s:
    another brand's own (or one either starts: GS1 allocates no prefix inside another, so two
    such would make one SSCC of two companies' numbers), or one another brand's case batches were
    issued under (the platform's ``TRACECODE_GS1_COMPANY_PREFIX``, taken by a brand without
    its own: those codes are that brand's), or one that starts, or is started by, a prefix
    serial references are counted under (``sscc_refs``: any brand's, its own earlier one too;
    counted per prefix, two such would make one SSCC), or one another brand's catalogued GTINs
    carry (their digits after the indicator start with it: those printed barcodes are that
    brand's products — a probe: the prefix was given, and ``/p/{gtin}`` stayed the other
    brand's while the new one could not catalogue "its" number). The platform's, not yet
    taken, may be given to a brand (a single-brand deployment naming its own). Under the SSCC
    block lock, as a brand's first case batch under the platform's prefix is decided
    (``app.codes.cases``) and as a product's GTIN is checked against the brands' prefixes
    (``app.catalog.service``): of the two, one comes second and sees the other."""
    await locks.xact_lock(conn, locks.Lock.SSCC_BLOCK, 0)
    taken = await (
        await conn.execute(
            """SELECT 1 FROM orgs
                WHERE kind = 'brand' AND id <> %(brand)s AND gs1_company_prefix IS NOT NULL
                  AND (starts_with(gs1_company_prefix, %(prefix)s)
                       OR starts_with(%(prefix)s, gs1_company_prefix))
               UNION ALL
               SELECT 1 FROM case_batches
                WHERE company_prefix = %(prefix)s AND brand_id <> %(brand)s
               UNION ALL
               SELECT 1 FROM sscc_refs
                WHERE company_prefix <> %(prefix)s
                  AND (starts_with(company_prefix, %(prefix)s)
                       OR starts_with(%(prefix)s, company_prefix))
               UNION ALL
               SELECT 1 FROM products p JOIN orgs o ON o.id = p.org_id
                WHERE starts_with(substr(p.gtin, 2), %(prefix)s)
                  AND split_part(o.path, '/', 2)::bigint <> %(brand)s
               LIMIT 1""",
            {"prefix": prefix, "brand": brand_id},
        )
    ).fetchone()
    if taken is not None:
        raise Conflict(
            f"GS1 company prefix {prefix} is another brand's, or starts or is started by one "
            "case codes are issued under, or another brand's products' GTINs carry it",
            code="duplicate_company_prefix",
            details={"field": "gs1_company_prefix"},
        )


async def _check_company_prefix_change(conn: Conn, before: OrgOut, prefix: str | None) -> None:
    """A brand's own company prefix is printed in its case codes (SSCCs, ``app.codes.cases``):
    once case batches were issued under it, it stays (409 ``in_use``, as a product's GTIN once
    its codes were issued). Given to a brand that had none, it changes no printed label (its
    batches keep the platform's prefix they were issued under): allowed."""
    if before.gs1_company_prefix is None or prefix == before.gs1_company_prefix:
        return
    issued = await (
        await conn.execute(
            "SELECT 1 FROM case_batches WHERE company_prefix = %s AND brand_id = %s LIMIT 1",
            (before.gs1_company_prefix, before.id),
        )
    ).fetchone()
    if issued is not None:
        raise Conflict(
            "case codes were issued under this brand's GS1 company prefix and carry it: it "
            "cannot change",
            code="in_use",
            details={"field": "gs1_company_prefix"},
        )


async def get_org(conn: Conn, actor: Principal | None, org_id: int) -> OrgOut:
    row = await (
        await conn.execute(f"SELECT {_COLUMNS}, path FROM orgs WHERE id = %s", (org_id,))
    ).fetchone()
    if actor is not None:
        actor.require("orgs.read")
        actor.ensure_administers(row["path"] if row else None)
    if row is None:
        raise NotFound("organisation not found")
    row.pop("path")
    return _out(row)


async def list_orgs(
    conn: Conn,
    actor: Principal,
    *,
    root_id: int | None,
    kind: str | None,
    status: str | None,
    q: str | None,
    page: int,
    per_page: int,
) -> Page[OrgOut]:
    """The caller's subtree (or the subtree of ``root_id`` inside it), filtered and paged."""
    actor.require("orgs.read")
    prefix = actor.admin_scope
    if root_id is not None:
        prefix = (await administered(conn, actor, root_id))["path"]
    where = ["path LIKE %(prefix)s"]
    params: dict[str, Any] = {"prefix": prefix + "%", "kind": kind, "status": status}
    if kind:
        where.append("kind = %(kind)s")
    if status:
        where.append("status = %(status)s")
    if q:
        where.append("(name ILIKE %(q)s OR erp_code ILIKE %(q)s)")
        params["q"] = contains(q)
    return await fetch_page(
        conn,
        columns=_COLUMNS,
        source="orgs",
        where=where,
        params=params,
        order="path",
        page=page,
        per_page=per_page,
        make=_out,
    )


# A store's fields its own staff may not change (``update_org``: 422 ``own_org``).
_SET_FROM_ABOVE = frozenset(
    {"latitude", "longitude", "province_code", "province_name", "city_code", "city_name"}
)


async def update_org(conn: Conn, actor: Principal, org_id: int, patch: OrgPatch) -> OrgOut:
    """Change an organisation's fields; a brand's GS1 company prefix is the platform
    operator's to give or change (``platform.admin``, as a brand's creation;
    ``check_company_prefix``, ``_check_company_prefix_change``)."""
    actor.require("orgs.write")
    org_path = (await administered(conn, actor, org_id))["path"]
    prefix_asked = patch.gs1_company_prefix is not msgspec.UNSET
    # the row held before its "before" is read: a concurrent change is audited before or after
    # this one, never skipped (a probe); NO KEY: references to the organisation are not held up,
    # but a company prefix's change waits for a case batch being issued under the brand's
    # prefix (it reads it FOR KEY SHARE) and then sees it
    lock = "FOR UPDATE" if prefix_asked else "FOR NO KEY UPDATE"
    await conn.execute(f"SELECT 1 FROM orgs WHERE id = %s {lock}", (org_id,))
    before = await get_org(conn, None, org_id)
    # stored as given (text as sent, coordinates as the same floats): compared as sent; the
    # province as it is stored (its full name: a province written another way is no change)
    changes = changed(before, changes_of(patch))
    _check_code_cleared(changes, before.province_name)
    changes = changed(before, with_settled_province(msgspec.structs.asdict(before), changes))
    if not changes:
        return before
    if "gs1_company_prefix" in changes:
        actor.require("platform.admin")
        prefix = changes["gs1_company_prefix"]
        if prefix is not None and before.kind != "brand":
            raise ValidationFailed(
                "only a brand has a GS1 company prefix", details={"field": "gs1_company_prefix"}
            )
        await _check_company_prefix_change(conn, before, prefix)
        if prefix is not None:
            await check_company_prefix(conn, prefix, org_id)
    if before.kind == "store" and org_path == actor.org_path and _SET_FROM_ABOVE & set(changes):
        # the field force's check-ins are measured from its position: set from above, as
        # ``PUT /field/stores/{id}/position`` is (a probe: a store's own org_admin moved it to
        # where a rep checked in 140 km away, judged in range); its region is what the
        # organisations above judge it by — rankings by region, inspections' reports, the leak
        # detector's shipped provinces (a probe: its org_admin moved it to another province)
        raise Unprocessable(
            "a store's position and region are set by the organisations above it", code="own_org"
        )
    merged = {**msgspec.structs.asdict(before), **changes}
    check_region(
        merged["province_code"], merged["province_name"], merged["city_code"], merged["city_name"]
    )
    if {"province_code", "province_name"} & set(changes):  # one kept before: when it changes
        settled_province(merged["province_code"], merged["province_name"])  # settled, or 400
    check_position(merged["latitude"], merged["longitude"])
    if "erp_code" in changes and changes["erp_code"] != before.erp_code:
        path = await (
            await conn.execute("SELECT path FROM orgs WHERE id = %s", (org_id,))
        ).fetchone()
        assert path is not None
        await _check_erp_code(
            conn, changes["erp_code"], path["path"], before.kind == "brand", org_id
        )
    if "name" in changes and before.kind == "brand":
        await _check_brand_name(conn, changes["name"], org_id)
    await update_row(conn, "orgs", org_id, changes)
    after = await get_org(conn, None, org_id)
    await audit.record(
        conn, actor, "update", "org", org_id, before=before, after=after, org_id=org_id
    )
    return after


async def set_status(conn: Conn, actor: Principal, org_id: int, status: str) -> OrgOut:
    """Deactivate or reactivate an organisation strictly below the caller's own."""
    actor.require("orgs.write")
    row = await administered(conn, actor, org_id)
    # under the brand's lock, as a creation below it checks the line is live (a probe: a store
    # created under an agent whose deactivation was in flight came out active); read again
    await locks.xact_lock(conn, locks.Lock.ROLE_NAMES, brand_of(row["path"]))
    row = await administered(conn, actor, org_id)
    if row["path"] == actor.org_path:
        raise Unprocessable("you cannot change the status of your own organisation", code="own_org")
    await _ensure_not_stronger(conn, actor, row["path"])
    before = await get_org(conn, None, org_id)
    if before.status == status:  # a double click or a retry changes nothing: not audited, as
        # a revoked key's revocation again (a probe: a second row named who deactivated nothing)
        return before
    if status == "inactive":
        await _ensure_nothing_coming(conn, org_id, row["path"])
    await conn.execute(
        "UPDATE orgs SET status = %s, updated_at = now() WHERE id = %s", (status, org_id)
    )
    after = await get_org(conn, None, org_id)
    action = "deactivate" if status == "inactive" else "activate"
    audited: Any = after
    # off: its supervisors supervise no more, their live reps outside it are cleared; back on:
    # its reps whose supervisor was demoted meanwhile are (``drop_unfit_supervisors``), named
    # in the row as a move names them
    if status == "inactive":
        unsupervised = await drop_unfit_supervisors(conn, await _supervisors_in(conn, row["path"]))
    else:
        unsupervised = await drop_unfit_supervisors(
            conn, await _reps_in(conn, row["path"]), of_reps=True
        )
    if unsupervised:
        audited = {**msgspec.structs.asdict(after), "supervisors_dropped": unsupervised}
    await audit.record(
        conn, actor, action, "org", org_id, before=before, after=audited, org_id=org_id
    )
    return after


# The confirmed shipments (outbound, return: the kinds with a receiving counterparty,
# ``app.logistics.movements.SHIPMENT_KINDS``) to an organisation of a subtree whose goods are
# still on their way there: a unit they carried — scanned, or in a case scanned — in transit to
# the receiver under the shipment's event, as a receipt of the whole shipment finds them
# (``movements.on_its_way``, ``expand``). Only the receivers with goods in transit in their stock
# are looked at — rolled up plus the deltas not folded yet, written in the movement's own
# transaction, so one statement reads both or neither: no index finds units by ``transit_to``
# (migration 0010), and every shipment a line of stores ever received is too many to expand.
_COMING = """
WITH RECURSIVE receivers AS (
    SELECT s.org_id FROM (SELECT org_id, in_transit FROM stock
                          UNION ALL SELECT org_id, in_transit FROM stock_deltas) s
     WHERE s.org_id IN (SELECT id FROM orgs WHERE path LIKE %(subtree)s)
     GROUP BY s.org_id HAVING sum(s.in_transit) > 0
), shipments AS (
    SELECT d.id, d.doc_no, d.counterparty_id AS org_id, d.event_id, d.confirmed_at
      FROM documents d JOIN receivers r ON r.org_id = d.counterparty_id
     WHERE d.status = 'confirmed' AND d.kind IN ('outbound', 'return')
       AND d.event_id IS NOT NULL
       -- received in part: what its receipt did not take was reported missing to the receiver
       -- (a review: a unit lost in transit kept its store, and every organisation above it,
       -- from ever being deactivated)
       AND NOT EXISTS (SELECT 1 FROM documents r
                        WHERE r.shipment_id = d.id AND r.status = 'confirmed')
       -- sent from outside the subtree: what it sends itself waits with it for its reactivation
       -- (a brand turned off whole, with shipments between its own organisations, was refused)
       AND d.org_id NOT IN (SELECT id FROM orgs WHERE path LIKE %(subtree)s)
), boxes (id, sscc) AS (
    SELECT s.id, i.code FROM shipments s
      JOIN document_items i ON i.document_id = s.id AND i.kind = 'c'
    UNION SELECT b.id, c.sscc FROM boxes b JOIN case_state c ON c.parent_sscc = b.sscc
), goods (id, code) AS (
    SELECT s.id, i.code FROM shipments s
      JOIN document_items i ON i.document_id = s.id AND i.kind = 'u'
    UNION ALL SELECT b.id, u.code FROM boxes b JOIN unit_state u ON u.parent_sscc = b.sscc
)
SELECT s.id, s.doc_no, s.org_id FROM shipments s
 WHERE s.id IN (SELECT g.id FROM goods g JOIN shipments t ON t.id = g.id
                  JOIN unit_state u ON u.code = g.code
                 WHERE u.transit_to = t.org_id AND u.status = 'active'
                   AND u.last_event_id = t.event_id)
 ORDER BY s.confirmed_at DESC, s.id DESC"""

_LISTED_SHIPMENTS = 5  # named in the refusal's details


async def _ensure_nothing_coming(conn: Conn, org_id: int, subtree: str) -> None:
    """409 ``goods_in_transit`` while goods of a shipment from outside the subtree being
    deactivated, no receipt has taken any of yet, are on their way to an organisation of it (a
    probe: a store closed with a shipment on its way was 200, and nobody could receive the goods
    — its staff refused — nor take them back — the sender holds none — until it was
    reactivated). Goods the subtree shipped are received by their receiver whatever the sender's
    status, so only those coming to it count. Read with the organisation's row locked as its
    UPDATE locks it: a shipment's confirmation holds the receiver's line ``FOR SHARE``
    (``app.logistics.documents._hold_open``), so one under way is waited for and seen here, and
    one after waits for this deactivation and is refused ``org_inactive``. Before any goods' row
    (none is locked here): the confirmation locks its goods, then the line."""
    await conn.execute("SELECT 1 FROM orgs WHERE id = %s FOR NO KEY UPDATE", (org_id,))
    rows = await (await conn.execute(_COMING, {"subtree": subtree + "%"})).fetchall()
    if rows:
        raise Conflict(
            "goods are on their way to this organisation (or one below it): received first",
            code="goods_in_transit",
            details={
                "count": len(rows),
                "shipments": [
                    {"id": r["id"], "doc_no": r["doc_no"], "org_id": r["org_id"]}
                    for r in rows[:_LISTED_SHIPMENTS]
                ],
            },
        )


async def _reps_in(conn: Conn, subtree: str) -> list[int]:
    """The users of ``subtree`` (a path) who have a supervisor."""
    rows = await (
        await conn.execute(
            """SELECT u.id FROM users u JOIN orgs o ON o.id = u.org_id
                WHERE o.path LIKE %s AND u.supervisor_id IS NOT NULL""",
            (subtree + "%",),
        )
    ).fetchall()
    return [r["id"] for r in rows]


async def _supervisors_in(conn: Conn, subtree: str) -> list[int]:
    """The users of ``subtree`` (a path) who supervise some rep."""
    rows = await (
        await conn.execute(
            """SELECT s.id FROM users s JOIN orgs o ON o.id = s.org_id
                WHERE o.path LIKE %s
                  AND EXISTS (SELECT 1 FROM users r WHERE r.supervisor_id = s.id)""",
            (subtree + "%",),
        )
    ).fetchall()
    return [r["id"] for r in rows]


async def move_org(conn: Conn, actor: Principal, org_id: int, parent_id: int) -> OrgOut:
    """Re-parent an organisation and its whole subtree."""
    actor.require("orgs.write")
    row = await administered(conn, actor, org_id)
    # role names are checked under the brand's lock, as create_role checks them; taken before
    # any organisation's row lock, as create_role takes it before its row's key share (review),
    # and before the rows of the users it unsupervises (``Lock.ROLE_NAMES``: its order);
    # the row read again under it: a move of an ancestor committed meanwhile changed its path
    await locks.xact_lock(conn, locks.Lock.ROLE_NAMES, brand_of(row["path"]))
    row = await administered(conn, actor, org_id)
    if row["kind"] == "brand":
        raise Unprocessable("a brand cannot be moved", code="bad_hierarchy")
    if row["path"] == actor.org_path:
        raise Unprocessable("you cannot move your own organisation", code="own_org")
    parent = await _get_row(conn, parent_id, lock=True)
    actor.ensure_administers(parent["path"] if parent else None, "parent organisation")
    assert parent is not None
    if brand_of(parent["path"]) != brand_of(row["path"]):
        raise Unprocessable("an organisation cannot move to another brand", code="bad_hierarchy")
    await _ensure_not_stronger(conn, actor, row["path"])
    if row["parent_id"] == parent_id:  # where it is already: no move, no row (a probe)
        return await get_org(conn, None, org_id)
    if parent["path"].startswith(row["path"]):
        raise Unprocessable("an organisation cannot move below itself", code="cycle")
    if row["kind"] not in CHILD_KINDS[parent["kind"]]:
        raise Unprocessable(
            f"a {row['kind']} cannot be placed under a {parent['kind']}", code="bad_hierarchy"
        )
    old_parent_path = row["path"][: row["path"].rstrip("/").rfind("/") + 1]
    if not (await path_live(conn, parent["path"]) and await path_live(conn, old_parent_path)):
        # a move is no activation (a probe: out of a deactivated agent, its users signed in
        # again without /activate and its stronger-account check; into one, they were turned
        # off with no deactivation recorded)
        raise Unprocessable(
            "the old or the new parent organisation is inactive: activate it first",
            code="parent_inactive",
        )
    before = await get_org(conn, None, org_id)
    old_path = row["path"]
    new_path = f"{parent['path']}{org_id}/"
    await _ensure_role_names_apart(conn, old_path, parent["path"])
    await conn.execute(
        "UPDATE orgs SET path = %s || substr(path, %s), "
        "parent_id = CASE WHEN id = %s THEN %s ELSE parent_id END, updated_at = now() "
        "WHERE path LIKE %s",
        (new_path, len(old_path) + 1, org_id, parent_id, old_path + "%"),
    )
    dropped = await drop_roles_out_of_reach(conn, new_path)
    unsupervised = await _drop_supervisors_left_behind(conn, old_path, new_path)
    # a supervisor whose custom role holding field.supervise stayed behind supervises no more
    unsupervised += await drop_unfit_supervisors(conn, sorted({r["user_id"] for r in dropped}))
    after = await get_org(conn, None, org_id)
    await audit.record(
        conn,
        actor,
        "move",
        "org",
        org_id,
        before={"parent_id": before.parent_id},
        after={
            "parent_id": parent_id,
            "roles_dropped": dropped,
            "supervisors_dropped": unsupervised,
        },
        org_id=org_id,
    )
    return after


async def _drop_supervisors_left_behind(
    conn: Conn, old_path: str, new_path: str
) -> list[dict[str, int]]:
    """Clear the supervisor of each rep of the moved subtree (``new_path``, moved from
    ``old_path``) whose supervisor's organisation was above the rep's and no longer is: a field
    supervisor of the old agent kept reading, approving and returning the plans of a rep now of
    another agent (a probe). A supervision named across agents by the brand (the supervisor
    never above the rep) stays, as does one within the subtree or from above both places."""
    rows = await (
        await conn.execute(
            """UPDATE users u SET supervisor_id = NULL, updated_at = now()
                FROM orgs ro, users s, orgs so
                WHERE ro.id = u.org_id AND ro.path LIKE %(new)s || '%%'
                  AND s.id = u.supervisor_id AND so.id = s.org_id
                  AND so.path NOT LIKE %(new)s || '%%'
                  AND %(old)s || substr(ro.path, %(cut)s) LIKE so.path || '%%'
                  AND ro.path NOT LIKE so.path || '%%'
                RETURNING u.id AS user_id, s.id AS supervisor_id""",
            {"new": new_path, "old": old_path, "cut": len(new_path) + 1},
        )
    ).fetchall()
    return sorted((dict(r) for r in rows), key=lambda r: r["user_id"])


async def path_live(conn: Conn, path: str) -> bool:
    """Every organisation of ``path`` (an organisation and those above it) is active."""
    row = await (
        await conn.execute(
            "SELECT NOT EXISTS (SELECT 1 FROM orgs WHERE status <> 'active' AND id = "
            "ANY(string_to_array(trim(both '/' FROM %s), '/')::bigint[])) AS live",
            (path,),
        )
    ).fetchone()
    assert row is not None  # NOT EXISTS has one row
    return bool(row["live"])


async def _ensure_role_names_apart(conn: Conn, subtree: str, above: str) -> None:
    """409 ``duplicate_role`` when a custom role of the moving ``subtree`` has the name of one
    of the organisations it moves under (``above``: the new parent's path): a role name means
    one role along a line (``app.users.service.create_role``; review R5: a move brought two)."""
    rows = await (
        await conn.execute(
            """SELECT DISTINCT r.name FROM roles r JOIN orgs o ON o.id = r.org_id
                WHERE o.path LIKE %(subtree)s || '%%'
                  AND r.name IN (SELECT a.name FROM roles a JOIN orgs p ON p.id = a.org_id
                                  WHERE %(above)s LIKE p.path || '%%')
                ORDER BY r.name""",
            {"subtree": subtree, "above": above},
        )
    ).fetchall()
    if rows:
        names = [row["name"] for row in rows]
        raise Conflict(
            "roles of the organisation's subtree have the names of roles above its new place",
            code="duplicate_role",
            details={"roles": names},
        )


async def drop_roles_out_of_reach(
    conn: Conn, subtree: str, user_id: int | None = None
) -> list[dict[str, Any]]:
    """Take from the users of ``subtree`` (a path), or from one of them, the custom roles of
    organisations no longer above theirs (a user or an organisation moved): those roles'
    admins no longer administer them, yet an edit of such a role would change their
    permissions. The roles taken: ``[{"user_id", "role"}]``."""
    rows = await (
        await conn.execute(
            """DELETE FROM user_roles ur USING users u, orgs uo, roles r, orgs ro
                WHERE u.id = ur.user_id AND uo.id = u.org_id AND uo.path LIKE %s
                  AND (%s::bigint IS NULL OR u.id = %s)
                  AND r.id = ur.role_id AND ro.id = r.org_id
                  AND left(uo.path, length(ro.path)) <> ro.path
            RETURNING ur.user_id, r.name AS role""",
            (subtree + "%", user_id, user_id),
        )
    ).fetchall()
    return [dict(r) for r in rows]


async def drop_unfit_supervisors(
    conn: Conn, user_ids: list[int], *, of_reps: bool = False
) -> list[dict[str, int]]:
    """Clear the supervisor of each live rep (active, of an active organisation line) whose
    supervisor can no longer supervise — its roles without ``field.supervise`` (a role change,
    a custom role edited, a role dropped by a move), its account inactive or its organisation's
    line deactivated — as ``PUT /field/reps/{id}/supervisor`` would refuse to name it: the reps
    supervised by ``user_ids``, or (``of_reps``) the reps ``user_ids`` themselves, as they come
    back (a rep or its organisation reactivated after its supervisor was demoted). Left named,
    it stayed the plans' ``supervisor_id``, the one user who may decide them, while it could
    not (a probe: a submitted plan stuck with a demoted supervisor); cleared, the rep has none
    until an administrator names one, who then decides its plans. A rep that is not live keeps
    its supervisor (an agent deactivated with both: reactivated, both as before). Called under
    the brand's role-name lock (``Lock.ROLE_NAMES``), in the change's transaction; answers
    ``{user_id, supervisor_id}`` per rep cleared, for the change's audit row
    (``supervisors_dropped``, as a move's)."""
    which = "u.id" if of_reps else "s.id"
    rows = await (
        await conn.execute(
            f"""UPDATE users u SET supervisor_id = NULL, updated_at = now()
                  FROM users s, orgs so, orgs ro
                 WHERE s.id = u.supervisor_id AND {which} = ANY(%s)
                   AND so.id = s.org_id AND ro.id = u.org_id
                   AND u.status = 'active' AND {org_status("ro")} = 'active'
                   AND (s.status <> 'active' OR {org_status("so")} <> 'active' OR NOT EXISTS (
                        SELECT 1 FROM user_roles ur JOIN roles r ON r.id = ur.role_id
                         WHERE ur.user_id = s.id AND 'field.supervise' = ANY(r.permissions)))
             RETURNING u.id AS user_id, s.id AS supervisor_id""",
            (user_ids,),
        )
    ).fetchall()
    return sorted((dict(r) for r in rows), key=lambda r: r["user_id"])
