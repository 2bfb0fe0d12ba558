"""Every pattern a schema or parameter is checked against refuses a trailing line feed.

Python's ``$`` also matches before a final ``\\n``: ``^[A-Za-z0-9_.-]+$`` takes ``"AGENT-ZJ\\n"``,
and the edge lets line feeds through (they are text). An ERP code with one created a second
organisation that no CSV can name. Every ``$`` of a pattern is written ``(?!\\n)$``, which means
the same in the ECMAScript dialect of the OpenAPI document."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec

APP = Path(__file__).resolve().parent.parent / "app"
_PATTERN = re.compile(r'pattern=r?"([^"]*)"')
_BARE_END = re.compile(r"(?<!\\)(?<!\(\?!\\n\))\$(?!\(\?!\\n\))")


def test_no_pattern_ends_with_a_bare_dollar() -> None:
    bare = [
        f"{path.relative_to(APP.parent)}: {pattern}"
        for path in APP.rglob("*.py")
        for pattern in _PATTERN.findall(path.read_text(encoding="utf-8"))
        if _BARE_END.search(pattern)
    ]
    assert bare == []


def test_a_trailing_line_feed_is_refused() -> None:
    from app.orgs.schemas import ErpCode
    from app.packing.schemas import ClientEventId

    for kind in (ErpCode, ClientEventId):
        assert msgspec.convert("AGENT-ZJ", kind) == "AGENT-ZJ"
        try:
            msgspec.convert("AGENT-ZJ\n", kind)
        except msgspec.ValidationError:
            continue
        raise AssertionError(f"{kind} took a trailing line feed")


async def test_an_organisation_code_with_a_line_feed_is_400(client: Any, login: Any) -> None:
    admin = await login("admin")
    response = await client.post(
        "/orgs",
        headers=admin,
        json={"kind": "store", "name": "Trailing", "erp_code": "STORE-LF\n", "parent_id": 1},
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "validation_failed"
