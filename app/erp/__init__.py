"""ERP interface (SPEC I1, L1): master data — organisations, products, staff users — imported
by the ERP's code from CSV or JSON (``masterdata``), and the export of confirmed documents,
incremental by cursor (``export``).

``router`` is the domain's whole HTTP face; ``app.main`` mounts it. Its paths sit under the
prefixes of the records they touch: /orgs/import, /products/import, /users/import,
/documents/export.
"""

from litestar import Router

from app.erp.routes import export_documents, import_orgs, import_products, import_users

router = Router(
    path="",
    route_handlers=[import_orgs, import_products, import_users, export_documents],
    tags=["erp"],
)
