"""EPCIS query paging while events commit out of order (probe M): a page's token never passes
an event that commits later under an older transaction, in either source, and new events of
one source still come after the run has moved on to the other."""

from __future__ import annotations

import itertools
import json
import uuid
from typing import Any
from urllib.parse import quote

from tests.helpers import acting
from tests.test_epcis import captured, document, event_list, query, unit_link
from tests.test_logistics import confirm, route  # noqa: F401  (route: a fixture)
from tests.test_logistics import document as draft

_ids = itertools.count()


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


def test_the_token_keeps_both_positions_and_refuses_what_it_did_not_give() -> None:
    import base64

    import pytest

    from app.epcis.query import MAX_EXTRAS, Position, QueryError, next_token, parse_query

    own = Position(1_000_000_007, 42, ((1_000_000_009, 41), (1_000_000_123, 2**40)))
    captured = Position(0, 9)
    token = next_token(own, captured)
    assert parse_query([("nextPageToken", token)]).after == (own, captured)
    assert len(token) < 200
    crowded = Position(5, 5, tuple((6, i) for i in range(MAX_EXTRAS)))
    assert parse_query([("nextPageToken", next_token(crowded, captured))]).after[0] == crowded
    # the largest a token can be (review R2: a position at xact 0 with extras of today's xids
    # made a token this server then refused): still within a parameter's limit
    big = Position(0, 2**63 - 1, tuple((2**64 - 1 - i, 2**63 - 1 - i) for i in range(MAX_EXTRAS)))
    largest = next_token(big, big)
    assert len(largest) < 2000 and parse_query([("nextPageToken", largest)]).after == (big, big)
    past = next_token(Position(2**64, 1), captured)  # past xid8: 400, not the database's 500
    over = Position(5, 5, tuple((6, i) for i in range(MAX_EXTRAS + 1)))
    old = base64.urlsafe_b64encode(b"o:17").decode().rstrip("=")
    for bad in (next_token(over, captured), old, "", "%%%", token[:-3], past):
        with pytest.raises(QueryError):
            parse_query([("nextPageToken", bad)])
