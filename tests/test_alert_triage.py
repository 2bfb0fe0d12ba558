"""Alert triage (SPEC B6): verdicts, re-marking, two markers at once, precision per rule exact on
a constructed set, scoping and bad input — on the real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

from tests.helpers import assert_error, key_of, onboarded_brand
from tests.race_support import audit_rows, twice_held
from tests.rebates_support import user_id


async def _alert(
    app: Any,
    demo: Any,
    kind: str,
    rule: str | None = None,
    *,
    org: str = "BRAND-LUMI",
    twin: bool = False,
    days_ago: int = 0,
    acknowledged: bool = False,
) -> int:
    """An alert of the demo brand raised for ``org``, its details naming ``rule``."""
    brand = demo["BRAND-LUMI"]
    details = {"reason": rule} if rule else {}
    async with app.state.pool.connection() as conn:
        row = await (
            await conn.execute(
                """INSERT INTO alerts (brand_id, org_id, kind, severity, message, details,
                                       dedup_key, brand_twin, at, last_at, acknowledged_at)
                   VALUES (%s, %s, %s, 'warning', 'probe', %s, %s, %s,
                           now() - make_interval(days => %s), now() - make_interval(days => %s),
                           CASE WHEN %s THEN now() END)
                   RETURNING id""",
                (brand, demo[org], kind, json.dumps(details), f"{kind}:probe:{secrets.token_hex(8)}",
                 twin, days_ago, days_ago, acknowledged),
            )
        ).fetchone()  # fmt: skip
        await conn.commit()
    return int(row["id"])


async def _mark(
    client: Any, headers: dict[str, str], alert_id: int, verdict: str, note: str = "checked"
) -> dict[str, Any]:
    response = await client.put(
        f"/alerts/{alert_id}/verdict", headers=headers, json={"verdict": verdict, "note": note}
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_a_verdict_is_given_replaced_and_audited(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    admin, analyst = await login("admin"), await login("analyst")
    kind = f"probe_{secrets.token_hex(4)}"
    alert_id = await _alert(app, demo, kind, "over_threshold")
    first = await _mark(client, analyst, alert_id, "true_positive", "Same IP scanned 40 codes")
    assert first["revision"] == 1 and first["decided_by_name"] == "analyst"
    listed = (await client.get("/alerts", headers=admin, params={"kind": kind})).json()["items"]
    assert listed[0]["verdict"] == "true_positive" and listed[0]["verdict_revision"] == 1
    assert listed[0]["acknowledged_at"] is not None  # a verdict closes the alert
    # the same verdict and note again: as it is, nothing audited
    again = await _mark(client, analyst, alert_id, "true_positive", "Same IP scanned 40 codes")
    assert again == first
    # another verdict replaces it; both kept in the history, each audited with what it replaced
    second = await _mark(client, admin, alert_id, "false_positive", "A reseller's demo unit")
    assert second["revision"] == 2 and second["verdict"] == "false_positive"
    history = (await client.get(f"/alerts/{alert_id}/verdicts", headers=admin)).json()["items"]
    assert [(h["revision"], h["verdict"], h["decided_by_name"]) for h in history] == [
        (1, "true_positive", "analyst"),
        (2, "false_positive", "admin"),
    ]
    audited = await audit_rows(app, "alert", alert_id, "triage")
    assert len(audited) == 2
    assert audited[0]["before"] is None and audited[0]["after"]["acknowledged"] is True
    assert audited[1]["before"]["verdict"] == "true_positive"
    assert audited[1]["after"]["verdict"] == "false_positive"
    for verdict, expected in (("false_positive", 1), ("true_positive", 0), ("untriaged", 0)):
        found = await client.get(
            "/alerts", headers=admin, params={"kind": kind, "verdict": verdict}
        )
        assert found.json()["total"] == expected, verdict


async def test_an_alert_closed_through_an_api_key_names_its_maker(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: a SOC's script (an API key the admin made, ``alerts.read``) acknowledged one
    alert and gave another a verdict: the verdict named the key's maker (``decided_by``) but
    both alerts' ``acknowledged_by`` were null — closed by nobody. They name the person behind
    the key now (``Principal.person``), as the verdict does."""
    key = await key_of(client, await login("admin"), ["alerts.read"])
    kind = f"probe_{secrets.token_hex(4)}"
    acked, judged = await _alert(app, demo, kind), await _alert(app, demo, kind)
    done = await client.post(f"/alerts/{acked}/acknowledge", headers=key)
    assert done.status_code == 200, done.text
    await _mark(client, key, judged, "true_positive")
    async with app.state.pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT acknowledged_by FROM alerts WHERE id = ANY(%s)", ([acked, judged],)
            )
        ).fetchall()
        admin_id = await user_id(conn, "admin")
    assert [r["acknowledged_by"] for r in rows] == [admin_id, admin_id], rows


async def test_two_markers_at_once_leave_one_verdict_counted_once(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """Both requests read the alert while a third transaction holds it, then queue on it: each
    is served in turn, each audited against the verdict it replaced; one verdict stands, the
    alert counts once. With ``expected_revision`` the second is told: 409 ``verdict_changed``."""
    admin = await login("admin")
    kind = f"probe_{secrets.token_hex(4)}"
    alert_id = await _alert(app, demo, kind, "region_jump")
    bodies = (
        {"verdict": "true_positive", "note": "first"},
        {"verdict": "false_positive", "note": "second"},
    )
    answers = await twice_held(
        app, client, "SELECT 1 FROM alerts WHERE id = %s FOR UPDATE", (alert_id,), "PUT",
        f"/alerts/{alert_id}/verdict", admin, bodies=bodies,
    )  # fmt: skip
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    assert sorted(a.json()["revision"] for a in answers) == [1, 2]
    final = max(answers, key=lambda a: a.json()["revision"]).json()
    audited = await audit_rows(app, "alert", alert_id, "triage")
    assert len(audited) == 2 and audited[0]["before"] is None
    assert audited[1]["before"]["verdict"] != audited[1]["after"]["verdict"] == final["verdict"]
    report = (await client.get("/alerts/precision", headers=admin, params={"kind": kind})).json()
    (row,) = report["kinds"]
    assert row["alerts"] == 1 and row["true_positive"] + row["false_positive"] == 1

    other = await _alert(app, demo, kind, "region_jump")
    guarded = [{**body, "expected_revision": 0} for body in bodies]
    answers = await twice_held(
        app, client, "SELECT 1 FROM alerts WHERE id = %s FOR UPDATE", (other,), "PUT",
        f"/alerts/{other}/verdict", admin, bodies=(guarded[0], guarded[1]),
    )  # fmt: skip
    assert sorted(a.status_code for a in answers) == [200, 409]
    refused = assert_error(next(a for a in answers if a.status_code == 409), 409, "verdict_changed")
    assert refused["details"]["revision"] == 1
    # many at once, without a guard: still one verdict row, revisions without a gap
    third = await _alert(app, demo, kind, "region_jump")
    many = await asyncio.gather(
        *[
            client.put(
                f"/alerts/{third}/verdict",
                headers=admin,
                json={"verdict": "true_positive", "note": f"marker {i}"},
            )
            for i in range(6)
        ]
    )
    assert all(a.status_code == 200 for a in many)
    history = (await client.get(f"/alerts/{third}/verdicts", headers=admin)).json()
    assert [h["revision"] for h in history["items"]] == [1, 2, 3, 4, 5, 6]
    second_page = await client.get(
        f"/alerts/{third}/verdicts", headers=admin, params={"page": 2, "per_page": 4}
    )
    assert [h["revision"] for h in second_page.json()["items"]] == [5, 6]
    assert second_page.json()["total"] == 6


async def _own_alert(app: Any, brand_id: int) -> int:
    """An open alert of a test's own brand, raised for the brand organisation."""
    async with app.state.pool.connection() as conn:
        row = await (
            await conn.execute(
                """INSERT INTO alerts (brand_id, org_id, kind, severity, message, details,
                                       dedup_key)
                   VALUES (%s, %s, 'probe', 'warning', 'probe', %s, %s) RETURNING id""",
                (brand_id, brand_id, json.dumps({"reason": "repeat"}),
                 f"probe:triage:{secrets.token_hex(8)}"),
            )
        ).fetchone()  # fmt: skip
        await conn.commit()
    return int(row["id"])


async def test_a_verdict_sent_again_with_its_revision_is_answered_as_it_stands(
    client: Any, login: Any, app: Any
) -> None:
    """A probe: the console always sends ``expected_revision``; a verdict whose answer was
    lost, sent again as it was (or a double-click, both at once), was 409 ``verdict_changed``
    "another verdict was given on this alert meanwhile" — none was (the revision was checked
    before the comparison with the verdict standing). Now the verdict and note standing are
    answered as they stand, whatever revision they name, with no new row; a different verdict
    from the old revision is still told."""
    brand, admin = await onboarded_brand(client, login)
    alert_id = await _own_alert(app, brand["id"])
    url = f"/alerts/{alert_id}/verdict"
    body = {"verdict": "true_positive", "note": "confirmed with the store", "expected_revision": 0}
    first = await client.put(url, headers=admin, json=body)
    assert first.status_code == 200, first.text
    retry = await client.put(url, headers=admin, json=body)
    assert retry.status_code == 200, f"a retry of the same verdict: {retry.text}"
    assert retry.json() == first.json()
    assert len(await audit_rows(app, "alert", alert_id, "triage")) == 1
    # a double-click: both at once, held on the alert's row until both wait
    other = await _own_alert(app, brand["id"])
    answers = await twice_held(
        app, client, "SELECT 1 FROM alerts WHERE id = %s FOR UPDATE", (other,), "PUT",
        f"/alerts/{other}/verdict", admin, json=body,
    )  # fmt: skip
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    assert answers[0].json() == answers[1].json()
    assert len(await audit_rows(app, "alert", other, "triage")) == 1
    history = (await client.get(f"/alerts/{other}/verdicts", headers=admin)).json()
    assert [h["revision"] for h in history["items"]] == [1]
    # a verdict or a note that differs, from the old revision, is still told
    for changed in ({**body, "verdict": "false_positive"}, {**body, "note": "on second look"}):
        refused = assert_error(
            await client.put(url, headers=admin, json=changed), 409, "verdict_changed"
        )
        assert refused["details"]["revision"] == 1


async def test_precision_per_rule_is_exact_on_a_constructed_set(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    admin = await login("admin")
    kind = f"probe_{secrets.token_hex(4)}"
    r1 = [await _alert(app, demo, kind, "r1") for _ in range(6)]
    r2 = [await _alert(app, demo, kind, "r2") for _ in range(2)]
    bare = await _alert(app, demo, kind)
    acked = await _alert(app, demo, kind, "r1", acknowledged=True)  # open no more, untriaged
    old = await _alert(app, demo, kind, "r1", days_ago=40)  # before the default period
    twin = await _alert(app, demo, kind, "r1", org="AGENT-ZJ", twin=True)  # the agent's copy
    for alert_id in r1[:3]:
        await _mark(client, admin, alert_id, "true_positive")
    await _mark(client, admin, r1[3], "false_positive")
    await _mark(client, admin, bare, "false_positive")
    await _mark(client, admin, old, "false_positive")
    await _mark(client, await login("agent_admin"), twin, "true_positive")

    report = (await client.get("/alerts/precision", headers=admin, params={"kind": kind})).json()
    (row,) = report["kinds"]
    rules = {r["rule"]: r for r in row["rules"]}
    counts = ("alerts", "true_positive", "false_positive", "untriaged", "open", "precision")
    assert [row[c] for c in counts] == [10, 3, 2, 5, 4, 0.6]
    assert [rules["r1"][c] for c in counts] == [7, 3, 1, 3, 2, 0.75]
    assert [rules["r2"][c] for c in counts] == [2, 0, 0, 2, 2, None]
    assert [rules[None][c] for c in counts] == [1, 0, 1, 0, 0, 0.0]
    assert rules["r1"]["settings"] is None
    assert r2 and acked

    # a period reaching back takes the old alert in; the agent counts its own alert only
    wide = (
        await client.get(
            "/alerts/precision",
            headers=admin,
            params={"kind": kind, "from": "2020-01-01", "to": "2020-12-31"},
        )
    ).json()
    assert (
        wide["kinds"] == [] and wide["total"]["alerts"] == 0 and wide["total"]["precision"] is None
    )
    back = await client.get(
        "/alerts/precision",
        headers=admin,
        params={"kind": kind, "from": _days_before(report["to"], 60), "to": report["to"]},
    )
    assert back.json()["kinds"][0]["false_positive"] == 3
    theirs = (
        await client.get(
            "/alerts/precision", headers=await login("agent_admin"), params={"kind": kind}
        )
    ).json()
    (agent_row,) = theirs["kinds"]
    assert [agent_row[c] for c in counts] == [1, 1, 0, 0, 0, 1.0]

    # a V4 rule's row names the setting that tunes it
    await _alert(app, demo, "repeat", "over_threshold")
    repeat = (
        await client.get("/alerts/precision", headers=admin, params={"kind": "repeat"})
    ).json()
    over = next(r for r in repeat["kinds"][0]["rules"] if r["rule"] == "over_threshold")
    threshold = app.state.settings.verify_repeat_threshold
    assert over["settings"] == {"TRACECODE_VERIFY_REPEAT_THRESHOLD": threshold}


def _days_before(day: str, days: int) -> str:
    from datetime import date, timedelta

    return (date.fromisoformat(day) - timedelta(days=days)).isoformat()


async def test_alerts_outside_the_callers_subtree_or_brand_are_not_found(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    brand_alert = await _alert(app, demo, "diversion", "diverted")
    agent_alert = await _alert(app, demo, "diversion", "diverted", org="AGENT-ZJ", twin=True)
    _, other_brand = await onboarded_brand(client, login)
    body = {"verdict": "true_positive", "note": "mine"}
    for username_or_headers, alert_id in (
        (other_brand, brand_alert),
        (other_brand, agent_alert),
        ("agent_admin", brand_alert),
        ("store_manager", agent_alert),  # below the agent: outside the alert's subtree
        ("gd_admin", agent_alert),  # another agent
    ):
        headers = (
            await login(username_or_headers)
            if isinstance(username_or_headers, str)
            else username_or_headers
        )
        assert_error(
            await client.put(f"/alerts/{alert_id}/verdict", headers=headers, json=body), 404
        )
        assert_error(await client.get(f"/alerts/{alert_id}/verdicts", headers=headers), 404)
    # the agent marks its own, the brand sees that verdict on the agent's alert
    await _mark(client, await login("agent_admin"), agent_alert, "true_positive")
    seen = await client.get(f"/alerts/{agent_alert}/verdicts", headers=await login("admin"))
    assert seen.status_code == 200 and len(seen.json()["items"]) == 1
    # another brand's precision report never counts this brand's alerts
    report = (await client.get("/alerts/precision", headers=other_brand)).json()
    assert report["total"]["alerts"] == 0


async def test_bad_triage_input_is_4xx_with_stable_codes(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    admin = await login("admin")
    alert_id = await _alert(app, demo, "fake", "forged")
    url = f"/alerts/{alert_id}/verdict"
    for body in (
        {"verdict": "maybe", "note": "x"},
        {"verdict": "true_positive"},
        {"verdict": "true_positive", "note": ""},
        {"verdict": "true_positive", "note": " \u200b "},
        {"verdict": "true_positive", "note": "x" * 2001},
        {"verdict": "true_positive", "note": "x", "extra": 1},
        {"verdict": "true_positive", "note": "x", "expected_revision": -1},
        {"verdict": "true_positive", "note": "x", "expected_revision": "0"},
        ["true_positive"],
    ):
        assert_error(await client.put(url, headers=admin, json=body), 400, "validation_failed")
    malformed = await client.put(
        url, headers={**admin, "content-type": "application/json"}, content=b"{"
    )
    assert_error(malformed, 400, "malformed_json")
    assert_error(
        await client.put(url, headers=admin, json={"verdict": "true_positive", "note": "a\u0000b"}),
        400,
        "invalid_character",
    )
    good = {"verdict": "true_positive", "note": "ok"}
    assert_error(await client.put("/alerts/999999999/verdict", headers=admin, json=good), 404)
    assert_error(await client.put(url, json=good), 401)
    operator = await login("operator")
    assert_error(await client.put(url, headers=operator, json=good), 403, "permission_denied")
    assert_error(await client.get("/alerts/precision", headers=operator), 403, "permission_denied")
    for params in (
        {"from": "2026-05-01", "to": "2026-04-01"},
        {"from": "2024-01-01", "to": "2026-01-01"},
    ):
        assert_error(
            await client.get("/alerts/precision", headers=admin, params=params), 400, "bad_period"
        )
    assert_error(
        await client.get("/alerts/precision", headers=admin, params={"from": "yesterday"}),
        400,
        "validation_failed",
    )
    assert_error(
        await client.get("/alerts", headers=admin, params={"verdict": "maybe"}),
        400,
        "validation_failed",
    )
    # nothing of the refused requests was recorded
    assert (await client.get(f"/alerts/{alert_id}/verdicts", headers=admin)).json()["items"] == []
