"""Visit plans (SPEC F1): drafted by a field rep by quarter, month or week, approved or returned
by the rep's supervisor; every move audited, illegal moves 409 — on the real PostgreSQL."""

from __future__ import annotations

import asyncio
import secrets
from datetime import date, timedelta
from typing import Any

from tests.field_support import check_in, client_id, nameplate
from tests.helpers import acting, assert_error
from tests.race_support import audit_rows, lock_waiters
from tests.test_field_scoping import _login, _org, _user


async def _draft(
    client: Any, login: Any, demo: Any, starts_on: str, period: str = "week"
) -> dict[str, Any]:
    answer = await client.post(
        "/field/plans",
        headers=await login("fieldrep"),
        json={
            "period": period,
            "starts_on": starts_on,
            "title": "West Lake round",
            "items": [
                {"store_id": demo["STORE-HZ-01"], "planned_on": starts_on},
                {"store_id": demo["STORE-NB-01"], "planned_on": starts_on, "note": "new shelf"},
            ],
        },
    )
    assert answer.status_code == 201, answer.text
    return answer.json()  # type: ignore[no-any-return]


async def test_a_plan_goes_draft_submitted_returned_submitted_approved_and_each_move_is_audited(
    client: Any, login: Any, demo: Any, conn: Any
) -> None:
    rep, boss, admin = await login("fieldrep"), await login("fieldsup"), await login("admin")
    plan = await _draft(client, login, demo, "2027-03-01")
    assert (plan["status"], plan["ends_on"], len(plan["items"])) == ("draft", "2027-03-07", 2)
    url = f"/field/plans/{plan['id']}"
    # the plan names its rep's supervisor, the one user who decides it (a probe: the console
    # offered Approve and Return to every holder of field.supervise, refused 403 not_supervisor)
    boss_id = (await client.get("/auth/me", headers=boss)).json()["user_id"]
    assert plan["supervisor_id"] == boss_id
    listed = await client.get("/field/plans", headers=admin, params={"rep_id": plan["rep_id"]})
    assert {p["supervisor_id"] for p in listed.json()["items"]} == {boss_id}

    # a draft is neither approved nor returned; only its rep submits it
    assert_error(await client.post(f"{url}/approve", headers=boss), 409, "illegal_transition")
    assert_error(await client.post(f"{url}/submit", headers=boss), 403, "not_plan_owner")
    submitted = await client.post(f"{url}/submit", headers=rep)
    assert submitted.status_code == 200 and submitted.json()["status"] == "submitted"
    assert_error(await client.post(f"{url}/submit", headers=rep), 409, "illegal_transition")
    edit = {"title": "changed", "items": []}
    assert_error(await client.put(url, headers=rep, json=edit), 409, "plan_not_editable")

    # the rep cannot decide; a brand admin sees the plan but is not the rep's supervisor
    assert_error(await client.post(f"{url}/approve", headers=rep), 403, "permission_denied")
    assert_error(await client.post(f"{url}/approve", headers=admin), 403, "not_supervisor")
    assert_error(await client.post(f"{url}/return", headers=boss, json={"reason": ""}), 400)

    returned = await client.post(f"{url}/return", headers=boss, json={"reason": "add Ningbo"})
    assert returned.json()["status"] == "returned", returned.text
    assert returned.json()["return_reason"] == "add Ningbo"
    assert_error(
        await client.post(f"{url}/return", headers=boss, json={"reason": "again"}),
        409,
        "illegal_transition",
    )
    # returned -> edited -> submitted again -> approved
    edit = {
        "title": "West Lake and Ningbo",
        "items": [{"store_id": demo["STORE-NB-01"], "planned_on": "2027-03-03"}],
    }
    edited = await client.put(url, headers=rep, json=edit)
    assert edited.status_code == 200, edited.text
    assert [i["store_erp_code"] for i in edited.json()["items"]] == ["STORE-NB-01"]
    assert (await client.post(f"{url}/submit", headers=rep)).json()["return_reason"] is None
    approved = await client.post(f"{url}/approve", headers=boss)
    assert approved.json()["status"] == "approved" and approved.json()["decided_at"]
    assert_error(await client.post(f"{url}/submit", headers=rep), 409, "illegal_transition")
    assert_error(await client.post(f"{url}/approve", headers=boss), 409, "illegal_transition")
    assert_error(await client.put(url, headers=rep, json=edit), 409, "plan_not_editable")

    rows = await (
        await conn.execute(
            "SELECT action, before, after FROM audit_log WHERE entity = 'visit_plan' "
            "AND entity_id = %s ORDER BY id",
            (str(plan["id"]),),
        )
    ).fetchall()
    await conn.commit()
    assert [r["action"] for r in rows] == [
        "create", "submit", "return", "update", "submit", "approve",
    ]  # fmt: skip
    assert rows[2]["after"] == {"status": "returned", "return_reason": "add Ningbo"}
    assert rows[5]["before"] == {"status": "submitted"}


async def test_periods_items_and_duplicates_are_checked(client: Any, login: Any, demo: Any) -> None:
    rep = await login("fieldrep")
    quarter = await _draft(client, login, demo, "2027-04-01", period="quarter")
    assert quarter["ends_on"] == "2027-06-30"
    month = await _draft(client, login, demo, "2027-02-01", period="month")
    assert month["ends_on"] == "2027-02-28"
    bad = [
        ({"period": "week", "starts_on": "2027-03-09"}, 400, "bad_period_start"),  # a Tuesday
        ({"period": "quarter", "starts_on": "2027-05-01"}, 400, "bad_period_start"),
        ({"period": "month", "starts_on": "2027-05-02"}, 400, "bad_period_start"),
        (
            {
                "period": "week",
                "starts_on": "2027-03-08",
                "items": [{"store_id": demo["STORE-HZ-01"], "planned_on": "2027-03-15"}],
            },
            422,
            "date_outside_period",
        ),
        (  # a store of the Guangdong agent: not the Zhejiang rep's
            {
                "period": "week",
                "starts_on": "2027-03-08",
                "items": [{"store_id": demo["STORE-GZ-01"], "planned_on": "2027-03-08"}],
            },
            422,
            "unknown_store",
        ),
        (  # an agent is no store
            {
                "period": "week",
                "starts_on": "2027-03-08",
                "items": [{"store_id": demo["AGENT-ZJ"], "planned_on": "2027-03-08"}],
            },
            422,
            "unknown_store",
        ),
        ({"period": "quarter", "starts_on": "2027-04-01"}, 409, "duplicate_plan"),
        ({"period": "year", "starts_on": "2027-01-01"}, 400, "validation_failed"),
    ]
    for body, status, code in bad:
        assert_error(await client.post("/field/plans", headers=rep, json=body), status, code)
    # a store clerk plans nothing
    answer = await client.post(
        "/field/plans",
        headers=await login("store_clerk"),
        json={"period": "week", "starts_on": "2027-03-08"},
    )
    assert_error(answer, 403, "permission_denied")
    listed = await client.get("/field/plans", headers=rep, params={"period": "quarter"})
    assert [p["id"] for p in listed.json()["items"]] == [quarter["id"]]


async def test_an_api_key_records_no_visits(client: Any, login: Any, demo: Any) -> None:
    made = await client.post(
        "/api-keys",
        headers=await login("admin"),
        json={"name": "field sync", "permissions": ["field.visit"], "org_id": demo["AGENT-ZJ"]},
    )
    assert made.status_code == 201, made.text
    key = {"X-API-Key": made.json()["key"]}
    answer = await client.post(
        "/field/plans", headers=key, json={"period": "week", "starts_on": "2027-03-15"}
    )
    assert_error(answer, 400, "user_required")
    assert (await client.get("/field/plans", headers=key)).json()["total"] == 0
    # and has no track of its own: it names the rep
    assert_error(await client.get("/field/track", headers=key), 400, "rep_required")


async def test_an_edit_keeps_the_items_it_keeps_and_their_visits(
    client: Any, login: Any, demo: Any
) -> None:
    """A returned plan edited: an item of the same store and day keeps its id (and its note is
    the new one), so a check-in made against it stays linked; a removed item's check-ins lose the
    link, an added item is new. Before, every edit re-made every item and unlinked every visit
    (probe)."""
    monday = date(2031, 3, 3)  # a Monday no other test plans
    plan = await _draft(client, login, demo, str(monday))
    rep, boss = await login("fieldrep"), await login("fieldsup")
    kept = next(i for i in plan["items"] if i["store_id"] == demo["STORE-HZ-01"])
    plate = await nameplate(client, login, demo["STORE-HZ-01"])
    visit = await check_in(client, rep, plate["code"], plan_item_id=kept["id"])
    assert visit.status_code == 201 and visit.json()["plan_item_id"] == kept["id"], visit.text
    assert (await client.post(f"/field/plans/{plan['id']}/submit", headers=rep)).status_code == 200
    returned = await client.post(
        f"/field/plans/{plan['id']}/return", headers=boss, json={"reason": "add a day"}
    )
    assert returned.status_code == 200, returned.text
    items = [
        {"store_id": demo["STORE-HZ-01"], "planned_on": str(monday), "note": "again"},
        {"store_id": demo["STORE-HZ-01"], "planned_on": str(monday + timedelta(days=2))},
    ]
    edited = await client.put(
        f"/field/plans/{plan['id']}", headers=rep, json={"title": "t2", "items": items}
    )
    assert edited.status_code == 200, edited.text
    after = {(i["store_id"], i["planned_on"]): i for i in edited.json()["items"]}
    assert after[(demo["STORE-HZ-01"], str(monday))]["id"] == kept["id"]
    assert after[(demo["STORE-HZ-01"], str(monday))]["note"] == "again"
    assert len(after) == 2
    listed = await client.get("/field/checkins", headers=rep, params={"per_page": 200})
    mine = next(c for c in listed.json()["items"] if c["id"] == visit.json()["id"])
    assert mine["plan_item_id"] == kept["id"]


async def test_a_plan_takes_no_store_under_a_deactivated_distributor(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: a check-in or a review at a store under a deactivated distributor is 422
    ``org_inactive`` (the status as far as access goes: the store and every organisation above it),
    yet a visit plan took the store: only the store's own row was looked at."""
    admin = await login("admin")
    tag = secrets.token_hex(3).upper()
    dist = await client.post(
        "/orgs",
        headers=admin,
        json={
            "kind": "distributor",
            "name": f"Plan dist {tag}",
            "erp_code": f"PLD-{tag}",
            "parent_id": demo["AGENT-ZJ"],
        },
    )
    assert dist.status_code == 201, dist.text
    store = await client.post(
        "/orgs",
        headers=admin,
        json={
            "kind": "store",
            "name": f"Plan store {tag}",
            "erp_code": f"PLS-{tag}",
            "parent_id": dist.json()["id"],
        },
    )
    assert store.status_code == 201, store.text
    store_id = store.json()["id"]
    off = await client.post(f"/orgs/{dist.json()['id']}/deactivate", headers=admin)
    assert off.status_code == 200, off.text
    rep = await login("fieldrep")
    review = await client.post(
        "/field/reviews",
        headers=rep,
        json={
            "client_id": client_id(),
            "store_id": store_id,
            "shelf_score": 3,
            "knowledge_score": 3,
        },
    )
    assert_error(review, 422, "org_inactive")
    plan = await client.post(
        "/field/plans",
        headers=rep,
        json={
            "period": "week",
            "starts_on": "2027-05-03",
            "items": [{"store_id": store_id, "planned_on": "2027-05-04"}],
        },
    )
    assert_error(plan, 422, "unknown_store")


async def _week_at_a_new_store(
    client: Any, admin: dict[str, str], rep: dict[str, str], demo: Any, monday: str
) -> tuple[int, int]:
    """A new store of AGENT-ZJ and the rep's draft week (from ``monday``) with one visit there:
    (store id, plan id)."""
    made = await client.post(
        "/orgs",
        headers=admin,
        json={
            "kind": "store",
            "name": f"Store {monday}",
            "erp_code": f"SW-{secrets.token_hex(4)}",
            "parent_id": demo["AGENT-ZJ"],
            "latitude": 30.259,
            "longitude": 120.155,
        },
    )
    assert made.status_code == 201, made.text
    store = int(made.json()["id"])
    tuesday = (date.fromisoformat(monday) + timedelta(days=1)).isoformat()
    plan = await client.post(
        "/field/plans",
        headers=rep,
        json={
            "period": "week",
            "starts_on": monday,
            "items": [{"store_id": store, "planned_on": tuesday}],
        },
    )
    assert plan.status_code == 201, plan.text
    return store, int(plan.json()["id"])


async def test_a_plan_with_a_store_closed_since_its_draft_is_not_submitted(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: a rep drafts a plan with a store; the brand then closes the store. The rep submits
    the plan and the supervisor approves it: an approved plan of visits the rep cannot make (a
    check-in there is 422 ``org_inactive``). Items are checked (active store of the rep's subtree)
    on create and edit only; submit (and approve) check them again (422 ``unknown_store``)."""
    admin, rep = await login("admin"), await login("fieldrep")
    store, plan_id = await _week_at_a_new_store(client, admin, rep, demo, "2030-07-01")
    assert (await client.post(f"/orgs/{store}/deactivate", headers=admin)).status_code == 200
    submitted = await client.post(f"/field/plans/{plan_id}/submit", headers=rep)
    assert_error(submitted, 422, "unknown_store")
    assert (await client.get(f"/field/plans/{plan_id}", headers=rep)).json()["status"] == "draft"


async def test_a_rep_moved_to_another_agent_cannot_submit_the_old_agents_stores(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: a rep of AGENT-ZJ drafts a week at STORE-HZ-01, then is moved to AGENT-GD by the
    user import. Editing the plan now refuses the store (422 ``unknown_store``), but submitting it
    as it is passes, and the rep's new GD supervisor approves visits at a ZJ store (and reads its
    name) that the rep can no longer check in at (404). Submit checks the items again, against the
    rep's organisation of now."""
    admin = await login("admin")
    rep_name = f"pz{secrets.token_hex(4)}"
    _, rep = await _user(client, admin, demo["AGENT-ZJ"], ["field_rep"], rep_name)
    plan = await client.post(
        "/field/plans",
        headers=rep,
        json={
            "period": "week",
            "starts_on": "2030-08-05",
            "items": [{"store_id": demo["STORE-HZ-01"], "planned_on": "2030-08-06"}],
        },
    )
    assert plan.status_code == 201, plan.text
    plan_id = plan.json()["id"]
    row = {"erp_code": f"PZ-{secrets.token_hex(3)}", "username": rep_name}
    imported = await client.post(
        "/users/import", headers=admin, json={"items": [{**row, "org_erp_code": "AGENT-GD"}]}
    )
    assert imported.status_code == 200 and imported.json()["rejected"] == 0, imported.text
    rep = await _login(client, rep_name)
    same = {"items": [{"store_id": demo["STORE-HZ-01"], "planned_on": "2030-08-06"}]}
    edited = await client.put(f"/field/plans/{plan_id}", headers=rep, json=same)
    assert_error(edited, 422, "unknown_store")
    plate = await nameplate(client, login, demo["STORE-HZ-01"])
    assert_error(await check_in(client, rep, plate["code"]), 404)
    assert_error(
        await client.post(f"/field/plans/{plan_id}/submit", headers=rep), 422, "unknown_store"
    )


async def _moved(client: Any, admin: dict[str, str], name: str, org_erp: str) -> dict[str, str]:
    """The brand moves user ``name`` to ``org_erp`` by the user import; the user's new headers
    (the move ends its sessions)."""
    row = {"erp_code": f"PZ-{secrets.token_hex(3)}", "username": name, "org_erp_code": org_erp}
    imported = await client.post("/users/import", headers=admin, json={"items": [row]})
    assert imported.status_code == 200 and imported.json()["rejected"] == 0, imported.text
    return await _login(client, name)


async def test_a_moved_reps_plan_edited_for_the_new_agent_is_not_read_by_the_old_one(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: a rep of AGENT-ZJ drafts a week; the brand moves the rep to AGENT-GD by the user
    import; the rep edits the same draft for GD's store STORE-GZ-01 (with a note) and submits it.
    AGENT-ZJ's admin read the plan with GD's store and note, AGENT-GD's admin got 404: plans are
    scoped by ``visit_plans.org_id``, the rep's organisation when the draft was made, which an
    edit never changed. An edit (and a submit) puts the plan in the rep's organisation of now,
    whose stores it was checked against: GD's admin reads it, ZJ's does not."""
    admin = await login("admin")
    name = f"pz{secrets.token_hex(4)}"
    _, rep = await _user(client, admin, demo["AGENT-ZJ"], ["field_rep"], name)
    plan = await client.post(
        "/field/plans",
        headers=rep,
        json={
            "period": "week",
            "starts_on": "2027-06-07",
            "items": [{"store_id": demo["STORE-HZ-01"], "planned_on": "2027-06-08"}],
        },
    )
    assert plan.status_code == 201, plan.text
    url = f"/field/plans/{plan.json()['id']}"
    rep = await _moved(client, admin, name, "AGENT-GD")
    item = {"store_id": demo["STORE-GZ-01"], "planned_on": "2027-06-08", "note": "GD internal"}
    edited = await client.put(url, headers=rep, json={"title": "GD plan", "items": [item]})
    assert edited.status_code == 200, edited.text
    old_admin, new_admin = await login("agent_admin"), await login("gd_admin")
    assert (await client.get(url, headers=old_admin)).status_code == 404
    assert (await client.get(url, headers=new_admin)).json()["title"] == "GD plan"
    submitted = await client.post(f"{url}/submit", headers=rep)
    assert submitted.status_code == 200, submitted.text
    old, new = await client.get(url, headers=old_admin), await client.get(url, headers=new_admin)
    assert (old.status_code, new.status_code) == (404, 200), old.text


async def test_a_plan_submitted_after_its_reps_move_is_the_new_organisations(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe (with the one above): a rep of AGENT-ZJ moved up to the brand submits the draft
    made under ZJ as it is (its ZJ store still within the rep's subtree): the submitted plan is
    the brand-level rep's, as the rep's check-ins from now on are, not AGENT-ZJ's to read."""
    admin = await login("admin")
    name = f"pz{secrets.token_hex(4)}"
    _, rep = await _user(client, admin, demo["AGENT-ZJ"], ["field_rep"], name)
    plan = await client.post(
        "/field/plans",
        headers=rep,
        json={
            "period": "week",
            "starts_on": "2027-06-14",
            "items": [{"store_id": demo["STORE-HZ-01"], "planned_on": "2027-06-15"}],
        },
    )
    assert plan.status_code == 201, plan.text
    url = f"/field/plans/{plan.json()['id']}"
    old_admin = await login("agent_admin")
    assert (await client.get(url, headers=old_admin)).status_code == 200
    rep = await _moved(client, admin, name, "BRAND-LUMI")
    submitted = await client.post(f"{url}/submit", headers=rep)
    assert submitted.status_code == 200, submitted.text
    assert (await client.get(url, headers=old_admin)).status_code == 404
    assert (await client.get(url, headers=admin)).json()["status"] == "submitted"


async def test_a_store_closed_after_the_submit_is_not_approved(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe (with the two above): approval took a submitted plan as it was, so a store closed
    between the submit and the decision was approved as a visit the rep cannot make. The
    supervisor's approval checks the items again (422 ``unknown_store``); returning the plan
    still works."""
    admin, rep, sup = await login("admin"), await login("fieldrep"), await login("fieldsup")
    store, plan_id = await _week_at_a_new_store(client, admin, rep, demo, "2030-09-02")
    submitted = await client.post(f"/field/plans/{plan_id}/submit", headers=rep)
    assert submitted.status_code == 200, submitted.text
    assert (await client.post(f"/orgs/{store}/deactivate", headers=admin)).status_code == 200
    refused = assert_error(
        await client.post(f"/field/plans/{plan_id}/approve", headers=sup), 422, "unknown_store"
    )
    assert refused["details"] == {"store_ids": [store]}
    assert (await client.get(f"/field/plans/{plan_id}", headers=sup)).json()["status"] == (
        "submitted"
    )
    returned = await client.post(
        f"/field/plans/{plan_id}/return", headers=sup, json={"reason": "the store closed"}
    )
    assert returned.status_code == 200, returned.text


async def test_a_plan_saved_unchanged_writes_no_audit_row(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: README ("a call that changes nothing ... answers 200 with the entity as it is
    and writes no row"): ``PUT /field/plans/{id}`` with the plan's own title and items (a form
    saved again, a retried edit) wrote an ``update`` row of the ``visit_plan`` whose before and
    after were the same. The items compare as a set, with their notes: their order is no
    change, a note is one."""
    _, rep = await _user(client, await login("admin"), demo["AGENT-ZJ"], ["field_rep"])
    items = [
        {"store_id": demo["STORE-HZ-01"], "planned_on": "2031-03-04", "note": "n"},
        {"store_id": demo["STORE-NB-01"], "planned_on": "2031-03-05"},
    ]
    made = await client.post(
        "/field/plans",
        headers=rep,
        json={"period": "week", "starts_on": "2031-03-03", "title": "Probe week", "items": items},
    )
    assert made.status_code == 201, made.text
    plan = made.json()
    url = f"/field/plans/{plan['id']}"
    saved = await client.put(url, headers=rep, json={"title": "Probe week", "items": items[::-1]})
    assert saved.status_code == 200, saved.text
    assert saved.json() == plan, "saved unchanged: the plan as it is"
    assert await audit_rows(app, "visit_plan", plan["id"], "update") == []
    noted = [{**items[0], "note": "other"}, items[1]]
    edited = await client.put(url, headers=rep, json={"title": "Probe week", "items": noted})
    assert edited.status_code == 200, edited.text
    assert len(await audit_rows(app, "visit_plan", plan["id"], "update")) == 1


async def test_a_plan_decided_by_a_supervisor_above_the_rep_is_in_the_reps_organisations_log(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: a field rep of AGENT-ZJ whose supervisor sits at the brand: the agent's
    administrator read the plan's ``create`` and ``submit`` rows in ``GET /audit`` but not its
    ``approve``, written under the supervisor's organisation. Every move of a plan is in the
    plan's organisation's log, whoever makes it."""
    admin = await login("admin")
    rep_id, rep = await _user(client, admin, demo["AGENT-ZJ"], ["field_rep"])
    boss_id, boss = await _user(client, admin, demo["BRAND-LUMI"], ["field_supervisor"])
    named = await client.put(
        f"/field/reps/{rep_id}/supervisor", headers=admin, json={"supervisor_id": boss_id}
    )
    assert named.status_code == 200, named.text
    plan = await client.post(
        "/field/plans",
        headers=rep,
        json={
            "period": "week",
            "starts_on": "2027-05-03",
            "title": "round",
            "items": [{"store_id": demo["STORE-HZ-01"], "planned_on": "2027-05-03"}],
        },
    )
    assert plan.status_code == 201, plan.text
    url = f"/field/plans/{plan.json()['id']}"
    assert (await client.post(f"{url}/submit", headers=rep)).status_code == 200
    approved = await client.post(f"{url}/approve", headers=boss)
    assert approved.status_code == 200, approved.text

    log = await client.get(
        "/audit",
        headers=await login("agent_admin"),
        params={"entity": "visit_plan", "entity_id": str(plan.json()["id"])},
    )
    assert log.status_code == 200, log.text
    actions = sorted(row["action"] for row in log.json()["items"])
    assert actions == ["approve", "create", "submit"], actions


async def _submitted_at(
    client: Any, admin: dict[str, str], org: int, store: int, sup_id: int, monday: str
) -> tuple[int, str]:
    """A new rep of ``org`` supervised by ``sup_id`` and its submitted week (from ``monday``)
    with a visit at ``store``: (rep id, plan URL)."""
    rep_id, rep = await _user(client, admin, org, ["field_rep"])
    named = await client.put(
        f"/field/reps/{rep_id}/supervisor", headers=admin, json={"supervisor_id": sup_id}
    )
    assert named.status_code == 200, named.text
    plan = await client.post(
        "/field/plans",
        headers=rep,
        json={
            "period": "week",
            "starts_on": monday,
            "items": [{"store_id": store, "planned_on": monday}],
        },
    )
    assert plan.status_code == 201, plan.text
    url = f"/field/plans/{plan.json()['id']}"
    assert (await client.post(f"{url}/submit", headers=rep)).status_code == 200
    return rep_id, url


async def test_a_departed_reps_plan_is_not_approved(client: Any, login: Any, demo: Any) -> None:
    """A probe: approval re-checked the plan's stores, not its rep: a rep who had left (account
    deactivated, or its organisation) had its submitted plan approved, visits nobody will make.
    422 ``rep_inactive`` now; the supervisor may still return it."""
    admin = await login("admin")
    sup_id, sup = await _user(client, admin, demo["AGENT-ZJ"], ["field_supervisor"])
    rep_id, url = await _submitted_at(
        client, admin, demo["AGENT-ZJ"], demo["STORE-HZ-01"], sup_id, "2031-06-02"
    )
    gone = await client.patch(f"/users/{rep_id}", headers=admin, json={"status": "inactive"})
    assert gone.status_code == 200, gone.text
    assert_error(await client.post(f"{url}/approve", headers=sup), 422, "rep_inactive")
    assert (await client.get(url, headers=sup)).json()["status"] == "submitted"
    returned = await client.post(f"{url}/return", headers=sup, json={"reason": "left"})
    assert returned.status_code == 200, returned.text
    # a rep whose organisation closed: refused as the rep, not as its stores
    distributor = await _org(client, admin, "distributor", demo["AGENT-ZJ"])
    store = await _org(client, admin, "store", distributor)
    _, url = await _submitted_at(client, admin, distributor, store, sup_id, "2031-06-09")
    closed = await client.post(f"/orgs/{distributor}/deactivate", headers=admin)
    assert closed.status_code == 200, closed.text
    assert_error(await client.post(f"{url}/approve", headers=sup), 422, "rep_inactive")


async def test_a_plan_approved_while_its_rep_is_deactivated_waits_and_is_refused(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """The approval reads the rep's account under a key share of its row: a deactivation under
    way (``update_user`` holds the row) is waited for, and the approval then refused, never an
    approval of the rep who has just left."""
    admin = await login("admin")
    sup_id, sup = await _user(client, admin, demo["AGENT-ZJ"], ["field_supervisor"])
    rep_id, url = await _submitted_at(
        client, admin, demo["AGENT-ZJ"], demo["STORE-HZ-01"], sup_id, "2031-06-16"
    )
    from app.users.schemas import UserPatch
    from app.users.service import update_user

    async with app.state.pool.connection() as holder, app.state.pool.connection() as watch:
        await update_user(
            holder, await acting(holder, "admin"), rep_id, UserPatch(status="inactive")
        )
        approving = asyncio.ensure_future(client.post(f"{url}/approve", headers=sup))
        waited = await lock_waiters(watch, 1)
        await holder.commit()
        answer = await asyncio.wait_for(approving, 30)
    assert waited, "the approval should wait for the rep's deactivation"
    assert_error(answer, 422, "rep_inactive")
