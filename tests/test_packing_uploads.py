"""A line's recent uploads and rejected scans (``GET /lines/{line}/uploads``, the console's
packing lines page): each upload's answer kept newest first with its counts and rejections,
trimmed, paged, filtered to the uploads that rejected something, and the line's own scoping."""

from __future__ import annotations

import secrets
from typing import Any

from app.packing import uploads
from tests.helpers import assert_error, issue_units
from tests.test_packing import scan, serials, set_line, upload


async def recent(client: Any, headers: dict[str, str], line: str, **params: Any) -> Any:
    response = await client.get(f"/lines/{line}/uploads", headers=headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def test_uploads_and_rejections_are_listed_newest_first(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    batch_no, product_id = await issue_units(client, login, demo, 20)
    line = "UP-" + secrets.token_hex(3)
    await set_line(client, login, product_id, line)
    operator = await login("operator")
    assert (await recent(client, operator, line))["total"] == 0
    units = serials(app, batch_no, 0, 20)
    clean = await upload(client, login, line, [scan(s) for s in units[:5]])
    assert clean["accepted"] == 5
    forged = units[5][:-1] + ("A" if units[5][-1] != "A" else "B")
    mixed = await upload(
        client,
        login,
        line,
        [scan(units[5]), scan(forged, cid="bad-1"), scan("nonsense", cid="bad-2")],
    )
    assert (mixed["accepted"], mixed["rejected"]) == (1, 2)
    again = await upload(client, login, line, [scan(units[0], cid="x")])  # a retry elsewhere
    page = await recent(client, operator, line)
    assert page["total"] == 3
    newest, middle, oldest = page["items"]
    assert (oldest["scans"], oldest["accepted"], oldest["rejected"]) == (5, 5, 0)
    assert oldest["rejections"] == [] and oldest["username"] == "operator"
    assert (middle["scans"], middle["accepted"], middle["rejected"]) == (3, 1, 2)
    assert [(r["id"], r["reason"]) for r in middle["rejections"]] == [
        (s["id"], s["reason"]) for s in mixed["scans"] if s["result"] == "rejected"
    ]
    assert {r["reason"] for r in middle["rejections"]} <= set(
        ["forged", "malformed", "unknown"]
    ) and all(r["message"] for r in middle["rejections"])
    assert newest["accepted"] + newest["duplicates"] + newest["rejected"] == 1
    assert newest["scans"] == len(again["scans"])
    only = await recent(client, operator, line, rejected_only="true")
    assert [u["at"] for u in only["items"]] == [u["at"] for u in page["items"] if u["rejected"]]
    paged = await recent(client, operator, line, per_page=1, page=2)
    assert paged["total"] == 3 and paged["items"] == [middle]


async def test_the_log_is_trimmed_and_scoped_to_the_lines_organisation(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    batch_no, product_id = await issue_units(client, login, demo, 5)
    line = "UQ-" + secrets.token_hex(3)
    await set_line(client, login, product_id, line)
    settings = app.state.settings
    name = uploads.key(settings.redis_namespace, demo["FACTORY-SZ"], line)
    # the log keeps the newest KEEP uploads: one more pushed by hand is trimmed on the next one
    await app.state.redis.delete(name)
    filler = uploads._encode(
        uploads.UploadOut(
            at="2026-01-01T00:00:00Z",  # type: ignore[arg-type]
            user_id=None,
            username=None,
            scans=0,
            accepted=0,
            duplicates=0,
            rejected=0,
            rejections=[],
        )
    )
    await app.state.redis.rpush(name, *[filler] * uploads.KEEP)
    await upload(client, login, line, [scan(serials(app, batch_no, 0, 1)[0])])
    assert await app.state.redis.llen(name) == uploads.KEEP
    page = await recent(client, await login("operator"), line, per_page=1)
    assert page["total"] == uploads.KEEP and page["items"][0]["accepted"] == 1
    # another organisation's users, or users without packing.scan, read nothing of it
    assert_error(
        await client.get(f"/lines/{line}/uploads", headers=await login("agent_admin")),
        404,
        "unknown_line",
    )
    assert_error(await client.get(f"/lines/{line}/uploads", headers=await login("analyst")), 403)
    await app.state.redis.delete(name)
