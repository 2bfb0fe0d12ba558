"""HTTP routes of the catalogue."""

from __future__ import annotations

from litestar import Controller, delete, get, patch, post

from app.auth.principal import Principal
from app.catalog import service
from app.catalog.schemas import (
    CategoryIn,
    CategoryOut,
    CategoryPatch,
    ProductIn,
    ProductOut,
    ProductPatch,
)
from app.db import Conn
from app.paging import Page, PageNo, PerPage


class CategoryController(Controller):
    path = "/categories"

    @post("/")
    async def create(self, data: CategoryIn, conn: Conn, principal: Principal) -> CategoryOut:
        return await service.create_category(conn, principal, data)

    @get("/")
    async def list_categories(
        self, conn: Conn, principal: Principal, page: PageNo = 1, per_page: PerPage = 50
    ) -> Page[CategoryOut]:
        """The categories of the caller's brand (of any of its organisations), in display order."""
        return await service.list_categories(conn, principal, page, per_page)

    @patch("/{category_id:int}")
    async def update(
        self, category_id: int, data: CategoryPatch, conn: Conn, principal: Principal
    ) -> CategoryOut:
        return await service.update_category(conn, principal, category_id, data)

    @delete("/{category_id:int}")
    async def remove(self, category_id: int, conn: Conn, principal: Principal) -> None:
        await service.delete_category(conn, principal, category_id)


class ProductController(Controller):
    path = "/products"

    @post("/")
    async def create(self, data: ProductIn, conn: Conn, principal: Principal) -> ProductOut:
        """Create a product; a GTIN-8/12/13/14 is check-digit validated and stored as GTIN-14
        (422 ``gtin_of_other_brand`` under another brand's GS1 company prefix)."""
        return await service.create_product(conn, principal, data)

    @get("/")
    async def list_products(
        self,
        conn: Conn,
        principal: Principal,
        category_id: int | None = None,
        q: str | None = None,
        published: bool | None = None,
        product_type: str | None = None,
        gtin: str | None = None,
        page: PageNo = 1,
        per_page: PerPage = 50,
    ) -> Page[ProductOut]:
        return await service.list_products(
            conn,
            principal,
            category_id=category_id,
            q=q,
            published=published,
            product_type=product_type,
            gtin=gtin,
            page=page,
            per_page=per_page,
        )

    @get("/{product_id:int}")
    async def get_one(self, product_id: int, conn: Conn, principal: Principal) -> ProductOut:
        return await service.get_product(conn, principal, product_id)

    @patch("/{product_id:int}")
    async def update(
        self, product_id: int, data: ProductPatch, conn: Conn, principal: Principal
    ) -> ProductOut:
        return await service.update_product(conn, principal, product_id, data)

    @delete("/{product_id:int}")
    async def remove(self, product_id: int, conn: Conn, principal: Principal) -> None:
        await service.delete_product(conn, principal, product_id)
