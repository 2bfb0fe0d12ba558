"""Paging of list endpoints: ``?page=&per_page=`` in, ``{items, page, per_page, total}`` out."""

from __future__ import annotations

from typing import Annotated, Generic, TypeVar

import msgspec
from litestar.params import Parameter

T = TypeVar("T")

PageNo = Annotated[int, Parameter(ge=1, le=1_000_000, description="page number, from 1")]
PerPage = Annotated[int, Parameter(ge=1, le=200, description="items per page (max 200)")]


class Page(msgspec.Struct, Generic[T], frozen=True):
    items: list[T]
    page: int
    per_page: int
    total: int


def limit_offset(page: int, per_page: int) -> tuple[int, int]:
    return per_page, (page - 1) * per_page
