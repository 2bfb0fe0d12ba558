"""Packing line: context, activation, aggregation, rules, undo, replace, idempotent uploads,
races, event log and trace (SPEC P1–P6, L11) — on the real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import itertools
import secrets
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from tests.helpers import activate, assert_error, issue_cases, issue_units, key_of
from tests.race_support import audit_rows, lock_waiters, twice_held

AT = "2026-11-20T09:00:00+08:00"
_ids = itertools.count()


def scan(
    code: str, children: list[str] | None = None, cid: str | None = None, at: str = AT
) -> dict[str, Any]:
    item: dict[str, Any] = {"id": cid or f"s{next(_ids)}", "code": code, "at": at}
    if children is not None:
        item["children"] = children
    return item


async def set_line(client: Any, login: Any, product_id: int, line: str, lot: str = "LOT1") -> None:
    response = await client.put(
        f"/lines/{line}/context",
        headers=await login("operator"),
        json={"product_id": product_id, "lot": lot, "production_date": "2026-11-20"},
    )
    assert response.status_code == 200, response.text


async def upload(client: Any, login: Any, line: str, scans: list[dict[str, Any]]) -> dict[str, Any]:
    response = await client.post(
        f"/lines/{line}/scans", headers=await login("operator"), json={"scans": scans}
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def set_rules(client: Any, login: Any, product_id: int, rules: list[dict[str, Any]]) -> None:
    response = await client.put(
        f"/packing/rules/{product_id}", headers=await login("admin"), json=rules
    )
    assert response.status_code == 200, response.text


async def counts(conn: Any, batch_no: int) -> dict[str, int]:
    """Rows of the event log and the state of one batch's units (for idempotency checks)."""
    lo, hi = batch_no << 32, (batch_no + 1) << 32
    row = await (
        await conn.execute(
            """SELECT (SELECT count(*) FROM unit_state WHERE code >= %(lo)s AND code < %(hi)s) AS units,
                      (SELECT count(*) FROM unit_state WHERE code >= %(lo)s AND code < %(hi)s
                         AND parent_sscc IS NOT NULL) AS bound,
                      (SELECT count(*) FROM event_codes WHERE kind = 'u'
                         AND code >= %(lo)s AND code < %(hi)s) AS unit_events""",
            {"lo": lo, "hi": hi},
        )
    ).fetchone()
    await conn.commit()
    return dict(row)


@pytest.fixture
async def lumi(client: Any, login: Any, demo: Any) -> Any:
    """A fresh 1,000-unit batch of the sun cream with case codes of every level."""

    class Lumi:
        pass

    lumi = Lumi()
    lumi.batch_no, lumi.product_id = await issue_units(client, login, demo, 1000)
    await set_rules(client, login, lumi.product_id, [])  # tests that want rules set their own
    lumi.inner = await issue_cases(client, login, demo, "inner", 100)
    lumi.master = await issue_cases(client, login, demo, "master", 10)
    lumi.pallet = await issue_cases(client, login, demo, "pallet", 2)
    return lumi


def serials(app: Any, batch_no: int, start: int, end: int) -> list[str]:
    return [app.state.scheme.serial(batch_no, i) for i in range(start, end)]


async def test_a_10x10x10_pallet_packs_and_traces(
    client: Any, login: Any, app: Any, conn: Any, lumi: Any
) -> None:
    await set_rules(
        client,
        login,
        lumi.product_id,
        [
            {"level": "inner", "quantity": 10},
            {"level": "master", "quantity": 10},
            {"level": "pallet", "quantity": 10},
        ],
    )
    await set_line(client, login, lumi.product_id, "P1")
    units = serials(app, lumi.batch_no, 0, 1000)
    scans = []
    for m in range(10):
        for c in range(10):
            box = m * 10 + c
            scans += [scan(s) for s in units[box * 10 : box * 10 + 10]]
            scans.append(scan(lumi.inner[box]))
        scans.append(scan(lumi.master[m]))
    scans.append(scan(lumi.pallet[0]))
    body = await upload(client, login, "P1", scans)
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (1111, 0, 0), [
        s for s in body["scans"] if s["result"] != "ok"
    ][:3]
    assert body["scans"][0]["parent"] == lumi.inner[0]
    assert body["scans"][10] == {
        "id": scans[10]["id"],
        "result": "ok",
        "kind": "case",
        "code": lumi.inner[0],
        "parent": lumi.master[0],
    }
    assert await counts(conn, lumi.batch_no) == {"units": 1000, "bound": 1000, "unit_events": 2000}

    # the batch is active now, and a packed unit verifies as genuine with its lot
    operator = await login("operator")
    batch = (await client.get(f"/batches/{lumi.batch_no}", headers=await login("planner"))).json()
    assert batch["state"] == "active"
    answer = await client.post(
        "/v1/verify", json={"serial": units[123], "pin": app.state.scheme.pin(units[123])}
    )
    assert answer.json()["result"] in ("genuine", "suspicious"), answer.text
    assert answer.json()["lot"] == "LOT1"

    trace = (await client.get(f"/trace/{units[123]}", headers=operator)).json()
    assert trace["kind"] == "unit" and trace["code"] == units[123]
    assert trace["product"]["id"] == lumi.product_id
    assert trace["production_date"] == "2026-11-20"
    assert trace["state"]["parent"] == lumi.inner[12]
    assert [c["code"] for c in trace["containers"]] == [
        lumi.inner[12],
        lumi.master[1],
        lumi.pallet[0],
    ]
    assert [c["level"] for c in trace["containers"]] == ["inner", "master", "pallet"]
    steps = [(e["biz_step"], e["type"], e["via"]) for e in trace["events"]]
    assert steps == [
        ("commissioning", "ObjectEvent", None),
        ("packing", "AggregationEvent", None),
        ("packing", "AggregationEvent", lumi.inner[12]),
        ("packing", "AggregationEvent", lumi.master[1]),
    ]
    assert trace["events"][0]["location"]["name"].startswith("Suzhou Factory")
    assert trace["events"][0]["event_id"].startswith("urn:uuid:")
    assert trace["events"][0]["tz_offset"] == "+08:00"

    case = (await client.get(f"/trace/{lumi.master[1]}", headers=operator)).json()
    assert case["kind"] == "case" and case["batch"]["level"] == "master"
    assert sorted(c["code"] for c in case["contents"]) == sorted(lumi.inner[10:20])
    assert [c["code"] for c in case["containers"]] == [lumi.pallet[0]]


async def test_replaying_an_upload_three_times_changes_nothing(
    client: Any, login: Any, app: Any, conn: Any, lumi: Any
) -> None:
    await set_line(client, login, lumi.product_id, "R1")
    units = serials(app, lumi.batch_no, 0, 30)
    scans = []
    for box in range(3):
        scans += [scan(s) for s in units[box * 10 : box * 10 + 10]] + [scan(lumi.inner[box])]
    first = await upload(client, login, "R1", scans)
    assert first["accepted"] == 33
    before = await counts(conn, lumi.batch_no)
    for _ in range(3):
        again = await upload(client, login, "R1", scans)
        assert (again["accepted"], again["duplicates"], again["rejected"]) == (0, 33, 0)
        assert [s.get("parent") for s in again["scans"]] == [
            s.get("parent") for s in first["scans"]
        ]
        assert (
            await counts(conn, lumi.batch_no)
            == before
            == {
                "units": 30,
                "bound": 30,
                "unit_events": 60,
            }
        )
    # a partial retry (the second half again) plus new scans: only the new ones count
    more = [scan(s) for s in serials(app, lumi.batch_no, 30, 40)] + [scan(lumi.inner[3])]
    mixed = await upload(client, login, "R1", scans[11:] + more)
    assert (mixed["accepted"], mixed["duplicates"], mixed["rejected"]) == (11, 22, 0)
    assert await counts(conn, lumi.batch_no) == {"units": 40, "bound": 40, "unit_events": 80}


async def test_uploads_arriving_out_of_order(
    client: Any, login: Any, app: Any, conn: Any, lumi: Any
) -> None:
    """The scanner made upload 1 then 2; they arrive 2, 1, then 1 again (a retry)."""
    await set_line(client, login, lumi.product_id, "O1")
    units = serials(app, lumi.batch_no, 0, 20)
    one = [scan(s) for s in units[:10]] + [scan(lumi.inner[0])]
    two = [scan(s) for s in units[10:]] + [scan(lumi.inner[1])]
    # a master case named over both inner cases, sent before the first inner case exists
    three = [scan(lumi.master[0], children=lumi.inner[:2])]
    early = await upload(client, login, "O1", three)
    assert early["scans"][0]["reason"] == "child_rejected"
    assert "not_packed" in early["scans"][0]["message"]
    assert (await upload(client, login, "O1", two))["accepted"] == 11
    assert (await upload(client, login, "O1", one))["accepted"] == 11
    assert (await upload(client, login, "O1", one))["duplicates"] == 11
    late = await upload(client, login, "O1", three)  # the retry of the rejected one now fits
    assert late["scans"][0]["result"] == "ok"
    assert await counts(conn, lumi.batch_no) == {"units": 20, "bound": 20, "unit_events": 40}
    trace = (await client.get(f"/trace/{units[15]}", headers=await login("operator"))).json()
    assert [c["code"] for c in trace["containers"]] == [lumi.inner[1], lumi.master[0]]


async def test_a_retried_upload_packing_units_active_before_is_all_duplicates(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: a line packs 5 units activated earlier (loose, as after an undo) into a case;
    the same upload sent again answered the 5 unit scans ``ok`` (``already_active``), counted
    accepted twice, the line's upload log too: a scan was a replay only if its id activated the
    unit, not if it packed it."""
    batch_no, product_id = await issue_units(client, login, demo, 10)
    await set_rules(client, login, product_id, [])
    cases = await issue_cases(client, login, demo, "inner", 1)
    line = f"ZR{batch_no}"
    units = serials(app, batch_no, 0, 5)
    await activate(client, login, units, product_id, line=line)  # active and loose
    now = datetime.now(UTC).isoformat()
    sent = [scan(s, at=now) for s in units] + [scan(cases[0], at=now)]
    first = await upload(client, login, line, sent)
    assert (first["accepted"], first["duplicates"]) == (6, 0), first
    again = await upload(client, login, line, sent)
    assert (again["accepted"], again["duplicates"], again["rejected"]) == (0, 6, 0), [
        (s["result"], s.get("warning")) for s in again["scans"]
    ]
    assert [s.get("parent") for s in again["scans"]] == [s.get("parent") for s in first["scans"]]


async def test_a_retried_upload_closing_a_case_again_is_all_duplicates(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: upload 1 packs 5 units into case C, upload 2 packs 5 more into C; retried,
    upload 2's case scan answered ``ok`` again (accepted 1): only the id of C's first packing was
    kept on its state row. A retry of upload 2 after upload 3 packed still more is a replay too."""
    batch_no, product_id = await issue_units(client, login, demo, 15)
    await set_rules(client, login, product_id, [])
    cases = await issue_cases(client, login, demo, "inner", 1)
    line = f"ZC{batch_no}"
    await set_line(client, login, product_id, line)
    units = serials(app, batch_no, 0, 15)
    one, two, three = ([scan(s) for s in units[i : i + 5]] + [scan(cases[0])] for i in (0, 5, 10))
    assert (await upload(client, login, line, one))["accepted"] == 6
    assert (await upload(client, login, line, two))["accepted"] == 6
    for sent in (two, one):
        again = await upload(client, login, line, sent)
        assert (again["accepted"], again["duplicates"], again["rejected"]) == (0, 6, 0), [
            (s["result"], s.get("kind")) for s in again["scans"]
        ]
    assert (await upload(client, login, line, three))["accepted"] == 6
    for sent in (two, three):
        again = await upload(client, login, line, sent)
        assert (again["accepted"], again["duplicates"], again["rejected"]) == (0, 6, 0), again
    trace = (await client.get(f"/trace/{cases[0]}", headers=await login("admin"))).json()
    assert sorted(c["code"] for c in trace["contents"]) == sorted(units)


async def test_a_late_retry_after_the_goods_left_is_all_duplicates_and_tells_nothing_more(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: a line's upload (5 units, their case) was committed, its answer lost; retried
    after the case was shipped to an agent and received there, every scan answered
    ``unknown`` / ``unknown_case`` ("no such code was issued to this brand"): six errors for the
    line's own packing. The ids its organisation's line recorded answer ``duplicate``, with no
    container; the same codes under another id are still unknown here."""
    batch_no, product_id = await issue_units(client, login, demo, 5)
    await set_rules(client, login, product_id, [])
    (case,) = await issue_cases(client, login, demo, "inner", 1)
    line = f"ZG{batch_no}"
    await set_line(client, login, product_id, line)
    sent = [scan(u) for u in serials(app, batch_no, 0, 5)] + [scan(case)]
    assert (await upload(client, login, line, sent))["accepted"] == 6
    await _to_the_agent(client, login, demo, [case])
    again = await upload(client, login, line, sent)
    assert [(s["result"], s.get("reason"), s.get("parent")) for s in again["scans"]] == [
        ("duplicate", None, None)
    ] * 6, again
    other = await upload(client, login, line, [scan(sent[0]["code"]), scan(case)])
    assert [(s["result"], s.get("reason")) for s in other["scans"]] == [
        ("rejected", "unknown"),
        ("rejected", "unknown_case"),
    ], other


async def test_a_scan_sent_twice_in_one_upload_answers_as_its_first_copy(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: a scanner's buffer sends one scan twice in an upload and the first copy is
    rejected (``malformed``); the second copy answered ``duplicate``, counted in
    ``duplicates``, though nothing was accepted (README: ``duplicate`` = this client event id
    was already accepted). It is rejected alike, with the first copy's reason."""
    _, product_id = await issue_units(client, login, demo, 1)
    line = "ZD-" + secrets.token_hex(3)
    await set_line(client, login, product_id, line)
    body = await upload(
        client, login, line, [scan("NOT-A-CODE", cid="zd-1"), scan("NOT-A-CODE", cid="zd-1")]
    )
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (0, 0, 2), body
    assert [(s["result"], s.get("reason")) for s in body["scans"]] == [
        ("rejected", "malformed")
    ] * 2


async def test_every_rejection_reason(
    client: Any, login: Any, demo: Any, app: Any, conn: Any, lumi: Any
) -> None:
    scheme = app.state.scheme
    await set_line(client, login, lumi.product_id, "X1")
    await set_rules(client, login, lumi.product_id, [{"level": "inner", "quantity": 3}])
    units = serials(app, lumi.batch_no, 0, 40)
    await upload(client, login, "X1", [scan(s) for s in units[:3]] + [scan(lumi.inner[0])])
    void_batch, _ = await issue_units(client, login, demo, 5)
    voided = await client.post(
        f"/batches/{void_batch}/void", headers=await login("planner"), json={"reason": "misprint"}
    )
    assert voided.status_code == 200, voided.text
    other_product_batch, _ = await issue_units(client, login, demo, 5, product_no="LM-HY-50")
    forged = units[5][:-1] + ("0" if units[5][-1] != "0" else "1")
    bad_sscc = lumi.inner[5][:-1] + str((int(lumi.inner[5][-1]) + 1) % 10)
    stranger = "3" + "6901234" + "999999999" + "0"  # a well-formed SSCC nobody issued
    from app._core import gs1_check_digit

    stranger = stranger[:17] + str(gs1_check_digit(stranger[:17]))
    cases = [
        (scan(forged), "forged"),
        (scan("HELLO-WORLD"), "malformed"),
        (scan(scheme.serial(lumi.batch_no, 5000)), "unknown"),
        (scan(scheme.serial(void_batch, 0)), "void"),
        (scan(scheme.serial(other_product_batch, 0)), "wrong_product"),
        (scan(bad_sscc, children=[units[6]]), "invalid_sscc"),
        (scan(stranger, children=[units[6]]), "unknown_case"),
    ]
    body = await upload(client, login, "X1", [c for c, _ in cases])
    assert [s["reason"] for s in body["scans"]] == [reason for _, reason in cases]
    assert all(s["result"] == "rejected" and s["message"] for s in body["scans"])

    # in one upload: a unit packed elsewhere, the same unit twice, rule violations, bad level,
    # an empty case, a named child never activated
    scans = [
        scan(units[0]),  # already in inner[0]
        scan(units[10]),
        scan(units[10]),  # scanned twice
        scan(lumi.inner[1]),  # closes over units[10] only: short (rule 3)
        *[scan(s) for s in units[11:15]],
        scan(lumi.inner[2]),  # 4 units: over-full
        scan(lumi.inner[3]),  # nothing left to close over
        scan(lumi.inner[4], children=[lumi.inner[0]]),  # an inner case in an inner case
        scan(lumi.master[0], children=[units[30]]),  # a unit not activated yet... in a master
    ]
    body = await upload(client, login, "X1", scans)
    results = [(s["result"], s.get("reason")) for s in body["scans"]]
    assert results == [
        ("rejected", "already_bound"),
        ("ok", None),
        ("rejected", "duplicate_scan"),
        ("rejected", "short_case"),
        ("ok", None),
        ("ok", None),
        ("ok", None),
        ("ok", None),
        ("rejected", "over_full_case"),
        ("rejected", "empty_case"),
        ("rejected", "bad_level"),
        ("rejected", "child_rejected"),
    ]
    assert body["scans"][0]["message"] == f"already in container {lumi.inner[0]}"
    # the valid units were kept (activated, loose); the rejected cases hold nothing
    status = await client.get(f"/codes/{units[12]}/status", headers=await login("planner"))
    assert status.json()["status"] == "active"
    assert (await counts(conn, lumi.batch_no))["units"] == 8

    # a lenient rule accepts a short case with a warning; another lot is refused
    await set_rules(
        client, login, lumi.product_id, [{"level": "inner", "quantity": 3, "strict": False}]
    )
    lenient = await upload(client, login, "X1", [scan(units[20]), scan(lumi.inner[6])])
    assert lenient["scans"][1]["result"] == "ok"
    assert lenient["scans"][1]["warning"] == "short_case"
    await set_line(client, login, lumi.product_id, "X1", lot="LOT2")
    other_lot = await upload(client, login, "X1", [scan(units[20])])
    assert other_lot["scans"][0]["reason"] == "already_active"


async def test_a_scan_from_a_wrong_clock_is_rejected_and_the_rest_go_through(
    client: Any, login: Any, app: Any, lumi: Any
) -> None:
    """Probe L: a scan's time was taken as sent. One at 9999-12-31T23:59:59-12:00 (year 10000
    in UTC) was stored, and every trace and EPCIS page holding it failed to read; one in 2099
    made trace list its unpacking before its commissioning. Such a scan is rejected (the
    scanner's clock is wrong), the others of the upload are applied."""
    await set_line(client, login, lumi.product_id, "T9")
    units = serials(app, lumi.batch_no, 40, 45)
    ahead = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    body = await upload(
        client,
        login,
        "T9",
        [
            scan(units[0], at="9999-12-31T23:59:59-12:00"),
            scan(units[1], at="1999-12-31T23:59:59+00:00"),
            scan(units[2], at=ahead),
            scan(units[3]),
        ],
    )
    assert [(s["result"], s.get("reason")) for s in body["scans"]] == [
        ("rejected", "bad_time"),
        ("rejected", "bad_time"),
        ("rejected", "bad_time"),
        ("ok", None),
    ]
    assert "clock" in body["scans"][0]["message"]
    operator = await login("operator")
    for serial in units[:4]:
        assert (await client.get(f"/trace/{serial}", headers=operator)).status_code in (200, 404)
    late = await upload(
        client,
        login,
        "T9",
        [scan(units[0], at=(datetime.now(UTC) - timedelta(days=20)).isoformat())],
    )
    assert late["scans"][0]["result"] == "ok"  # an offline scanner uploading late


def _at(moment: datetime, hours: int, minutes: int = 0) -> str:
    """``moment`` written at the offset ``hours:minutes`` (negative hours: west of UTC)."""
    sign = -1 if hours < 0 else 1
    offset = timezone(sign * timedelta(hours=abs(hours), minutes=minutes))
    return moment.astimezone(offset).isoformat()


async def test_a_scan_at_an_offset_past_14_hours_is_bad_time_and_the_rest_go_through(
    client: Any, login: Any, app: Any, conn: Any, lumi: Any
) -> None:
    """A probe: a scanner's clock at +23:59 (valid RFC 3339, up to ±23:59) sent one scan an
    hour old; the times went to PostgreSQL as a text array, which takes ±15:59 only, so the
    whole upload was 400 ``validation_failed`` ("time zone displacement out of range") and
    every re-send of the queue failed alike. An offset beyond EPCIS's -14:00..+14:00 is that
    scan's ``bad_time``; the rest of the upload is applied, ±14:00 itself included (a unit's
    activation time and a case's packing time kept as the instant sent, the event's
    eventTimeZoneOffset the scanner's)."""
    line = "TZ-" + secrets.token_hex(3)
    await set_line(client, login, lumi.product_id, line)
    units = serials(app, lumi.batch_no, 50, 58)
    hour_ago = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
    mixed = await upload(
        client,
        login,
        line,
        [
            scan(units[0], at=hour_ago.isoformat()),
            scan(units[1], at=_at(hour_ago, 23, 59)),
            scan(units[2], at=_at(hour_ago, 14, 30)),
            scan(units[3], at=_at(hour_ago, -14, 1)),
            scan(units[4], at=_at(hour_ago, 14)),
            scan(units[5], at=_at(hour_ago, -14)),
        ],
    )
    assert [(s["result"], s.get("reason")) for s in mixed["scans"]] == [
        ("ok", None),
        ("rejected", "bad_time"),
        ("rejected", "bad_time"),
        ("rejected", "bad_time"),
        ("ok", None),
        ("ok", None),
    ]
    assert "offset" in mixed["scans"][1]["message"]
    packed = await upload(
        client,
        login,
        line,
        [scan(units[6], at=_at(hour_ago, 14)), scan(lumi.inner[40], at=_at(hour_ago, -14))],
    )
    assert [s["result"] for s in packed["scans"]] == ["ok", "ok"], packed
    rows = await (
        await conn.execute(
            "SELECT activated_at FROM unit_state WHERE code = ANY(%s)",
            ([(lumi.batch_no << 32) | i for i in (50, 54, 55, 56)],),
        )
    ).fetchall()
    case = await (
        await conn.execute(
            "SELECT packed_at FROM case_state WHERE sscc = %s", (int(lumi.inner[40]),)
        )
    ).fetchone()
    await conn.commit()
    assert [r["activated_at"] for r in rows] == [hour_ago] * 4
    assert case["packed_at"] == hour_ago
    trace = await client.get(f"/trace/{units[6]}", headers=await login("admin"))
    offsets = {e["biz_step"]: e["tz_offset"] for e in trace.json()["events"]}
    assert offsets == {"commissioning": "+14:00", "packing": "-14:00"}, trace.text
    for serial in units[1:4]:  # refused: nothing of them was written
        status = await client.get(f"/codes/{serial}/status", headers=await login("planner"))
        assert status.json()["status"] != "active", status.text


async def test_every_scan_time_reaches_postgresql_in_utc(
    client: Any, login: Any, app: Any, conn: Any, lumi: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defence behind ``bad_time``: the bulk writes bind their times as text arrays (and the
    events by COPY), where PostgreSQL parses each offset itself and refuses one past ±15:59;
    every time is written in UTC. With the offset rule widened, scans and a case at +23:59 are
    applied, at the instant sent."""
    from app.packing import scans as packing_scans

    monkeypatch.setattr(packing_scans, "MAX_OFFSET", timedelta(hours=24), raising=False)
    line = "TZ-" + secrets.token_hex(3)
    await set_line(client, login, lumi.product_id, line)
    units = serials(app, lumi.batch_no, 60, 62)
    hour_ago = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
    far = _at(hour_ago, 23, 59)
    body = await upload(
        client,
        login,
        line,
        [scan(units[0], at=far), scan(units[1], at=far), scan(lumi.inner[41], at=far)],
    )
    assert [s["result"] for s in body["scans"]] == ["ok", "ok", "ok"], body
    rows = await (
        await conn.execute(
            "SELECT activated_at FROM unit_state WHERE code = ANY(%s)",
            ([(lumi.batch_no << 32) | i for i in (60, 61)],),
        )
    ).fetchall()
    case = await (
        await conn.execute(
            "SELECT packed_at FROM case_state WHERE sscc = %s", (int(lumi.inner[41]),)
        )
    ).fetchone()
    await conn.commit()
    assert [r["activated_at"] for r in rows] == [hour_ago] * 2
    assert case["packed_at"] == hour_ago


async def test_a_unit_scan_naming_children_is_rejected(
    client: Any, login: Any, app: Any, lumi: Any
) -> None:
    """Only a container closes over items: a unit's scan naming ``children`` is rejected
    (``unit_with_children``) and neither it nor its children are activated; before, the children
    were dropped without a word and the unit answered ok (probe)."""
    await set_line(client, login, lumi.product_id, "X8")
    units = serials(app, lumi.batch_no, 0, 3)
    body = await upload(client, login, "X8", [scan(units[0], [units[1]]), scan(units[2], [])])
    results = [(s["result"], s.get("reason")) for s in body["scans"]]
    assert results == [("rejected", "unit_with_children"), ("ok", None)]
    planner = await login("planner")
    for serial in units[:2]:
        status = await client.get(f"/codes/{serial}/status", headers=planner)
        assert status.json()["status"] != "active", status.text


async def test_a_scan_id_reused_for_another_code_is_rejected_not_a_duplicate(
    client: Any, login: Any, app: Any, lumi: Any
) -> None:
    """The defect: a second scan with the id of an earlier one in the same upload answered
    ``duplicate`` whatever its code (a forged one too), was never activated, yet was named in
    its case's packing event."""
    await set_line(client, login, lumi.product_id, "X7")
    units = serials(app, lumi.batch_no, 600, 604)
    forged = units[3][:-1] + ("0" if units[3][-1] != "0" else "1")
    body = await upload(
        client,
        login,
        "X7",
        [
            scan(units[0], cid="x7-a"),
            scan(units[1], cid="x7-a"),  # a scanner reusing its id
            scan(forged, cid="x7-a"),
            scan(units[2], cid="x7-b"),
            scan(units[2], cid="x7-b"),  # the same scan sent twice: a duplicate
            scan(lumi.inner[60], cid="x7-c"),
        ],
    )
    results = [(s["result"], s.get("reason")) for s in body["scans"]]
    assert results == [
        ("ok", None),
        ("rejected", "id_reused"),
        ("rejected", "id_reused"),
        ("ok", None),
        ("duplicate", None),
        ("ok", None),
    ]
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (3, 1, 2)
    planner = await login("planner")
    lost = await client.get(f"/codes/{units[1]}/status", headers=planner)
    assert lost.json()["status"] != "active"
    admin = await login("admin")
    case = (await client.get(f"/trace/{lumi.inner[60]}", headers=admin)).json()
    assert sorted(c["code"] for c in case["contents"]) == sorted([units[0], units[2]])
    [packing] = [e for e in case["events"] if e["biz_step"] == "packing"]
    assert packing["child_count"] == 2
    trace = await client.get(f"/trace/{units[1]}", headers=admin)
    assert trace.status_code == 200, trace.text  # issued, so traceable: with no packing event
    assert not [e for e in trace.json()["events"] if e["biz_step"] == "packing"]


async def test_a_case_scan_id_sent_again_with_other_children_is_id_reused(
    client: Any, login: Any, app: Any, lumi: Any
) -> None:
    """A probe: case C closed over units 1–5 (scan id ``close-C``), then a scan under the same
    id naming units 6–10 answered ``duplicate`` (the id alone was matched): 6–10 were never
    packed and nothing said so. It is ``id_reused`` (in one upload too), and changes nothing;
    the first scan sent again, or naming some of what C holds from it, is still a duplicate."""
    await set_line(client, login, lumi.product_id, "X8")
    units = serials(app, lumi.batch_no, 620, 630)
    case, cid = lumi.inner[61], f"close-{secrets.token_hex(4)}"
    first = await upload(
        client, login, "X8", [scan(u) for u in units] + [scan(case, units[:5], cid)]
    )
    assert first["rejected"] == 0, first
    other = await upload(client, login, "X8", [scan(case, units[5:], cid)])
    [result] = [(s["result"], s.get("reason")) for s in other["scans"]]
    assert result == ("rejected", "id_reused"), other
    again = await upload(
        client, login, "X8", [scan(case, units[:5], cid), scan(case, units[:2], cid)]
    )
    assert [s["result"] for s in again["scans"]] == ["duplicate", "rejected"], again
    assert again["scans"][1]["reason"] == "id_reused", again  # a copy with other children
    trace = (await client.get(f"/trace/{case}", headers=await login("admin"))).json()
    assert sorted(c["code"] for c in trace["contents"]) == sorted(units[:5])
    subset = await upload(client, login, "X8", [scan(case, units[:2], cid)])
    assert subset["scans"][0]["result"] == "duplicate", subset


async def test_a_digital_link_naming_another_products_gtin_is_wrong_product(
    client: Any, login: Any, app: Any, lumi: Any
) -> None:
    """The defect (probe F4): the serial alone found the unit, so a Digital Link with the serum's
    GTIN commissioned a sun-cream unit (and an EPCIS event named the wrong product for it)."""
    await set_line(client, login, lumi.product_id, "X9")
    units = serials(app, lumi.batch_no, 610, 613)
    body = await upload(
        client,
        login,
        "X9",
        [
            scan(f"https://id.gs1.org/01/06901234000016/21/{units[0]}"),  # the serum's GTIN
            scan(f"https://id.gs1.org/01/06901234000023/21/{units[1]}"),  # its own
            scan(f"https://brand.example/01/6901234000023/21/{units[2]}"),  # GTIN-13, own host
        ],
    )
    results = [(s["result"], s.get("reason")) for s in body["scans"]]
    assert results == [("rejected", "wrong_product"), ("ok", None), ("ok", None)], body


async def test_only_a_factorys_line_activates_new_codes(
    client: Any, login: Any, app: Any, lumi: Any
) -> None:
    """The defect (probe F5): an agent's line (or its EPCIS capture) activated fresh codes printed
    for the factory, which became the agent's stock with no shipment at all."""
    agent = await login("gd_admin")
    context = {"product_id": lumi.product_id, "lot": "LOT1", "production_date": "2026-11-20"}
    response = await client.put("/lines/GDX/context", headers=agent, json=context)
    assert response.status_code == 200, response.text
    fresh = serials(app, lumi.batch_no, 620, 622)
    answer = await client.post(
        "/lines/GDX/scans", headers=agent, json={"scans": [scan(s) for s in fresh]}
    )
    assert answer.status_code == 200, answer.text
    assert [s["reason"] for s in answer.json()["scans"]] == ["not_a_factory"] * 2
    planner = await login("planner")
    for serial in fresh:
        status = await client.get(f"/codes/{serial}/status", headers=planner)
        assert status.json()["status"] != "active"
    # the factory's line activates them
    await set_line(client, login, lumi.product_id, "X10")
    body = await upload(client, login, "X10", [scan(s) for s in fresh])
    assert body["accepted"] == 2, body


async def test_bad_requests(client: Any, login: Any, app: Any, lumi: Any) -> None:
    operator = await login("operator")
    unit = app.state.scheme.serial(lumi.batch_no, 0)
    assert_error(
        await client.post("/lines/NEVER/scans", headers=operator, json={"scans": [scan(unit)]}),
        404,
        "unknown_line",
    )
    await set_line(client, login, lumi.product_id, "B1")
    url = "/lines/B1/scans"
    naive = {"id": "n1", "code": unit, "at": "2026-11-20T09:00:00"}
    assert_error(await client.post(url, headers=operator, json={"scans": [naive]}), 400)
    assert_error(await client.post(url, headers=operator, json={"scans": []}), 400)
    assert_error(
        await client.post(
            url,
            headers={**operator, "content-type": "application/json"},
            content=b'{"scans": [',
        ),
        400,
        "malformed_json",
    )
    assert_error(await client.post(url, json={"scans": [scan(unit)]}), 401)
    analyst = await login("analyst")
    assert_error(
        await client.post(url, headers=analyst, json={"scans": [scan(unit)]}),
        403,
        "permission_denied",
    )
    assert_error(
        await client.put(
            "/lines/bad line!/context",
            headers=operator,
            json={"product_id": lumi.product_id, "lot": "L", "production_date": "2026-11-20"},
        ),
        400,
    )
    assert_error(
        await client.put(
            "/lines/B1/context",
            headers=operator,
            json={"product_id": 999999, "lot": "L", "production_date": "2026-11-20"},
        ),
        404,
        "unknown_product",
    )
    for day in ("9999-12-31", "0001-01-01"):  # probe AA: shown to consumers as they came
        body = {"product_id": lumi.product_id, "lot": "L", "production_date": day}
        answer = await client.put("/lines/B1/context", headers=operator, json=body)
        assert_error(answer, 400, "validation_failed")
        assert "production_date" in answer.text
    assert_error(
        await client.put(
            f"/packing/rules/{lumi.product_id}",
            headers=await login("admin"),
            json=[{"level": "inner", "quantity": 1}, {"level": "inner", "quantity": 2}],
        ),
        422,
        "duplicate_level",
    )
    assert_error(await client.get("/trace/NOT-A-CODE!", headers=operator), 400, "malformed_code")
    forged = unit[:-1] + ("0" if unit[-1] != "0" else "1")
    assert_error(await client.get(f"/trace/{forged}", headers=operator), 422, "not_genuine")


async def test_undo_then_rebind(client: Any, login: Any, app: Any, conn: Any, lumi: Any) -> None:
    await set_line(client, login, lumi.product_id, "U1")
    units = serials(app, lumi.batch_no, 0, 20)
    scans = [scan(s) for s in units[:10]] + [scan(lumi.inner[0])]
    scans += [scan(s) for s in units[10:]] + [scan(lumi.inner[1])]
    await upload(client, login, "U1", scans)
    operator = await login("operator")
    undone = await client.post("/lines/U1/undo", headers=operator, json={"reason": "wrong case"})
    assert undone.status_code == 200, undone.text
    assert undone.json()["parent"] == lumi.inner[1]
    assert sorted(undone.json()["codes"]) == sorted(units[10:])
    assert (await counts(conn, lumi.batch_no))["bound"] == 10
    # the next undo takes the earlier case; then nothing is left
    assert (await client.post("/lines/U1/undo", headers=operator, json={"reason": "x"})).json()[
        "parent"
    ] == lumi.inner[0]
    assert_error(
        await client.post("/lines/U1/undo", headers=operator, json={"reason": "x"}),
        404,
        "nothing_to_undo",
    )
    # rebind: scan the units again into another case (they are already active: a warning)
    now = datetime.now(UTC).isoformat()
    rebound = await upload(
        client, login, "U1", [scan(s, at=now) for s in units[10:]] + [scan(lumi.inner[2], at=now)]
    )
    assert rebound["accepted"] == 11
    assert rebound["scans"][0]["warning"] == "already_active"
    trace = (await client.get(f"/trace/{units[12]}", headers=operator)).json()
    assert [(c["code"], c["removed_at"] is None) for c in trace["containers"]] == [
        (lumi.inner[1], False),
        (lumi.inner[2], True),
    ]
    assert [e["biz_step"] for e in trace["events"]] == [
        "commissioning",
        "packing",
        "unpacking",
        "packing",
    ]
    # named unpack of two units from the new case; the audit trail has it
    out = await client.post(
        "/packing/unpack",
        headers=operator,
        json={"parent": lumi.inner[2], "children": units[10:12], "reason": "QC sample"},
    )
    assert out.status_code == 200, out.text
    assert sorted(out.json()["codes"]) == sorted(units[10:12])
    assert_error(
        await client.post(
            "/packing/unpack",
            headers=operator,
            json={"parent": lumi.inner[2], "children": units[10:11], "reason": "again"},
        ),
        422,
        "not_in_container",
    )
    audit = await client.get("/audit", headers=await login("admin"), params={"action": "unpack"})
    assert audit.status_code == 200, audit.text
    assert audit.json()["total"] >= 3


async def test_undo_never_unpacks_an_older_case_when_the_newest_packing_was_moved(
    client: Any, login: Any, app: Any, conn: Any, demo: Any
) -> None:
    """A probe: the line packed case A (09:00), then case B (10:00); B was taken into the
    factory warehouse (factory inbound), its units still inside. ``POST /lines/{line}/undo``
    then unpacked A, an older case the operator never meant: a packing's children were found
    by their last event = the aggregation, which the receipt had overwritten, so B looked
    undone already. The newest packing, moved, cannot be undone (409 ``packing_moved``), and
    no older one is undone instead."""
    from tests.test_logistics import confirm, document

    batch_no, product_id = await issue_units(client, login, demo, 20)
    await set_rules(client, login, product_id, [])
    cases = await issue_cases(client, login, demo, "inner", 2)
    await set_line(client, login, product_id, "UM1")
    units = serials(app, batch_no, 0, 20)
    later = "2026-11-20T10:00:00+08:00"
    body = await upload(
        client,
        login,
        "UM1",
        [scan(s) for s in units[:10]]
        + [scan(cases[0])]
        + [scan(s, at=later) for s in units[10:]]
        + [scan(cases[1], at=later)],
    )
    assert body["accepted"] == 22, body
    clerk = await login("clerk")
    inbound = await document(client, clerk, [cases[1]], kind="factory_inbound")
    assert (await confirm(client, clerk, inbound)).status_code == 200
    undone = await client.post(
        "/lines/UM1/undo", headers=await login("operator"), json={"reason": "wrong case"}
    )
    assert_error(undone, 409, "packing_moved")
    assert (await counts(conn, batch_no))["bound"] == 20


async def test_replace_a_unit_that_failed_qc(
    client: Any, login: Any, app: Any, conn: Any, lumi: Any
) -> None:
    scheme = app.state.scheme
    await set_line(client, login, lumi.product_id, "Q1")
    units = serials(app, lumi.batch_no, 0, 11)
    await upload(client, login, "Q1", [scan(s) for s in units[:10]] + [scan(lumi.inner[0])])
    old, new = units[3], units[10]
    # the old unit was verified by a consumer before (its state is cached for verification)
    first = await client.post("/v1/verify", json={"serial": old, "pin": scheme.pin(old)})
    assert first.json()["result"] in ("genuine", "suspicious")
    operator = await login("operator")
    response = await client.post(
        "/packing/replace", headers=operator, json={"old": old, "new": new, "reason": "QC"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["parent"] == lumi.inner[0]
    case = (await client.get(f"/trace/{lumi.inner[0]}", headers=operator)).json()
    contents = {c["code"] for c in case["contents"]}
    assert new in contents and old not in contents and len(contents) == 10
    replaced = (await client.get(f"/trace/{new}", headers=operator)).json()
    assert replaced["lot"] == "LOT1" and replaced["state"]["parent"] == lumi.inner[0]
    own = [e for e in replaced["events"] if e["via"] is None]
    assert own[0]["details"]["replaces"] == old
    # before it, the old code's history (L11): its events up to its decommissioning, and its
    # stay in the case (a probe: the new code's stay began at the replacement, the case's
    # history before it left out)
    before = [e["biz_step"] for e in replaced["events"] if e["via"] == old]
    assert before[-1] == "decommissioning" and "commissioning" in before, before
    stays = [(c["code"], c["inside"]) for c in replaced["containers"]]
    assert stays == [(lumi.inner[0], old), (lumi.inner[0], new)], stays
    gone = (await client.get(f"/trace/{old}", headers=operator)).json()
    assert gone["state"]["status"] == "void"
    assert gone["events"][-1]["biz_step"] == "decommissioning"
    assert gone["events"][-1]["details"]["reason"] == "QC"
    # the old code now verifies as void, at once; the new one as genuine
    answer = (await client.post("/v1/verify", json={"serial": old, "pin": scheme.pin(old)})).json()
    assert (answer["result"], answer["reason"]) == ("not_genuine", "void")
    answer = (await client.post("/v1/verify", json={"serial": new, "pin": scheme.pin(new)})).json()
    assert answer["result"] in ("genuine", "suspicious")
    # replacing again with the same new code, or an old code that is void, is refused
    assert_error(
        await client.post("/packing/replace", headers=operator, json={"old": units[4], "new": new}),
        409,
        "already_active",
    )
    assert_error(
        await client.post("/packing/replace", headers=operator, json={"old": old, "new": units[4]}),
        409,
        "void",
    )


async def test_a_line_driven_through_an_api_key_names_its_maker_in_its_row_and_events(
    client: Any, login: Any, app: Any, conn: Any, lumi: Any
) -> None:
    """A probe: a factory's line system (an API key the factory administrator made,
    ``packing.scan``) set a line's context, activated and packed units, undid a case, unpacked
    a unit and replaced another: the line's ``updated_by`` and the ``recorded_by`` of every
    event it wrote were null — goods commissioned, packed and decommissioned by nobody. They
    name the person behind the key now (``Principal.person``)."""
    factory_admin = await login("factory_admin")
    key = await key_of(client, factory_admin, ["packing.scan", "catalog.read", "orgs.read"])
    context = {"product_id": lumi.product_id, "lot": "LOT1", "production_date": "2026-11-20"}
    assert (await client.put("/lines/KY1/context", headers=key, json=context)).status_code == 200
    units = serials(app, lumi.batch_no, 0, 21)
    scans = [scan(s) for s in units[:10]] + [scan(lumi.inner[0])]
    scans += [scan(s) for s in units[10:20]] + [scan(lumi.inner[1])]
    uploaded = await client.post("/lines/KY1/scans", headers=key, json={"scans": scans})
    assert uploaded.json()["rejected"] == 0, uploaded.text
    edits = (
        ("/lines/KY1/undo", {"reason": "wrong case"}),
        ("/packing/unpack", {"parent": lumi.inner[0], "children": units[:1], "reason": "QC"}),
        ("/packing/replace", {"old": units[1], "new": units[20], "reason": "QC"}),
    )
    for url, body in edits:
        edited = await client.post(url, headers=key, json=body)
        assert edited.status_code == 200, edited.text
    me = (await client.get("/auth/me", headers=factory_admin)).json()
    maker = me["user_id"]
    line = await (
        await conn.execute(
            "SELECT updated_by FROM lines WHERE org_id = %s AND code = 'KY1'", (me["org_id"],)
        )
    ).fetchone()
    events = await (
        await conn.execute(
            """SELECT e.biz_step, e.recorded_by FROM events e
                WHERE e.id IN (SELECT event_id FROM event_codes WHERE kind = 'u'
                                  AND code >= %s AND code < %s)""",
            (lumi.batch_no << 32, (lumi.batch_no + 1) << 32),
        )
    ).fetchall()
    await conn.commit()
    assert line["updated_by"] == maker, line
    steps = {"commissioning", "packing", "unpacking", "decommissioning", "replacing"}
    assert {e["biz_step"] for e in events} == steps, events
    assert {e["recorded_by"] for e in events} == {maker}, events


async def test_two_lines_binding_the_same_units_exactly_one_wins(
    client: Any, login: Any, app: Any, conn: Any, lumi: Any
) -> None:
    await set_line(client, login, lumi.product_id, "RaceA")
    await set_line(client, login, lumi.product_id, "RaceB")
    for round_no in range(5):
        units = serials(app, lumi.batch_no, round_no * 10, round_no * 10 + 10)
        a_case, b_case = lumi.inner[round_no * 2], lumi.inner[round_no * 2 + 1]
        a, b = await asyncio.gather(
            upload(client, login, "RaceA", [scan(s) for s in units] + [scan(a_case)]),
            upload(client, login, "RaceB", [scan(s) for s in units] + [scan(b_case)]),
        )
        winners = [body for body in (a, b) if body["scans"][-1]["result"] == "ok"]
        assert len(winners) == 1, (a, b)
        loser = b if winners[0] is a else a
        assert loser["scans"][-1]["reason"] == "empty_case"
        assert {s["reason"] for s in loser["scans"][:-1]} == {"already_bound"}
        winner_case = a_case if winners[0] is a else b_case
        rows = await (
            await conn.execute(
                "SELECT DISTINCT parent_sscc FROM unit_state WHERE code = ANY(%s)",
                ([(lumi.batch_no << 32) | i for i in range(round_no * 10, round_no * 10 + 10)],),
            )
        ).fetchall()
        await conn.commit()
        assert [r["parent_sscc"] for r in rows] == [int(winner_case)]
    assert await counts(conn, lumi.batch_no) == {"units": 50, "bound": 50, "unit_events": 100}


async def test_a_retry_racing_its_original_counts_once(
    client: Any, login: Any, app: Any, conn: Any, lumi: Any
) -> None:
    await set_line(client, login, lumi.product_id, "Twice")
    units = serials(app, lumi.batch_no, 0, 10)
    scans = [scan(s) for s in units] + [scan(lumi.inner[0])]
    a, b = await asyncio.gather(
        upload(client, login, "Twice", scans), upload(client, login, "Twice", scans)
    )
    results = [[(s["result"], s.get("reason")) for s in x["scans"]] for x in (a, b)]
    assert sorted([a["accepted"], b["accepted"]]) == [0, 11], results
    assert sorted([a["duplicates"], b["duplicates"]]) == [0, 11], results  # seen once: [0, 10]
    assert await counts(conn, lumi.batch_no) == {"units": 10, "bound": 10, "unit_events": 20}


async def test_a_retry_whose_original_commits_between_its_reads_is_all_duplicates(
    client: Any, login: Any, app: Any, conn: Any, lumi: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CI flake of the test above, made to happen: the retry reads the case (not packed
    yet), its original commits, then the retry reads the units (active, in that case). It
    answered 10 duplicates and the case ``rejected`` (``empty_case``): a scanner retrying a slow
    upload showed the operator an error for a case its own upload had packed."""
    from app.packing import scans as scans_module

    await set_line(client, login, lumi.product_id, "Between")
    units = serials(app, lumi.batch_no, 20, 30)
    sent = [scan(s) for s in units] + [scan(lumi.inner[1])]
    read_cases, original_done = asyncio.Event(), asyncio.Event()
    locked = scans_module._locked
    paused: list[bool] = []

    async def pausing(conn: Any, row: Any, codes: list[int]) -> Any:
        found = await locked(conn, row, codes)
        if row is scans_module._CaseState and not paused:
            paused.append(True)
            read_cases.set()
            await original_done.wait()
        return found

    monkeypatch.setattr(scans_module, "_locked", pausing)
    retry = asyncio.create_task(upload(client, login, "Between", sent))
    await read_cases.wait()
    original = await upload(client, login, "Between", sent)
    original_done.set()
    second = await retry
    assert (original["accepted"], original["duplicates"]) == (11, 0), original
    assert [(s["result"], s.get("reason")) for s in second["scans"]] == [("duplicate", None)] * 11
    assert await counts(conn, lumi.batch_no) == {"units": 10, "bound": 10, "unit_events": 20}


async def test_activation_gates_verification(client: Any, login: Any, demo: Any, app: Any) -> None:
    scheme = app.state.scheme
    batch_no, product_id = await issue_units(client, login, demo, 3)
    serial = scheme.serial(batch_no, 0)
    before = (await client.post("/v1/verify", json={"serial": serial})).json()
    assert (before["result"], before["reason"]) == ("not_genuine", "not_activated")
    status = await client.get(f"/codes/{serial}/status", headers=await login("planner"))
    assert status.json()["status"] == "issued_not_active"
    await activate(client, login, [serial], product_id, line="G1")
    after = await client.post("/v1/verify", json={"serial": serial, "pin": scheme.pin(serial)})
    assert after.json()["result"] in ("genuine", "suspicious"), after.text
    assert after.json()["product"]["id"] == product_id
    trace = (await client.get(f"/trace/{serial}", headers=await login("admin"))).json()
    assert trace["containers"] == [] and [e["biz_step"] for e in trace["events"]] == [
        "commissioning"
    ]
    never = scheme.serial(batch_no, 1)
    untraced = (await client.get(f"/trace/{never}", headers=await login("admin"))).json()
    assert untraced["state"] is None and untraced["events"] == []


async def test_voiding_a_batch_decommissions_its_active_units(
    client: Any, login: Any, demo: Any, app: Any, conn: Any
) -> None:
    scheme = app.state.scheme
    batch_no, product_id = await issue_units(client, login, demo, 4)
    serials = [scheme.serial(batch_no, i) for i in range(4)]
    await activate(client, login, serials[:3], product_id, line="V1")
    voided = await client.post(
        f"/batches/{batch_no}/void", headers=await login("planner"), json={"reason": "recall"}
    )
    assert voided.status_code == 200, voided.text
    rows = await (
        await conn.execute(
            "SELECT status, count(*) AS n FROM unit_state WHERE code >= %s AND code < %s "
            "GROUP BY status",
            (batch_no << 32, (batch_no + 1) << 32),
        )
    ).fetchall()
    await conn.commit()
    assert {r["status"]: r["n"] for r in rows} == {"void": 3}
    trace = (await client.get(f"/trace/{serials[0]}", headers=await login("admin"))).json()
    assert trace["state"]["status"] == "void"
    last = trace["events"][-1]
    assert (last["biz_step"], last["action"]) == ("decommissioning", "DELETE")
    assert last["details"] == {"batch_no": batch_no, "reason": "recall"}
    answer = (await client.post("/v1/verify", json={"serial": serials[1]})).json()
    assert (answer["result"], answer["reason"]) == ("not_genuine", "void")
    # the stock the units made at the line's organisation is gone again
    from app.logistics.rollup import recount, rollup_alone

    await conn.set_autocommit(True)
    try:
        await rollup_alone(conn, wait=True)
        assert await recount(conn) == []
    finally:
        await conn.set_autocommit(False)


async def test_a_line_packs_only_what_its_organisation_holds(
    client: Any, login: Any, app: Any, lumi: Any
) -> None:
    """Probe H: the factory's line packed units already in the factory warehouse into a new
    case held by the factory — a case its units' holder could neither trace nor ship."""
    await set_line(client, login, lumi.product_id, "L9")
    units = serials(app, lumi.batch_no, 990, 993)
    assert (await upload(client, login, "L9", [scan(u) for u in units]))["rejected"] == 0
    clerk = await login("clerk")
    inbound = (
        await client.post("/documents", headers=clerk, json={"kind": "factory_inbound"})
    ).json()
    added = await client.post(
        f"/documents/{inbound['id']}/codes", headers=clerk, json={"codes": units}
    )
    assert added.status_code == 200, added.text
    assert (
        await client.post(f"/documents/{inbound['id']}/confirm", headers=clerk)
    ).status_code == 200
    case = lumi.inner[99]
    body = await upload(client, login, "L9", [scan(u) for u in units] + [scan(case)])
    assert [i.get("reason") for i in body["scans"]] == ["not_held"] * 3 + ["empty_case"]
    named = await upload(client, login, "L9", [scan(case, children=units[:1])])
    assert named["scans"][0]["reason"] == "child_rejected"
    assert "not_held" in named["scans"][0]["message"]


async def test_named_children_must_be_of_the_line_s_product_and_lot(
    client: Any, login: Any, app: Any, lumi: Any
) -> None:
    """A probe: a case naming its children took units of another product and lot, and was
    recorded as the line's product (its package then lost on the warehouse's receipt)."""
    units = serials(app, lumi.batch_no, 700, 703)
    await set_line(client, login, lumi.product_id, "X6", lot="LOT-A")
    assert [
        s["result"] for s in (await upload(client, login, "X6", [scan(u) for u in units]))["scans"]
    ] == ["ok"] * 3
    clerk = await login("clerk")
    serum = await client.get("/products", headers=clerk, params={"q": "LM-HY-50"})
    serum_id = serum.json()["items"][0]["id"]
    for product_id, lot, reason in (
        (lumi.product_id, "LOT-B", "wrong_lot"),
        (serum_id, "LOT-A", "wrong_product"),
    ):
        await set_line(client, login, product_id, "X6", lot=lot)
        body = await upload(client, login, "X6", [scan(lumi.inner[70], children=units)])
        (result,) = body["scans"]
        assert (result["result"], result["reason"]) == ("rejected", "child_rejected"), result
        assert reason in result["message"], result
    await set_line(client, login, lumi.product_id, "X6", lot="LOT-A")
    body = await upload(client, login, "X6", [scan(lumi.inner[70], children=units)])
    assert body["scans"][0]["result"] == "ok", body


async def test_a_packed_case_takes_only_units_of_its_product_and_lot(
    client: Any, login: Any, app: Any, conn: Any, demo: Any
) -> None:
    """A probe: a case packed with product A, lot A, rescanned after the line switched to lot B
    (or product B), closed over the new units and was answered ``ok``: the case held two lots
    (or products) while ``case_state`` said A. Now it is rejected — ``already_active`` for
    another lot (as a unit of another lot is), ``wrong_product`` for another product — and the
    new units stay unpacked; on the line's own context again it takes more."""
    batch_a, product_a = await issue_units(client, login, demo, 20)
    products = (await client.get("/products", headers=await login("planner"))).json()["items"]
    other = next(p for p in products if p["id"] != product_a)
    batch_b, product_b = await issue_units(client, login, demo, 5, other["product_no"])
    await set_rules(client, login, product_a, [])
    await set_rules(client, login, product_b, [])
    [case] = await issue_cases(client, login, demo, "inner", 1)
    ua = serials(app, batch_a, 0, 20)
    await set_line(client, login, product_a, "PZ2", lot="LOTA")
    first = await upload(client, login, "PZ2", [scan(s) for s in ua[:5]] + [scan(case)])
    assert first["accepted"] == 6, first
    for product_id, lot, units, reason in (
        (product_a, "LOTB", ua[5:10], "already_active"),
        (product_b, "LOTA", serials(app, batch_b, 0, 5), "wrong_product"),
    ):
        await set_line(client, login, product_id, "PZ2", lot=lot)
        body = await upload(client, login, "PZ2", [scan(s) for s in units] + [scan(case)])
        assert [s["result"] for s in body["scans"]] == ["ok"] * 5 + ["rejected"], body
        assert body["scans"][-1]["reason"] == reason, body
        assert all("parent" not in s for s in body["scans"][:5]), body
    await set_line(client, login, product_a, "PZ2", lot="LOTA")
    again = await upload(client, login, "PZ2", [scan(s) for s in ua[10:12]] + [scan(case)])
    assert again["accepted"] == 3, again
    held = await (
        await conn.execute(
            "SELECT product_id, lot, count(*) FROM unit_state WHERE parent_sscc = %s"
            " GROUP BY product_id, lot",
            (int(case),),
        )
    ).fetchall()
    await conn.commit()
    assert [tuple(r.values()) for r in held] == [(product_a, "LOTA", 7)], held
    # closed again over no new unit, on another product's line, it goes onto a (mixed) pallet
    [pallet] = await issue_cases(client, login, demo, "pallet", 1)
    await set_line(client, login, product_b, "PZ2", lot="LOTB")
    mixed = await upload(client, login, "PZ2", [scan(case), scan(pallet)])
    assert [s["result"] for s in mixed["scans"]] == ["ok", "ok"], mixed
    assert mixed["scans"][0]["parent"] == pallet, mixed


async def test_a_case_closed_again_onto_a_mixed_pallet_is_not_counted_by_the_lines_rule(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: product A's strict inner rule is 4, product B's 6. On B's line an A case of 4
    (packed on A's) closed again over nothing new, then the pallet: the A case was counted by
    B's rule, rejected ``short_case`` (4 items, the rule says 6), and the pallet closed over B's
    case alone. A container closed again over no new item is left as it is: the pallet takes
    both. A case taking new units is still counted."""
    batch_a, product_a = await issue_units(client, login, demo, 4)
    products = (await client.get("/products", headers=await login("planner"))).json()["items"]
    other = next(p for p in products if p["id"] != product_a)
    batch_b, product_b = await issue_units(client, login, demo, 11, other["product_no"])
    case_a, case_b, case_c = await issue_cases(client, login, demo, "inner", 3)
    (pallet,) = await issue_cases(client, login, demo, "pallet", 1)
    line = f"MX{batch_a}"
    units_b = serials(app, batch_b, 0, 11)
    try:
        await set_rules(client, login, product_a, [{"level": "inner", "quantity": 4}])
        await set_rules(client, login, product_b, [{"level": "inner", "quantity": 6}])
        await set_line(client, login, product_a, line, lot="LA")
        body = await upload(
            client, login, line, [scan(u) for u in serials(app, batch_a, 0, 4)] + [scan(case_a)]
        )
        assert body["rejected"] == 0, body
        await set_line(client, login, product_b, line, lot="LB")
        sent = [scan(u) for u in units_b[:6]] + [scan(case_b), scan(case_a), scan(pallet)]
        body = await upload(client, login, line, sent)
        results = [(s["result"], s.get("reason"), s.get("parent")) for s in body["scans"][-3:]]
        assert results == [("ok", None, pallet)] * 2 + [("ok", None, None)], body["scans"][-3:]
        short = await upload(client, login, line, [scan(u) for u in units_b[6:]] + [scan(case_c)])
        assert short["scans"][-1]["reason"] == "short_case", short
    finally:
        await set_rules(client, login, product_a, [])
        await set_rules(client, login, product_b, [])
    trace = (await client.get(f"/trace/{pallet}", headers=await login("admin"))).json()
    assert sorted(c["code"] for c in trace["contents"] if len(c["code"]) == 18) == sorted(
        [case_a, case_b]
    ), trace["contents"]


async def test_rules_replaced_at_once_are_one_of_the_two(client: Any, login: Any) -> None:
    """Two replacements of one product's rules at once: the rules are one of the two sets, and
    the same set twice is answered 200 twice (a probe: the sets were mixed, or the second was a
    409 unique-key conflict)."""
    admin = await login("admin")
    ids = []
    for n in (1, 2):
        made = await client.post(
            "/products",
            headers=admin,
            json={"name": f"Rules race {n}", "product_no": f"RULES-RACE-{n}"},
        )
        assert made.status_code == 201, made.text
        ids.append(made.json()["id"])
    mixed, same = ids
    inner, master = {"level": "inner", "quantity": 10}, {"level": "master", "quantity": 4}
    answers = await asyncio.gather(
        *(client.put(f"/packing/rules/{mixed}", headers=admin, json=[r]) for r in (inner, master))
    )
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    now = (await client.get(f"/packing/rules/{mixed}", headers=admin)).json()
    assert [r["level"] for r in now] in (["inner"], ["master"]), now
    answers = await asyncio.gather(
        *(client.put(f"/packing/rules/{same}", headers=admin, json=[inner, master]) for _ in "ab")
    )
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]


async def _to_the_agent(client: Any, login: Any, demo: Any, codes: list[str]) -> None:
    """Taken into the factory warehouse, shipped to the Zhejiang agent, received there."""
    from tests.test_logistics import confirm, document

    clerk, agent = await login("clerk"), await login("agent_clerk")
    for fields in ({"kind": "factory_inbound"}, {"kind": "outbound"}):
        if fields["kind"] == "outbound":
            fields["counterparty_id"] = demo["AGENT-ZJ"]
        doc = await document(client, clerk, codes, **fields)
        assert (await confirm(client, clerk, doc)).status_code == 200
    received = await document(client, agent, None, kind="inbound", shipment_id=doc["id"])
    assert (await confirm(client, agent, received)).status_code == 200


async def test_a_unit_out_of_its_case_takes_in_nothing_of_the_cases_later_route(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """Two probes (model-based): a unit taken out of a case that stood on a pallet, and a unit
    replaced (voided) in its case, kept the pallet's or the case's later shipments in their
    trace, and the agent that received the pallet or case could read it (200, not 404)."""
    batch_no, product_id = await issue_units(client, login, demo, 5)
    await set_line(client, login, product_id, "TR1")
    units = serials(app, batch_no, 0, 5)
    (case,) = await issue_cases(client, login, demo, "inner", 1)
    (pallet,) = await issue_cases(client, login, demo, "pallet", 1)
    (case2,) = await issue_cases(client, login, demo, "inner", 1)
    await upload(client, login, "TR1", [scan(u) for u in units[:4]])
    await upload(client, login, "TR1", [scan(case, units[:2]), scan(pallet, [case])])
    await upload(client, login, "TR1", [scan(case2, units[2:4])])
    operator = await login("operator")
    body = {"parent": case, "children": [units[0]], "reason": "mistake"}
    assert (await client.post("/packing/unpack", headers=operator, json=body)).status_code == 200
    body = {"old": units[2], "new": units[4], "reason": "QC"}
    assert (await client.post("/packing/replace", headers=operator, json=body)).status_code == 200
    await _to_the_agent(client, login, demo, [pallet, case2])
    admin, agent = await login("admin"), await login("agent_clerk")
    for unit, expected in ((units[0], ["packing"]), (units[2], [])):
        trace = (await client.get(f"/trace/{unit}", headers=admin)).json()
        assert [e["biz_step"] for e in trace["events"] if e["via"]] == expected, trace["events"]
        assert all(stay["removed_at"] is not None for stay in trace["containers"]), trace
        assert_error(await client.get(f"/trace/{unit}", headers=agent), 404)
    # the units still inside: the route is theirs, and the agent reads it
    for unit in (units[1], units[3]):
        trace = (await client.get(f"/trace/{unit}", headers=agent)).json()
        assert "receiving" in [e["biz_step"] for e in trace["events"] if e["via"]], trace


async def test_a_gs1_128_case_label_read_as_00_and_18_digits_packs_the_case(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: a GS1-128 case label as a scanner sends it, ``00`` and the 18-digit SSCC (20
    digits, no brackets), was taken for a unit serial and refused as forged, here, in trace and
    in an inspection (recorded as a counterfeit)."""
    batch_no, product_id = await issue_units(client, login, demo, 2)
    [sscc] = await issue_cases(client, login, demo, "inner", 1)
    scheme = app.state.scheme
    operator = await login("operator")
    line = f"PQ{batch_no}"
    context = await client.put(
        f"/lines/{line}/context",
        headers=operator,
        json={"product_id": product_id, "lot": "LQ1", "production_date": "2026-11-01"},
    )
    assert context.status_code == 200, context.text
    at = "2026-11-01T08:00:00+08:00"
    scans = [
        {"id": f"pq-{batch_no}-{i}", "code": scheme.serial(batch_no, i), "at": at} for i in range(2)
    ]
    scans.append({"id": f"pq-{batch_no}-case", "code": "00" + sscc, "at": at})
    response = await client.post(f"/lines/{line}/scans", headers=operator, json={"scans": scans})
    assert response.status_code == 200, response.text
    case = response.json()["scans"][2]
    assert (case["result"], case["kind"]) == ("ok", "case"), case
    trace = await client.get(f"/trace/00{sscc}", headers=await login("planner"))
    assert trace.status_code == 200, trace.text


async def test_a_scan_id_reused_after_a_replay_in_the_same_upload_is_id_reused(
    client: Any, login: Any, app: Any, conn: Any, demo: Any
) -> None:
    """A probe: an upload whose first scan with an id was the retry of an accepted one (X,
    ``duplicate``) took the next scan with that id and another code (Y) for a new scan: Y was
    activated under the id that activated X. A retry sent twice in one upload is a duplicate
    each time, and the case after it closes over X once."""
    batch_no, product_id = await issue_units(client, login, demo, 3)
    [case] = await issue_cases(client, login, demo, "inner", 1)
    line = f"RP{batch_no}"
    await set_line(client, login, product_id, line)
    x, y, z = serials(app, batch_no, 0, 3)
    assert (await upload(client, login, line, [scan(x, cid=f"rp{batch_no}")]))["accepted"] == 1
    again = await upload(
        client,
        login,
        line,
        [
            scan(x, cid=f"rp{batch_no}"),  # the retry of that scan
            scan(y, cid=f"rp{batch_no}"),  # the scanner reusing its id
            scan(x, cid=f"rp{batch_no}"),  # the retry again
            scan(z),
            scan(case),
        ],
    )
    results = [(s["result"], s.get("reason")) for s in again["scans"]]
    assert results == [
        ("duplicate", None),
        ("rejected", "id_reused"),
        ("duplicate", None),
        ("ok", None),
        ("ok", None),
    ], again
    assert (await counts(conn, batch_no))["units"] == 2  # x and z: y never activated
    trace = (await client.get(f"/trace/{case}", headers=await login("admin"))).json()
    assert sorted(c["code"] for c in trace["contents"]) == sorted([x, z])
    [packing] = [e for e in trace["events"] if e["biz_step"] == "packing"]
    assert packing["child_count"] == 2


async def _mixed_case(client: Any, login: Any, app: Any, demo: Any, line: str) -> dict[str, Any]:
    """One inner case of 10 sun-cream units: 5 of batch A, 5 of batch B (same product, lot)."""
    batch_a, product_id = await issue_units(client, login, demo, 5)
    batch_b, _ = await issue_units(client, login, demo, 5)
    a, b = serials(app, batch_a, 0, 5), serials(app, batch_b, 0, 5)
    (case,) = await issue_cases(client, login, demo, "inner", 1)
    await set_line(client, login, product_id, line)
    body = await upload(client, login, line, [scan(u) for u in a + b] + [scan(case)])
    assert body["rejected"] == 0, body
    return {"a": a, "b": b, "batch_b": batch_b, "case": case}


async def _void_batch(client: Any, login: Any, batch_no: int) -> None:
    voided = await client.post(
        f"/batches/{batch_no}/void", headers=await login("planner"), json={"reason": "stolen"}
    )
    assert voided.status_code == 200, voided.text


async def _recount(app: Any) -> list[Any]:
    from app.logistics.rollup import recount, rollup_alone

    async with app.state.pool.connection() as conn:
        await conn.set_autocommit(True)
        await rollup_alone(conn, wait=True)
        return await recount(conn)


async def test_voiding_a_batch_takes_its_units_out_of_their_cases(
    client: Any, login: Any, app: Any, conn: Any, demo: Any
) -> None:
    """A probe: a batch's void (``codes.service._decommission``) left its void units inside
    their case, unlike a replacement, and the case could then not be unpacked, whole (409
    ``not_on_hand``) or by naming them (422 ``not_in_container``), nor shipped (409 ``void``),
    its good units stuck. Now they leave it, with an unpacking event; and void units a void
    before this fix left inside are taken out by name or with the rest."""
    goods = await _mixed_case(client, login, app, demo, "VC1")
    await _void_batch(client, login, goods["batch_b"])
    admin, operator = await login("admin"), await login("operator")
    trace = (await client.get(f"/trace/{goods['case']}", headers=admin)).json()
    assert sorted(c["code"] for c in trace["contents"]) == sorted(goods["a"])
    [out] = [e for e in trace["events"] if e["biz_step"] == "unpacking"]
    assert (out["action"], out["child_count"]) == ("DELETE", 5), out
    assert out["details"] == {"batch_no": goods["batch_b"], "reason": "stolen"}
    assert await _recount(app) == []
    # as a void before this fix left them: back inside the case
    lo = goods["batch_b"] << 32
    await conn.execute(
        """UPDATE unit_state SET parent_sscc = (SELECT parent_sscc FROM unit_state
                                                WHERE code = %s AND parent_sscc IS NOT NULL)
           WHERE code >= %s AND code < %s""",
        (app.state.scheme.verify(goods["a"][0])[0] << 32, lo, lo + 5),
    )
    await conn.commit()
    named = await client.post(
        "/packing/unpack",
        headers=operator,
        json={"parent": goods["case"], "children": goods["b"][:2], "reason": "void labels out"},
    )
    assert named.status_code == 200, named.text
    whole = await client.post(
        "/packing/unpack", headers=operator, json={"parent": goods["case"], "reason": "all out"}
    )
    assert whole.status_code == 200, whole.text
    assert sorted(whole.json()["codes"]) == sorted(goods["a"] + goods["b"][2:])
    assert await _recount(app) == []


async def test_a_shipment_whose_batch_was_voided_in_transit_is_received_and_shipped_on(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: a case in transit to an agent, half its units' batch voided on the way, was
    received with its good units — and its void ones, which the void had left inside: the
    agent could neither unpack the case (409 ``not_on_hand``) nor ship it to a store (409
    ``void``). The void takes them out now; the case ships on with its 5 good units."""
    from tests.test_logistics import confirm, document

    goods = await _mixed_case(client, login, app, demo, "VC2")
    clerk, agent = await login("clerk"), await login("agent_clerk")
    inbound = await document(client, clerk, [goods["case"]], kind="factory_inbound")
    assert (await confirm(client, clerk, inbound)).status_code == 200
    outbound = await document(
        client, clerk, [goods["case"]], kind="outbound", counterparty_id=demo["AGENT-ZJ"]
    )
    assert (await confirm(client, clerk, outbound)).status_code == 200
    await _void_batch(client, login, goods["batch_b"])
    assert await _recount(app) == []
    receipt = await document(client, agent, None, kind="inbound", shipment_id=outbound["id"])
    received = await confirm(client, agent, receipt)
    assert received.status_code == 200, received.text
    assert await _recount(app) == []
    onward = await document(
        client, agent, [goods["case"]], kind="outbound", counterparty_id=demo["STORE-HZ-01"]
    )
    shipped = await confirm(client, agent, onward)
    assert shipped.status_code == 200, shipped.text
    assert [line["units"] for line in shipped.json()["lines"]] == [5], shipped.json()
    assert await _recount(app) == []


async def _given_away(client: Any, login: Any, codes: list[str]) -> None:
    """An approved exception outbound (a gift) of these codes from the factory."""
    from tests.test_logistics import confirm, document

    factory = await login("factory_admin")
    gift = await document(client, factory, codes, kind="exception", reason="gift")
    assert (await confirm(client, factory, gift)).status_code == 200
    approved = await client.post(
        f"/documents/{gift['id']}/approve", headers=await login("approver"), json={}
    )
    assert approved.status_code == 200, approved.text


async def test_a_case_given_away_is_not_packed_again(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: a case given away from the factory (its units ``sold``, the case row ``active``
    where it was: a case is never sold) was packed onto a new pallet by the factory's line,
    ``ok`` — stock-less goods nobody could ship. A case gone with its units (its disposition
    says so) is ``not_held`` on the line, named or scanned before its container."""
    batch_no, product_id = await issue_units(client, login, demo, 10)
    units = serials(app, batch_no, 0, 10)
    (case,) = await issue_cases(client, login, demo, "inner", 1)
    pallets = await issue_cases(client, login, demo, "pallet", 2)
    await set_line(client, login, product_id, "GA1")
    assert (await upload(client, login, "GA1", [scan(u) for u in units] + [scan(case)]))[
        "rejected"
    ] == 0
    await _given_away(client, login, [case])
    named = await upload(client, login, "GA1", [scan(pallets[0], children=[case])])
    [result] = [(s["result"], s["reason"], s["message"]) for s in named["scans"]]
    assert result == ("rejected", "child_rejected", f"child {case}: not_held"), named
    scanned = await upload(client, login, "GA1", [scan(case), scan(pallets[1])])
    results = [(s["result"], s.get("reason")) for s in scanned["scans"]]
    assert results == [("rejected", "not_held"), ("rejected", "empty_case")], scanned


async def test_a_unit_given_away_is_not_called_void_on_the_line(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: a unit given away (status ``sold``) scanned on the factory's line was rejected
    ``void`` — "the code or its batch is void" — which it is not (it verifies genuine in its
    receiver's hands). It is ``not_held`` now, alone or named in a case, as a movement says."""
    batch_no, product_id = await issue_units(client, login, demo, 2)
    unit, other = serials(app, batch_no, 0, 2)
    (case,) = await issue_cases(client, login, demo, "inner", 1)
    await set_line(client, login, product_id, "GA2")
    assert (await upload(client, login, "GA2", [scan(unit), scan(other)]))["rejected"] == 0
    await _given_away(client, login, [unit])
    status = await client.get(f"/codes/{unit}/status", headers=await login("planner"))
    assert status.json()["status"] == "active", status.text
    body = await upload(client, login, "GA2", [scan(unit), scan(case, children=[unit, other])])
    results = [(s["result"], s.get("reason"), s["message"]) for s in body["scans"]]
    assert results[0][:2] == ("rejected", "not_held"), results
    assert results[1] == ("rejected", "child_rejected", f"child {unit}: not_held"), results


async def test_a_pallet_given_away_is_not_unpacked(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: a pallet given away by the factory (its units ``sold``; the pallet and its case
    stay ``active``, their disposition says they are gone) was unpacked by the factory's
    operator, 200, an unpacking written for goods that had left — the case holding the units
    was refused, the pallet (children: a case) was not. Both are ``not_on_hand`` now, and the
    case is not taken off the pallet by naming it either."""
    batch_no, product_id = await issue_units(client, login, demo, 4)
    await set_rules(client, login, product_id, [])
    units = serials(app, batch_no, 0, 4)
    (case,) = await issue_cases(client, login, demo, "inner", 1)
    (pallet,) = await issue_cases(client, login, demo, "pallet", 1)
    await set_line(client, login, product_id, "GA3")
    body = await upload(client, login, "GA3", [scan(u) for u in units] + [scan(case), scan(pallet)])
    assert body["rejected"] == 0, body
    await _given_away(client, login, [pallet])
    operator = await login("operator")
    for parent, children in ((case, None), (pallet, None), (pallet, [case])):
        answer = await client.post(
            "/packing/unpack",
            headers=operator,
            json={"parent": parent, "reason": "given away", "children": children},
        )
        assert_error(answer, 409, "not_on_hand")
    trace = (await client.get(f"/trace/{pallet}", headers=await login("admin"))).json()
    assert [e["biz_step"] for e in trace["events"]].count("unpacking") == 0, trace["events"]


async def test_a_replacement_makes_the_new_codes_batch_active(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe (SPEC C2: issued → exported → active): a line's upload activating a code moves
    its batch to ``active``; a replacement activating its new code left the new label's batch
    ``issued``, with an active unit, and ``GET /batches?state=active`` did not list it."""
    batch_no, product_id = await issue_units(client, login, demo, 1)
    labels, _ = await issue_units(client, login, demo, 1)
    [old], [new] = serials(app, batch_no, 0, 1), serials(app, labels, 0, 1)
    await set_line(client, login, product_id, "RB1")
    assert (await upload(client, login, "RB1", [scan(old)]))["rejected"] == 0
    planner = await login("planner")
    assert (await client.get(f"/batches/{labels}", headers=planner)).json()["state"] == "issued"
    replaced = await client.post(
        "/packing/replace", headers=await login("operator"), json={"old": old, "new": new}
    )
    assert replaced.status_code == 200, replaced.text
    batch = (await client.get(f"/batches/{labels}", headers=planner)).json()
    assert batch["state"] == "active", batch


async def test_a_replacement_label_naming_another_products_gtin_is_wrong_product(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: a replacement's new code read as a Digital Link naming the serum's GTIN, of a
    batch issued without a product, became an active sun-cream unit (its printed link and its
    product disagreeing from then on); an upload refuses that label ``wrong_product``, and so
    does a replacement now, replacing nothing."""
    batch_no, product_id = await issue_units(client, login, demo, 1)
    [old] = serials(app, batch_no, 0, 1)
    await set_line(client, login, product_id, "RG1")
    assert (await upload(client, login, "RG1", [scan(old)]))["rejected"] == 0
    response = await client.post(
        "/batches",
        headers=await login("planner"),
        json={"size": 1, "printer_id": demo["PRINTER-SH"]},
    )
    assert response.status_code == 201, response.text
    [new] = serials(app, int(response.json()["batch_no"]), 0, 1)
    operator = await login("operator")
    serum = f"https://id.gs1.org/01/06901234000016/21/{new}"
    replaced = await client.post(
        "/packing/replace", headers=operator, json={"old": old, "new": serum}
    )
    assert_error(replaced, 422, "wrong_product")
    assert (await client.get(f"/trace/{old}", headers=operator)).json()["state"][
        "status"
    ] == "active"


async def test_an_upload_spanning_midnight_counts_each_unit_on_the_day_it_was_activated(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """A probe: a night shift's offline scanner uploaded once, 2 units scanned at 23:50 one day
    and 3 at 00:10 the next (Beijing). Each unit's activation time (``unit_state.activated_at``,
    what the trace shows) was its own scan's, but the dashboard's activations put all 5 on the
    first day and none on the second: the upload wrote one commissioning event timed at its
    first scan, and the dashboard counts the event's units on the event's day. Now one
    commissioning event per day of the scans, each at its day's first scan; a replay of the
    upload still answers duplicate and writes nothing."""
    from zoneinfo import ZoneInfo

    shanghai = ZoneInfo("Asia/Shanghai")
    admin = await login("admin")
    before = (await client.get("/analytics/dashboard", headers=admin)).json()
    first, second = before["days"][-3], before["days"][-2]
    batch_no, product_id = await issue_units(client, login, demo, 5)
    await set_line(client, login, product_id, "NIGHT1")
    codes = serials(app, batch_no, 0, 5)
    times = [f"{first}T23:50:0{i}+08:00" for i in range(2)]
    times += [f"{second}T00:10:0{i}+08:00" for i in range(3)]
    scans = [scan(c, at=t) for c, t in zip(codes, times, strict=True)]
    body = await upload(client, login, "NIGHT1", scans)
    assert [s["result"] for s in body["scans"]] == ["ok"] * 5, body
    lo, hi = batch_no << 32, (batch_no + 1) << 32
    events = await (
        await conn.execute(
            """SELECT e.event_time, array_agg(c.code ORDER BY c.code) AS units
               FROM events e JOIN event_codes c ON c.event_id = e.id
               WHERE c.code >= %s AND c.code < %s AND c.kind = 'u'
                 AND e.biz_step = 'commissioning'
               GROUP BY e.id, e.event_time ORDER BY e.event_time""",
            (lo, hi),
        )
    ).fetchall()
    assert [
        (e["event_time"].astimezone(shanghai).isoformat(), len(e["units"])) for e in events
    ] == [
        (times[0], 2),
        (times[2], 3),
    ]
    before_replay = await counts(conn, batch_no)
    again = await upload(client, login, "NIGHT1", scans)
    assert [s["result"] for s in again["scans"]] == ["duplicate"] * 5, again
    assert await counts(conn, batch_no) == before_replay
    after = (await client.get("/analytics/dashboard", headers=admin)).json()
    assert after["days"] == before["days"]  # not across midnight
    trends = zip(after["activations"]["trend"], before["activations"]["trend"], strict=True)
    grew = [a - b for a, b in trends]
    assert (grew[-3], grew[-2]) == (2, 3), grew


async def test_undo_reaches_past_the_lines_fifty_newest_packings(
    client: Any, login: Any, app: Any, lumi: Any
) -> None:
    """A probe: ``POST /lines/{line}/undo`` looked only at the line's 50 newest packings and
    skipped those undone already: a line packed 52 cases in one upload (the wrong lot), the
    operator pressed Undo once per case, and the 51st and 52nd answered 404 ``nothing_to_undo``
    with two cases still packed on the line. Undo pages through the line's packings."""
    await set_line(client, login, lumi.product_id, "PZU1")
    units = serials(app, lumi.batch_no, 700, 752)
    cases = lumi.inner[40:92]
    scans: list[dict[str, Any]] = []
    for unit, case in zip(units, cases, strict=True):
        scans += [scan(unit), scan(case)]
    body = await upload(client, login, "PZU1", scans)
    assert (body["accepted"], body["rejected"]) == (104, 0), body
    operator = await login("operator")
    undone = []
    for _ in range(52):
        answer = await client.post("/lines/PZU1/undo", headers=operator, json={"reason": "lot"})
        undone.append((answer.status_code, answer.json().get("parent") or answer.json()))
    assert undone == [(200, case) for case in reversed(cases)], undone[48:]
    answer = await client.post("/lines/PZU1/undo", headers=operator, json={"reason": "lot"})
    assert_error(answer, 404, "nothing_to_undo")


async def test_rules_or_a_line_context_set_to_what_they_are_write_no_audit_row(
    client: Any, app: Any, login: Any
) -> None:
    """A probe: ``PUT /packing/rules/{product}`` with the rules the product has already (in
    another order) wrote a ``set_packing_rules`` row, before and after the same, and ``PUT
    /lines/{line}/context`` with the product, lot and date the line has already wrote another
    ``set_context`` row each time. README: a call that changes nothing answers 200 with the
    entity as it is and writes no row; a change still writes one."""
    admin, operator = await login("admin"), await login("operator")
    made = await client.post(
        "/products",
        headers=admin,
        json={"name": "Same rules", "product_no": f"SAME-{secrets.token_hex(3)}"},
    )
    assert made.status_code == 201, made.text
    product = made.json()["id"]
    inner, master = {"level": "inner", "quantity": 6}, {"level": "master", "quantity": 4}
    first = await client.put(f"/packing/rules/{product}", headers=admin, json=[inner, master])
    assert first.status_code == 200, first.text
    again = await client.put(
        f"/packing/rules/{product}", headers=admin, json=[{**master, "strict": True}, inner]
    )
    assert again.status_code == 200 and again.json() == first.json(), again.text
    assert len(await audit_rows(app, "product", product, "set_packing_rules")) == 1
    looser = await client.put(
        f"/packing/rules/{product}", headers=admin, json=[inner, {**master, "strict": False}]
    )
    assert looser.status_code == 200, looser.text
    assert len(await audit_rows(app, "product", product, "set_packing_rules")) == 2

    url = f"/lines/SAME-{secrets.token_hex(3)}/context"
    context = {"product_id": product, "lot": "LOT-SAME", "production_date": "2026-11-20"}
    set_ = await client.put(url, headers=operator, json=context)
    assert set_.status_code == 200, set_.text
    line = set_.json()
    same = await client.put(url, headers=operator, json=context)
    assert same.status_code == 200 and same.json() == line, same.text
    assert len(await audit_rows(app, "line", line["id"], "set_context")) == 1
    moved = await client.put(url, headers=operator, json={**context, "lot": "LOT-NEXT"})
    assert moved.status_code == 200 and moved.json()["lot"] == "LOT-NEXT", moved.text
    assert len(await audit_rows(app, "line", line["id"], "set_context")) == 2


async def test_a_new_lines_context_set_twice_at_once_is_audited_once(
    client: Any, app: Any, login: Any, demo: Any
) -> None:
    """A probe: an operator double-clicks "start shift" on a line used for the first time: two ``PUT
    /lines/{line}/context`` with the same product, lot and date at once. One after the other,
    the second changes nothing and writes no ``set_context`` row (README: a call that changes
    nothing writes no row). At once, both read "no line yet" (the lock taken to compare,
    ``FOR NO KEY UPDATE``, holds no row that does not exist) and both write and audit: two
    ``set_context`` rows for one setting. The upsert decides now, under its row lock."""
    from tests.h5_support import new_product

    operator = await login("operator")
    product = (await new_product(client, login))["id"]
    url = f"/lines/DBL-{secrets.token_hex(3)}/context"
    context = {"product_id": product, "lot": "LOT-DBL", "production_date": "2026-11-20"}
    answers = await twice_held(
        app,
        client,
        "SELECT 1 FROM products WHERE id = %s FOR UPDATE",
        (product,),
        "PUT",
        url,
        operator,
        json=context,
    )
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    line = answers[0].json()
    rows = await audit_rows(app, "line", line["id"], "set_context")
    assert len(rows) == 1, f"{len(rows)} set_context rows for one setting of the line"


async def test_packing_rules_of_a_factorys_product_are_in_the_factorys_log(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: a product owned by FACTORY-SZ keeps its ``create`` and ``update`` rows under
    the factory, but the brand administrator's ``PUT /packing/rules/{id}`` wrote its
    ``set_packing_rules`` row under the brand: the factory's administrator never saw its packing
    rules change. The row is the product's owner's."""
    admin = await login("admin")
    tag = secrets.token_hex(3)
    made = await client.post(
        "/products",
        headers=admin,
        json={"name": f"probe {tag}", "product_no": f"PZ-{tag}", "org_id": demo["FACTORY-SZ"]},
    )
    assert made.status_code == 201, made.text
    product_id = made.json()["id"]
    rules = await client.put(
        f"/packing/rules/{product_id}", headers=admin, json=[{"level": "inner", "quantity": 6}]
    )
    assert rules.status_code == 200, rules.text
    log = await client.get(
        "/audit",
        headers=await login("factory_admin"),
        params={"entity": "product", "entity_id": str(product_id)},
    )
    assert log.status_code == 200, log.text
    actions = sorted(row["action"] for row in log.json()["items"])
    assert actions == ["create", "set_packing_rules"], actions


async def test_a_case_already_on_a_pallet_scanned_under_another_keeps_its_units(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: case C (3 units) stands on pallet P1. The line then scans 3 new units, C, and a
    new pallet P2: C closed over the new units, then P2 tried to take C, already on P1, and C's
    scan was answered ``rejected`` / ``already_bound`` (P2 ``empty_case``) though the 3 units
    were packed into C with an aggregation event. A rejected scan changes nothing: C's scan is
    accepted (it took the units, it stays on P1) and P2 is refused, ``child_rejected``."""
    batch_no, product_id = await issue_units(client, login, demo, 10)
    await set_rules(client, login, product_id, [])
    [case] = await issue_cases(client, login, demo, "inner", 1)
    p1, p2 = await issue_cases(client, login, demo, "pallet", 2)
    line = f"PZA{batch_no}"
    await set_line(client, login, product_id, line)
    units = serials(app, batch_no, 0, 6)
    first = await upload(client, login, line, [scan(u) for u in units[:3]] + [scan(case), scan(p1)])
    assert first["rejected"] == 0, first
    body = await upload(client, login, line, [scan(u) for u in units[3:]] + [scan(case), scan(p2)])
    results = [(s["result"], s.get("reason"), s.get("parent")) for s in body["scans"]]
    assert results == [("ok", None, case)] * 3 + [
        ("ok", None, p1),
        ("rejected", "child_rejected", None),
    ], results
    assert body["scans"][4]["message"] == f"child {case}: already_bound"
    trace = (await client.get(f"/trace/{case}", headers=await login("admin"))).json()
    assert set(units) <= {c["code"] for c in trace["contents"]}, trace


async def _packed_case(
    client: Any, login: Any, app: Any, demo: Any, prefix: str
) -> tuple[str, str]:
    batch_no, product_id = await issue_units(client, login, demo, 10)
    await set_rules(client, login, product_id, [])
    [case] = await issue_cases(client, login, demo, "inner", 1)
    line = f"{prefix}{batch_no}"
    await set_line(client, login, product_id, line)
    units = serials(app, batch_no, 0, 10)
    body = await upload(client, login, line, [scan(u) for u in units] + [scan(case)])
    assert body["rejected"] == 0, body
    return line, case


async def _during_receipt(
    client: Any, login: Any, monkeypatch: pytest.MonkeyPatch, case: str, correction: Any
) -> Any:
    """Run ``correction`` while the clerk's factory inbound of ``case`` has moved it (the case
    row updated and locked, not committed yet); the correction's answer once both are done."""
    import os

    import psycopg
    from psycopg.rows import dict_row

    from app import audit
    from tests.test_logistics import confirm, document

    clerk = await login("clerk")
    doc = await document(client, clerk, [case], kind="factory_inbound")
    paused, release = asyncio.Event(), asyncio.Event()
    record = audit.record

    async def pausing(conn: Any, actor: Any, action: str, *args: Any, **kwargs: Any) -> Any:
        if action == "confirm" and not paused.is_set():
            paused.set()
            await release.wait()
        return await record(conn, actor, action, *args, **kwargs)

    monkeypatch.setattr(audit, "record", pausing)
    receipt = asyncio.create_task(confirm(client, clerk, doc))
    await paused.wait()
    answer = asyncio.create_task(correction())
    async with await psycopg.AsyncConnection.connect(  # not a fixed pause: a loaded machine
        os.environ["TRACECODE_DATABASE_URL"], row_factory=dict_row
    ) as watch:
        assert await lock_waiters(watch, 1), "the correction should wait for the case's lock"
    release.set()
    received = await receipt
    assert received.status_code == 200, received.text
    return await answer


async def test_an_undo_racing_the_cases_receipt_into_the_warehouse_is_packing_moved(
    client: Any, login: Any, app: Any, demo: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A probe: the operator undid the line's newest packing (case C) while the clerk confirmed
    C's factory inbound, and got 404 ``unknown_code`` for the case his line just packed:
    ``edits._on_hand`` locked C's row joined to its holder's ``orgs`` row (``FOR UPDATE OF
    s``), and PostgreSQL's recheck after the lock wait dropped the moved row. Moved since, it
    answers 409 ``packing_moved``, as undo does when the receipt came first."""
    line, case = await _packed_case(client, login, app, demo, "UR")
    operator = await login("operator")

    async def undo() -> Any:
        return await client.post(f"/lines/{line}/undo", headers=operator, json={"reason": "x"})

    assert_error(
        await _during_receipt(client, login, monkeypatch, case, undo), 409, "packing_moved"
    )


async def test_an_unpack_racing_the_cases_receipt_into_the_warehouse_unpacks(
    client: Any, login: Any, app: Any, demo: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A probe: the factory's operator unpacked case C while the clerk confirmed C's factory
    inbound into the factory's own warehouse (in the factory's subtree: the same unpack a moment
    later answers 200), and got 404 ``unknown_code`` (the locking read of ``_on_hand``, as
    above). It waits for the receipt and unpacks."""
    _, case = await _packed_case(client, login, app, demo, "UQ")
    operator = await login("operator")

    async def unpack() -> Any:
        return await client.post(
            "/packing/unpack", headers=operator, json={"parent": case, "reason": "x"}
        )

    answer = await _during_receipt(client, login, monkeypatch, case, unpack)
    assert answer.status_code == 200, answer.text


async def test_an_empty_case_on_a_pallet_keeps_its_batch_from_being_voided(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: case C1 was packed, emptied (unpacked) and put on pallet P by name with a full
    case C2. ``POST /case-batches/{id}/void`` of C1's batch answered 200 — its check counted
    only cases holding goods — and C1, void, stood on P: naming it to take it off answered 422
    ``not_in_container``. A case in a container keeps its batch in use: 409
    ``case_batch_in_use``."""
    batch_no, product_id = await issue_units(client, login, demo, 20)
    await set_rules(client, login, product_id, [])
    planner = await login("planner")
    made = await client.post(
        "/case-batches",
        headers=planner,
        json={"level": "inner", "size": 1, "printer_id": demo["PRINTER-SH"]},
    )
    assert made.status_code == 201, made.text
    c1_batch, c1 = made.json()["id"], made.json()["first_sscc"]
    [c2] = await issue_cases(client, login, demo, "inner", 1)
    [pallet] = await issue_cases(client, login, demo, "pallet", 1)
    line = f"VE{batch_no}"
    await set_line(client, login, product_id, line)
    units = serials(app, batch_no, 0, 20)
    body = await upload(
        client,
        login,
        line,
        [scan(u) for u in units[:10]] + [scan(c1)] + [scan(u) for u in units[10:]] + [scan(c2)],
    )
    assert body["rejected"] == 0, body
    operator = await login("operator")
    out = await client.post("/packing/unpack", headers=operator, json={"parent": c1, "reason": "x"})
    assert out.status_code == 200, out.text
    body = await upload(client, login, line, [scan(pallet, children=[c1, c2])])
    assert body["accepted"] == 1, body
    void = f"/case-batches/{c1_batch}/void"
    assert_error(
        await client.post(void, headers=planner, json={"reason": "misprint"}),
        409,
        "case_batch_in_use",
    )
    off = await client.post(
        "/packing/unpack",
        headers=operator,
        json={"parent": pallet, "children": [c1], "reason": "void label"},
    )
    assert off.status_code == 200, off.text
    voided = await client.post(void, headers=planner, json={"reason": "misprint"})
    assert voided.status_code == 200, voided.text


async def test_undoing_a_packing_takes_out_the_units_that_replaced_its_units(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe (P4 after P5): the line packed 10 units into a case, QC replaced one of them in
    the case, then the operator undid the line's newest packing: the 9 originals came out, the
    new label stayed alone in the case, and no later undo reached it. The undo takes out the
    units that took the place of the packing's — a replacement of a replacement too — in its
    one unpacking event and audit row."""
    batch_no, product_id = await issue_units(client, login, demo, 13)
    await set_rules(client, login, product_id, [])
    [case] = await issue_cases(client, login, demo, "inner", 1)
    line = f"UX{batch_no}"
    await set_line(client, login, product_id, line)
    units = serials(app, batch_no, 0, 13)
    body = await upload(client, login, line, [scan(s) for s in units[:10]] + [scan(case)])
    assert body["rejected"] == 0, body
    operator = await login("operator")
    for old, new in ((units[3], units[10]), (units[10], units[11]), (units[5], units[12])):
        replaced = await client.post(
            "/packing/replace", headers=operator, json={"old": old, "new": new, "reason": "QC"}
        )
        assert replaced.status_code == 200, replaced.text
    undone = await client.post(f"/lines/{line}/undo", headers=operator, json={"reason": "wrong"})
    assert undone.status_code == 200, undone.text
    inside = [u for u in units[:10] if u not in (units[3], units[5])] + units[11:]
    assert undone.json()["parent"] == case
    assert sorted(undone.json()["codes"]) == sorted(inside)  # was without units 11 and 12
    assert (await client.get(f"/trace/{case}", headers=operator)).json()["contents"] == []
    trace = (await client.get(f"/trace/{units[11]}", headers=operator)).json()
    assert trace["state"]["parent"] is None
    assert trace["events"][-1]["biz_step"] == "unpacking"
    audit = await audit_rows(app, "case", case, "unpack")
    assert sorted(audit[-1]["after"]["codes"]) == sorted(inside)
    assert_error(
        await client.post(f"/lines/{line}/undo", headers=operator, json={"reason": "x"}),
        404,
        "nothing_to_undo",
    )


async def test_a_unit_claimed_in_transit_is_not_relabelled(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """A probe (M2 once per code, P5): a member claimed a unit's points while it travelled to
    the agent (a claim in transit sells nothing: the unit stays active); the agent received
    it, the brand relabelled it, and another member claimed the new label: one unit, paid
    twice. A code that earned its reward (a live points or rebate claim, a draw) is not
    relabelled: 409 ``already_claimed``, the new label left unused."""
    from tests.points_support import claim_body, member_client, new_member, set_rule
    from tests.test_logistics import confirm, document, pack

    goods = await pack(client, login, app, demo, 1)
    admin, clerk = await login("admin"), await login("clerk")
    await set_rule(client, admin, goods["product_id"], 10)
    inbound = await document(client, clerk, goods["cases"], kind="factory_inbound")
    assert (await confirm(client, clerk, inbound)).status_code == 200
    ship = await document(
        client, clerk, goods["cases"], kind="outbound", counterparty_id=demo["AGENT-ZJ"]
    )
    assert (await confirm(client, clerk, ship)).status_code == 200
    scheme, unit = app.state.scheme, goods["units"][0]
    _, member, _ = await new_member(app, demo["BRAND-LUMI"])
    async with member_client(app) as mc:
        claimed = await mc.post("/members/me/claims", headers=member, json=claim_body(scheme, unit))
    assert claimed.status_code == 201, claimed.text
    agent = await login("agent_clerk")
    got = await document(client, agent, kind="inbound", shipment_id=ship["id"])
    assert (await confirm(client, agent, got)).status_code == 200
    labels, _ = await issue_units(client, login, demo, 1)
    [new] = serials(app, labels, 0, 1)
    replaced = await client.post(
        "/packing/replace", headers=admin, json={"old": unit, "new": new, "reason": "torn"}
    )
    assert_error(replaced, 409, "already_claimed")  # was 200: the new label claimable again
    trace = (await client.get(f"/trace/{unit}", headers=admin)).json()
    assert trace["state"]["status"] == "active", trace["state"]
    row = await (
        await conn.execute(
            "SELECT count(*) AS n FROM unit_state WHERE code = %s", ((labels << 32) | 0,)
        )
    ).fetchone()
    await conn.commit()
    assert row["n"] == 0


async def test_a_retry_of_a_case_naming_its_children_goes_on_with_the_scans_after_it(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A review: a case naming its children, its answer lost, re-sent with more scans after it
    (a unit, a case over it, a pallet over both) — the replayed case left its named units for
    the next container, which took them, found them in the case and was refused
    (``child_rejected``), the new unit left in no case. As in one upload: the unit in the new
    case, both cases on the pallet."""
    batch_no, product_id = await issue_units(client, login, demo, 4)
    await set_rules(client, login, product_id, [])
    c, d = await issue_cases(client, login, demo, "inner", 2)
    (p,) = await issue_cases(client, login, demo, "pallet", 1)
    line = f"RX{batch_no}"
    await set_line(client, login, product_id, line)
    units = serials(app, batch_no, 0, 4)
    one = [scan(u) for u in units[:3]] + [scan(c, children=units[:3])]
    assert (await upload(client, login, line, one))["rejected"] == 0
    again = await upload(client, login, line, [*one, scan(units[3]), scan(d), scan(p)])
    answers = [(s["result"], s.get("reason"), s.get("parent")) for s in again["scans"]]
    assert answers[3][0] == "duplicate", again  # C (its parent as stored: none yet)
    assert answers[4:] == [("ok", None, d), ("ok", None, p), ("ok", None, None)], again


async def test_a_case_scan_id_sent_again_over_units_it_does_not_hold_is_id_reused(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: upload 1 packed units 1–3 into case C (scan id ``c``); upload 2, no retry,
    scanned units 4–6 then C under ``c`` again: C answered ``duplicate`` and 4–6, each ``ok``
    with no parent, were left out of any case unsaid. C is ``id_reused`` and 4–6 stay for the
    next container. Upload 1 retried (only replays before C, and a unit it found in another
    case) is all duplicates still; a case's replay naming its children leaves what was scanned
    before it for the next container, as its first scan did."""
    batch_no, product_id = await issue_units(client, login, demo, 10)
    await set_rules(client, login, product_id, [])
    c, d, x, e, f = await issue_cases(client, login, demo, "inner", 5)
    line = f"ZI{batch_no}"
    await set_line(client, login, product_id, line)
    units = serials(app, batch_no, 0, 10)
    assert (await upload(client, login, line, [scan(units[7]), scan(x)]))["rejected"] == 0
    cid, eid = f"c-{secrets.token_hex(4)}", f"e-{secrets.token_hex(4)}"
    one = [scan(u) for u in units[:3]] + [scan(units[7]), scan(c, cid=cid)]
    first = await upload(client, login, line, one)
    assert [(s["result"], s.get("reason")) for s in first["scans"]] == [("ok", None)] * 3 + [
        ("rejected", "already_bound"),
        ("ok", None),
    ], first
    two = await upload(
        client, login, line, [scan(u) for u in units[3:6]] + [scan(c, cid=cid), scan(d)]
    )
    assert [(s["result"], s.get("reason"), s.get("parent")) for s in two["scans"]] == [
        ("ok", None, d)
    ] * 3 + [("rejected", "id_reused", None), ("ok", None, None)], two
    again = await upload(client, login, line, one)
    results = [s["result"] for s in again["scans"]]
    assert results[:3] + results[4:] == ["duplicate"] * 4, again
    named = [scan(units[8]), scan(e, children=[units[8]], cid=eid)]
    assert (await upload(client, login, line, named))["rejected"] == 0
    later = await upload(
        client, login, line, [scan(units[9]), scan(e, children=[units[8]], cid=eid), scan(f)]
    )
    assert [(s["result"], s.get("parent")) for s in later["scans"]] == [
        ("ok", f),
        ("duplicate", None),
        ("ok", None),
    ], later
    admin = await login("admin")
    for case, inside in ((c, units[:3]), (d, units[3:6]), (e, units[8:9]), (f, units[9:])):
        trace = (await client.get(f"/trace/{case}", headers=admin)).json()
        assert sorted(i["code"] for i in trace["contents"]) == sorted(inside), (case, trace)


async def test_named_children_are_not_left_for_the_next_container(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """Cases naming their children (``children: []`` too) among scanned units: the next case
    closes over the scanned units none took; a unit named, then scanned, is ``already_bound``
    to the next case. (Once each named case rebuilt the whole pending list: 10,000 units, then
    10,000 cases naming ``children: []``, took ten times the hot path's time.)"""
    batch_no, product_id = await issue_units(client, login, demo, 6)
    await set_rules(client, login, product_id, [])
    a, b, d, e = await issue_cases(client, login, demo, "inner", 4)
    line = f"ZN{batch_no}"
    await set_line(client, login, product_id, line)
    units = serials(app, batch_no, 0, 6)
    assert (await upload(client, login, line, [scan(units[5])]))["rejected"] == 0  # loose
    body = await upload(
        client,
        login,
        line,
        [scan(u) for u in units[:4]]
        + [scan(a, children=[]), scan(b, children=[units[0]]), scan(d, children=[units[5]])]
        + [scan(units[5]), scan(e)],
    )
    assert [(s["result"], s.get("reason"), s.get("parent")) for s in body["scans"]] == [
        ("ok", None, b),
        ("ok", None, e),
        ("ok", None, e),
        ("ok", None, e),
        ("rejected", "empty_case", None),
        ("ok", None, None),
        ("ok", None, None),
        ("rejected", "already_bound", None),
        ("ok", None, None),
    ], body
    admin = await login("admin")
    for case, inside in ((b, units[:1]), (d, units[5:]), (e, units[1:4])):
        trace = (await client.get(f"/trace/{case}", headers=admin)).json()
        assert sorted(i["code"] for i in trace["contents"]) == sorted(inside), (case, trace)


async def test_unpacking_named_children_of_a_full_case(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """Naming children to unpack: each one is looked up among what the case holds (a set: a
    list searched per name made naming a 19,999-unit case's units quadratic). A code not inside
    is ``not_in_container``, named alone in the details; all named, all come out."""
    batch_no, product_id = await issue_units(client, login, demo, 301)
    await set_rules(client, login, product_id, [])
    (case,) = await issue_cases(client, login, demo, "inner", 1)
    line = f"ZU{batch_no}"
    await set_line(client, login, product_id, line)
    units = serials(app, batch_no, 0, 301)
    assert (await upload(client, login, line, [scan(units[300])]))["rejected"] == 0  # loose
    packed = await upload(client, login, line, [scan(u) for u in units[:300]] + [scan(case)])
    assert packed["rejected"] == 0, packed
    operator = await login("operator")
    stray = {"parent": case, "children": [*units[:299], units[300]], "reason": "x"}
    refused = await client.post("/packing/unpack", headers=operator, json=stray)
    assert assert_error(refused, 422, "not_in_container")["details"] == {"codes": [units[300]]}
    whole = {"parent": case, "children": units[:300], "reason": "x"}
    out = await client.post("/packing/unpack", headers=operator, json=whole)
    assert out.status_code == 200, out.text
    assert sorted(out.json()["codes"]) == sorted(units[:300])
