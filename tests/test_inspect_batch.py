"""POST /inspections/batch (issue 18: the staff app's offline queue sent in bulk): per-scan
answers, idempotent per client id (a re-sent batch counts once), another brand's token, limits;
photos on an inspection."""

# ruff: noqa: F811  (the fixtures of test_inspect, imported)
from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from tests.field_support import other_brand_admin
from tests.helpers import assert_error
from tests.images import png
from tests.test_field_scoping import _login, _user
from tests.test_inspect import (  # noqa: F401
    GPS,
    _close_diversion_alerts,
    forge,
    goods,
    moved_by_import,
)

PNG = png(3)


def item(code: str, store: int, cid: str | None = None, **extra: Any) -> dict[str, Any]:
    body = {"code": code, "gps": GPS, "store_id": store, **extra}
    if cid is not None:
        body["client_id"] = cid
    return body


async def count_scans(conn: Any, client_ids: list[str]) -> dict[str, int]:
    rows = await (
        await conn.execute(
            "SELECT client_id, count(*) AS n FROM inspection_scans WHERE client_id = ANY(%s) "
            "GROUP BY client_id",
            (client_ids,),
        )
    ).fetchall()
    return {r["client_id"]: r["n"] for r in rows}


async def test_a_resent_batch_counts_once(
    client: Any, login: Any, demo: Any, conn: Any, goods: dict[str, Any]
) -> None:
    inspector = await login("inspector")
    tag = secrets.token_hex(4)
    units = goods["units"][:10]  # case 0: shipped on to STORE-NB-01
    items = [item(u, demo["STORE-NB-01"], f"b-{tag}-{n}") for n, u in enumerate(units)]
    first = await client.post("/inspections/batch", headers=inspector, json={"items": items})
    assert first.status_code == 200, first.text
    body = first.json()
    assert (body["recorded"], body["replayed"], body["refused"]) == (10, 0, 0)
    assert [a["status"] for a in body["items"]] == [201] * 10
    assert [a["client_id"] for a in body["items"]] == [i["client_id"] for i in items]
    for answer, unit in zip(body["items"], units, strict=True):
        scan = answer["scan"]
        assert scan["result"] == "in_channel" and scan["items"][0]["serial"] == unit
        assert scan["items"][0]["reason"] == "designated_store"
        assert scan["items"][0]["document_no"] == goods["ship_no"]
        assert scan["items"][0]["store_document_no"] == goods["store_no"]

    again = await client.post("/inspections/batch", headers=inspector, json={"items": items})
    assert again.status_code == 200, again.text
    replay = again.json()
    assert (replay["recorded"], replay["replayed"], replay["refused"]) == (0, 10, 0)
    assert [a["status"] for a in replay["items"]] == [200] * 10
    assert [a["scan"]["id"] for a in replay["items"]] == [a["scan"]["id"] for a in body["items"]]
    # a single POST with one of those client ids answers the same scan too
    single = await client.post("/inspections", headers=inspector, json=items[3])
    assert single.status_code == 200 and single.json()["id"] == body["items"][3]["scan"]["id"]
    # the same client id twice within one batch: one scan
    twice = [item(goods["units"][10], demo["STORE-NB-01"], f"b-{tag}-dup")] * 2
    dup = (await client.post("/inspections/batch", headers=inspector, json={"items": twice})).json()
    assert [a["status"] for a in dup["items"]] == [201, 200]
    assert dup["items"][0]["scan"]["id"] == dup["items"][1]["scan"]["id"]
    assert dup["recorded"] == 1
    # an id used for another scan, earlier or in the same batch: 409 for that item only
    reused = [
        {**items[0], "code": goods["units"][12]},
        item(goods["units"][13], demo["STORE-NB-01"], f"b-{tag}-twice"),
        item(goods["units"][14], demo["STORE-NB-01"], f"b-{tag}-twice"),
    ]
    mixed = await client.post("/inspections/batch", headers=inspector, json={"items": reused})
    answers = mixed.json()["items"]
    assert [a["status"] for a in answers] == [409, 201, 409], answers
    assert answers[0]["error"]["code"] == answers[2]["error"]["code"] == "client_id_reused"
    counted = await count_scans(conn, [i["client_id"] for i in items] + [f"b-{tag}-dup"])
    assert counted == {i["client_id"]: 1 for i in items} | {f"b-{tag}-dup": 1}
    records = await (
        await conn.execute(
            "SELECT count(*) AS n FROM inspections WHERE scan_id = ANY(%s)",
            ([a["scan"]["id"] for a in body["items"]],),
        )
    ).fetchone()
    assert records["n"] == 10  # one record per unit, once


async def test_mixed_items_get_their_own_answers(
    client: Any, login: Any, demo: Any, conn: Any, goods: dict[str, Any]
) -> None:
    inspector = await login("inspector")
    tag = secrets.token_hex(4)
    items = [
        item(goods["units"][12], demo["STORE-GZ-01"], f"m-{tag}-0"),  # ZJ goods at GD: diverted
        item(forge(goods["units"][13]), demo["STORE-NB-01"], f"m-{tag}-1"),  # forged
        item(goods["units"][14], demo["AGENT-ZJ"], f"m-{tag}-2"),  # not a store
        item(goods["units"][15], 999_999_999, f"m-{tag}-3"),  # no such store
        item(goods["units"][25], demo["STORE-NB-01"]),  # no client id
        item(goods["units"][25], demo["STORE-NB-01"], f"m-{tag}-5"),  # never shipped
        item(goods["units"][16], demo["STORE-NB-01"], f"m-{tag}-6", photo_ids=[str(_uuid())]),
    ]
    response = await client.post("/inspections/batch", headers=inspector, json={"items": items})
    assert response.status_code == 200, response.text
    answers = response.json()["items"]
    assert [a["status"] for a in answers] == [201, 422, 422, 422, 400, 201, 422]
    assert answers[0]["scan"]["result"] == "diverted"
    assert answers[0]["scan"]["items"][0]["shipped_to"]["id"] == demo["AGENT-ZJ"]
    assert answers[1]["error"]["code"] == "counterfeit"
    assert answers[1]["scan"]["items"][0]["reason"] == "forged"  # recorded, as evidence
    assert answers[2]["error"]["code"] == "not_a_store" and answers[2]["scan"] is None
    assert answers[3]["error"]["code"] == "unknown_store"
    assert answers[4]["error"]["code"] == "client_id_required"
    assert answers[5]["scan"]["result"] == "unknown_route"
    assert answers[6]["error"]["code"] == "unknown_photo"
    assert response.json()["recorded"] == 3 and response.json()["refused"] == 4
    counted = await count_scans(conn, [i.get("client_id", "") for i in items])
    assert counted == {f"m-{tag}-0": 1, f"m-{tag}-1": 1, f"m-{tag}-5": 1}
    # the alert of the diverted unit, as a single scan raises it
    alert = await (
        await conn.execute(
            "SELECT count(*) AS n FROM alerts WHERE dedup_key LIKE 'inspect:diverted:%%' "
            "AND details ->> 'inspection' = %s",
            (str(answers[0]["scan"]["id"]),),
        )
    ).fetchone()
    assert alert["n"] >= 1


def _uuid() -> Any:
    import uuid

    return uuid.uuid4()


async def test_another_brand_and_limits(
    client: Any, login: Any, demo: Any, conn: Any, goods: dict[str, Any]
) -> None:
    tag = secrets.token_hex(4)
    items = [item(u, demo["STORE-NB-01"], f"o-{tag}-{n}") for n, u in enumerate(goods["units"][:3])]
    stranger = await other_brand_admin(client, login)
    response = await client.post("/inspections/batch", headers=stranger, json={"items": items})
    if response.status_code == 200:  # may inspect, but not this brand's stores
        assert {a["error"]["code"] for a in response.json()["items"]} == {"unknown_store"}
    else:
        assert_error(response, 403, "permission_denied")
    assert await count_scans(conn, [i["client_id"] for i in items]) == {}
    # without the permission
    fieldrep = await login("fieldrep")
    assert_error(
        await client.post("/inspections/batch", headers=fieldrep, json={"items": items}),
        403,
        "permission_denied",
    )
    inspector = await login("inspector")
    big = [item(goods["units"][0], demo["STORE-NB-01"], f"x-{tag}-{n}") for n in range(1001)]
    assert_error(
        await client.post("/inspections/batch", headers=inspector, json={"items": big}),
        413,
        "batch_too_large",
    )
    assert_error(
        await client.post("/inspections/batch", headers=inspector, json={"items": []}),
        400,
        "empty_batch",
    )
    assert await count_scans(conn, [i["client_id"] for i in big]) == {}


async def test_photos_on_an_inspection(
    client: Any, login: Any, demo: Any, goods: dict[str, Any]
) -> None:
    inspector = await login("inspector")
    uploaded = await client.post(
        "/media/photos", headers={**inspector, "Content-Type": "image/png"}, content=PNG
    )
    assert uploaded.status_code == 201, uploaded.text
    photo = uploaded.json()["id"]
    scanned = await client.post(
        "/inspections",
        headers=inspector,
        json=item(goods["units"][17], demo["STORE-NB-01"], photo_ids=[photo], note="shelf 3"),
    )
    assert scanned.status_code == 201, scanned.text
    record = scanned.json()["items"][0]
    assert record["photo_ids"] == [photo] and record["note"] == "shelf 3"
    # a brand reader who sees the inspection sees its photo; another brand does not
    admin = await login("admin")
    seen = await client.get(f"/media/photos/{photo}", headers=admin)
    assert seen.status_code == 200 and seen.content == PNG
    assert_error(
        await client.get(f"/media/photos/{photo}", headers=await other_brand_admin(client, login)),
        404,
    )
    # someone else's photo cannot be attached
    other = await client.post(
        "/media/photos",
        headers={**(await login("fieldrep")), "Content-Type": "image/png"},
        content=PNG,
    )
    assert other.status_code == 201, other.text
    assert_error(
        await client.post(
            "/inspections",
            headers=inspector,
            json=item(goods["units"][18], demo["STORE-NB-01"], photo_ids=[other.json()["id"]]),
        ),
        422,
        "unknown_photo",
    )


async def test_the_same_batch_sent_twice_at_once_counts_once(
    client: Any, login: Any, demo: Any, conn: Any, goods: dict[str, Any]
) -> None:
    import asyncio

    inspector = await login("inspector")
    tag = secrets.token_hex(4)
    items = [
        item(u, demo["STORE-NB-01"], f"c-{tag}-{n}") for n, u in enumerate(goods["units"][:10])
    ]
    answers = await asyncio.gather(
        *(
            client.post("/inspections/batch", headers=inspector, json={"items": items})
            for _ in range(3)
        )
    )
    assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
    assert sorted(a.json()["recorded"] for a in answers) == [0, 0, 10]
    ids = {tuple(i["scan"]["id"] for i in a.json()["items"]) for a in answers}
    assert len(ids) == 1  # every answer names the same scans
    assert await count_scans(conn, [i["client_id"] for i in items]) == {
        i["client_id"]: 1 for i in items
    }


async def test_a_batch_retry_of_a_recorded_scan_is_replayed_behind_an_item_reusing_its_id(
    client: Any, login: Any, demo: Any, conn: Any, goods: dict[str, Any]
) -> None:
    """A probe: scan X was recorded under client id c; a batch carries first another scan Y
    under c (409 ``client_id_reused``, right), then X itself again (a retry of the recorded
    scan). X was answered 409 too, compared with the batch's first item carrying c rather than
    with the scan recorded under it, and the app dropped from its queue as refused a scan the
    server holds. README: a client id already recorded is replayed, never counted twice."""
    inspector = await login("inspector")
    cid = f"rr-{secrets.token_hex(4)}"
    x = item(goods["units"][0], demo["STORE-NB-01"], cid)
    y = {**x, "code": goods["units"][1]}
    first = await client.post("/inspections", headers=inspector, json=x)
    assert first.status_code == 201, first.text
    batch = await client.post("/inspections/batch", headers=inspector, json={"items": [y, x, y]})
    assert batch.status_code == 200, batch.text
    answers = batch.json()["items"]
    assert [a["status"] for a in answers] == [409, 200, 409], answers
    assert answers[1]["scan"]["id"] == first.json()["id"]
    assert answers[1]["scan"]["replayed"] is True
    assert await count_scans(conn, [cid]) == {cid: 1}


async def test_a_batched_scan_time_is_checked_per_item_and_replays(
    client: Any,
    login: Any,
    demo: Any,
    conn: Any,
    goods: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each queued scan carries its phone time (``client_at``): a bad one (ahead of the clock)
    is that item's 400 ``invalid_client_at`` only; the others are recorded with theirs (the
    event's eventTime too), and the re-sent batch, same client ids and times, replays — also
    when those times have grown too old since (the replay comes before the check)."""
    inspector = await login("inspector")
    tag = secrets.token_hex(4)
    now = datetime.now(UTC).replace(microsecond=0)
    hour_ago = now - timedelta(hours=1)
    store = demo["STORE-NB-01"]
    items = [
        item(goods["units"][0], store, f"t-{tag}-0", client_at=hour_ago.isoformat()),
        item(
            goods["units"][1], store, f"t-{tag}-1", client_at=(now + timedelta(hours=1)).isoformat()
        ),
        item(goods["units"][2], store, f"t-{tag}-2"),
    ]
    first = await client.post("/inspections/batch", headers=inspector, json={"items": items})
    assert first.status_code == 200, first.text
    body = first.json()
    assert [a["status"] for a in body["items"]] == [201, 400, 201], body["items"]
    assert body["items"][1]["error"]["code"] == "invalid_client_at"
    assert (body["recorded"], body["refused"]) == (2, 1)
    scan = body["items"][0]["scan"]
    assert datetime.fromisoformat(scan["client_at"]) == hour_ago
    assert datetime.fromisoformat(scan["items"][0]["client_at"]) == hour_ago
    assert body["items"][2]["scan"]["client_at"] is None
    assert await count_scans(conn, [i["client_id"] for i in items]) == {
        f"t-{tag}-0": 1,
        f"t-{tag}-2": 1,
    }
    event = await (
        await conn.execute("SELECT event_time FROM events WHERE id = %s", (scan["event_id"],))
    ).fetchone()
    await conn.commit()
    assert event["event_time"] == hour_ago

    from app.field import checkins

    monkeypatch.setattr(checkins, "OFFLINE_DAYS", 0)  # an hour ago is too old now
    kept = [items[0], items[2]]
    again = await client.post("/inspections/batch", headers=inspector, json={"items": kept})
    replay = again.json()
    assert [a["status"] for a in replay["items"]] == [200, 200], replay["items"]
    assert [a["scan"]["id"] for a in replay["items"]] == [
        body["items"][0]["scan"]["id"],
        body["items"][2]["scan"]["id"],
    ]
    assert datetime.fromisoformat(replay["items"][0]["scan"]["client_at"]) == hour_ago
    # the same id with another scan time is another scan: 409, as for a single scan
    moved = {**items[0], "client_at": (now - timedelta(hours=2)).isoformat()}
    refused = await client.post("/inspections/batch", headers=inspector, json={"items": [moved]})
    assert refused.json()["items"][0]["error"]["code"] == "client_id_reused"


async def _new_store(client: Any, admin: Any, parent_id: int) -> int:
    tag = secrets.token_hex(3).upper()
    made = await client.post(
        "/orgs",
        headers=admin,
        json={"kind": "store", "name": f"Inspected store {tag}", "erp_code": f"IS-{tag}",
              "parent_id": parent_id},
    )  # fmt: skip
    assert made.status_code == 201, made.text
    return int(made.json()["id"])


async def _zj_inspector(client: Any, login: Any, demo: Any) -> Any:
    """An inspector of the Zhejiang agent (it inspects the agent's stores only)."""
    name = f"zjinsp_{secrets.token_hex(3)}"
    created = await client.post(
        "/users",
        headers=await login("agent_admin"),
        json={"org_id": demo["AGENT-ZJ"], "username": name, "password": "inspect-pass-1",
              "roles": ["inspector"]},
    )  # fmt: skip
    assert created.status_code == 201, created.text
    return await login(name, "inspect-pass-1")


def _at(moment: datetime, hours: int, minutes: int = 0) -> str:
    """``moment`` written at the offset ``hours:minutes`` (negative hours: west of UTC)."""
    sign = -1 if hours < 0 else 1
    return moment.astimezone(
        timezone(sign * timedelta(hours=abs(hours), minutes=minutes))
    ).isoformat()


async def test_a_scan_time_at_an_offset_past_14_hours_is_that_items_invalid_client_at(
    client: Any, login: Any, demo: Any, conn: Any, goods: dict[str, Any]
) -> None:
    """A probe: the inspector app's queue sent one ``client_at`` an hour ago at +23:59 (valid
    RFC 3339, beyond PostgreSQL's ±15:59): the batch bound the times as a text array and the
    whole batch was 400 ``validation_failed`` — the other items lost too. An offset beyond
    EPCIS's -14:00..+14:00 is that item's 400 ``invalid_client_at`` (the shared
    ``check_client_at``, a single ``POST /inspections`` alike); ±14:00 itself is recorded, at
    the instant sent, its event at the phone's offset."""
    inspector = await login("inspector")
    tag = secrets.token_hex(4)
    hour_ago = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
    store = demo["STORE-NB-01"]
    times = [_at(hour_ago, 0), _at(hour_ago, 23, 59), _at(hour_ago, 14, 30), _at(hour_ago, 14)]
    items = [
        item(goods["units"][n], store, f"tz-{tag}-{n}", client_at=at) for n, at in enumerate(times)
    ]
    answer = await client.post("/inspections/batch", headers=inspector, json={"items": items})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [a["status"] for a in body["items"]] == [201, 400, 400, 201], body["items"]
    for refused in body["items"][1:3]:
        assert refused["error"]["code"] == "invalid_client_at"
        assert refused["error"]["details"][0]["field"] == "client_at"
    kiribati = body["items"][3]["scan"]
    assert datetime.fromisoformat(kiribati["client_at"]) == hour_ago
    event = await (
        await conn.execute(
            "SELECT event_time, tz_offset FROM events WHERE id = %s", (kiribati["event_id"],)
        )
    ).fetchone()
    await conn.commit()
    assert (event["event_time"], event["tz_offset"]) == (hour_ago, "+14:00")
    single = {"code": goods["units"][4], "gps": GPS, "store_id": store}
    west = await client.post(
        "/inspections", headers=inspector, json={**single, "client_at": _at(hour_ago, -14, 30)}
    )
    assert_error(west, 400, "invalid_client_at")


async def test_batched_scan_times_reach_postgresql_in_utc(
    client: Any,
    login: Any,
    demo: Any,
    conn: Any,
    goods: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Defence behind ``check_client_at``: the batch binds its times as a text array (and the
    events by COPY), where PostgreSQL reads each offset itself; every time is written in UTC.
    With the offset rule widened, an item at +23:59 is recorded with the others, at the instant
    sent, and its event at an offset EPCIS takes (``app.events.log.tz_offset``)."""
    from app.field import checkins

    monkeypatch.setattr(checkins, "MAX_OFFSET", timedelta(hours=24), raising=False)
    inspector = await login("inspector")
    tag = secrets.token_hex(4)
    hour_ago = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
    items = [
        item(goods["units"][n], demo["STORE-NB-01"], f"tzw-{tag}-{n}", client_at=at)
        for n, at in enumerate([_at(hour_ago, 0), _at(hour_ago, 23, 59)])
    ]
    answer = await client.post("/inspections/batch", headers=inspector, json={"items": items})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [a["status"] for a in body["items"]] == [201, 201], body["items"]
    far = body["items"][1]["scan"]
    assert datetime.fromisoformat(far["client_at"]) == hour_ago
    event = await (
        await conn.execute(
            "SELECT event_time, tz_offset FROM events WHERE id = %s", (far["event_id"],)
        )
    ).fetchone()
    await conn.commit()
    assert (event["event_time"], event["tz_offset"]) == (hour_ago, "+08:00")


async def test_a_retried_scan_is_replayed_after_its_store_moved_to_another_agent(
    client: Any, login: Any, demo: Any, conn: Any, goods: dict[str, Any]
) -> None:
    """A probe: the Zhejiang agent's inspector scans at one of its stores (recorded, the answer
    lost); before the app re-sends it, the brand moves the store under the Guangdong agent. The
    re-send (same client id, same body) was 422 ``unknown_store``, single or batched — the store
    was looked up before the client id — and the app dropped as refused a scan the server
    holds. It answers the recorded scan (200, replayed, whole), counted once."""
    admin = await login("admin")
    store = await _new_store(client, admin, demo["AGENT-ZJ"])
    inspector = await _zj_inspector(client, login, demo)
    tag = secrets.token_hex(3)
    single = item(goods["units"][5], store, f"mv-{tag}-1")
    batched = item(goods["units"][6], store, f"mv-{tag}-2")
    first = await client.post("/inspections", headers=inspector, json=single)
    assert first.status_code == 201, first.text
    first_batch = await client.post(
        "/inspections/batch", headers=inspector, json={"items": [batched]}
    )
    assert first_batch.json()["items"][0]["status"] == 201, first_batch.text
    moved = await client.post(
        f"/orgs/{store}/move", headers=admin, json={"parent_id": demo["AGENT-GD"]}
    )
    assert moved.status_code == 200, moved.text

    again = await client.post("/inspections", headers=inspector, json=single)
    assert again.status_code == 200, again.text
    assert (again.json()["id"], again.json()["replayed"]) == (first.json()["id"], True)
    assert again.json()["items"] == first.json()["items"]
    resent = await client.post(
        "/inspections/batch", headers=inspector, json={"items": [single, batched]}
    )
    answers = resent.json()["items"]
    assert [a["status"] for a in answers] == [200, 200], answers
    assert answers[1]["scan"]["id"] == first_batch.json()["items"][0]["scan"]["id"]
    # a new scan there is refused: the store is no longer in the inspector's area
    fresh = item(goods["units"][7], store, f"mv-{tag}-3")
    assert_error(
        await client.post("/inspections", headers=inspector, json=fresh), 422, "unknown_store"
    )
    cids = [single["client_id"], batched["client_id"]]
    assert await count_scans(conn, cids) == {c: 1 for c in cids}


async def test_a_moved_inspectors_batch_is_replayed_not_recorded_twice(
    client: Any, login: Any, demo: Any, conn: Any, goods: dict[str, Any]
) -> None:
    """A probe (with its single-scan twin in test_inspect): a batch of a Zhejiang agent's
    inspector, the answer lost, re-sent after the brand moved the inspector to its own
    organisation by the user import, was recorded a second time (the client ids were looked up
    and locked by the inspector's organisation of now). It answers the recorded scans (200,
    replayed), counted once."""
    admin = await login("admin")
    name = f"pi{secrets.token_hex(4)}"
    _, inspector = await _user(client, admin, demo["AGENT-ZJ"], ["inspector"], name)
    tag = secrets.token_hex(3)
    items = [item(goods["units"][n], demo["STORE-NB-01"], f"mvb-{tag}-{n}") for n in (1, 2)]
    first = await client.post("/inspections/batch", headers=inspector, json={"items": items})
    assert first.json()["recorded"] == 2, first.text
    await moved_by_import(client, admin, name, "BRAND-LUMI")
    inspector = await _login(client, name)
    again = await client.post("/inspections/batch", headers=inspector, json={"items": items})
    assert again.status_code == 200, again.text
    assert [a["status"] for a in again.json()["items"]] == [200, 200], again.text
    ids = [a["scan"]["id"] for a in again.json()["items"]]
    assert ids == [a["scan"]["id"] for a in first.json()["items"]]
    cids = [i["client_id"] for i in items]
    assert await count_scans(conn, cids) == {c: 1 for c in cids}


async def test_no_inspection_is_recorded_at_a_closed_store(
    client: Any, login: Any, demo: Any, conn: Any, goods: dict[str, Any]
) -> None:
    """A closed store — or one under a closed distributor — is 422 ``org_inactive`` to an
    inspection, single or batched, as to a field check-in (before, a scan there was recorded);
    a re-send of a scan recorded there before it closed still answers that scan."""
    admin, inspector = await login("admin"), await login("inspector")
    store = await _new_store(client, admin, demo["AGENT-ZJ"])
    dist = await client.post(
        "/orgs",
        headers=admin,
        json={"kind": "distributor", "name": f"Closed dist {secrets.token_hex(3)}",
              "erp_code": f"CD-{secrets.token_hex(3)}", "parent_id": demo["AGENT-ZJ"]},
    )  # fmt: skip
    assert dist.status_code == 201, dist.text
    under = await _new_store(client, admin, dist.json()["id"])
    tag = secrets.token_hex(3)
    recorded = item(goods["units"][3], store, f"cl-{tag}-0")
    first = await client.post("/inspections", headers=inspector, json=recorded)
    assert first.status_code == 201, first.text
    off = await client.post(f"/orgs/{store}/deactivate", headers=admin)
    assert off.status_code == 200, off.text
    off = await client.post(f"/orgs/{dist.json()['id']}/deactivate", headers=admin)
    assert off.status_code == 200, off.text

    for n, where in enumerate((store, under), start=1):
        single = item(goods["units"][4], where, f"cl-{tag}-{n}")
        assert_error(
            await client.post("/inspections", headers=inspector, json=single), 422, "org_inactive"
        )
    batch = await client.post(
        "/inspections/batch",
        headers=inspector,
        json={"items": [item(goods["units"][4], store, f"cl-{tag}-3"),
                        item(goods["units"][4], under, f"cl-{tag}-4"), recorded]},
    )  # fmt: skip
    assert batch.status_code == 200, batch.text
    answers = batch.json()["items"]
    assert [a["status"] for a in answers] == [422, 422, 200], answers
    assert [a["error"]["code"] for a in answers[:2]] == ["org_inactive"] * 2
    assert answers[2]["scan"]["id"] == first.json()["id"]
    again = await client.post("/inspections", headers=inspector, json=recorded)
    assert (again.status_code, again.json()["id"]) == (200, first.json()["id"]), again.text
    cids = [f"cl-{tag}-{n}" for n in range(5)]
    assert await count_scans(conn, cids) == {cids[0]: 1}


async def test_two_inspectors_offline_queues_of_the_same_units_both_record(
    client: Any, login: Any, demo: Any, goods: dict[str, Any]
) -> None:
    """A probe: two inspectors sweep the same shelf of diverted goods and their phones upload
    their offline queues at the same moment, the units in opposite orders. One whole batch was
    refused 409 ``retry`` (a PostgreSQL deadlock): ``_record`` upserted each scan's alerts (ON
    CONFLICT on the open alert's dedup key) in the batch's scan order, so the two batches locked
    the same alerts in opposite orders. A batch's alerts are written at once, sorted by dedup
    key, now: both batches recorded."""
    admin = await login("admin")
    name = f"sweep_{secrets.token_hex(3)}"
    made = await client.post(
        "/users",
        headers=admin,
        json={
            "org_id": demo["BRAND-LUMI"],
            "username": name,
            "password": "inspect-pass-1",
            "roles": ["inspector"],
        },
    )
    assert made.status_code == 201, made.text
    first, second = await login("inspector"), await login(name, "inspect-pass-1")
    units = goods["units"][10:20]  # case 1, shipped to AGENT-ZJ: diverted at a GD store
    statuses = []
    for round_ in range(4):
        tag = secrets.token_hex(3)

        def queue(who: str, codes: list[str], tag: str = tag) -> dict[str, Any]:
            return {
                "items": [
                    {
                        "code": c,
                        "gps": GPS,
                        "store_code": "STORE-GZ-01",
                        "client_id": f"{who}-{tag}-{n}",
                    }
                    for n, c in enumerate(codes)
                ]
            }

        a, b = await asyncio.gather(
            client.post("/inspections/batch", headers=first, json=queue("a", units)),
            client.post("/inspections/batch", headers=second, json=queue("b", units[::-1])),
        )
        statuses.append((round_, a.status_code, b.status_code, a.text[:120], b.text[:120]))
    assert all(s[1:3] == (200, 200) for s in statuses), statuses


async def test_an_item_after_a_refused_one_under_the_same_client_id_is_answered_alone(
    client: Any, login: Any, demo: Any, conn: Any, goods: dict[str, Any]
) -> None:
    """A probe: item 0 (no such store: 422, nothing recorded) and item 1 (a good scan) carry
    one client id. Alone, item 1 is 201 — nothing was recorded under the id — but in the batch
    it was 409 ``client_id_reused`` against the refused item 0, and the app dropped it. Each
    item is answered as a single scan would be, in order: after item 1 recorded the id, item 0
    again is 409 (the id now holds item 1's scan) and item 1 again replays it."""
    inspector = await login("inspector")
    cid = f"rf-{secrets.token_hex(4)}"
    refused = item(goods["units"][0], 999_999_999, cid)
    good = item(goods["units"][0], demo["STORE-NB-01"], cid)
    got = await client.post(
        "/inspections/batch", headers=inspector, json={"items": [refused, good, refused, good]}
    )
    assert got.status_code == 200, got.text
    answers = got.json()["items"]
    assert [a["status"] for a in answers] == [422, 201, 409, 200], answers
    assert answers[0]["error"]["code"] == "unknown_store"
    assert answers[2]["error"]["code"] == "client_id_reused"
    assert answers[3]["scan"]["id"] == answers[1]["scan"]["id"]
    assert answers[3]["scan"]["replayed"] is True
    assert (got.json()["recorded"], got.json()["replayed"], got.json()["refused"]) == (1, 1, 2)
    assert await count_scans(conn, [cid]) == {cid: 1}
    # the batch again: the id holds item 1's scan
    again = await client.post(
        "/inspections/batch", headers=inspector, json={"items": [refused, good]}
    )
    assert [a["status"] for a in again.json()["items"]] == [409, 200], again.text


async def test_a_full_batch_takes_a_bounded_number_of_client_id_locks(
    client: Any, login: Any, app: Any, demo: Any, goods: dict[str, Any]
) -> None:
    """A probe: a batch locked each of its client ids (one advisory lock each, up to 1,000), so
    about seven full batches at once filled PostgreSQL's shared lock table
    (max_locks_per_transaction × max_connections) and every other transaction failed "out of
    shared memory". A batch takes at most ``CLIENT_ID_SLOTS`` of them: counted in pg_locks
    while the batch, its client ids locked, waits at the table its scans are written to."""
    from app.inspect.service import CLIENT_ID_SLOTS
    from app.locks import Lock

    inspector = await login("inspector")
    tag = secrets.token_hex(4)
    # one scan to record (a forged code: recorded as evidence), 999 refused after the locks
    items = [item(forge(goods["units"][0]), demo["STORE-NB-01"], f"lk-{tag}-0")]
    items += [item(goods["units"][1], 999_999_999, f"lk-{tag}-{n}") for n in range(1, 1000)]
    async with app.state.pool.connection() as holder, app.state.pool.connection() as watch:
        await holder.execute("LOCK TABLE inspection_scans IN EXCLUSIVE MODE")
        sent = asyncio.ensure_future(
            client.post("/inspections/batch", headers=inspector, json={"items": items})
        )
        held = None
        for _ in range(400):  # ~10 s: the batch's transaction waits for the table
            held = await (
                await watch.execute(
                    """SELECT count(*) FILTER (WHERE l.locktype = 'advisory' AND l.classid = %s
                                                 AND l.objsubid = 2) AS n
                       FROM pg_locks l WHERE l.pid IN (
                           SELECT pid FROM pg_locks WHERE NOT granted
                              AND relation = 'inspection_scans'::regclass)
                       GROUP BY l.pid ORDER BY n DESC LIMIT 1""",  # the most, of any waiter
                    (int(Lock.INSPECTION_CLIENT_ID),),
                )
            ).fetchone()
            await watch.commit()
            if held is not None:
                break
            await asyncio.sleep(0.025)
        await holder.commit()
        answer = await sent
    assert held is not None, "the batch should wait for the held table"
    assert 1 <= held["n"] <= CLIENT_ID_SLOTS, f"{held['n']} advisory locks for one batch"
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["recorded"], body["refused"]) == (1, 999)
    assert body["items"][0]["error"]["code"] == "counterfeit"
    assert {a["error"]["code"] for a in body["items"][1:]} == {"unknown_store"}
