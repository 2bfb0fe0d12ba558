"""EPCIS capture jobs that cannot succeed end, and end failed: runs that keep failing for a reason
not of the document, an error of its data, a key that stopped working before its job ran
(probes: such jobs stayed pending, sent again by the orphan sweeper for ever, or ran with a dead
key's rights)."""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from app.auth.service import load_api_key
from app.epcis import capture
from tests.helpers import activate, issue_cases, issue_units
from tests.test_epcis import (
    _object,
    captured,
    case_link,
    document,
    packing,
    unit_link,
    units_in,
)
from tests.test_epcis import capture as send_document

_tags = itertools.count()


async def _queued_job(client: Any, login: Any, app: Any) -> str:
    """A document of the partner's one event over the inline size: a job left for a worker."""
    partner = await login("partner")
    tag = f"R{next(_tags)}x{secrets.token_hex(3)}"
    size = app.state.settings.epcis_inline_events + 1
    events = [
        _object("OBSERVE", [f"urn:epc:id:sgtin:0614141.107346.{tag}-{i}"]) for i in range(size)
    ]
    response = await send_document(client, partner, document(events))
    assert response.status_code == 202 and response.json()["state"] == "pending", response.text
    return str(response.json()["captureID"])


async def _run(app: Any, capture_id: str) -> str:
    """One run as the worker makes it (workers/epcis.py): a connection of its own, committed."""
    url = app.state.pool.conninfo
    async with await psycopg.AsyncConnection.connect(url, row_factory=dict_row) as conn:
        state = await capture.run(conn, app.state.scheme, capture_id)
        await conn.commit()
        return state


async def _job(app: Any, capture_id: str) -> dict[str, Any]:
    async with app.state.pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT state, runs, errors FROM epcis_captures WHERE id = %s", (capture_id,)
            )
        ).fetchone()
    assert row is not None
    return dict(row)


async def test_a_job_whose_runs_keep_failing_is_failed_after_max_runs(
    client: Any, login: Any, app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each run counts itself before it applies the document: after ``MAX_RUNS`` runs that
    failed for a reason not of the document (here an error of the implementation), the next run
    fails the job with the standard's ImplementationException instead of trying again."""
    capture_id = await _queued_job(client, login, app)

    async def broken(*_: Any) -> int:
        raise RuntimeError("a bug")

    monkeypatch.setattr(capture, "_apply", broken)
    for run in range(1, capture.MAX_RUNS + 1):
        with pytest.raises(RuntimeError):
            await _run(app, capture_id)
        job = await _job(app, capture_id)
        assert (job["state"], job["runs"]) == ("pending", run)
    assert await _run(app, capture_id) == "failed"
    job = await _job(app, capture_id)
    assert job["state"] == "failed"
    assert job["errors"]["type"] == "epcisException:ImplementationException"
    assert await _run(app, capture_id) == "failed"  # a finished job is left alone
    assert (await _job(app, capture_id))["runs"] == capture.MAX_RUNS + 1


async def test_a_job_its_data_cannot_be_stored_is_failed_at_once(
    client: Any, login: Any, app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An integrity error (an error of the data that no run gets past) fails the job at its
    first run; before, it was dead-lettered and the sweeper sent it again every five minutes."""
    capture_id = await _queued_job(client, login, app)

    async def clashing(*_: Any) -> int:
        raise psycopg.errors.UniqueViolation("duplicate key value")

    monkeypatch.setattr(capture, "_apply", clashing)
    assert await _run(app, capture_id) == "failed"
    job = await _job(app, capture_id)
    assert (job["state"], job["runs"]) == ("failed", 1)
    assert job["errors"]["type"] == "epcisException:ImplementationException"
    assert "UniqueViolation" in job["errors"]["detail"]


async def test_a_job_of_a_key_whose_maker_was_disabled_captures_nothing(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A key works while its maker is active (README, API keys): its job queued before the maker
    was disabled fails with a SecurityException when it runs, and stores nothing. Before, the job
    checked only the key's own revocation and organisation, and ran."""
    admin = await login("admin")
    username, password = f"cap{secrets.token_hex(3)}", "tracecode-demo-X1"
    maker = await client.post(
        "/users",
        headers=admin,
        json={
            "org_id": demo["AGENT-GD"],
            "username": username,
            "password": password,
            "roles": ["org_admin"],
        },
    )
    assert maker.status_code == 201, maker.text
    made = await client.post(
        "/api-keys",
        headers=await login(username, password),
        json={"name": "capture", "permissions": ["epcis.capture", "orgs.read"]},
    )
    assert made.status_code == 201, made.text
    key = made.json()["key"]
    event_id = f"urn:uuid:{secrets.token_hex(4)}-0000-4000-8000-{secrets.token_hex(6)}"
    event = _object("OBSERVE", ["urn:epc:id:sgtin:0614141.107346.2018"], eventID=event_id)
    async with app.state.pool.connection() as conn:
        job = await capture.accept(
            conn, await load_api_key(conn, key), json.dumps(document([event])).encode()
        )
    gone = await client.patch(
        f"/users/{maker.json()['id']}", headers=admin, json={"status": "inactive"}
    )
    assert gone.status_code == 200, gone.text
    assert await _run(app, job.captureID) == "failed"
    errors = (await _job(app, job.captureID))["errors"]
    assert errors["type"] == "epcisException:SecurityException", errors
    async with app.state.pool.connection() as conn:
        stored = await (
            await conn.execute(
                "SELECT count(*) AS n FROM epcis_events WHERE event_id = %s", (event_id,)
            )
        ).fetchone()
    assert stored is not None and stored["n"] == 0


def _unpack(sscc: str) -> dict[str, Any]:
    return {
        "type": "AggregationEvent",
        "eventTime": "2026-11-30T11:00:00.000+08:00",
        "eventTimeZoneOffset": "+08:00",
        "parentID": case_link(sscc),
        "action": "DELETE",
        "bizStep": "unpacking",
    }


async def test_two_documents_unpacking_the_same_cases_in_crossed_order_each_answer_a_job(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """A probe: the line operator and the brand administrator (two organisations: the
    per-organisation capture lock does not order them) each captured a document unpacking the
    same 30 cases, in opposite orders. Each event locked its own case, the two transactions
    deadlocked, and PostgreSQL's DeadlockDetected escaped ``capture.run``: the route answered
    409 ``ResourceAlreadyExistsException`` (the binding's "eventID exists") with no
    ``Location``, the accepted job left pending for the orphan sweeper. A document's cases are
    locked in key order before its events apply: exactly one applies each, the other's job
    fails with the line's reason."""
    n = 30
    batch_no, product_id = await issue_units(client, login, demo, n)
    serials = [app.state.scheme.serial(batch_no, i) for i in range(n)]
    await activate(client, login, serials, product_id, line="PZ9")
    operator, admin = await login("operator"), await login("admin")
    for _ in range(3):
        cases = await issue_cases(client, login, demo, "inner", n)
        packed = [
            packing(case_link(c), [unit_link(s)], "PZ9")
            for c, s in zip(cases, serials, strict=True)
        ]
        await captured(client, operator, document(packed))
        answers = await asyncio.gather(
            send_document(client, operator, document([_unpack(c) for c in cases])),
            send_document(client, admin, document([_unpack(c) for c in reversed(cases)])),
        )
        assert [a.status_code for a in answers] == [202, 202], [a.text[:300] for a in answers]
        jobs = sorted((a.json() for a in answers), key=lambda job: job["state"])
        assert [job["state"] for job in jobs] == ["failed", "success"], jobs
        assert "empty_case" in json.dumps(jobs[0]["errors"]), jobs[0]
        assert [await units_in(conn, c) for c in cases] == [0] * n


async def test_a_deadlocked_capture_is_applied_again_and_answers_a_job_when_it_keeps_failing(
    client: Any, login: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deadlock or serialization failure while a job applies (codes locked by another
    transaction in another order) rolls back that attempt only and applies the events again;
    past ``APPLY_ATTEMPTS`` the job fails with a 503 ImplementationException ("send it again",
    nothing stored) — never the binding's 409 "eventID exists" the error handler made of it,
    nor a job left pending for the sweeper."""
    partner = await login("partner")
    real, calls = capture._apply, []

    async def deadlocking(*args: Any) -> int:
        calls.append(1)
        if len(calls) < capture.APPLY_ATTEMPTS:
            raise psycopg.errors.DeadlockDetected("deadlock detected")
        return await real(*args)

    monkeypatch.setattr(capture, "_apply", deadlocking)
    tag = f"D{next(_tags)}x{secrets.token_hex(3)}"
    event = _object("OBSERVE", [f"urn:epc:id:sgtin:0614141.107346.{tag}"])
    job = await captured(client, partner, document([event]))
    assert (job["stored"], len(calls)) == (1, capture.APPLY_ATTEMPTS)

    async def always(*_: Any) -> int:
        raise psycopg.errors.SerializationFailure("could not serialize access")

    monkeypatch.setattr(capture, "_apply", always)
    event = _object("OBSERVE", [f"urn:epc:id:sgtin:0614141.107346.{tag}-2"])
    job = await captured(client, partner, document([event]), "failed")
    assert (job["errors"]["type"], job["errors"]["status"]) == (
        "epcisException:ImplementationException",
        503,
    ), job
    one = await client.post(
        "/epcis/events",
        headers={**partner, "Content-Type": "application/ld+json"},
        content=json.dumps(event),
    )
    assert one.status_code == 503, one.text
    assert one.json()["type"] == "epcisException:ImplementationException", one.text


async def test_a_security_refusal_of_a_capture_job_names_its_event(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: a capture job refused because the capturer lacks the line's permission
    (``packing.scan``) recorded the SecurityException but not the event it concerns (no
    ``pointer``), while every other refusal names it: a partner sending a long document could
    not tell which event to remove. The record carries ``pointer``."""
    batch_no, _ = await issue_units(client, login, demo, 1)
    observe = _object("OBSERVE", [f"urn:epc:id:sgtin:0614141.107346.ZS{secrets.token_hex(4)}"])
    commission = {
        **_object("ADD", [unit_link(app.state.scheme.serial(batch_no, 0))]),
        "bizStep": "commissioning",
        "readPoint": {"id": "urn:tracecode:line:F3"},
    }
    partner = await login("partner")  # epcis.capture, no packing.scan
    job = await captured(client, partner, document([observe, commission]), state="failed")
    assert job["errors"]["type"] == "epcisException:SecurityException", job
    assert job["errors"].get("pointer") == "/epcisBody/eventList/1", job
