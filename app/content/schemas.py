"""Shapes of the brand story (SPEC W1). Inputs are frozen and refuse unknown fields."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

Title = Annotated[
    str,
    msgspec.Meta(max_length=100, description="the page's heading; empty: 品牌介绍 / Our story"),
]
StoryHtml = Annotated[
    str,
    msgspec.Meta(
        max_length=100_000,
        description="HTML; kept as the allow-list leaves it: p, br, strong, em, b, i, u, h2, h3, "
        "ul, ol, li, blockquote, a (href: absolute http/https), img (src: absolute http/https, "
        "alt). Anything else is dropped (script and style with their content); empty: no story",
    ),
]
Version = Annotated[
    int,
    msgspec.Meta(
        ge=0,
        le=2**31 - 1,
        description="the version the edit was made from (GET's; 0 for a brand without a story)",
    ),
]


class StoryIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    title: Title = ""
    html: StoryHtml
    version: Version


class StoryOut(msgspec.Struct, frozen=True, kw_only=True):
    brand_id: int
    title: str
    html: str
    version: int  # 0: never written
    updated_at: datetime | None
    updated_by: int | None
