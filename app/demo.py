"""Demo data: a brand with a factory, agents, a distributor, stores, products and a user per role.

Loading is idempotent: organisations are matched by ERP code, users by username, catalogue
entries by name / product number, so running it twice changes nothing.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, NamedTuple

from app.catalog.schemas import CategoryIn, ProductIn
from app.catalog.service import create_category, create_product
from app.codes.scheme import Scheme, gs1_check_digit
from app.config import Settings
from app.db import Conn
from app.orgs.schemas import OrgIn
from app.orgs.service import create_org
from app.users.schemas import UserIn
from app.users.service import create_user, sync_builtin_roles

DEMO_PASSWORD = "tracecode-demo"

# (erp_code, parent erp_code, kind, name, province, province name, city, city name)
ORGS: list[tuple[str, str | None, str, str, str, str, str, str]] = [
    ("BRAND-LUMI", None, "brand", "Lumière Cosmetics 丽美化妆品", "310000", "上海市", "310100", "上海市"),
    ("FACTORY-SZ", "BRAND-LUMI", "factory", "Suzhou Factory 苏州工厂", "320000", "江苏省", "320500", "苏州市"),
    ("WH-SZ-01", "FACTORY-SZ", "warehouse", "Factory Warehouse 成品仓", "320000", "江苏省", "320500", "苏州市"),
    ("PRINTER-SH", "BRAND-LUMI", "printer", "Shanghai Secure Print 上海印务", "310000", "上海市", "310100", "上海市"),
    ("AGENT-ZJ", "BRAND-LUMI", "agent", "Zhejiang Agent 浙江代理", "330000", "浙江省", "330100", "杭州市"),
    ("AGENT-GD", "BRAND-LUMI", "agent", "Guangdong Agent 广东代理", "440000", "广东省", "440100", "广州市"),
    ("DIST-NB", "AGENT-ZJ", "distributor", "Ningbo Distributor 宁波经销商", "330000", "浙江省", "330200", "宁波市"),
    ("STORE-HZ-01", "AGENT-ZJ", "store", "Hangzhou West Lake Store 杭州西湖店", "330000", "浙江省", "330100", "杭州市"),
    ("STORE-NB-01", "DIST-NB", "store", "Ningbo Tianyi Store 宁波天一店", "330000", "浙江省", "330200", "宁波市"),
    ("STORE-GZ-01", "AGENT-GD", "store", "Guangzhou Tianhe Store 广州天河店", "440000", "广东省", "440100", "广州市"),
    ("STORE-SZ-01", "AGENT-GD", "store", "Shenzhen Futian Store 深圳福田店", "440000", "广东省", "440300", "深圳市"),
]  # fmt: skip

# (username, org erp_code, roles, display name)
USERS: list[tuple[str, str, list[str], str]] = [
    ("platform", "BRAND-LUMI", ["platform_admin"], "Platform operator"),
    ("admin", "BRAND-LUMI", ["brand_admin"], "Brand administrator"),
    ("analyst", "BRAND-LUMI", ["analyst"], "Brand analyst"),
    ("inspector", "BRAND-LUMI", ["inspector"], "Market inspector"),
    ("partner", "BRAND-LUMI", ["partner"], "ERP integration user"),
    ("marketer", "BRAND-LUMI", ["marketing"], "Marketing (SMS campaigns)"),
    ("service", "BRAND-LUMI", ["member_service"], "Member service (customer service)"),
    ("eshop", "BRAND-LUMI", ["voucher_service"], "E-shop customer service (vouchers)"),
    ("planner", "FACTORY-SZ", ["planner"], "Production planner"),
    ("operator", "FACTORY-SZ", ["line_operator"], "Packing-line operator"),
    ("approver", "FACTORY-SZ", ["approver"], "Factory approver"),
    ("factory_admin", "FACTORY-SZ", ["org_admin"], "Factory administrator"),
    ("clerk", "WH-SZ-01", ["warehouse_clerk"], "Factory warehouse clerk"),
    ("printer", "PRINTER-SH", ["printer"], "Printer operator"),
    ("agent_admin", "AGENT-ZJ", ["org_admin"], "Zhejiang agent administrator"),
    ("agent_clerk", "AGENT-ZJ", ["warehouse_clerk"], "Zhejiang agent warehouse clerk"),
    ("fieldrep", "AGENT-ZJ", ["field_rep"], "Zhejiang field representative"),
    ("fieldrep2", "AGENT-ZJ", ["field_rep"], "Zhejiang field representative 2"),
    ("fieldsup", "AGENT-ZJ", ["field_supervisor"], "Zhejiang field supervisor"),
    ("gd_fieldrep", "AGENT-GD", ["field_rep"], "Guangdong field representative"),
    ("gd_admin", "AGENT-GD", ["org_admin"], "Guangdong agent administrator"),
    ("store_clerk", "STORE-HZ-01", ["store_clerk"], "Hangzhou store clerk"),
    ("store_manager", "STORE-HZ-01", ["org_admin"], "Hangzhou store manager"),
    ("gz_clerk", "STORE-GZ-01", ["store_clerk"], "Guangzhou store clerk"),
    ("finance", "BRAND-LUMI", ["finance"], "Finance (store rebate statements)"),
]

# Field force (app/field/): who supervises which rep, and where the stores are (WGS 84).
SUPERVISORS = {"fieldrep": "fieldsup", "fieldrep2": "fieldsup"}
STORE_POSITIONS = {
    "STORE-HZ-01": (30.2590, 120.1550),
    "STORE-NB-01": (29.8700, 121.5530),
    "STORE-GZ-01": (23.1322, 113.3270),
    "STORE-SZ-01": (22.5410, 114.0550),
}

CATEGORIES = [("护肤 Skincare", 1), ("彩妆 Makeup", 2)]

# (product_no, category, name, spec, type, gtin)
PRODUCTS = [
    ("LM-HY-50", "护肤 Skincare", "Hydrating Serum 玻尿酸精华", "50 ml", "serum", "6901234000016"),
    ("LM-SC-30", "护肤 Skincare", "Sun Cream SPF50 防晒霜", "30 ml", "sunscreen", "6901234000023"),
    ("LM-LS-01", "彩妆 Makeup", "Velvet Lipstick 丝绒口红", "3.5 g", "lipstick", "6901234000030"),
]


async def _id_by(conn: Conn, table: str, column: str, value: Any) -> int | None:
    row = await (
        await conn.execute(f"SELECT id FROM {table} WHERE {column} = %s", (value,))
    ).fetchone()
    return row["id"] if row else None


async def _product_id(conn: Conn, brand_id: int, number: str) -> int | None:
    """The demo brand's product of that number (numbers are per brand: another brand may use
    the demo's too — a probe: the demo batch was asked for with that brand's product)."""
    row = await (
        await conn.execute(
            "SELECT id FROM products WHERE org_id = %s AND product_no = %s", (brand_id, number)
        )
    ).fetchone()
    return row["id"] if row else None


async def _org_id(conn: Conn, erp_code: str, brand_id: int | None) -> int | None:
    """The demo organisation of that code: the brand among brands, the others in its brand
    (ERP codes are unique per brand, migration 0045)."""
    if brand_id is None:
        found = await conn.execute(
            "SELECT id FROM orgs WHERE erp_code = %s AND kind = 'brand'", (erp_code,)
        )
    else:
        found = await conn.execute(
            "SELECT id FROM orgs WHERE erp_code = %s AND path LIKE %s",
            (erp_code, f"/{brand_id}/%"),
        )
    row = await found.fetchone()
    return row["id"] if row else None


async def load_demo(conn: Conn) -> dict[str, int]:
    """Create whatever of the demo data is missing; return the org ids by ERP code."""
    await sync_builtin_roles(conn)
    org_ids: dict[str, int] = {}
    for erp, parent, kind, name, prov, prov_name, city, city_name in ORGS:
        existing = await _org_id(conn, erp, org_ids[ORGS[0][0]] if parent else None)
        if existing is None:
            created = await create_org(
                conn,
                None,
                OrgIn(
                    kind=kind,  # type: ignore[arg-type]
                    name=name,
                    erp_code=erp,
                    parent_id=org_ids[parent] if parent else None,
                    province_code=prov,
                    province_name=prov_name,
                    city_code=city,
                    city_name=city_name,
                ),
            )
            existing = created.id
        org_ids[erp] = existing
    for username, org, roles, display in USERS:
        if await _id_by(conn, "users", "username", username) is None:
            await create_user(
                conn,
                None,
                UserIn(
                    org_id=org_ids[org],
                    username=username,
                    password=DEMO_PASSWORD,
                    roles=roles,
                    display_name=display,
                ),
            )
    await _field_setup(conn, org_ids)
    admin = await _system_brand_admin(conn, org_ids["BRAND-LUMI"])
    categories: dict[str, int] = {}
    for name, order in CATEGORIES:
        row = await (
            await conn.execute(
                "SELECT id FROM categories WHERE org_id = %s AND name = %s",
                (org_ids["BRAND-LUMI"], name),
            )
        ).fetchone()
        categories[name] = (
            row["id"]
            if row
            else (await create_category(conn, admin, CategoryIn(name=name, display_order=order))).id
        )
    for order, (number, category, name, spec, kind, gtin) in enumerate(PRODUCTS):
        if await _product_id(conn, org_ids["BRAND-LUMI"], number) is None:
            await create_product(
                conn,
                admin,
                ProductIn(
                    name=name,
                    product_no=number,
                    category_id=categories[category],
                    spec=spec,
                    product_type=kind,
                    gtin=gtin,
                    display_order=order,
                    published=True,
                ),
            )
    return org_ids


async def _field_setup(conn: Conn, org_ids: dict[str, int]) -> None:
    """The demo reps' supervisor and the demo stores' positions, where none is set yet."""
    for rep, boss in SUPERVISORS.items():
        await conn.execute(
            "UPDATE users SET supervisor_id = (SELECT id FROM users WHERE username = %s) "
            "WHERE username = %s AND supervisor_id IS NULL",
            (boss, rep),
        )
    for erp, (lat, lng) in STORE_POSITIONS.items():
        await conn.execute(
            "UPDATE orgs SET latitude = %s, longitude = %s WHERE id = %s AND latitude IS NULL",
            (lat, lng, org_ids[erp]),
        )


# The demo's unit batch: issued once (a batch is one row, whatever its size); units are activated
# on the demo line on demand, the first ones packed ten to an inner case. The even-numbered inner
# cases (units 0-9, 20-29, ..., 980-989) go through the channel to a store: into the factory
# warehouse, to the Zhejiang agent, on to its Hangzhou store, each leg shipped and received with
# the logistics documents. The other units never leave the factory, so a consumer checking one
# is told it was never shipped (suspicious): the demo shows both answers.
DEMO_BATCH_SIZE = 1_000_000
DEMO_PACKED = 1_000
DEMO_LINE = "DEMO-1"
DEMO_STORE = "STORE-HZ-01"
_CHUNK = 10_000


class DemoCode(NamedTuple):
    serial: str
    pin: str
    url: str
    story: str  # "shipped:STORE-HZ-01" (genuine on the first check) or "never_shipped"


def demo_shipped(index: int) -> bool:
    """Whether demo unit ``index`` is shipped to the demo store (its inner case's number is even)."""
    return index < DEMO_PACKED and (index // 10) % 2 == 0


async def _user(conn: Conn, username: str) -> Any:
    from app.auth.service import load_user

    user_id = await _id_by(conn, "users", "username", username)
    assert user_id is not None
    return await load_user(conn, user_id)


def _sscc(first_ref: int, case: int) -> str:
    body = f"{first_ref + case:017d}"
    return body + str(gs1_check_digit(body))


async def demo_codes(conn: Conn, scheme: Scheme, settings: Settings, count: int) -> list[DemoCode]:
    """``count`` activated demo units (serial, PIN, URL, story), activating more when needed.

    Idempotent: the batch and case codes are created once (request keys), activation scans
    carry fixed client event ids, and only cases still at the factory are shipped, so running it
    again only adds what is missing.
    """
    from app.codes.cases import create_case_batch
    from app.codes.schemas import BatchIn, CaseBatchIn
    from app.codes.service import create_batch
    from app.packing import lines, scans
    from app.packing.schemas import LineContextIn, ScanIn, ScanUploadIn

    count = max(0, min(count, DEMO_BATCH_SIZE))
    org_ids = await load_demo(conn)
    planner, operator = await _user(conn, "planner"), await _user(conn, "operator")
    product_id = await _product_id(conn, org_ids["BRAND-LUMI"], PRODUCTS[0][0])
    assert product_id is not None
    batch, _ = await create_batch(
        conn,
        planner,
        settings,
        BatchIn(
            size=DEMO_BATCH_SIZE,
            printer_id=org_ids["PRINTER-SH"],
            product_id=product_id,
            note="demo",
            request_key="demo-units",
        ),
    )
    cases, _ = await create_case_batch(
        conn,
        planner,
        settings,
        CaseBatchIn(
            level="inner",
            size=DEMO_PACKED // 10,
            printer_id=org_ids["PRINTER-SH"],
            request_key="demo-inner",
        ),
    )
    await lines.set_context(
        conn,
        operator,
        DEMO_LINE,
        LineContextIn(product_id=product_id, lot="DEMO-LOT-1", production_date=date(2026, 11, 1)),
    )
    done = await (
        await conn.execute(
            "SELECT count(*) AS n FROM unit_state WHERE code >= %s AND code < %s",
            (batch.batch_no << 32, (batch.batch_no << 32) + max(count, DEMO_PACKED)),
        )
    ).fetchone()
    assert done is not None
    at = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
    first_ref = int(cases.first_sscc[:-1])
    for start in range(0, max(count, DEMO_PACKED), _CHUNK):
        if done["n"] >= max(count, DEMO_PACKED):
            break
        items: list[ScanIn] = []
        for index in range(start, min(start + _CHUNK, max(count, DEMO_PACKED))):
            serial = scheme.serial(batch.batch_no, index, batch.key_version)
            items.append(ScanIn(id=f"demo-u{index}", code=serial, at=at))
            if index < DEMO_PACKED and index % 10 == 9:
                items.append(
                    ScanIn(id=f"demo-c{index // 10}", code=_sscc(first_ref, index // 10), at=at)
                )
        await scans.upload(conn, operator, scheme, DEMO_LINE, ScanUploadIn(scans=items))
    await _ship_to_store(
        conn, scheme, org_ids, [_sscc(first_ref, c) for c in range(0, DEMO_PACKED // 10, 2)]
    )
    base = settings.public_url  # TRACECODE_PUBLIC_SCHEME, as printer files (a probe: http)
    out = []
    for index in range(count):
        serial = scheme.serial(batch.batch_no, index, batch.key_version)
        story = f"shipped:{DEMO_STORE}" if demo_shipped(index) else "never_shipped"
        out.append(DemoCode(serial, scheme.pin(serial), f"{base}/c/{serial}", story))
    return out


async def _ship_to_store(
    conn: Conn, scheme: Scheme, org_ids: dict[str, int], ssccs: list[str]
) -> None:
    """Move the cases still at the factory to the demo store, as the people of the channel do:
    the factory warehouse takes them in and ships them to the agent, the agent receives them and
    ships them on to its store, the store receives them."""
    from app.logistics import documents
    from app.logistics.schemas import CodesIn, DocumentIn

    rows = await (
        await conn.execute(
            "SELECT sscc FROM case_state WHERE sscc = ANY(%s) AND holder_org_id = %s "
            "AND transit_to IS NULL ORDER BY sscc",
            ([int(s) for s in ssccs], org_ids["FACTORY-SZ"]),
        )
    ).fetchall()
    todo = [f"{row['sscc']:018d}" for row in rows]
    if not todo:
        return

    async def move(username: str, data: DocumentIn, scan: bool = True) -> int:
        actor = await _user(conn, username)
        doc = await documents.create_document(conn, actor, data)
        if scan:
            await documents.add_codes(conn, actor, scheme, doc.id, CodesIn(codes=todo))  # type: ignore[arg-type]
        await documents.confirm(conn, actor, scheme, doc.id)
        return doc.id

    note = "demo: shipped to a store"
    await move("clerk", DocumentIn(kind="factory_inbound", note=note))
    leg = await move(
        "clerk", DocumentIn(kind="outbound", counterparty_id=org_ids["AGENT-ZJ"], note=note)
    )
    await move("agent_clerk", DocumentIn(kind="inbound", shipment_id=leg, note=note), scan=False)
    leg = await move(
        "agent_clerk", DocumentIn(kind="outbound", counterparty_id=org_ids[DEMO_STORE], note=note)
    )
    await move("store_clerk", DocumentIn(kind="inbound", shipment_id=leg, note=note), scan=False)


async def demo_samples(conn: Conn, scheme: Scheme, settings: Settings) -> list[DemoCode]:
    """What `tracecode run` prints: two units in the store and one that never left the factory."""
    codes = await demo_codes(conn, scheme, settings, 20)
    shipped = [c for c in codes if c.story != "never_shipped"]
    return [*shipped[:2], *[c for c in codes if c.story == "never_shipped"][:1]]


def describe_codes(codes: list[DemoCode]) -> str:
    """One line per unit: URL, PIN and what a consumer is told on the first check."""
    lines = []
    for code in codes:
        if code.story == "never_shipped":
            told = "never shipped: answers suspicious (never left the factory)"
        else:
            told = f"in store {code.story.split(':', 1)[1]}: answers genuine"
        lines.append(f"  {code.url}  PIN {code.pin}  {told}")
    return "\n".join(lines)


async def _system_brand_admin(conn: Conn, brand_id: int) -> Any:
    from app.auth.service import load_user

    user_id = await _id_by(conn, "users", "username", "admin")
    assert user_id is not None
    return await load_user(conn, user_id)


def describe() -> str:
    lines = [f"Demo logins (password for all: {DEMO_PASSWORD}):"]
    for username, org, roles, display in USERS:
        lines.append(f"  {username:<14} {','.join(roles):<16} {org:<12} {display}")
    return "\n".join(lines)
