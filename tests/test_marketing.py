"""Promotions per province (SPEC W2) and complaints and suggestions (SPEC W3), app/marketing/ and
the member's pages of both (app/web/marketing_pages.py): over HTTP on real PostgreSQL and Redis.

Promotions: brand staff write them for provinces, members see only their province's (and every
province's) published ones in their window, on the API and on the phone site. Complaints: a
member files one from the phone site or the API (idempotent, limited), the brand's staff list,
take, answer and close it (one of two at once wins), the member reads the answer. Every bad path:
bad input, anonymous, a role without the permission, below the brand, another brand.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from app._core import gs1_check_digit
from tests.h5_support import activated_batch, new_product, text_of, unit
from tests.helpers import assert_error, onboarded_brand
from tests.images import png
from tests.points_support import member_client, new_member
from tests.race_support import audit_rows, twice_held
from tests.test_catalog_media import mp4, upload
from tests.test_h5_members import field


async def _openapi_paths(client: Any) -> list[str]:
    answer = await client.get("/schema/openapi.json")
    assert answer.status_code == 200, answer.text
    return list(answer.json()["paths"])


def _tag() -> str:
    return secrets.token_hex(4)


def _at(days: float) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


async def _promotion(client: Any, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    body = {"title": f"Promo {_tag()}", "body": "Line one\nLine two", "published": True, **fields}
    made = await client.post("/promotions", headers=headers, json=body)
    assert made.status_code == 201, made.text
    return made.json()  # type: ignore[no-any-return]


async def _shown(client: Any, member: dict[str, str]) -> set[str]:
    answer = await client.get("/members/me/promotions", headers=member, params={"per_page": 200})
    assert answer.status_code == 200, answer.text
    return {p["title"] for p in answer.json()["items"]}


async def _file(client: Any, member: dict[str, str], **fields: Any) -> httpx.Response:
    body = {"kind": "complaint", "body": f"The cap leaks {_tag()}", **fields}
    return await client.post("/members/me/complaints", headers=member, json=body)  # type: ignore[no-any-return]


async def _filed(client: Any, member: dict[str, str], **fields: Any) -> dict[str, Any]:
    made = await _file(client, member, **fields)
    assert made.status_code == 201, made.text
    return made.json()  # type: ignore[no-any-return]


def _signed_in(app: Any, headers: dict[str, str]) -> httpx.AsyncClient:
    """A phone of its own, signed in as the member of ``headers`` (the pages' cookie)."""
    mc = member_client(app)
    mc.cookies.set("tc_member", headers["Authorization"].split()[1])
    return mc


# -- the probe's findings ------------------------------------------------------------------------


async def test_promotions_are_set_per_province(client: Any) -> None:
    """A probe: seed 1.10.2 "促销信息设置: 针对不同的区域(省份),设置促销信息。消费者在不同的区域登陆
    仅能看到该区域的促销活动信息" (SPEC W2). There was no promotion record at all: no endpoint
    created one for a province, and no member page showed the member's region's promotions.
    Expected: promotions created by brand staff with their provinces, and a member page/endpoint
    listing only those of the member's province."""
    paths = await _openapi_paths(client)
    assert [p for p in paths if "promotion" in p or "promo" in p], "no promotions endpoint"


async def test_a_consumer_can_file_a_complaint_handled_in_the_back_office(client: Any) -> None:
    """A probe: seed 1.10.1 "客户投诉与建议: 消费者通过手机网站可以进行投诉,投诉信息通过网络上传到
    系统后台" (SPEC W3). No H5 page took a complaint and no endpoint listed or handled one.
    Expected: a complaint form on the phone site and a back-office list with a handling
    state."""
    paths = await _openapi_paths(client)
    found = [p for p in paths if re.search(r"complain|feedback|suggest", p)]
    assert found, "no complaints endpoint"


# -- promotions ----------------------------------------------------------------------------------


async def test_a_member_sees_only_the_promotions_of_their_province(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    marketer = await login("marketer")
    zhejiang = await _promotion(client, marketer, provinces=["浙江"])
    guangdong = await _promotion(client, marketer, provinces=["Guangdong"])
    everywhere = await _promotion(client, marketer)
    draft = await _promotion(client, marketer, published=False)
    ended = await _promotion(client, marketer, starts_at=_at(-10), ends_at=_at(-1))
    future = await _promotion(client, marketer, starts_at=_at(2))
    assert zhejiang["provinces"] == ["浙江省"] and guangdong["provinces"] == ["广东省"]
    assert everywhere["provinces"] == []

    _, in_zhejiang, _ = await new_member(app, demo["BRAND-LUMI"], province="浙江省")
    _, in_guangdong, _ = await new_member(app, demo["BRAND-LUMI"], province="广东省")
    _, nowhere, _ = await new_member(app, demo["BRAND-LUMI"], province=None)
    mine = {p["title"] for p in (zhejiang, guangdong, everywhere, draft, ended, future)}
    assert await _shown(client, in_zhejiang) & mine == {zhejiang["title"], everywhere["title"]}
    assert await _shown(client, in_guangdong) & mine == {guangdong["title"], everywhere["title"]}
    assert await _shown(client, nowhere) & mine == {everywhere["title"]}

    # published later: shown from then on; moved to another province: gone
    published = await client.patch(
        f"/promotions/{draft['id']}",
        headers=marketer,
        json={"published": True, "provinces": ["zhejiang"]},
    )
    assert published.status_code == 200, published.text
    assert draft["title"] in await _shown(client, in_zhejiang)
    assert draft["title"] not in await _shown(client, in_guangdong)
    # withdrawn: gone for everyone
    gone = await client.delete(f"/promotions/{everywhere['id']}", headers=marketer)
    assert gone.status_code == 204, gone.text
    assert everywhere["title"] not in await _shown(client, nowhere)
    assert_error(await client.get(f"/promotions/{everywhere['id']}", headers=marketer), 404)

    # the staff's list: by province (every-province ones count), by published
    listed = await client.get(
        "/promotions", headers=marketer, params={"province": "广东省", "per_page": 200}
    )
    titles = {p["title"] for p in listed.json()["items"]}
    assert guangdong["title"] in titles and zhejiang["title"] not in titles
    drafts = await client.get("/promotions", headers=marketer, params={"published": "false"})
    assert all(not p["published"] for p in drafts.json()["items"])


async def test_the_phone_site_shows_the_provinces_promotions_from_the_home_page(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    marketer = await login("marketer")
    tag = _tag()
    here = await _promotion(
        client,
        marketer,
        title=f"西湖 <b>{tag}</b>",
        body="满 200 减 50\n<script>alert(1)</script>",
        provinces=["浙江省"],
        image_url="https://img.example/p.png",
        link_url="https://shop.example/promo",
    )
    there = await _promotion(client, marketer, title=f"Canton {tag}", provinces=["广东省"])
    _, headers, _ = await new_member(app, demo["BRAND-LUMI"], province="浙江省")
    async with _signed_in(app, headers) as mc:
        home = await mc.get("/member", params={"lang": "en"})
        assert home.status_code == 200, home.text
        assert 'href="/member/promotions"' in home.text
        assert 'href="/member/complaints"' in home.text
        page = await mc.get("/member/promotions")
    assert page.status_code == 200, page.text
    assert "<script>alert(1)</script>" not in page.text and "<b>" + tag not in page.text
    assert here["title"] in text_of(page.text) and there["title"] not in text_of(page.text)
    assert 'href="https://shop.example/promo"' in page.text
    assert "满 200 减 50\n&lt;script&gt;" in page.text  # the line break kept, the HTML escaped
    async with member_client(app) as anonymous:
        signed_out = await anonymous.get("/member/promotions")
    assert signed_out.status_code == 303 and "/member/login" in signed_out.headers["location"]


async def test_promotion_input_is_checked(client: Any, login: Any) -> None:
    marketer = await login("marketer")
    base = {"title": f"Checked {_tag()}"}
    for body, field_name in [
        ({**base, "provinces": ["Atlantis"]}, "provinces[0]"),
        ({**base, "image_url": "http://img.example/p.png"}, "image_url"),
        ({**base, "link_url": "javascript:alert(1)"}, "link_url"),
        ({**base, "title": "   "}, "title"),
        ({**base, "title": "x" * 101}, "title"),
        ({**base, "body": "x" * 5001}, "body"),
        ({**base, "published": "yes"}, "published"),
        ({**base, "starts_at": "2026-01-01T00:00:00"}, "starts_at"),  # no offset
        ({**base, "colour": "red"}, "colour"),
    ]:
        answer = await client.post("/promotions", headers=marketer, json=body)
        error = assert_error(answer, 400, "validation_failed")
        assert error["details"][0]["field"] == field_name, (body, error)
    for bad in ("Nul\u0000here", "Esc\u001bhere", "Bidi\u202ehere"):
        answer = await client.post("/promotions", headers=marketer, json={**base, "body": bad})
        assert_error(answer, 400, "invalid_character")
    window = {**base, "starts_at": _at(2), "ends_at": _at(1)}
    assert_error(await client.post("/promotions", headers=marketer, json=window), 422, "bad_window")
    made = await _promotion(client, marketer, starts_at=_at(1))
    later = await client.patch(
        f"/promotions/{made['id']}", headers=marketer, json={"ends_at": _at(0.5)}
    )
    assert_error(later, 422, "bad_window")


async def test_promotions_are_the_brand_staffs_and_audited(
    client: Any, login: Any, app: Any
) -> None:
    marketer, admin = await login("marketer"), await login("admin")
    made = await _promotion(client, marketer)
    path = f"/promotions/{made['id']}"
    assert_error(await client.post("/promotions", json={"title": "anon"}), 401)
    assert_error(await client.get("/promotions"), 401)
    for user in ("clerk", "service"):  # no promotions.write
        headers = await login(user)
        assert_error(await client.get("/promotions", headers=headers), 403, "permission_denied")
        assert_error(await client.patch(path, headers=headers, json={"title": "x"}), 403)
    # an organisation's admin below the brand cannot hold it (brand-only)
    manager = await login("store_manager")
    assert_error(await client.post("/promotions", headers=manager, json={"title": "x"}), 403)

    other_brand, other = await onboarded_brand(client, login)
    assert_error(await client.get(path, headers=other), 404, "not_found")
    assert_error(await client.patch(path, headers=other, json={"title": "hijacked"}), 404)
    _, their_member, _ = await new_member(app, other_brand["id"], province="浙江省")
    assert made["title"] not in await _shown(client, their_member)  # every province: of its brand
    assert_error(await client.delete(path, headers=other), 404)
    theirs = await client.get("/promotions", headers=other, params={"per_page": 200})
    assert made["id"] not in {p["id"] for p in theirs.json()["items"]}

    assert len(await audit_rows(app, "promotion", made["id"], "create")) == 1
    same = await client.patch(path, headers=admin, json={"title": made["title"]})
    assert same.status_code == 200, same.text
    assert await audit_rows(app, "promotion", made["id"], "update") == []  # nothing changed
    changed = await client.patch(path, headers=admin, json={"title": "Renamed", "link_url": None})
    assert changed.status_code == 200 and changed.json()["title"] == "Renamed"
    (row,) = await audit_rows(app, "promotion", made["id"], "update")
    assert row["before"]["title"] == made["title"] and row["after"]["title"] == "Renamed"


async def test_a_promotion_names_only_the_brands_own_media_kept_in_use(
    client: Any, login: Any
) -> None:
    """A probe: a promotion's ``image_url`` took another brand's upload by its https URL (201:
    brand B's members saw brand A's file), and the brand's own, shown so, was deleted from under
    it. Now, as a gift's picture and the brand story: its picture (an image) and link name only
    the brand's own media (400 ``unknown_catalog_media`` with ``details.field``, on create and
    on PATCH); such a medium is listed in use (``in_offers``) and 409 ``in_use``
    (``details.promotion_id``) to a deletion until the promotion drops it or is withdrawn."""
    _, theirs = await onboarded_brand(client, login)
    _, ours = await onboarded_brand(client, login)

    def https(medium: dict[str, Any]) -> str:
        return "https://" + str(medium["absolute_url"]).split("://", 1)[1]

    alien = (await upload(client, theirs, png(secrets.randbelow(1 << 24)))).json()
    image = (await upload(client, ours, png(secrets.randbelow(1 << 24)))).json()
    video = (await upload(client, ours, mp4(3000, secrets.token_bytes(8)))).json()
    for fields in (
        {"image_url": https(alien)},
        {"link_url": https(alien)},
        {"image_url": https(video)},  # a picture is an image
    ):
        made = await client.post("/promotions", headers=ours, json={"title": "Sale", **fields})
        error = assert_error(made, 400, "unknown_catalog_media")
        assert error["details"] == {"field": next(iter(fields))}, fields
    made = await _promotion(client, ours, image_url=https(image), link_url=https(video))
    path = f"/promotions/{made['id']}"
    for medium in (image, video):
        used = assert_error(await client.delete(medium["url"], headers=ours), 409, "in_use")
        assert used["details"] == {"promotion_id": made["id"]}
    listed = await client.get("/media/catalog", headers=ours)
    assert {i["id"]: i["in_offers"] for i in listed.json()["items"]} == {
        image["id"]: True,
        video["id"]: True,
    }
    for field_name in ("image_url", "link_url"):
        patched = await client.patch(path, headers=ours, json={field_name: https(alien)})
        assert_error(patched, 400, "unknown_catalog_media")
    dropped = await client.patch(path, headers=ours, json={"image_url": None})
    assert dropped.status_code == 200, dropped.text
    assert (await client.delete(image["url"], headers=ours)).status_code == 204
    assert (await client.delete(path, headers=ours)).status_code == 204
    assert (await client.delete(video["url"], headers=ours)).status_code == 204


# -- complaints: the member's side ---------------------------------------------------------------


async def test_a_member_files_about_a_pack_and_reads_the_brands_answer(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    product = await new_product(client, login, name=f"Complaint cream {_tag()}")
    batch_no = await activated_batch(client, login, demo, product["id"], size=2)
    serial, _ = unit(app, batch_no, 0)
    member_id, member, phone = await new_member(app, demo["BRAND-LUMI"])
    by_serial = await _filed(client, member, serial=f" {serial.lower()} ", contact="sms")
    assert by_serial["serial"] == serial and by_serial["product_name"] == product["name"]
    assert by_serial["status"] == "open" and by_serial["reply"] is None
    by_gtin = await _filed(client, member, kind="suggestion", gtin=product["gtin"])
    assert by_gtin["gtin"] == product["gtin"].zfill(14)
    assert by_gtin["product_name"] == product["name"]
    fake = await _filed(client, member, serial="NOT-A-REAL-CODE-123", store_name="夜市摊位")
    assert fake["serial"] == "NOT-A-REAL-CODE-123" and fake["product_name"] is None

    service, admin = await login("service"), await login("admin")
    listed = await client.get(
        "/complaints", headers=service, params={"product_id": product["id"], "per_page": 200}
    )
    assert listed.status_code == 200, listed.text
    rows = {r["id"]: r for r in listed.json()["items"]}
    assert set(rows) == {by_serial["id"], by_gtin["id"]}
    assert rows[by_serial["id"]]["phone"] == phone[:3] + "****" + phone[-4:]  # masked
    assert rows[by_serial["id"]]["member_id"] == member_id
    whole = await client.get(f"/complaints/{by_serial['id']}", headers=admin)
    assert whole.json()["phone"] == phone  # members.read_phone
    suggestions = await client.get(
        "/complaints",
        headers=service,
        params={"kind": "suggestion", "product_id": product["id"]},
    )
    assert [r["id"] for r in suggestions.json()["items"]] == [by_gtin["id"]]

    taken = await client.post(f"/complaints/{by_serial['id']}/take", headers=service)
    assert taken.status_code == 200 and taken.json()["status"] == "handling", taken.text
    assert taken.json()["handler_name"] == "Member service (customer service)"
    answer = "很抱歉！我们将为您更换。\nSorry: we will replace it."
    replied = await client.post(
        f"/complaints/{by_serial['id']}/reply", headers=service, json={"reply": answer}
    )
    assert replied.status_code == 200 and replied.json()["reply"] == answer, replied.text
    closed = await client.post(f"/complaints/{by_serial['id']}/close", headers=service, json={})
    assert closed.json()["status"] == "closed" and closed.json()["reply"] == answer
    # closing an open one with a last word: taken on the way, by the closer
    direct = await client.post(
        f"/complaints/{by_gtin['id']}/close", headers=admin, json={"reply": "Thank you!"}
    )
    assert direct.json()["status"] == "closed" and direct.json()["handler_name"]

    mine = await client.get("/members/me/complaints", headers=member)
    shown = {c["id"]: c for c in mine.json()["items"]}
    assert shown[by_serial["id"]]["status"] == "closed"
    assert shown[by_serial["id"]]["reply"] == answer
    assert shown[by_gtin["id"]]["reply"] == "Thank you!" and shown[fake["id"]]["status"] == "open"
    _, someone_else, _ = await new_member(app, demo["BRAND-LUMI"])
    theirs = await client.get("/members/me/complaints", headers=someone_else)
    assert theirs.json()["total"] == 0  # a member reads its own only

    for step, body in [("take", None), ("reply", {"reply": "again"}), ("close", {})]:
        again = await client.post(
            f"/complaints/{by_serial['id']}/{step}", headers=service, json=body
        )
        assert_error(again, 409, "complaint_closed")
    rows = await audit_rows(app, "complaint", by_serial["id"], "reply")
    assert rows and "reply" not in rows[0]["after"] and "phone" not in str(rows)


async def test_filing_is_idempotent_and_limited_per_member(
    client: Any, app: Any, demo: Any
) -> None:
    _, member, _ = await new_member(app, demo["BRAND-LUMI"])
    first = await _file(client, member, body="Once", client_id="phone-1")
    assert first.status_code == 201, first.text
    again = await _file(client, member, body="Once", client_id="phone-1")
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"], again.text
    other = await _file(client, member, body="Another", client_id="phone-1")
    assert_error(other, 409, "client_id_reused")
    _, second_member, _ = await new_member(app, demo["BRAND-LUMI"])
    theirs = await _file(client, second_member, body="Once", client_id="phone-1")
    assert theirs.status_code == 201  # a client id is the member's own

    for i in range(9):  # ten in the hour
        assert (await _file(client, member, body=f"n{i}")).status_code == 201
    over = await _file(client, member, body="eleventh")
    assert_error(over, 429, "rate_limited")
    assert int(over.headers["Retry-After"]) > 0
    replay = await _file(client, member, body="Once", client_id="phone-1")
    assert replay.status_code == 200  # a retry of one filed is no new filing
    mine = await client.get("/members/me/complaints", headers=member, params={"per_page": 50})
    assert mine.json()["total"] == 10


async def test_retries_of_one_filing_sent_at_once_count_once(
    client: Any, app: Any, demo: Any
) -> None:
    """A probe: one filing's retries (same ``client_id``) sent at once — a double tap, a flaky
    network — were each counted against the member's limit (none found the others' uncommitted
    filing; the INSERT's ``ON CONFLICT`` made them replays after the count), and the member's
    tenth filing was refused. The retries now wait for the first and answer it, uncounted."""
    from app.marketing.complaints import FILING_MAX

    _, member, _ = await new_member(app, demo["BRAND-LUMI"])

    async def file(client_id: str, body: str) -> httpx.Response:
        async with member_client(app) as phone:
            return await _file(phone, member, body=body, client_id=client_id)

    first = await asyncio.gather(*[file("tap", "More sizes please") for _ in range(6)])
    assert sorted(a.status_code for a in first) == [200] * 5 + [201], [a.text for a in first]
    assert len({a.json()["id"] for a in first}) == 1
    others = [await file(f"n{i}", f"Idea {i}") for i in range(FILING_MAX - 1)]
    assert [a.status_code for a in others] == [201] * (FILING_MAX - 1), others[-1].text
    assert_error(await file("eleventh", "One too many"), 429, "rate_limited")


async def test_complaint_input_is_checked(client: Any, login: Any, app: Any, demo: Any) -> None:
    _, member, _ = await new_member(app, demo["BRAND-LUMI"])
    for fields, field_name in [
        ({"body": " \u3000\u200b "}, "body"),
        ({"body": "x" * 2001}, "body"),
        ({"kind": "praise"}, "kind"),
        ({"contact": "pigeon"}, "contact"),
        ({"store_name": "s" * 101}, "store_name"),
        ({"serial": "x" * 201}, "serial"),
        ({"gtin": "12ab"}, "gtin"),
        ({"client_id": "with space"}, "client_id"),
        ({"member_id": 1}, "member_id"),
        ({"body": 42}, "body"),
    ]:
        answer = await _file(client, member, **fields)
        error = assert_error(answer, 400, "validation_failed")
        assert error["details"][0]["field"] == field_name, (fields, error)
    wrong = "690123456789" + str((gs1_check_digit("690123456789") + 1) % 10)
    assert_error(await _file(client, member, gtin=wrong), 400, "invalid_gtin")
    for bad in ("nul\u0000", "bell\u0007", "\u202eevil"):
        assert_error(await _file(client, member, body=bad), 400, "invalid_character")
    anonymous = await client.post("/members/me/complaints", json={"kind": "complaint"})
    assert_error(anonymous, 401, "unauthorized")
    staff = await client.post(
        "/members/me/complaints", headers=await login("admin"), json={"kind": "complaint"}
    )
    assert_error(staff, 401)  # a staff token is no member's
    assert_error(await client.get("/members/me/promotions"), 401)
    mine = await client.get("/members/me/complaints", headers=member)
    assert mine.json()["total"] == 0  # nothing refused was kept


# -- complaints: the back office -----------------------------------------------------------------


async def test_complaints_are_the_brand_staffs(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    _, member, _ = await new_member(app, demo["BRAND-LUMI"])
    filed = await _filed(client, member)
    path = f"/complaints/{filed['id']}"
    assert_error(await client.get("/complaints"), 401)
    assert_error(await client.post(f"{path}/take"), 401)
    for user in ("marketer", "clerk", "store_manager"):  # none holds complaints.handle
        headers = await login(user)
        assert_error(await client.get("/complaints", headers=headers), 403, "permission_denied")
        assert_error(await client.post(f"{path}/take", headers=headers), 403)
    _, other = await onboarded_brand(client, login)
    assert_error(await client.get(path, headers=other), 404, "not_found")
    assert_error(await client.post(f"{path}/take", headers=other), 404)
    assert_error(await client.post(f"{path}/reply", headers=other, json={"reply": "x"}), 404)
    theirs = await client.get("/complaints", headers=other, params={"per_page": 200})
    assert filed["id"] not in {c["id"] for c in theirs.json()["items"]}
    assert_error(await client.get("/complaints/987654321", headers=await login("service")), 404)
    mine = await client.get(path, headers=await login("service"))
    assert mine.json()["status"] == "open"  # nothing above changed it


async def test_two_staff_taking_one_complaint_at_once_one_wins(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    _, member, _ = await new_member(app, demo["BRAND-LUMI"])
    filed = await _filed(client, member)
    answers = await twice_held(
        app,
        client,
        "SELECT 1 FROM complaints WHERE id = %s FOR UPDATE",
        (filed["id"],),
        "POST",
        f"/complaints/{filed['id']}/take",
        await login("service"),
    )
    codes = sorted(a.status_code for a in answers)
    assert codes == [200, 409], [a.text for a in answers]
    refused = next(a for a in answers if a.status_code == 409)
    assert assert_error(refused, 409, "already_taken")["details"]["status"] == "handling"
    assert len(await audit_rows(app, "complaint", filed["id"], "take")) == 1


async def test_an_api_keys_handling_is_its_makers(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    admin = await login("admin")
    key = await client.post(
        "/api-keys", headers=admin, json={"name": "crm", "permissions": ["complaints.handle"]}
    )
    assert key.status_code == 201, key.text
    _, member, _ = await new_member(app, demo["BRAND-LUMI"])
    filed = await _filed(client, member)
    taken = await client.post(
        f"/complaints/{filed['id']}/take", headers={"X-API-Key": key.json()["key"]}
    )
    assert taken.status_code == 200, taken.text
    me = await client.get("/auth/me", headers=admin)
    assert taken.json()["handler_id"] == me.json()["user_id"]


async def test_the_list_filters_pages_and_exports(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    service = await login("service")
    _, member, phone = await new_member(app, demo["BRAND-LUMI"])
    tag = _tag()
    made = [await _filed(client, member, body=f"=HYPERLINK {tag} {i}") for i in range(3)]
    taken = await client.post(f"/complaints/{made[0]['id']}/take", headers=service)
    assert taken.status_code == 200
    today = datetime.now(UTC).astimezone().date().isoformat()
    params = {"status": "open", "from": "2000-01-01", "per_page": 1}
    first = await client.get("/complaints", headers=service, params=params)
    assert first.status_code == 200 and len(first.json()["items"]) == 1
    assert first.json()["items"][0]["id"] == made[2]["id"]  # newest first
    future = await client.get("/complaints", headers=service, params={"from": "2999-01-01"})
    assert future.json()["total"] == 0
    assert_error(
        await client.get(
            "/complaints", headers=service, params={"from": today, "to": "2000-01-01"}
        ),
        400,
        "bad_period",
    )
    assert_error(await client.get("/complaints", headers=service, params={"status": "x"}), 400)
    exports_before = await _exports(app)
    exported = await client.get("/complaints", headers=service, params={"format": "csv"})
    assert exported.status_code == 200, exported.text
    assert exported.headers["content-type"].startswith("text/csv")
    text = exported.content.decode("utf-8-sig")
    assert f"'=HYPERLINK {tag} 0" in text  # formula-guarded
    assert phone not in text and phone[:3] + "****" + phone[-4:] in text
    assert await _exports(app) == exports_before + 1  # audited
    head = await client.head("/complaints", headers=service, params={"format": "csv"})
    assert head.status_code == 200 and await _exports(app) == exports_before + 1


async def _exports(app: Any) -> int:
    async with app.state.pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT count(*) AS n FROM audit_log WHERE entity = 'complaint' "
                "AND action = 'export'"
            )
        ).fetchone()
    return int(row["n"])


# -- complaints on the phone site ----------------------------------------------------------------


async def test_a_member_files_from_the_phone_site_and_reads_the_answer(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    _, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    tag = _tag()
    async with _signed_in(app, headers) as mc:
        page = await mc.get("/member/complaints", params={"lang": "en"})
        assert page.status_code == 200, page.text
        assert 'name="body"' in page.text and 'name="contact"' in page.text
        form = {
            "csrf": field(page.text, "csrf"),
            "client_id": field(page.text, "client_id"),
            "kind": "suggestion",
            "body": f"Smaller bottles please {tag}\n<b>bold</b>",
            "serial": "",
            "store_name": "West Lake",
            "contact": "none",
        }
        forged = await mc.post("/member/complaints", data={**form, "csrf": "x"})
        assert forged.status_code == 403
        sent = await mc.post("/member/complaints", data=form)
        assert sent.status_code == 200, text_of(sent.text)
        assert 'id="notice"' in sent.text and f"Smaller bottles please {tag}" in sent.text
        assert "<b>bold</b>" not in sent.text
        twice = await mc.post("/member/complaints", data=form)  # a double tap: one filing
        assert twice.status_code == 200
        blank = await mc.post("/member/complaints", data={**form, "body": " ", "client_id": "n2"})
        assert blank.status_code == 400 and 'id="form-error"' in blank.text
        nul = await mc.post("/member/complaints", data={**form, "body": "a\x00b"})
        assert nul.status_code == 400
    mine = await client.get("/members/me/complaints", headers=headers)
    assert mine.json()["total"] == 1
    filed = mine.json()["items"][0]
    assert filed["kind"] == "suggestion" and filed["contact"] == "none"
    assert filed["store_name"] == "West Lake" and filed["serial"] is None

    service = await login("service")
    replied = await client.post(
        f"/complaints/{filed['id']}/reply", headers=service, json={"reply": f"Noted {tag}"}
    )
    assert replied.status_code == 200, replied.text
    async with _signed_in(app, headers) as mc:
        page = await mc.get("/member/complaints", params={"lang": "zh"})
    assert f"Noted {tag}" in text_of(page.text) and "处理中" in text_of(page.text)
    async with member_client(app) as anonymous:
        signed_out = await anonymous.get("/member/complaints")
        assert signed_out.status_code == 303
        posted = await anonymous.post("/member/complaints", data={"body": "x"})
        assert posted.status_code == 403  # no CSRF token: refused before anything else


def test_no_literal_words_in_the_marketing_templates() -> None:
    """Every word of the promotions and complaints pages comes from app/web/i18n.py (both
    languages), as the other member pages' do."""
    from pathlib import Path

    from app.web.i18n import WORDS

    for name in ("marketing_html.py", "marketing_pages.py"):
        source = (Path(__file__).parent.parent / "app" / "web" / name).read_text()
        code = re.sub(r'""".*?"""', "", source, flags=re.S)
        code = re.sub(r"#.*", "", code)
        assert not re.search(r"[\u4e00-\u9fff]", code), name
        for key in re.findall(r'word\(\s*"([a-z_]+)"', code):
            assert set(WORDS[key]) == {"zh", "en"}, key


async def test_a_members_copy_holds_its_complaints_and_erasure_takes_their_words(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A member's copy of what the brand holds (PIPL) lists their complaints and suggestions;
    closing the membership takes the member's own words (closed: nobody is left to answer), the
    brand's reply and the record's state stay, anonymous. Before, the copy left them out and the
    words stayed."""
    member_id, member, _ = await new_member(app, demo["BRAND-LUMI"])
    words = f"My neighbour Wang at Room 1202 sold me this {_tag()}"
    answered = await _filed(client, member, body=words, store_name="夜市摊位", contact="phone")
    still_open = await _filed(client, member, kind="suggestion")
    service = await login("service")
    reply = {"reply": "We will call you."}
    assert (
        await client.post(f"/complaints/{answered['id']}/reply", headers=service, json=reply)
    ).status_code == 200

    copy = await client.get("/members/me/export", headers=member)
    assert copy.status_code == 200, copy.text
    kept = {c["id"]: c for c in copy.json()["complaints"]}
    assert set(kept) == {answered["id"], still_open["id"]}
    assert kept[answered["id"]]["body"] == words and kept[answered["id"]]["reply"] == reply["reply"]

    assert (await client.delete("/members/me", headers=member)).status_code in (200, 204)
    admin = await login("admin")
    after = {
        c["id"]: c
        for c in (await client.get("/complaints", headers=admin, params={"per_page": 200})).json()[
            "items"
        ]
        if c["member_id"] == member_id
    }
    assert set(after) == {answered["id"], still_open["id"]}
    assert all(words not in str(c) for c in after.values())
    assert after[answered["id"]]["reply"] == reply["reply"]
    assert after[answered["id"]]["store_name"] is None
    assert {c["status"] for c in after.values()} == {"closed"}


# -- probes of the new features (moved from tests/test_zz_probe_newfeat.py) ----------------------


async def _complaint_form(mc: httpx.AsyncClient) -> dict[str, str]:
    page = await mc.get("/member/complaints")
    assert page.status_code == 200, page.text
    return {
        "csrf": field(page.text, "csrf"),
        "client_id": field(page.text, "client_id"),
        "kind": "complaint",
        "contact": "phone",
    }


async def _mine(client: Any, member: dict[str, str]) -> list[dict[str, Any]]:
    answer = await client.get("/members/me/complaints", headers=member)
    assert answer.status_code == 200, answer.text
    return answer.json()["items"]  # type: ignore[no-any-return]


async def test_a_long_chinese_complaint_is_filed_from_the_phone_page(
    client: Any, app: Any, demo: Any
) -> None:
    """A probe: a consumer on /member/complaints (zh-CN) wrote 600 Chinese characters, well
    within the textarea's and the API's 2,000; the page's POST was capped at the member forms'
    MAX_FORM (4,096 bytes) and a Chinese character is 9 bytes url-encoded: a 413 page with no
    form, the text lost, nothing filed (about 440 characters was the real limit). Now the form
    takes ``COMPLAINT_FORM`` (24 KB): 2,000 such characters are filed."""
    _, member, _ = await new_member(app, demo["BRAND-LUMI"])
    texts = ["瓶盖漏液，膏体变色，" * 60, "买" * 2000]  # 600 characters, and the most allowed
    async with _signed_in(app, member) as mc:
        for text in texts:
            form = {**await _complaint_form(mc), "body": text, "store_name": "西湖" * 50}
            sent = await mc.post("/member/complaints", data=form)
            assert sent.status_code == 200, (sent.status_code, text_of(sent.text)[-300:])
    assert [c["body"] for c in await _mine(client, member)] == texts[::-1]


async def test_a_complaint_with_line_breaks_within_the_textarea_limit_is_filed(
    client: Any, app: Any, demo: Any
) -> None:
    """A probe: a consumer filled the textarea (maxlength=2000, counted on its value, whose
    line breaks are LF) with 2,000 characters in 11 paragraphs. A browser submits a textarea's
    line breaks as CRLF: the server read 2,010 characters and ``complaint_in`` refused them
    (400), although the same text is 2,000 characters through the API. Now the form's CRLF is
    read as the LF the textarea held and the complaint filed as typed."""
    _, member, _ = await new_member(app, demo["BRAND-LUMI"])
    typed = "\n".join(["x" * 190] * 10 + ["y" * 90])  # what the textarea holds
    assert len(typed) == 2000
    async with _signed_in(app, member) as mc:
        form = {**await _complaint_form(mc), "body": typed.replace("\n", "\r\n")}
        sent = await mc.post("/member/complaints", data=form)
    assert sent.status_code == 200, (sent.status_code, text_of(sent.text)[-300:])
    assert [c["body"] for c in await _mine(client, member)] == [typed]


async def test_a_counterfeit_link_named_in_a_complaint_is_kept_as_typed(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: a consumer complained about a fake, pasting in ``serial`` the counterfeiter's
    link its QR code held (the schema takes 200 characters; README: "kept as typed otherwise").
    It was cut to 64 (``_serial_product``: ``text.strip()[:64]``, the column's CHECK): the
    staff saw the counterfeiter's host and lost the code after it, the part that ties this fake
    to others. Now it is kept whole, up to the 200 characters the API accepts."""
    _, member, _ = await new_member(app, demo["BRAND-LUMI"])
    link = "https://fake-verify.example.cn/check?code=LM2026AB12CD34EF56GH78IJ90KL"
    longest = "https://fake.example.cn/" + "Z" * 176
    assert len(link) > 64 and len(longest) == 200
    for serial in (link, longest):
        filed = await _filed(client, member, body="这个二维码打开的网站是假的", serial=serial)
        assert filed["serial"] == serial
        seen = await client.get(f"/complaints/{filed['id']}", headers=await login("service"))
        assert seen.status_code == 200 and seen.json()["serial"] == serial, seen.text
    assert_error(await _file(client, member, serial="Z" * 201), 400, "validation_failed")


async def test_an_unknown_province_filter_is_blamed_on_the_query(client: Any, login: Any) -> None:
    """A probe: ``GET /promotions?province=Atlantis`` (a console filter, a typo in an API
    client) answered field ``province[0]``, source ``body`` (``list_promotions`` reused the
    body's ``member_provinces``), although the request has no body: clients mapping
    ``details[].field`` to the input showed nothing or the wrong place. Now field ``province``,
    source ``query``, as the member list's province filter answers it."""
    marketer = await login("marketer")
    answer = await client.get("/promotions", headers=marketer, params={"province": "Atlantis"})
    detail = assert_error(answer, 400, "validation_failed")["details"][0]
    assert (detail["field"], detail["source"]) == ("province", "query"), detail
    named = await client.get("/promotions", headers=marketer, params={"province": "Zhejiang"})
    assert named.status_code == 200, named.text


async def test_a_promotion_time_at_an_offset_past_14_hours_is_refused(
    client: Any, login: Any
) -> None:
    """RFC 3339 (and msgspec) write offsets up to ±23:59; PostgreSQL takes ±15:59, EPCIS and the
    world's zones ±14:00. A body's time (``app.bodies.AwareTime``: promotions, gifts, draws)
    beyond ±14:00 is refused as any bad time is (400 naming the field); ±14:00 is taken."""
    marketer = await login("marketer")
    base = {"title": f"Far east {_tag()}", "published": True}
    for name, odd in [
        ("starts_at", "2026-12-01T00:00:00+14:30"),
        ("starts_at", "2026-12-01T00:00:00-14:01"),
        ("ends_at", "2026-12-31T00:00:00+23:59"),
        ("ends_at", "2026-12-31T00:00:00-23:59"),
    ]:
        answer = await client.post("/promotions", headers=marketer, json={**base, name: odd})
        error = assert_error(answer, 400, "validation_failed")
        assert error["details"][0]["field"] == name, error
        assert "offset" in error["details"][0]["message"], error
    made = await _promotion(
        client,
        marketer,
        starts_at="2026-12-01T00:00:00+14:00",
        ends_at="2026-12-31T00:00:00-14:00",
        **base,
    )
    later = await client.patch(
        f"/promotions/{made['id']}", headers=marketer, json={"ends_at": "2026-12-31T00:00:00+15:00"}
    )
    assert assert_error(later, 400, "validation_failed")["details"][0]["field"] == "ends_at"
    gone = await client.delete(f"/promotions/{made['id']}", headers=marketer)
    assert gone.status_code == 204, gone.text


async def test_a_promotion_past_the_calendar_is_refused_and_its_last_moment_is_shown(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: a promotion "always on", ending 9999-12-31T23:59:59Z, was created (201), and the
    members' page of promotions was a 500 for every member of its province: in Beijing, where
    the page shows its end, that moment is in year 10000. A time past the calendar's last moment
    in Beijing is refused as any bad date is (400 naming the field); the last one is shown."""
    marketer = await login("marketer")
    base = {"title": f"Always on {_tag()}", "published": True}
    for late in ("9999-12-31T23:59:59Z", "9999-12-31T16:00:00Z", "9999-12-31T23:59:59-12:00"):
        answer = await client.post("/promotions", headers=marketer, json={**base, "ends_at": late})
        error = assert_error(answer, 400, "validation_failed")
        assert error["details"][0]["field"] == "ends_at", error
    early = await client.post(
        "/promotions", headers=marketer, json={**base, "starts_at": "0001-01-01T00:00:00+01:00"}
    )  # year 0 in UTC, where the database keeps it
    assert assert_error(early, 400, "validation_failed")["details"][0]["field"] == "starts_at"
    made = await _promotion(client, marketer, provinces=["浙江省"], **base)
    later = await client.patch(
        f"/promotions/{made['id']}", headers=marketer, json={"ends_at": "9999-12-31T23:59:59Z"}
    )
    assert assert_error(later, 400, "validation_failed")["details"][0]["field"] == "ends_at"
    last = await client.patch(
        f"/promotions/{made['id']}", headers=marketer, json={"ends_at": "9999-12-31T23:59:59+08:00"}
    )
    assert last.status_code == 200, last.text
    _, member, _ = await new_member(app, demo["BRAND-LUMI"], province="浙江省")
    assert made["title"] in await _shown(client, member)
    async with _signed_in(app, member) as mc:
        page = await mc.get("/member/promotions")
    assert page.status_code == 200, page.text
    shown = text_of(page.text)
    assert made["title"] in shown and "9999-12-31 23:59" in shown
    gone = await client.delete(f"/promotions/{made['id']}", headers=marketer)
    assert gone.status_code == 204, gone.text


def test_a_time_past_the_calendar_in_beijing_is_shown_not_a_500() -> None:
    """A time stored before bodies were bounded (``app.bodies.AwareTime``) has no Beijing
    reading: pages show the calendar's last minute, files the time at its own offset."""
    from app.tabular import local_time
    from app.verify.messages import when

    stored = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert when(stored) == "9999-12-31 23:59"
    assert when(datetime(9999, 12, 31, 15, 59, tzinfo=UTC)) == "9999-12-31 23:59"
    assert local_time(stored) == "9999-12-31T23:59:59+00:00"
    assert local_time(datetime(2026, 12, 1, tzinfo=UTC)) == "2026-12-01T08:00:00+08:00"


# -- probes of complaints (moved from tests/test_zz_probe_marketing.py) --------------------------


async def test_closing_a_complaint_without_a_body_closes_it(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: ``close`` ends a complaint "with a last reply if given" (README) and every field
    of ``ComplaintCloseIn`` is optional, but a client closing without a last word and sending
    no body (a CRM, curl, a console button) got 400 ``validation_failed`` "the request body is
    empty". Now no body closes it, as the forensics ``release``/``confirm`` take none."""
    _, member, _ = await new_member(app, demo["BRAND-LUMI"])
    filed = await _filed(client, member)
    service = await login("service")
    answer = await client.post(f"/complaints/{filed['id']}/close", headers=service)
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "closed" and answer.json()["reply"] is None
    again = await client.post(f"/complaints/{filed['id']}/close", headers=service)
    assert_error(again, 409, "complaint_closed")


async def test_a_control_character_in_the_complaint_form_shows_the_form_with_the_text(
    client: Any, app: Any, demo: Any
) -> None:
    """A probe: a text pasted into the textarea with a control character (a vertical tab from a
    word processor, the U+2068/U+2069 isolates an app wraps a name in) was refused at the edge,
    as the connection's dependency read the body: the generic error page "请求无法处理，请稍后再试"
    (try again later — it never helps), no form, the long text typed lost. Now the form again
    (400), the text as typed less those characters, with the reason; sent again, it is filed.
    Nothing with such a character is stored."""
    _, member, _ = await new_member(app, demo["BRAND-LUMI"])
    typed = f"瓶盖漏液，客服电话打不通 {_tag()}"
    async with _signed_in(app, member) as mc:
        for bad in ("\x0b", "\u2068", "\x00", "\u202e"):
            form = {**await _complaint_form(mc), "body": f"{typed}{bad}王先生", "lang": "en"}
            sent = await mc.post("/member/complaints", data=form)
            assert sent.status_code == 400, sent.status_code
            assert 'id="complaint-form"' in sent.text and 'id="form-error"' in sent.text
            assert "hidden characters" in text_of(sent.text), text_of(sent.text)[:300]
            assert f"{typed}王先生</textarea>" in sent.text, text_of(sent.text)[:300]
        assert await _mine(client, member) == []
        again = {**await _complaint_form(mc), "body": f"{typed}王先生"}
        assert (await mc.post("/member/complaints", data=again)).status_code == 200
    assert [c["body"] for c in await _mine(client, member)] == [f"{typed}王先生"]


async def test_an_undecodable_complaint_form_is_refused_not_filed_as_replacement_marks(
    client: Any, app: Any, demo: Any
) -> None:
    """A probe: ``read_form`` decoded the body and its percent escapes with ``errors="replace"``:
    a form whose text is not UTF-8 (a GBK page's form, a truncated escape) was filed as a
    complaint reading "ƿ��©Һ", which the brand's staff cannot read and the member never wrote,
    and thanked. Now it is refused (400 ``malformed_form``): the form again with the reason,
    what did read kept. Raw UTF-8 beside escapes still reads."""
    _, member, _ = await new_member(app, demo["BRAND-LUMI"])
    async with _signed_in(app, member) as mc:
        form = await _complaint_form(mc)
        start = f"csrf={form['csrf']}&client_id={form['client_id']}&kind=suggestion&lang=en"
        gbk = b"".join(b"%%%02X" % b for b in "瓶盖漏液".encode("gbk"))  # a GBK page's form
        for text in (gbk, b"%E7%93", "瓶盖".encode("gbk")):  # escaped, cut short, raw
            sent = await mc.post(
                "/member/complaints",
                content=f"{start}&body=".encode() + text,
                headers={"content-type": "application/x-www-form-urlencoded"},
            )
            assert sent.status_code == 400, (sent.status_code, text_of(sent.text)[:200])
            assert 'id="complaint-form"' in sent.text and "could not be read" in text_of(sent.text)
            assert re.search(r'value="suggestion" checked', sent.text)  # what read, kept
            assert "\ufffd" not in sent.text
        assert await _mine(client, member) == []
        mixed = "瓶".encode() + b"%E7%9B%96"  # raw UTF-8 and an escape: 瓶盖
        sent = await mc.post(
            "/member/complaints",
            content=f"{start}&body=".encode() + mixed,
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert sent.status_code == 200, text_of(sent.text)[:300]
    assert [c["body"] for c in await _mine(client, member)] == ["瓶盖"]


@pytest.mark.parametrize(
    "mixed",
    [b"\xe2%80%ae", b"%e2\x80\xae", b"\xc2%85", b"\xe2\x81%a6"],
    ids=["rlo", "rlo-escaped-after", "nel", "lri"],
)
async def test_a_control_character_half_raw_half_escaped_is_refused_not_filed(
    client: Any, app: Any, demo: Any, mixed: bytes
) -> None:
    """A review: the bytes of a form are checked for a control character sent raw
    (b"\\xe2\\x80\\xae") or escaped (%E2%80%AE), never a mix of the two; read strictly as UTF-8
    field by field, b"\\xe2%80%ae" became U+202E and was filed. Each field is checked as
    decoded: the form again, nothing stored."""
    _, member, _ = await new_member(app, demo["BRAND-LUMI"])
    async with _signed_in(app, member) as mc:
        form = await _complaint_form(mc)
        start = f"csrf={form['csrf']}&client_id={form['client_id']}&kind=complaint&lang=en"
        sent = await mc.post(
            "/member/complaints",
            content=f"{start}&body=cap leaks {_tag()}".encode() + mixed + b"x",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    assert sent.status_code == 400 and 'id="complaint-form"' in sent.text, sent.status_code
    assert await _mine(client, member) == []
