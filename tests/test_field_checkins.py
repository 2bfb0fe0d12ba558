"""Nameplates and check-ins (SPEC F2): a signed code per store (a forged or another store's
nameplate is refused), the distance rule, idempotent retries, the daily track, CSV export."""

from __future__ import annotations

import asyncio
import csv
import io
import math
import re
import secrets
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from app.config import load_settings
from app.field import nameplates
from app.field.checkins import distance_m, judge
from tests.field_support import HZ, check_in, client_id, nameplate, user_id
from tests.helpers import assert_error, new_org, new_user
from tests.race_support import audit_rows, lock_waiters, twice_held
from tests.test_field_scoping import _user


def test_the_distance_is_the_great_circle_distance_and_the_radius_is_inclusive() -> None:
    one_degree = math.pi * 6_371_008.8 / 180  # along a meridian
    assert distance_m(0, 0, 1, 0) == pytest.approx(one_degree, abs=0.01)
    assert distance_m(*HZ, *HZ) == 0
    # Hangzhou West Lake to Ningbo Tianyi Square: about 140 km as the crow flies
    assert 130_000 < distance_m(*HZ, 29.8700, 121.5530) < 150_000
    assert judge(200.0, 200) == "ok" and judge(200.01, 200) == "out_of_range"
    assert judge(None, 200) == "no_store_position"


def test_a_nameplate_is_signed_for_its_store_only() -> None:
    settings = load_settings()
    code = nameplates.code_for(settings, 42)
    assert nameplates.store_of(settings, code) == 42
    assert nameplates.store_of(settings, nameplates.url_for(settings, code)) == 42
    tag = code.split(".")[1]
    forged = [
        f"N43.{tag}",  # store 42's tag under another id
        f"N42.{tag[:-1]}{'A' if tag[-1] != 'A' else 'B'}",  # one character changed
        f"N42.{tag.lower()}",
        "N42",
        "STORE-HZ-01",  # the ERP code is no nameplate
        "",
    ]
    for text in forged:
        with pytest.raises(Exception) as caught:
            nameplates.store_of(settings, text)
        assert getattr(caught.value, "code", None) == "invalid_nameplate", text
    # the key is the master key's: another master key signs differently
    other = load_settings({"TRACECODE_MASTER_KEY": "a5" * 32})
    assert nameplates.code_for(other, 42) != code


async def test_nameplates_print_as_png_and_pdf_for_those_allowed(
    client: Any, login: Any, demo: Any
) -> None:
    store = demo["STORE-HZ-01"]
    plate = await nameplate(client, login, store)
    assert plate["url"].endswith(f"/m/n/{plate['code']}") and plate["code"].startswith(f"N{store}.")
    boss = await login("fieldsup")
    png = await client.get(f"/field/stores/{store}/nameplate.png", headers=boss)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG\r\n\x1a\n") and len(png.content) > 200
    pdf = await client.get(f"/field/stores/{store}/nameplate.pdf", headers=boss)
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-1.4") and pdf.content.rstrip().endswith(b"%%EOF")
    assert b"(STORE-HZ-01) Tj" in pdf.content and b" re\n" in pdf.content
    # the xref's first object offset points at "1 0 obj"
    xref = int(pdf.content.rsplit(b"startxref\n", 1)[1].split(b"\n")[0])
    first = int(pdf.content[xref:].split(b"\n")[3][:10])
    assert pdf.content[first:].startswith(b"1 0 obj")
    # a rep does not print nameplates; another agent's store, or an agent, is not found
    assert_error(
        await client.get(f"/field/stores/{store}/nameplate", headers=await login("fieldrep")),
        403,
        "permission_denied",
    )
    assert_error(
        await client.get(f"/field/stores/{demo['STORE-GZ-01']}/nameplate.png", headers=boss), 404
    )
    assert_error(await client.get(f"/field/stores/{demo['AGENT-ZJ']}/nameplate", headers=boss), 404)


async def test_a_check_in_is_measured_from_the_store_and_a_far_one_is_kept_and_flagged(
    client: Any, login: Any, demo: Any, settings: Any
) -> None:
    rep = await login("fieldrep")
    plate = await nameplate(client, login, demo["STORE-HZ-01"])
    near = await check_in(client, rep, plate["url"], (HZ[0] + 0.0005, HZ[1]))  # ~56 m north
    assert near.status_code == 201, near.text
    body = near.json()
    assert body["flag"] == "ok" and body["in_range"] is True and not body["replayed"]
    assert body["distance_m"] == pytest.approx(55.6, abs=0.5)
    assert body["radius_m"] == settings.field_checkin_radius_m == 200
    assert (body["store_erp_code"], body["accuracy_m"]) == ("STORE-HZ-01", 12.5)

    far = await check_in(client, rep, plate["code"], (HZ[0] + 0.009, HZ[1]))  # ~1 km
    assert far.status_code == 201, far.text
    assert far.json()["flag"] == "out_of_range" and far.json()["in_range"] is False
    assert far.json()["distance_m"] == pytest.approx(1000.8, abs=1)
    listed = await client.get(
        "/field/checkins", headers=rep, params={"store_id": demo["STORE-HZ-01"]}
    )
    flags = {c["id"]: c["flag"] for c in listed.json()["items"]}
    assert flags[far.json()["id"]] == "out_of_range" and flags[body["id"]] == "ok"


async def test_forged_and_other_stores_nameplates_are_refused(
    client: Any, login: Any, demo: Any, conn: Any
) -> None:
    rep = await login("fieldrep")
    hz = await nameplate(client, login, demo["STORE-HZ-01"])
    nb = await nameplate(client, login, demo["STORE-NB-01"])
    before = await _count(conn)
    tag = hz["code"].split(".")[1]
    forged = f"N{demo['STORE-NB-01']}.{tag}"  # HZ's tag under Ningbo's id
    assert_error(await check_in(client, rep, forged), 422, "invalid_nameplate")
    assert_error(await check_in(client, rep, hz["url"] + "X"), 422, "invalid_nameplate")
    # at the Hangzhou store, with the Ningbo store's nameplate
    answer = await check_in(client, rep, nb["url"], store_id=demo["STORE-HZ-01"])
    assert_error(answer, 422, "nameplate_mismatch")
    # a genuine nameplate of a store the rep does not cover (another agent's)
    gz = nameplates.code_for(load_settings(), demo["STORE-GZ-01"])
    assert_error(await check_in(client, rep, gz), 404, "not_found")
    assert await _count(conn) == before  # nothing recorded


async def _count(conn: Any) -> int:
    row = await (await conn.execute("SELECT count(*) AS n FROM field_checkins")).fetchone()
    await conn.commit()
    return int(row["n"])


async def test_a_retried_check_in_answers_the_first_and_counts_once(
    client: Any, login: Any, demo: Any, conn: Any
) -> None:
    rep = await login("fieldrep")
    plate = await nameplate(client, login, demo["STORE-HZ-01"])
    cid = client_id()
    first = await check_in(client, rep, plate["url"], client_id=cid)
    assert first.status_code == 201, first.text
    before = await _count(conn)
    again = await check_in(client, rep, plate["url"], client_id=cid)
    assert again.status_code == 200, again.text
    assert again.json()["replayed"] is True
    assert {k: v for k, v in again.json().items() if k != "replayed"} == {
        k: v for k, v in first.json().items() if k != "replayed"
    }
    # the same id with another check-in (another fix) is refused, not silently the first
    # (probe C: a visit to another store under a reused id was answered and dropped)
    moved = await check_in(client, rep, plate["url"], (HZ[0] + 1, HZ[1]), client_id=cid)
    assert_error(moved, 409, "client_id_reused")
    assert await _count(conn) == before
    # another rep may use the same client id: ids are per rep
    other = await check_in(client, await login("fieldrep2"), plate["url"], client_id=cid)
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]


async def test_a_store_without_a_position_is_flagged_until_it_gets_one(
    client: Any, login: Any, demo: Any
) -> None:
    admin, boss, rep = await login("admin"), await login("fieldsup"), await login("fieldrep")
    made = await client.post(
        "/orgs",
        headers=admin,
        json={
            "kind": "store",
            "name": "Hangzhou Binjiang Store",
            "erp_code": f"STORE-HZ-{client_id()}",
            "parent_id": demo["AGENT-ZJ"],
        },
    )
    assert made.status_code == 201, made.text
    store = made.json()["id"]
    plate = await nameplate(client, login, store)
    unknown = await check_in(client, rep, plate["code"], (30.21, 120.21))
    assert unknown.json()["flag"] == "no_store_position" and unknown.json()["distance_m"] is None
    assert unknown.json()["in_range"] is None
    bad = await client.put(
        f"/field/stores/{store}/position", headers=boss, json={"lat": 91, "lng": 0}
    )
    assert_error(bad, 400, "validation_failed")
    assert_error(
        await client.put(
            f"/field/stores/{store}/position", headers=rep, json={"lat": 30.21, "lng": 120.21}
        ),
        403,
        "permission_denied",
    )
    put = await client.put(
        f"/field/stores/{store}/position", headers=boss, json={"lat": 30.21, "lng": 120.21}
    )
    assert put.status_code == 200, put.text
    known = await check_in(client, rep, plate["code"], (30.21, 120.21))
    assert known.json()["flag"] == "ok" and known.json()["distance_m"] == 0


def _days_ago(days: int) -> str:
    """A Shanghai calendar day, ``days`` before today (a check-in's phone time is at most 30
    days old)."""
    return str((datetime.now(ZoneInfo("Asia/Shanghai")) - timedelta(days=days)).date())


async def test_the_daily_track_lists_a_reps_check_ins_in_time_order(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    rep = await login("fieldrep2")
    hz = await nameplate(client, login, demo["STORE-HZ-01"])
    nb = await nameplate(client, login, demo["STORE-NB-01"])
    # sent out of order (an offline queue), scanned three days ago at 15:00, 09:30 and 11:00
    # Beijing time
    day = _days_ago(3)
    sent = [
        (nb["code"], f"{day}T15:00:00+08:00"),
        (hz["code"], f"{day}T09:30:00+08:00"),
        (nb["code"], f"{day}T11:00:00+08:00"),
        (hz["code"], f"{_days_ago(2)}T00:30:00+08:00"),  # the next day in Shanghai
    ]
    for plate, at in sent:
        answer = await check_in(client, rep, plate, client_at=at)
        assert answer.status_code == 201, answer.text
    track = await client.get("/field/track", headers=rep, params={"day": day})
    assert track.status_code == 200, track.text
    got = [(c["store_erp_code"], c["client_at"][11:16]) for c in track.json()["checkins"]]
    assert got == [("STORE-HZ-01", "01:30"), ("STORE-NB-01", "03:00"), ("STORE-NB-01", "07:00")]
    # the supervisor reads the rep's track; another rep reads nothing of it
    rep_id = await user_id(app, "fieldrep2")
    params = {"day": day, "rep_id": rep_id}
    boss = await client.get("/field/track", headers=await login("fieldsup"), params=params)
    assert len(boss.json()["checkins"]) == 3 and boss.json()["rep_id"] == rep_id
    peer = await client.get("/field/track", headers=await login("fieldrep"), params=params)
    assert peer.status_code == 200 and peer.json()["checkins"] == []


async def test_check_ins_export_as_csv_with_formulas_neutralised(
    client: Any, login: Any, demo: Any
) -> None:
    rep = await login("fieldrep")
    plate = await nameplate(client, login, demo["STORE-NB-01"])
    note = '=HYPERLINK("http://evil.example","x")'
    made = await check_in(
        client,
        rep,
        plate["code"],
        (29.87, 121.553),
        note=note,
        client_at=f"{_days_ago(5)}T10:00:00+08:00",
    )
    assert made.status_code == 201, made.text
    answer = await client.get(
        "/field/checkins",
        headers=await login("admin"),
        params={"format": "csv", "from": _days_ago(5), "to": _days_ago(5)},
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/csv")
    assert answer.content.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(answer.content.decode("utf-8-sig"))))
    assert rows[0][:4] == ["id", "client_id", "rep", "store_erp_code"]
    mine = [r for r in rows[1:] if r[0] == str(made.json()["id"])]
    assert len(mine) == 1 and mine[0][3] == "STORE-NB-01" and mine[0][12] == "ok"
    assert mine[0][13] == "'" + note


async def test_a_phone_time_in_the_future_too_old_or_without_a_zone_is_refused(
    client: Any, login: Any, demo: Any
) -> None:
    """The defect (probes E4, G1): any time from year 1 to 9999 was kept, so a rep put a visit on
    any day's track, or on top of every newest-first list for years."""
    rep = await login("fieldrep")
    plate = await nameplate(client, login, demo["STORE-NB-01"])
    soon = (datetime.now(ZoneInfo("UTC")) + timedelta(minutes=5)).isoformat()
    for bad in ("2999-01-01T00:00:00+08:00", "0001-01-01T00:00:00Z", f"{_days_ago(31)}T12:00:00Z",
                "2026-12-01T10:00:00"):  # fmt: skip
        refused = await check_in(client, rep, plate["code"], (29.87, 121.553), client_at=bad)
        error = assert_error(refused, 400, "invalid_client_at")
        assert error["details"][0]["field"] == "client_at"
    fine = await check_in(client, rep, plate["code"], (29.87, 121.553), client_at=soon)
    assert fine.status_code == 201, fine.text  # a phone's clock a little ahead


async def test_a_review_queued_offline_with_its_check_in_is_dated_at_the_visit(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: a rep's phone, offline at the store, queues the check-in and the review of the
    visit (the staff app's queue). The check-in kept the phone's time (``client_at``) and was
    listed on the visit's day; the review refused ``client_at`` as an unknown field, was dated
    at its upload, and ``GET /field/reviews?from=D&to=D`` of the visit's day D left it out (it
    moved to the upload day, at a month's end to another month's scores). Now a review takes
    the phone's time, checked as a check-in's, and is listed, exported and scored by it."""
    rep, boss = await login("fieldrep"), await login("fieldsup")
    plate = await nameplate(client, login, demo["STORE-HZ-01"])
    visited = datetime.now(ZoneInfo("Asia/Shanghai")).replace(microsecond=0) - timedelta(days=2)
    made = await check_in(client, rep, plate["code"], client_at=visited.isoformat())
    assert made.status_code == 201, made.text
    body = {
        "client_id": client_id(),
        "store_id": demo["STORE-HZ-01"],
        "shelf_score": 2,
        "knowledge_score": 3,
        "checkin_id": made.json()["id"],
        "client_at": visited.isoformat(),
    }
    for bad in ("2999-01-01T00:00:00+08:00", f"{_days_ago(31)}T12:00:00Z", "2026-12-01T10:00:00"):
        refused = await client.post("/field/reviews", headers=rep, json={**body, "client_at": bad})
        assert assert_error(refused, 400, "invalid_client_at")["details"][0]["field"] == "client_at"
    review = await client.post("/field/reviews", headers=rep, json=body)
    assert review.status_code == 201, review.text
    assert datetime.fromisoformat(review.json()["client_at"]) == visited
    again = await client.post("/field/reviews", headers=rep, json=body)  # the queue's re-send
    assert again.status_code == 200 and again.json()["id"] == review.json()["id"]
    later = {**body, "client_at": (visited + timedelta(minutes=1)).isoformat()}
    assert_error(await client.post("/field/reviews", headers=rep, json=later), 409)
    day = visited.date().isoformat()
    period = {"from": day, "to": day, "rep_id": made.json()["rep_id"]}
    listed = await client.get("/field/reviews", headers=boss, params=period)
    assert review.json()["id"] in {r["id"] for r in listed.json()["items"]}, listed.text
    exported = await client.get("/field/reviews", headers=boss, params={**period, "format": "csv"})
    rows = list(csv.reader(io.StringIO(exported.content.decode("utf-8-sig"))))
    row = next(r for r in rows[1:] if r[0] == str(review.json()["id"]))
    assert datetime.fromisoformat(row[rows[0].index("client_at")]) == visited
    scores = await client.get("/field/stores/scores", headers=boss, params={"from": day, "to": day})
    (store,) = [s for s in scores.json()["items"] if s["store_id"] == demo["STORE-HZ-01"]]
    assert datetime.fromisoformat(store["last_at"]) >= visited
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date().isoformat()
    upload_day = await client.get(
        "/field/reviews", headers=boss, params={**period, "from": today, "to": today}
    )
    assert review.json()["id"] not in {r["id"] for r in upload_day.json()["items"]}


async def test_no_visit_is_recorded_at_a_closed_store(
    client: Any, login: Any, demo: Any, conn: Any
) -> None:
    """A probe: a plan refused a deactivated store, a check-in and a review there were taken."""
    admin, rep = await login("admin"), await login("fieldrep")
    made = await client.post(
        "/orgs",
        headers=admin,
        json={
            "kind": "store",
            "name": "Closed store",
            "erp_code": f"CL-{client_id()[:8]}",
            "parent_id": demo["AGENT-ZJ"],
            "latitude": 30.259,
            "longitude": 120.155,
        },
    )
    assert made.status_code == 201, made.text
    store = made.json()["id"]
    plate = await nameplate(client, login, store)
    assert (await client.post(f"/orgs/{store}/deactivate", headers=admin)).status_code == 200
    before = await _count(conn)
    assert_error(await check_in(client, rep, plate["code"]), 422, "org_inactive")
    review = {"client_id": client_id(), "store_id": store, "shelf_score": 3, "knowledge_score": 3}
    assert_error(await client.post("/field/reviews", headers=rep, json=review), 422, "org_inactive")
    assert await _count(conn) == before


def _drawn_names(pdf: bytes) -> list[tuple[float, float, str]]:
    """Each line of the store's name a nameplate PDF draws: its size, its right edge by the
    widths the PDF declares for its CID font (``/DW``, ``/W``), and its text."""
    font = pdf.split(b"/Subtype /CIDFontType0", 1)[1].split(b"endobj", 1)[0].decode()
    default = int(re.search(r"/DW (\d+)", font).group(1))  # type: ignore[union-attr]
    first, last, width = map(int, re.search(r"/W \[(\d+) (\d+) (\d+)\]", font).groups())  # type: ignore[union-attr]
    stream = pdf.split(b"stream\n", 1)[1].split(b"\nendstream", 1)[0].decode()
    lines = []
    for size, x, hexed in re.findall(
        r"BT /F2 ([0-9.]+) Tf ([0-9.]+) [0-9.]+ Td <([0-9A-F]*)> Tj", stream
    ):
        text = "".join(chr(int(hexed[i : i + 4], 16)) for i in range(0, len(hexed), 4))
        # UniGB-UCS2-H: the ASCII characters are CIDs 1-95 (space = 1)
        ems = sum(
            (width if first <= ord(c) - 31 <= last and ord(c) < 127 else default) / 1000
            for c in text
        )
        lines.append((float(size), float(x) + ems * float(size), text))
    return lines


@pytest.mark.parametrize(
    "name",
    [
        "Hangzhou West Lake Store 杭州西湖店",
        "杭州西湖店",
        "浙江省杭州市西湖区文三路数码广场一楼东侧专柜旗舰体验店第二分店",
        "Zhejiang Hangzhou Xihu District Wensan Road Digital Plaza First Floor East Counter",
    ],
)
def test_a_nameplate_prints_the_whole_store_name_on_the_page(name: str) -> None:
    """A probe: the name was drawn at 14 pt in a font with no widths (every glyph a full em): the
    demo store's name of 30 characters ran ~150 pt off the A6 page, and any name past 40 characters
    was cut silently. It is now one or two lines at the largest size that fits."""
    pdf = nameplates.pdf("https://t.example/m/n/N1.X", name, "ST-1")
    lines = _drawn_names(pdf)
    assert 1 <= len(lines) <= 2
    assert all(7 <= size <= 14 and edge <= 298 - 30 + 0.01 for size, edge, _ in lines), lines
    drawn = "".join(text for _, _, text in lines)
    assert drawn.replace(" ", "") == name.replace(" ", "")  # all of it, in order


def test_a_name_too_long_for_two_lines_ends_in_an_ellipsis() -> None:
    lines = _drawn_names(nameplates.pdf("https://t.example/m/n/N1.X", "杭州" * 80, "ST-1"))
    assert len(lines) == 2 and lines[1][2].endswith("…")
    assert all(edge <= 298 - 30 + 0.01 for _, edge, _ in lines)


async def test_a_check_in_synced_while_its_rep_edits_the_plan_is_not_lost(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: the phone's offline queue sends a check-in linked to a plan item (``plan_item_id``)
    while the rep, on the console or the app, moves that visit to another day (PUT of the plan: the
    old item is deleted). The check-in's INSERT reads the item (still committed), then its foreign-
    key check waits for the edit and fails once it commits: 409 ``in_use``, and the queue drops a
    409 as final, so the visit is lost. It is kept (201): the item is read ``FOR KEY SHARE``, so
    the check-in waits for the edit and finds the item gone. The edit's transaction is held open at
    its audit write (a table lock from a second connection) so the interleaving happens every
    time."""
    rep = await login("fieldrep")
    store = demo["STORE-HZ-01"]
    plate = await nameplate(client, login, store)
    made = await client.post(
        "/field/plans",
        headers=rep,
        json={
            "period": "week",
            "starts_on": "2030-06-03",
            "items": [{"store_id": store, "planned_on": "2030-06-04"}],
        },
    )
    assert made.status_code == 201, made.text
    plan = made.json()
    item = plan["items"][0]["id"]
    # waits seen in pg_locks, not sleeps: a loaded CI machine took longer than a fixed pause
    async with app.state.pool.connection() as blocker, app.state.pool.connection() as watch:
        await blocker.execute("LOCK TABLE audit_log IN EXCLUSIVE MODE")
        edit = asyncio.create_task(
            client.put(
                f"/field/plans/{plan['id']}",
                headers=rep,
                json={"items": [{"store_id": store, "planned_on": "2030-06-05"}]},
            )
        )
        # the edit has deleted the item and waits at its audit row
        assert await lock_waiters(watch, 1), "the edit should wait at its audit row"
        visit = asyncio.create_task(check_in(client, rep, plate["code"], plan_item_id=item))
        # the check-in waits on the deleted item's row
        assert await lock_waiters(watch, 2), "the check-in should wait for the edit"
        await blocker.rollback()
    edited, checked = await edit, await visit
    assert edited.status_code == 200, edited.text
    assert checked.status_code == 201, checked.text
    assert checked.json()["plan_item_id"] is None  # the item it named is gone: kept unlinked


async def test_two_store_positions_set_at_once_are_audited_one_after_the_other(
    client: Any, app: Any, login: Any, demo: Any
) -> None:
    """A probe: two ``PUT /field/stores/{id}/position`` at once (a supervisor and the brand
    correcting a store's coordinates) both read the old position before either wrote: both
    audit rows' ``before`` named the original position, and the history never showed the one
    the second change replaced. The store's row is held where ``before`` is read now, as
    ``app.orgs.service.update_org`` holds it."""
    admin = await login("admin")
    made = await client.post(
        "/orgs",
        headers=admin,
        json={"kind": "store", "name": "Twice placed", "erp_code": f"STORE-TP-{client_id()}",
              "parent_id": demo["AGENT-ZJ"]},
    )  # fmt: skip
    assert made.status_code == 201, made.text
    store = made.json()["id"]
    answers = await twice_held(
        app,
        client,
        "SELECT 1 FROM orgs WHERE id = %s FOR UPDATE",
        (store,),
        "PUT",
        f"/field/stores/{store}/position",
        admin,
        bodies=({"lat": 30.1, "lng": 120.1}, {"lat": 30.2, "lng": 120.2}),
    )
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    first, second = await audit_rows(app, "org", store, "set_position")
    assert second["before"] == {"lat": first["after"]["lat"], "lng": first["after"]["lng"]}, (
        f"history: {first['before']} -> {first['after']}, then "
        f"{second['before']} -> {second['after']}: a change is missing"
    )


async def test_a_store_position_set_to_what_it_is_writes_no_audit_row(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: README ("Every change writes an audit row; a call that changes nothing ...
    answers 200 with the entity as it is and writes no row"): ``PUT /field/stores/{id}/position``
    with the store's current position wrote a ``set_position`` row whose before and after were
    the same (and bumped ``updated_at``). Now 200 with the position, no write, no row."""
    admin = await login("admin")
    made = await client.post(
        "/orgs",
        headers=admin,
        json={"kind": "store", "name": "Placed again", "erp_code": f"PZF-{client_id()}",
              "parent_id": demo["AGENT-ZJ"]},
    )  # fmt: skip
    assert made.status_code == 201, made.text
    store = made.json()["id"]
    url = f"/field/stores/{store}/position"
    first = await client.put(url, headers=admin, json={"lat": 30.25, "lng": 120.15})
    assert first.status_code == 200, first.text
    stamped = (await client.get(f"/orgs/{store}", headers=admin)).json()["updated_at"]
    again = await client.put(url, headers=admin, json={"lat": 30.25, "lng": 120.15})
    assert again.status_code == 200, again.text
    assert again.json() == {"store_id": store, "lat": 30.25, "lng": 120.15}
    rows = await audit_rows(app, "org", store, "set_position")
    assert len(rows) == 1, f"a no-op position write was audited: {rows}"
    assert (await client.get(f"/orgs/{store}", headers=admin)).json()["updated_at"] == stamped


async def test_a_store_does_not_field_audit_itself(client: Any, login: Any, demo: Any) -> None:
    """A probe: a store's own manager (``org_admin`` at the store, so holding every field
    permission) set the position the store's visits are measured from, "checked in" at its own
    store and scored its own shelf 5/5, counted in the brand's ``GET /field/stores/scores``.
    Field work on a store is for those above it: the store's own staff get 404 (as for a store
    outside their subtree) to a position, a check-in, a review, and 422 ``unknown_store`` to a
    plan; printing its nameplate stays theirs. The agent above it and its reps go on."""
    admin = await login("admin")
    made = await client.post(
        "/orgs",
        headers=admin,
        json={"kind": "store", "name": "Self-audit", "erp_code": f"PZS-{client_id()}",
              "parent_id": demo["AGENT-ZJ"], "latitude": HZ[0], "longitude": HZ[1]},
    )  # fmt: skip
    assert made.status_code == 201, made.text
    store = made.json()["id"]
    _, manager = await _user(client, admin, store, ["org_admin"])
    position = {"lat": HZ[0] + 0.01, "lng": HZ[1]}
    moved = await client.put(f"/field/stores/{store}/position", headers=manager, json=position)
    assert_error(moved, 404)
    plate = await client.get(f"/field/stores/{store}/nameplate", headers=manager)
    assert plate.status_code == 200, plate.text
    assert_error(await check_in(client, manager, plate.json()["code"]), 404)
    review = {"store_id": store, "shelf_score": 5, "knowledge_score": 5}
    reviewed = await client.post(
        "/field/reviews", headers=manager, json={"client_id": client_id(), **review}
    )
    assert_error(reviewed, 404)
    planned = await client.post(
        "/field/plans",
        headers=manager,
        json={"period": "week", "starts_on": "2031-07-07",
              "items": [{"store_id": store, "planned_on": "2031-07-08"}]},
    )  # fmt: skip
    assert_error(planned, 422, "unknown_store")
    scores = await client.get("/field/stores/scores", headers=admin, params={"per_page": 200})
    assert store not in [s["store_id"] for s in scores.json()["items"]]
    # those above it: the agent's admin places it, a rep of the agent visits and scores it
    placed = await client.put(
        f"/field/stores/{store}/position", headers=await login("agent_admin"), json=position
    )
    assert placed.status_code == 200, placed.text
    rep = await login("fieldrep")
    checked = await check_in(client, rep, plate.json()["code"], (position["lat"], HZ[1]))
    assert checked.status_code == 201 and checked.json()["flag"] == "ok", checked.text
    reviewed = await client.post(
        "/field/reviews", headers=rep, json={"client_id": client_id(), **review}
    )
    assert reviewed.status_code == 201, reviewed.text


async def test_the_rep_filter_offers_every_rep_the_caller_may_filter_by(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: the console's rep filter (check-ins, plans, reviews) offered the reps of the
    newest 200 records only: a quiet rep behind a busy one's 200 check-ins could not be picked,
    and a supervisor may not search the user directory. ``GET /field/reps`` lists, searched by
    name, the reps the caller's lists can be filtered by: a rep itself, a supervisor also its
    reps, a ``field.read`` holder its subtree's users who visit stores; another brand none."""
    from tests.field_support import other_brand_admin

    admin, tag = await login("admin"), f"rs{secrets.token_hex(3)}"
    zj = demo["AGENT-ZJ"]
    sup_id, sup = await _user(client, admin, zj, ["field_supervisor"], f"{tag}s")
    rep_id, _ = await _user(client, admin, zj, ["field_rep"], f"{tag}a")
    other_id, other = await _user(client, admin, zj, ["field_rep"], f"{tag}b")
    await _user(client, admin, zj, ["inspector"], f"{tag}c")  # visits no store
    boss = await client.put(
        f"/field/reps/{rep_id}/supervisor", headers=admin, json={"supervisor_id": sup_id}
    )
    assert boss.status_code == 200, boss.text

    async def offered(headers: dict[str, str]) -> set[int]:
        answer = await client.get("/field/reps", headers=headers, params={"q": tag})
        assert answer.status_code == 200, answer.text
        return {r["id"] for r in answer.json()["items"]}

    assert await offered(sup) == {sup_id, rep_id}
    assert await offered(other) == {other_id}
    assert await offered(admin) == {sup_id, rep_id, other_id}
    assert await offered(await other_brand_admin(client, login)) == set()
    assert_error(await client.get("/field/reps", headers=await login("planner")), 403)
    named = await client.get("/field/reps", headers=sup, params={"q": f"{tag}a"})
    assert named.json()["items"] == [
        {"id": rep_id, "name": f"{tag}a", "username": f"{tag}a", "status": "active"}
    ]


async def test_a_stores_own_admin_moves_its_position_nowhere(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: ``PUT /field/stores/{id}/position`` refused the store's own staff (404), but
    ``PATCH /orgs/{id}`` on its own organisation wrote the same position for its org_admin —
    moved to where a rep then checked in 140 km away, the visit was judged in range. The
    position through ``PATCH /orgs`` and the organisation import is 422 ``own_org`` for the
    store's own staff; the agent above it still sets it there."""
    agent_admin = await login("agent_admin")
    store = await new_org(
        client, agent_admin, "store", demo["AGENT-ZJ"], latitude=HZ[0], longitude=HZ[1]
    )
    manager = await new_user(client, agent_admin, store["id"], ["org_admin"])
    own = await login(manager["username"], manager["password"])
    far = {"latitude": 29.8700, "longitude": 121.5530}  # Ningbo
    path = f"/orgs/{store['id']}"
    assert_error(await client.patch(path, headers=own, json=far), 422, "own_org")
    row = {"erp_code": store["erp_code"], "latitude": far["latitude"]}
    answer = await client.post("/orgs/import", headers=own, json={"items": [row]})
    assert answer.status_code == 200 and answer.json()["rejected"] == 1, answer.text
    assert [e["code"] for e in answer.json()["errors"]] == ["own_org"], answer.text
    renamed = await client.patch(path, headers=own, json={"name": f"{store['name']} 2"})
    assert renamed.status_code == 200, renamed.text  # the rest of its own record: its own
    plate = (await nameplate(client, login, store["id"]))["code"]
    checked = await check_in(client, await login("fieldrep"), plate, at=tuple(far.values()))
    assert checked.status_code == 201 and checked.json()["flag"] == "out_of_range", checked.text
    moved = await client.patch(path, headers=agent_admin, json=far)
    assert moved.status_code == 200 and moved.json()["latitude"] == far["latitude"], moved.text
