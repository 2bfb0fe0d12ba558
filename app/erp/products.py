"""Products from the ERP (``ProductRow``), by ERP code within the brand, through the catalogue
service.

New products belong to the caller's organisation (the brand's catalogue: ``catalog.write`` is
held at brand level). A product without an ERP code but with the row's product number, owned by
the caller's organisation, is adopted: its ERP code is set and the row's other fields applied —
the first sync of a catalogue that was kept by hand. ``category`` names one of the owner's
categories (``unknown_category`` otherwise); a GTIN-8/12/13/14 is compared and stored as GTIN-14.

No two products share a GTIN, nor a product number within their owner, so a row taking a number
or a GTIN that another row of the file takes from its product is applied after that row,
whatever their order in the file (``_freed_first``; a probe: a new product listed before the
renumbered one whose old number it takes was ``duplicate_product_no`` on the first import and
created on the second). Rows that would take each other's numbers or GTINs in a ring (a swap:
no order frees a value for the first of them) are rejected, each ``product_no_cycle`` or
``gtin_cycle``, each time the file is sent (its dry run too): a swap takes two files, the first
giving one of the products a value no product has.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app import audit
from app._core import Gs1Error, normalize_gtin
from app.auth.principal import Principal
from app.catalog.schemas import ProductIn, ProductPatch
from app.catalog.service import create_product, own_media_paths, update_product
from app.db import Conn
from app.erp.masterdata import Importer, attempt, differences, each_row, given, values_of
from app.erp.rows import Item, Spec
from app.erp.schemas import ProductRow

SPEC = Spec(
    entity="products",
    row_type=ProductRow,
    text_columns=frozenset(
        {"product_no", "name", "category", "spec", "product_type", "colour_no", "efficacy"}
        | {"barcode"}
    ),
    unique=("erp_code", "product_no", "gtin"),
    composed=frozenset({"product_no"}),  # kept in NFC (ProductRow, migration 0137): compared so
    gtins=frozenset({"gtin"}),
    max_rows=25_000,  # ~2 ms a row (bench/RESULTS.md): about a minute, the import lock held
)
_FIELDS = (
    "product_no",
    "name",
    "spec",
    "product_type",
    "barcode",
    "gtin",
    "image_url",
    "colour_no",
    "efficacy",
    "video_url",
    "display_order",
    "published",
)
_NOT_NULL_TEXT = ("spec", "product_type")  # an empty cell is ""
_UNIQUE = ("product_no", "gtin")  # no two products share one (a number: within its owner)
_COLUMN = {"category_id": "category"}  # a field as the file names it (``changed``)
_COLUMNS = """p.id, p.org_id, p.category_id, p.erp_code, p.product_no, p.name, p.spec,
    p.product_type, p.barcode, p.gtin, p.image_url, p.colour_no, p.efficacy, p.video_url,
    p.display_order, p.published, o.path"""


@dataclass(slots=True)
class _Plan:
    """A good row's product (``current``; ``None``: a new one, of ``owner``), whether the row
    adopts it, and the row's values as the catalogue stores them."""

    item: Item
    current: dict[str, Any] | None
    adopting: bool
    owner: int
    values: dict[str, Any]

    def moves(self, column: str) -> tuple[Any, Any] | None:
        """The product's value of a unique ``column`` and the row's new one, when they differ."""
        old = self.current[column] if self.current is not None else None
        if column not in self.values or self.values[column] == old:
            return None
        return old, self.values[column]

    def key(self, column: str, value: str) -> tuple[str, int, str]:
        """What no two products share: a GTIN, a product number within its owner."""
        return column, self.owner if column == "product_no" else 0, value


async def apply(conn: Conn, actor: Principal, items: list[Item], dry_run: bool) -> None:
    """Apply the good rows: update (or adopt) the product the ERP code names, else create one;
    a row taking a number or GTIN another row gives up after that row (``_freed_first``)."""
    good = [item for item in items if item.ok]
    brand, owner = actor.brand_id, actor.org_id
    codes = {i.data.erp_code for i in good}
    known = await _by(conn, "erp_code", "p.erp_brand_id = %s", brand, codes)
    numbers = {i.data.product_no for i in good if given(i.data, "product_no")}
    unlinked = await _by(conn, "product_no", "p.org_id = %s AND p.erp_code IS NULL", owner, numbers)
    categories = await _categories(conn, {owner} | {row["org_id"] for row in known.values()})
    plans = []
    for item in good:
        data: ProductRow = item.data
        current, adopting = known.get(data.erp_code), False
        if current is None and isinstance(data.product_no, str) and data.product_no in unlinked:
            current, adopting = unlinked[data.product_no], True
        if current is not None and not actor.sees(current["path"]):
            message = f"ERP code {data.erp_code} belongs to a product outside your organisation"
            item.fail("erp_code", "erp_code_taken", message)
            continue
        held_by = current["org_id"] if current else owner
        values = _values(item, held_by, categories)
        await own_media_paths(conn, values)  # a medium's absolute URL compared as stored
        if item.ok:
            plans.append(_Plan(item, current, adopting, held_by, values))
    ordered = _freed_first(plans)
    by_row = {plan.item.row: plan for plan in ordered}

    async def step(item: Item) -> None:
        plan = by_row[item.row]
        if plan.current is None:
            await _create(conn, actor, item, plan.values)
        else:
            await _update(conn, actor, item, plan.current, plan.values, plan.adopting)

    await each_row(conn, [plan.item for plan in ordered], step)


def _freed_first(plans: list[_Plan]) -> list[_Plan]:
    """The rows in file order, but each row taking a product number or GTIN that another row
    takes from its product after that row (and so on, along chains). Rows in a ring of such
    rows (a swap) are rejected, each naming the column it waits on the ring by."""
    frees: dict[tuple[str, int, str], int] = {}
    for n, plan in enumerate(plans):
        for column in _UNIQUE:
            moved = plan.moves(column)
            if moved is not None and moved[0] is not None:
                frees[plan.key(column, moved[0])] = n
    waits: list[list[tuple[int, str]]] = []  # the rows each row waits for, and by which column
    for plan in plans:
        edges = []
        for column in _UNIQUE:
            moved = plan.moves(column)
            if moved is not None and moved[1] is not None:
                other = frees.get(plan.key(column, moved[1]))
                if other is not None:
                    edges.append((other, column))
        waits.append(edges)
    ordered = []
    for ring in _components([[other for other, _ in edges] for edges in waits]):
        if len(ring) == 1:
            ordered.append(plans[ring[0]])
            continue
        codes = ", ".join(sorted(str(plans[n].item.erp_code) for n in ring))
        for n in sorted(ring):
            for other, column in waits[n]:
                if other in ring:
                    label = "product number" if column == "product_no" else "GTIN"
                    value, taken_from = plans[n].values[column], plans[other].item.erp_code
                    message = (
                        f"{label} {value} is {taken_from}'s until its row runs, and that row "
                        f"waits for this one's (a ring of rows of this file: {codes}): give one "
                        f"of them a {label} no product has, in a file of its own, first"
                    )
                    plans[n].item.fail(column, f"{column}_cycle", message)
    return ordered


def _components(waits: list[list[int]]) -> list[list[int]]:
    """The strongly connected components of the graph (``waits[n]``: the nodes ``n`` waits
    for), each after those it waits for, in the nodes' order otherwise (Tarjan, iterative: a
    chain may be as long as the file)."""
    index = [-1] * len(waits)  # -1: not reached yet
    low = [0] * len(waits)
    stack: list[int] = []
    on_stack = [False] * len(waits)
    found: list[list[int]] = []
    counter = 0
    for root in range(len(waits)):
        if index[root] >= 0:
            continue
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack[root] = True
        path = [(root, iter(waits[root]))]
        while path:
            node, edges = path[-1]
            for other in edges:
                if index[other] < 0:
                    index[other] = low[other] = counter
                    counter += 1
                    stack.append(other)
                    on_stack[other] = True
                    path.append((other, iter(waits[other])))
                    break
                if on_stack[other]:
                    low[node] = min(low[node], index[other])
            else:
                path.pop()
                if path:
                    parent = path[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack[member] = False
                        component.append(member)
                        if member == node:
                            break
                    found.append(component)
    return found


async def _by(
    conn: Conn, column: str, where: str, key: int, values: set[str]
) -> dict[str, dict[str, Any]]:
    """Products by ``column`` (one of ``values``) that match ``where`` (with ``key``)."""
    rows = await (
        await conn.execute(
            f"SELECT {_COLUMNS} FROM products p JOIN orgs o ON o.id = p.org_id "
            f"WHERE {where} AND p.{column} = ANY(%s)",
            (key, sorted(values)),
        )
    ).fetchall()
    return {row[column]: row for row in rows}


async def _categories(conn: Conn, owners: set[int]) -> dict[tuple[int, str], int]:
    rows = await (
        await conn.execute(
            "SELECT id, org_id, name FROM categories WHERE org_id = ANY(%s)", (sorted(owners),)
        )
    ).fetchall()
    return {(row["org_id"], row["name"]): row["id"] for row in rows}


def _values(item: Item, owner: int, categories: dict[tuple[int, str], int]) -> dict[str, Any]:
    """The row's fields as the catalogue stores them: GTIN-14, ``""`` for an empty spec or
    type, the category's id (``category_id``)."""
    data: ProductRow = item.data
    values = values_of(data, _FIELDS)
    for column in _NOT_NULL_TEXT:
        if column in values and values[column] is None:
            values[column] = ""
    if values.get("gtin") is not None:
        try:
            values["gtin"] = normalize_gtin(values["gtin"])
        except (Gs1Error, ValueError) as exc:
            item.fail("gtin", "invalid_gtin", f"gtin {data.gtin!r}: {exc}")
    if given(data, "category"):
        values["category_id"] = None
        if isinstance(data.category, str):
            found = categories.get((owner, data.category))
            if found is None:
                message = f"no category {data.category!r} in the product owner's catalogue"
                item.fail("category", "unknown_category", message)
            values["category_id"] = found
    return values


async def _link(conn: Conn, actor: Principal, product_id: int, erp_code: str) -> None:
    """Give a product its ERP code (audited)."""
    await conn.execute(
        "UPDATE products SET erp_brand_id = %s, erp_code = %s, updated_at = now() WHERE id = %s",
        (actor.brand_id, erp_code, product_id),
    )
    await audit.record(conn, actor, "erp_link", "product", product_id, after={"erp_code": erp_code})


async def _create(conn: Conn, actor: Principal, item: Item, values: dict[str, Any]) -> None:
    data: ProductRow = item.data
    for column in ("product_no", "name"):
        if values.get(column) is None:
            item.fail(column, "missing_value", f"{column} is required for a new product")
    if not item.ok:
        return

    async def work() -> int:
        out = await create_product(conn, actor, ProductIn(**values))
        await _link(conn, actor, out.id, data.erp_code)
        return out.id

    product_id = await attempt(conn, item, work)
    if product_id is not None:
        item.result, item.id = "created", product_id


async def _update(
    conn: Conn,
    actor: Principal,
    item: Item,
    current: dict[str, Any],
    values: dict[str, Any],
    adopting: bool,
) -> None:
    data: ProductRow = item.data
    changes = differences(values, current)
    item.id = current["id"]
    if not changes and not adopting:
        item.result = "unchanged"
        return

    async def work() -> bool:
        if adopting:
            await _link(conn, actor, current["id"], data.erp_code)
        if changes:
            await update_product(conn, actor, current["id"], ProductPatch(**changes))
        return True

    if await attempt(conn, item, work):
        item.result = "updated"
        item.changed = (["erp_code"] if adopting else []) + [_COLUMN.get(c, c) for c in changes]


IMPORTER = Importer(spec=SPEC, permission="catalog.write", apply=apply)
