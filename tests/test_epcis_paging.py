"""EPCIS query paging while events commit out of order (probe M): a page's token never passes
an event that commits later under an older transaction, in either source, and new events of
one source still come after the run has moved on to the other. The token is sealed for the
caller's brand: it shows no transaction or event id, and another brand's or a made-up one is
refused; a run never reads behind its position again (an event declared erroneous there)."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import secrets
import struct
import time
import uuid
from typing import Any
from urllib.parse import quote

import pytest

from tests.field_support import other_brand_admin
from tests.helpers import acting
from tests.test_epcis import assert_problem, captured, document, event_list, query, unit_link
from tests.test_logistics import confirm, route  # noqa: F401  (route: a fixture)
from tests.test_logistics import document as draft

_ids = itertools.count()
PATIENCE = 60.0  # the horizon waits for every older writing transaction (other sessions too)


def _token(response: Any) -> str:
    link = response.headers["link"]
    return str(link.split("nextPageToken=")[1].split(">")[0])


def _observe(epc: str, minute: int) -> dict[str, Any]:
    return {
        "type": "ObjectEvent",
        "eventID": f"urn:uuid:{uuid.uuid4()}",
        "eventTime": f"2026-11-30T10:{minute:02d}:00.000+08:00",
        "eventTimeZoneOffset": "+08:00",
        "epcList": [epc],
        "action": "OBSERVE",
        "bizStep": "inspecting",
    }


async def test_a_shipment_that_commits_late_is_not_paged_past(
    client: Any,
    login: Any,
    app: Any,
    demo: Any,
    route: dict[str, Any],  # noqa: F811
) -> None:
    """Three shipments; the first is confirmed on another connection and held open (its event
    ids are the smallest) while the other two commit. A page of one hands out the second with
    a token; the first then commits, and the next page has it and the third."""
    from app.logistics.documents import confirm as confirm_document

    clerk, admin = await login("clerk"), await login("admin")
    docs = [
        await draft(client, clerk, [case], kind="outbound", counterparty_id=demo["AGENT-ZJ"])
        for case in route["cases"]
    ]
    advices = "|".join(f"urn:tracecode:bt:desadv:{quote(d['doc_no'], safe='')}" for d in docs)
    async with app.state.pool.connection() as other:
        await confirm_document(other, await acting(other, "clerk"), app.state.scheme, docs[0]["id"])
        for doc in docs[1:]:
            assert (await confirm(client, clerk, doc)).status_code == 200
        first = await query(client, admin, EQ_bizTransaction_desadv=advices, perPage="1")
        assert [e["bizTransactionList"][0]["bizTransaction"] for e in event_list(first)] == [
            f"urn:tracecode:bt:desadv:{quote(docs[1]['doc_no'], safe='')}"
        ]
        await other.commit()
    rest = await query(
        client, admin, EQ_bizTransaction_desadv=advices, perPage="10", nextPageToken=_token(first)
    )
    assert "link" not in rest.headers
    numbers = {
        e["bizTransactionList"][0]["bizTransaction"].rsplit(":", 1)[1] for e in event_list(rest)
    }
    assert numbers == {quote(docs[0]["doc_no"], safe=""), quote(docs[2]["doc_no"], safe="")}


async def test_a_capture_that_commits_late_is_not_paged_past(
    client: Any, login: Any, app: Any
) -> None:
    """Two organisations capture at once: the factory's document is applied on another
    connection and held open while the brand's partner captures two; a page of one hands out
    the partner's first with a token, the factory's commits, and the next page has it and the
    partner's second."""
    from app.epcis import capture

    epc = f"urn:epc:id:sgtin:0614141.107346.LATE{next(_ids)}x{id(client) % 10000}"
    late = _observe(epc, 0)
    async with app.state.pool.connection() as other:
        job = await capture.accept(
            other, await acting(other, "factory_admin"), json.dumps(document([late])).encode()
        )
        await other.commit()
        await other.execute("SELECT 1")  # a transaction open: the run's own is a savepoint in it
        assert await capture.run(other, app.state.scheme, job.captureID) == "success"
        partner = await login("partner")
        await captured(client, partner, document([_observe(epc, 1)]))
        await captured(client, partner, document([_observe(epc, 2)]))
        admin = await login("admin")
        first = await query(client, admin, MATCH_epc=epc, perPage="1")
        assert [e["eventTime"][11:16] for e in event_list(first)] == ["10:01"]
        await other.commit()
    rest = await query(client, admin, MATCH_epc=epc, perPage="10", nextPageToken=_token(first))
    assert sorted(e["eventTime"][11:16] for e in event_list(rest)) == ["10:00", "10:02"]
    assert "link" not in rest.headers


async def test_own_events_still_come_once_the_pages_reach_captured_ones(
    client: Any,
    login: Any,
    demo: Any,
    route: dict[str, Any],  # noqa: F811
) -> None:
    """A run's pages reached the captured events, and Tracecode's own events added meanwhile
    were never served (the token named only the captured source)."""
    serial = route["units"][0]
    partner, admin, clerk = await login("partner"), await login("admin"), await login("clerk")
    epc = unit_link(serial)
    await captured(client, partner, document([_observe(epc, 1), _observe(epc, 2)]))
    own = event_list(await query(client, admin, MATCH_epc=epc, eventType="AggregationEvent"))
    everything = event_list(await query(client, admin, MATCH_epc=epc, perPage="1000"))
    assert own and len(everything) > len(own) + 1
    first = await query(client, admin, MATCH_epc=epc, perPage=str(len(everything) - 1))
    assert event_list(first)[-1]["eventTime"][11:16] == "10:01"  # into the captured ones
    ship = await draft(client, clerk, [serial], kind="outbound", counterparty_id=demo["AGENT-ZJ"])
    assert (await confirm(client, clerk, ship)).status_code == 200
    rest = event_list(
        await query(client, admin, MATCH_epc=epc, perPage="10", nextPageToken=_token(first))
    )
    assert sorted(e.get("bizStep", "") for e in rest) == ["inspecting", "shipping", "unpacking"]


def test_the_token_keeps_both_positions_and_refuses_what_it_did_not_give(settings: Any) -> None:
    from app.epcis.query import MAX_EXTRAS, Position, QueryError, next_token, read_token

    own = Position(1_000_000_007, 42, ((1_000_000_009, 41), (1_000_000_123, 2**40)))
    captured = Position(0, 9)
    token = next_token(settings, "7", own, captured)
    assert read_token(settings, "7", token) == (own, captured)
    assert read_token(settings, "7", None) == (Position(), Position())
    assert len(token) < 200 and token.replace("-", "").replace("_", "").isalnum()
    crowded = Position(5, 5, tuple((6, i) for i in range(MAX_EXTRAS)))
    assert read_token(settings, "7", next_token(settings, "7", crowded, captured))[0] == crowded
    # the largest a token can be (review R2: a position at xact 0 with extras of today's xids
    # made a token this server then refused): still within a parameter's limit
    big = Position(0, 2**63 - 1, tuple((2**64 - 1 - i, 2**63 - 1 - i) for i in range(MAX_EXTRAS)))
    largest = next_token(settings, "7", big, big)
    assert len(largest) < 2000 and read_token(settings, "7", largest) == (big, big)
    past = next_token(settings, "7", Position(5, 2**63), captured)  # past bigint: 400, not a 500
    over = Position(5, 5, tuple((6, i) for i in range(MAX_EXTRAS + 1)))
    old = base64.urlsafe_b64encode(b"o:17").decode().rstrip("=")
    plain = base64.urlsafe_b64encode(b"v2;0.0.;0.0.").decode().rstrip("=")  # before sealing
    altered = token[:20] + ("A" if token[20] != "A" else "B") + token[21:]
    crowded_over = next_token(settings, "7", over, captured)
    for bad in (crowded_over, past, old, plain, altered, "", "%%%", token[:-3]):
        with pytest.raises(QueryError):
            read_token(settings, "7", bad)
    with pytest.raises(QueryError):  # another brand's
        read_token(settings, "8", token)


# -- the token: sealed for the caller's brand ---------------------------------------------------


async def test_a_token_of_another_brand_or_made_up_is_refused(client: Any, login: Any) -> None:
    """A probe: the token was base64 of ``v2;<xact>.<id>.…``, bound to nothing: another brand
    asking with Lumi's token was answered 200 from Lumi's position, past its own events, and a
    token written by hand was taken as well. Now 400, as any token this server did not give."""
    partner = await login("partner")
    epc = f"urn:epc:id:sgtin:0614141.107346.TB{secrets.token_hex(4)}"
    await captured(client, partner, document([_observe(epc, 1), _observe(epc, 2)]))
    first = await query(client, partner, MATCH_epc=epc, perPage="1")
    token = _token(first)
    rest = await query(client, partner, MATCH_epc=epc, nextPageToken=token)
    assert len(event_list(first) + event_list(rest)) == 2
    tenant = await other_brand_admin(client, login)
    own = await client.get("/epcis/events", headers=tenant, params={"nextPageToken": token})
    assert_problem(own, 400, "epcis_query_parameter")
    assert own.json()["type"] == "epcisException:QueryParameterException"
    made_up = base64.urlsafe_b64encode(b"v2;0.0.;0.0.").decode().rstrip("=")
    altered = token[:20] + ("A" if token[20] != "A" else "B") + token[21:]
    for bad in (made_up, altered):
        response = await client.get(
            "/epcis/events", headers=partner, params={"MATCH_epc": epc, "nextPageToken": bad}
        )
        assert_problem(response, 400, "epcis_query_parameter")


async def test_the_token_shows_no_transaction_or_event_id(
    client: Any, login: Any, app: Any
) -> None:
    """Probe M sealed the ERP cursor so a partner learns nothing of the rest of the platform;
    the EPCIS token was base64 of ``v2;<xact>.<events.id>.…``: the cluster's transaction
    counter and an id sequence shared by every brand, in plain text."""
    partner = await login("partner")
    epc = f"urn:epc:id:sgtin:0614141.107346.TS{secrets.token_hex(4)}"
    served = _observe(epc, 1)
    await captured(client, partner, document([served, _observe(epc, 2)]))
    row = await _settled(app, served["eventID"])  # a page serving it moves its position to it
    first = await query(client, partner, MATCH_epc=epc, perPage="1")
    assert [e["eventID"] for e in event_list(first)] == [served["eventID"]]
    token = _token(first)
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    xact, event = int(row["xact"]), row["id"]
    for shown in (str(xact).encode(), str(event).encode(), struct.pack(">Q", xact)):
        assert shown not in raw, (shown, raw)
    assert struct.pack(">Q", event) not in raw and len(token) < 100


# -- a run never reads behind its position ------------------------------------------------------


async def _settled(app: Any, event_id: str) -> dict[str, Any]:
    """The captured event's row once its transaction is below the horizon
    (``app.db.HORIZON_CTE``): a page serving it then moves the run's position past it."""
    from app.db import HORIZON_CTE

    deadline = time.monotonic() + PATIENCE
    while True:
        async with app.state.pool.connection() as conn:
            row = await (
                await conn.execute(
                    f"WITH {HORIZON_CTE} SELECT ce.id, ce.xact::text AS xact, "
                    "ce.xact < (SELECT x FROM horizon) AS settled "
                    "FROM epcis_events ce WHERE ce.event_id = %s",
                    (event_id,),
                )
            ).fetchone()
        if row["settled"]:
            return row  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, "the horizon never passed the event"
        await asyncio.sleep(0.05)


async def test_a_run_does_not_go_back_for_an_event_declared_behind_it(
    client: Any, login: Any, app: Any
) -> None:
    """What the README promises a run of pages (EPCIS, Query): an event keeps the position of its
    capture, a declaration changes it in place, and a run never reads behind its position again.
    E1 is captured, then E2 and E3, both declared erroneous; a run asking for declared events
    serves E2 on its first page, then E1 is declared: the rest of the run serves E3 alone, and
    a new run all three (a probe read the README as promising E1 to the first run)."""
    partner = await login("partner")
    tag = f"DR{secrets.token_hex(4)}"
    epcs = [f"urn:epc:id:sgtin:0614141.107346.{tag}{i}" for i in range(3)]
    events = [_observe(epc, i) for i, epc in enumerate(epcs)]
    for event in events:  # three captures: three transactions, in order
        await captured(client, partner, document([event]))
    await captured(client, partner, document([_declared(events[1]), _declared(events[2])]))
    await _settled(app, events[1]["eventID"])
    asked = {"MATCH_anyEPC": "|".join(epcs), "EXISTS_errorDeclaration": ""}
    first = await query(client, partner, **asked, perPage="1")
    assert [e["eventID"] for e in event_list(first)] == [events[1]["eventID"]]
    await captured(client, partner, document([_declared(events[0])]))
    rest = await query(client, partner, **asked, perPage="10", nextPageToken=_token(first))
    assert [e["eventID"] for e in event_list(rest)] == [events[2]["eventID"]]
    assert "link" not in rest.headers
    again = event_list(await query(client, partner, **asked))
    assert [e["eventID"] for e in again] == [e["eventID"] for e in events]
    assert all("errorDeclaration" in e for e in again)


def _declared(event: dict[str, Any]) -> dict[str, Any]:
    """``event`` sent again with an errorDeclaration: the stored one is declared erroneous."""
    declaration = {"declarationTime": "2026-12-01T00:00:00Z", "reason": "incorrect_data"}
    return {**event, "errorDeclaration": declaration}
