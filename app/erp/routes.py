"""HTTP routes of the ERP interface: master-data imports under /orgs, /products and /users, the
export of confirmed documents under /documents."""

from __future__ import annotations

import inspect
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, get, post
from litestar.openapi.spec import OpenAPI, OpenAPIMediaType, OpenAPIType, Reference, RequestBody
from litestar.openapi.spec import Schema as OpenAPISchema
from litestar.params import Parameter, QueryParameter

from app import tabular
from app.auth.principal import Principal
from app.config import Settings
from app.csvread import MAX_BYTES, MEDIA_TYPES, Encoding, declared_encoding, read_body
from app.db import Conn
from app.edge import media_of, require_json
from app.erp import export, masterdata, orgs, products, users
from app.erp.export import Direction
from app.erp.masterdata import Importer
from app.erp.rows import Format
from app.erp.schemas import ExportPage, MasterDataIn, MasterDataOut
from app.errors import UnsupportedMediaType
from app.logistics.schemas import DocKind

DryRun = Annotated[
    bool,
    QueryParameter(
        name="dry_run", description="check the file and answer what would happen; change nothing"
    ),
]
# each route's ``opt`` names its importer's permission: checked before the body
# (app.deps.caller_first; the request's connection reads it whole before the handler)
_IMPORT: dict[str, Any] = {"status_code": 200, "request_max_body_size": MAX_BYTES + 1024}
_IMPORT_DOC = """

The body is a CSV file (``Content-Type: text/csv``; UTF-8 with or without a BOM, or GB18030 as
Excel writes it on Chinese Windows — a declared ``charset`` is honoured: utf-8, or gb18030, gbk or
gb2312 read as GB18030; another is 415; a header row naming the columns, ``erp_code`` required) or
JSON (``application/json``: ``{"items": [{…}, …]}``, the same names as keys). Per row: good rows
are applied, bad rows are listed in ``errors`` (row, CSV line, column, stable code) and not
applied; ``?dry_run=true`` checks and rolls back. Importing the same file again changes nothing
(``unchanged``). A column left out leaves the field as it is; an empty cell clears an optional
field (and says nothing for one that is never empty)."""


async def _run(
    request: Request[Any, Any, Any],
    conn: Conn,
    principal: Principal,
    importer: Importer,
    dry_run: bool,
) -> MasterDataOut:
    """Check the permission and the media type (with its charset) before reading the body, then
    import it."""
    principal.require(importer.permission)
    content_type = request.headers.get("content-type", "")
    media = media_of(content_type)[0]
    fmt: Format
    encoding: Encoding | None = None
    if media == "application/json":
        require_json(content_type)  # in UTF-8: another charset is 415, as for every JSON body
        fmt = "json"
    elif media in MEDIA_TYPES:
        encoding = declared_encoding(content_type)  # UTF-8 or GB18030; another charset is 415
        fmt = "csv"
    else:
        raise UnsupportedMediaType(
            "send a CSV file (Content-Type: text/csv) or JSON (application/json) as the body",
            details={"accepted": ["application/json", *MEDIA_TYPES]},
        )
    raw = await read_body(request.stream())
    return await masterdata.run(conn, principal, importer, raw, fmt, dry_run, encoding)


@post("/orgs/import", **_IMPORT, opt={"permission": (orgs.IMPORTER.permission,)})
async def import_orgs(
    request: Request[Any, Any, Any], conn: Conn, principal: Principal, dry_run: DryRun = False
) -> MasterDataOut:
    """Import organisations (``orgs.write``) by ERP code: agents, distributors, stores … with
    their parent, region, address, contact and position. Columns: erp_code, kind, name,
    parent_erp_code, province_code, province_name, city_code, city_name, address, contact_name,
    contact_phone, latitude, longitude, status."""
    return await _run(request, conn, principal, orgs.IMPORTER, dry_run)


@post("/products/import", **_IMPORT, opt={"permission": (products.IMPORTER.permission,)})
async def import_products(
    request: Request[Any, Any, Any], conn: Conn, principal: Principal, dry_run: DryRun = False
) -> MasterDataOut:
    """Import products (``catalog.write``) by ERP code into the caller's catalogue. Columns:
    erp_code, product_no, name, category, spec, product_type, barcode, gtin, image_url, colour_no,
    efficacy, video_url, display_order, published."""
    return await _run(request, conn, principal, products.IMPORTER, dry_run)


@post("/users/import", **_IMPORT, opt={"permission": (users.IMPORTER.permission,)})
async def import_users(
    request: Request[Any, Any, Any], conn: Conn, principal: Principal, dry_run: DryRun = False
) -> MasterDataOut:
    """Import staff users (``users.write``) by ERP code. Columns: erp_code, username,
    org_erp_code, roles, display_name, phone, email, status. Never a password: a new user's
    one-time initial password is in this answer (``results[].initial_password``) and only here."""
    return await _run(request, conn, principal, users.IMPORTER, dry_run)


for _handler in (import_orgs, import_products, import_users):
    _handler.description = inspect.cleandoc(_handler.fn.__doc__ or "") + _IMPORT_DOC


@get("/documents/export", tags=["erp"])
async def export_documents(
    conn: Conn,
    principal: Principal,
    settings: Settings,
    cursor: Annotated[
        str | None, Parameter(max_length=200, description="next_cursor of the previous page")
    ] = None,
    limit: Annotated[int, Parameter(ge=1, le=1000, description="documents per page")] = 100,
    direction: Direction | None = None,
    kind: DocKind | None = None,
    fmt: Annotated[
        Literal["json", "csv"],
        QueryParameter(name="format", description="json, or csv (one row per document line)"),
    ] = "json",
) -> ExportPage:
    """Confirmed inbound and outbound documents for the ERP, oldest confirmation first, each
    exactly once across pages: ask again with ``cursor=next_cursor`` (JSON) or the
    ``X-Next-Cursor`` header (CSV; ``X-Has-More`` says whether more are ready now). Documents of
    the caller's subtree (its organisations or counterparties); API keys welcome."""
    page = await export.export_page(
        conn, principal, settings, cursor=cursor, limit=limit, direction=direction, kind=kind
    )
    if fmt == "json":
        return page
    chunks = tabular.csv_chunks(export.CSV_COLUMNS, tabular.one_batch(export.csv_rows(page.items)))
    download = tabular.download(chunks, "csv", export.filename())
    download.headers["X-Next-Cursor"] = page.next_cursor
    download.headers["X-Has-More"] = "true" if page.has_more else "false"
    return download  # type: ignore[return-value]


def document_imports(openapi: OpenAPI) -> None:
    """The request bodies of the three imports (read raw, so Litestar does not document them):
    a CSV file or ``MasterDataIn`` JSON."""
    refs, components = msgspec.json.schema_components(
        (MasterDataIn,), ref_template="#/components/schemas/{name}"
    )
    schemas: dict[str, Any] = openapi.components.schemas  # type: ignore[assignment]
    for name, schema in components.items():
        schemas.setdefault(name, schema)
    body = RequestBody(
        required=True,
        content={
            "text/csv": OpenAPIMediaType(
                schema=OpenAPISchema(type=OpenAPIType.STRING, description="the CSV file")
            ),
            "application/json": OpenAPIMediaType(schema=Reference(ref=refs[0]["$ref"])),
        },
    )
    paths = openapi.paths or {}
    for path in ("/orgs/import", "/products/import", "/users/import"):
        item = paths.get(path)
        if item is not None and item.post is not None:
            item.post.request_body = body
