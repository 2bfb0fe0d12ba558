"""Issue 13 hardening of verification input, the protocol edge and every write-behind queue:
control characters refused at the edge, a 413 that ends its connection cleanly, no-PIN answers
that do not say "genuine", English place names, and poison records dead-lettered (counted, shown
in /health) without blocking the good records around them."""

from __future__ import annotations

import http.client
import itertools
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.helpers import assert_error
from tests.servers import granian_server

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """The app under a real granian server on a free port (this session's database and Redis)."""
    with granian_server(tmp_path_factory.mktemp("granian")) as running:
        yield "127.0.0.1", running.port


# -- item 12: a 413 ends its connection cleanly ---------------------------------------------------


def _chunked(total: int, chunk: int = 4096) -> Iterator[bytes]:
    body = b'{"serial": "' + b"A" * (total - 16) + b'"}'
    for i in range(0, len(body), chunk):
        yield body[i : i + chunk]


def test_a_too_large_chunked_verification_closes_its_connection_cleanly(
    server: tuple[str, int],
) -> None:
    host, port = server
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request(
            "POST",
            "/v1/verify",
            body=_chunked(40 * 1024),
            headers={"Content-Type": "application/json"},
            encode_chunked=True,
        )
        response = conn.getresponse()
        body = response.read()
        assert response.status == 413, body
        assert b'"payload_too_large"' in body
        # the client is told the connection ends here ...
        assert (response.getheader("connection") or "").lower() == "close"
        assert response.will_close
        # ... so its next request (http.client reconnects) is answered
        conn.request("GET", "/ping")
        again = conn.getresponse()
        assert again.status == 200 and again.read() == b'{"pong":"ok"}'
    finally:
        conn.close()


def test_a_too_large_verification_on_a_raw_socket_gets_connection_close(
    server: tuple[str, int],
) -> None:
    """The same over a raw socket: 413 with ``Connection: close``, then the server closes. The
    answer is read while the body is still being sent: the server may answer and close before
    the client has sent it all, and the client's next send then fails (a broken pipe, seen
    once in a clean-clone run) — the answer came first all the same."""
    received = bytearray()
    ended: list[str] = []

    def read(sock: socket.socket) -> None:
        try:
            while chunk := sock.recv(65536):
                received.extend(chunk)
            ended.append("closed")
        except OSError as exc:  # a reset: the client was still sending what nobody reads
            ended.append(type(exc).__name__)

    with socket.create_connection(server, timeout=10) as sock:
        reader = threading.Thread(target=read, args=(sock,))
        reader.start()
        cut = False
        try:
            sock.sendall(
                b"POST /v1/verify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            for piece in _chunked(40 * 1024):
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            cut = True  # the server answered and closed first
        reader.join(15)
    assert not reader.is_alive(), "the server kept the connection open"  # no hang
    headers = bytes(received).split(b"\r\n\r\n", 1)[0].lower()
    assert headers.startswith(b"http/1.1 413"), bytes(received)
    assert b"\r\nconnection: close" in headers, headers
    assert ended == ["closed"] or cut, ended  # a reset only for a body sent past the answer


# -- item 1: control characters are refused at the edge ------------------------------------------


async def test_a_control_character_in_a_verification_is_a_clear_400(client: Any) -> None:
    for body in (
        b'{"serial": "AB\\u0000CD"}',
        b'{"serial": "ABCD", "client_id": "app\\u0000"}',
        b'{"serial": "AB\\u001fCD", "lang": "en"}',
        b'{"serial": "ABCD", "client_id": "a\\bb"}',
    ):
        response = await client.post(
            "/v1/verify", content=body, headers={"content-type": "application/json"}
        )
        assert_error(response, 400, "invalid_character")
    # an escaped backslash before "u0000" is text, not a control character
    fine = await client.post("/v1/verify", json={"serial": "AB\\u0000CD"})
    assert fine.status_code == 200 and fine.json()["reason"] == "malformed"


async def test_deep_json_on_the_raw_handlers_is_too_deep(client: Any) -> None:
    """/v1/verify and the points claim read their bodies themselves (app.edge.read_post_body):
    the same edge checks as every other JSON route — nesting over 64 levels is 400 too_deep."""
    deep = b'{"serial": ' + b"[" * 100 + b"]" * 100 + b"}"
    for path in ("/v1/verify", "/members/me/claims"):
        response = await client.post(
            path, content=deep, headers={"content-type": "application/json"}
        )
        if path == "/v1/verify":
            assert_error(response, 400, "too_deep")
        else:  # a claim answers 401 first: nobody signed in
            assert_error(response, 401)
    shallow = await client.post("/v1/verify", json={"serial": [[["x"]]]})
    assert_error(shallow, 400, "validation_failed")


# -- item 22: no PIN is "unconfirmed"; places in the reader's language ---------------------------


async def _activated(client: Any, login: Any, demo: Any, app: Any, size: int) -> list[str]:
    from tests.helpers import activate, issue_units

    batch_no, product_id = await issue_units(client, login, demo, size)
    serials = [app.state.scheme.serial(batch_no, i) for i in range(size)]
    await activate(client, login, serials, product_id)
    return serials


@pytest.fixture
def lenient_verifier(app: Any) -> Iterator[Any]:
    """The app's verifier with never-shipped flagging off (nothing is shipped here)."""
    import msgspec

    from app.verify.service import Verifier

    original = app.state.verifier
    settings = msgspec.structs.replace(
        app.state.settings, verify_flag_never_shipped=False, verify_rate_limit=100_000
    )
    app.state.verifier = Verifier(app.state.pool, app.state.redis, app.state.scheme, settings)
    yield app.state.verifier
    app.state.verifier = original


async def test_without_the_pin_a_real_code_is_unconfirmed_not_genuine(
    client: Any, login: Any, demo: Any, app: Any, lenient_verifier: Any
) -> None:
    serial = (await _activated(client, login, demo, app, 2))[0]
    answer = (await client.post("/v1/verify", json={"serial": serial})).json()
    assert (answer["result"], answer["reason"]) == ("unconfirmed", "pin_required"), answer
    proven = await client.post(
        "/v1/verify", json={"serial": serial, "pin": app.state.scheme.pin(serial)}
    )
    assert (proven.json()["result"], proven.json()["reason"]) == ("genuine", "first_query")
    # the consumer page still offers the PIN form for an unconfirmed code
    page = await client.get(f"/c/{serial}", params={"lang": "en"})
    assert page.status_code == 200 and 'name="pin"' in page.text
    # the documented result values include it
    schema = (await client.get("/schema/openapi.json")).json()
    assert (
        "unconfirmed"
        in schema["components"]["schemas"]["VerifyOut"]["properties"]["result"]["enum"]
    )
    assert "unconfirmed" in schema["paths"]["/v1/verify"]["post"]["description"]


async def test_english_answers_name_places_in_english(
    client: Any, login: Any, demo: Any, app: Any, lenient_verifier: Any
) -> None:
    from app.verify.schemas import VerifyIn

    serials = await _activated(client, login, demo, app, 2)
    scheme = app.state.scheme
    # by GPS (Shanghai), then from the IP table (203.0.113.0/24 is Hangzhou, Zhejiang)
    serial = serials[0]
    shanghai = {"lat": 31.2, "lng": 121.5}
    await client.post(
        "/v1/verify", json={"serial": serial, "pin": scheme.pin(serial), "gps": shanghai}
    )
    again = (
        await client.post(
            "/v1/verify",
            json={"serial": serial, "pin": scheme.pin(serial), "gps": shanghai, "lang": "en"},
        )
    ).json()
    assert again["first_query_place"] == "Shanghai" and "in Shanghai" in again["message"], again
    chinese = (
        await client.post("/v1/verify", json={"serial": serial, "pin": scheme.pin(serial)})
    ).json()
    assert chinese["first_query_place"] == "上海市" and "上海市" in chinese["message"]

    serial = serials[1]
    pin = scheme.pin(serial)
    await lenient_verifier.verify(VerifyIn(serial=serial, pin=pin), "203.0.113.9", None)
    english = await lenient_verifier.verify(
        VerifyIn(serial=serial, pin=pin, lang="en"), "203.0.113.9", None
    )
    assert english.first_query_place == "Hangzhou, Zhejiang"
    assert "in Hangzhou, Zhejiang" in english.message
    assert not any("\u4e00" <= c <= "\u9fff" for c in english.message), english.message
    page = await client.post(f"/c/{serial}", data={"pin": pin, "lang": "en"})
    assert "Hangzhou, Zhejiang" in page.text and "浙江" not in page.text


def test_place_names_fall_back_sensibly() -> None:
    from app.verify.regions import place_name

    assert place_name("浙江省杭州市", "zh") == "浙江省杭州市"
    assert place_name("北京市", "en") == "Beijing"
    assert place_name("广东省深圳市", "en") == "Guangdong"  # a city without an English name
    assert place_name("", "en") == ""


# -- item 1: a poison record is dead-lettered, counted, and blocks nothing -----------------------


async def _dead_letters(client: Any) -> dict[str, int]:
    """The per-queue counts /health reports (and checks /metrics says the same)."""
    health = await client.get("/health")
    assert health.status_code == 200, health.text  # dead letters are reported, not an outage
    counts: dict[str, int] = health.json()["dead_letters"]
    metrics = (await client.get("/metrics")).text
    for queue, n in counts.items():
        assert f'tracecode_dead_letters{{queue="{queue}"}} {float(n)}' in metrics, queue
    return counts


async def _buried(conn: Any, queue: str) -> list[tuple[bytes, str]]:
    rows = await (
        await conn.execute(
            "SELECT payload, reason FROM dead_letters WHERE queue = %s ORDER BY id", (queue,)
        )
    ).fetchall()
    return [(bytes(r["payload"]), r["reason"]) for r in rows]


@pytest.fixture
async def autocommit(settings: Any) -> Any:
    import psycopg
    from psycopg.rows import dict_row

    conn = await psycopg.AsyncConnection.connect(
        settings.database_url, autocommit=True, row_factory=dict_row
    )
    yield conn
    await conn.close()


def _nul_record(token: str) -> bytes:
    """A verification record PostgreSQL refuses (a NUL in a string), as the API queued one
    before the edge refused control characters."""
    import json
    import secrets

    return json.dumps(
        {
            "at": "2026-11-30T10:00:00Z",
            "record_key": secrets.token_hex(16),
            "serial": "AB\u0000CD",
            "client_id": f"{token}-nul",
            "pin_given": False,
            "result": "not_genuine",
            "reason": "malformed",
            "queries": 0,
        }
    ).encode()


async def _verify(client: Any, app: Any, serial: str, client_id: str) -> None:
    """A verification with the right PIN, answered 200."""
    body = {"serial": serial, "pin": app.state.scheme.pin(serial), "client_id": client_id}
    response = await client.post("/v1/verify", json=body)
    assert response.status_code == 200, response.text


async def test_a_poison_verification_record_is_dead_lettered_and_the_others_stored(
    client: Any,
    login: Any,
    demo: Any,
    app: Any,
    settings: Any,
    lenient_verifier: Any,
    autocommit: Any,
) -> None:
    import secrets

    import psycopg
    import redis as redis_sync

    from app.verify import records

    token = secrets.token_hex(4)
    serials = await _activated(client, login, demo, app, 4)
    before = await _dead_letters(client)
    sync_redis = redis_sync.Redis.from_url(settings.redis_url)
    queue = f"{settings.redis_namespace}:verif:queue"

    async def good(i: int) -> None:
        await _verify(client, app, serials[i], f"{token}-{i}")

    # what the API queued before the edge refused control characters: a NUL in a string, which
    # PostgreSQL refuses in jsonb; and a record that is not JSON at all
    nul = _nul_record(token)
    await good(0)
    await good(1)
    sync_redis.lpush(queue, nul)
    await good(2)
    sync_redis.lpush(queue, b'{"at": "not json')
    await good(3)
    # JSON nested past PostgreSQL's stack depth (probe C: taken for an outage and retried
    # forever, so nothing after it was ever stored)
    deep = b'{"x":' + b"[" * 30_000 + b"]" * 30_000 + b"}"
    sync_redis.lpush(queue, deep)

    with psycopg.connect(settings.database_url, autocommit=True) as pg:
        while records.flush(sync_redis, pg, settings.redis_namespace):
            pass
    assert records.pending(sync_redis, settings.redis_namespace) == 0
    stored = await (
        await autocommit.execute(
            "SELECT client_id FROM verifications WHERE client_id LIKE %s ORDER BY client_id",
            (f"{token}-%",),
        )
    ).fetchall()
    assert [r["client_id"] for r in stored] == [f"{token}-{i}" for i in range(4)]
    buried = (await _buried(autocommit, "verifications"))[-3:]
    assert {payload for payload, _ in buried} == {nul, b'{"at": "not json', deep}
    reasons = " | ".join(reason for _, reason in buried)
    # the first line of PostgreSQL's errors: their DETAIL and CONTEXT quote the record
    assert "unsupported Unicode escape" in reasons and "json" in reasons.lower(), reasons
    assert "\\u0000" not in reasons and "CONTEXT" not in reasons, reasons
    after = await _dead_letters(client)
    assert after["verifications"] == before["verifications"] + 3


async def test_a_round_of_verifications_is_one_queued_element_flushed_whole(
    client: Any,
    login: Any,
    demo: Any,
    app: Any,
    settings: Any,
    lenient_verifier: Any,
    autocommit: Any,
) -> None:
    """Concurrent verifications are queued by round: one list element, a record per line. A
    flush takes whole elements even past its limit, and a poison record inside an element is
    dead-lettered alone while its round-mates are stored."""
    import asyncio
    import json
    import secrets

    import psycopg
    import redis as redis_sync

    from app.verify import records

    token = secrets.token_hex(4)
    serials = await _activated(client, login, demo, app, 16)
    sync_redis = redis_sync.Redis.from_url(settings.redis_url)
    queue = f"{settings.redis_namespace}:verif:queue"
    with psycopg.connect(settings.database_url, autocommit=True) as pg:
        while records.flush(sync_redis, pg, settings.redis_namespace):  # earlier tests' records
            pass
    before = await _dead_letters(client)

    await asyncio.gather(*(_verify(client, app, serials[i], f"{token}-{i}") for i in range(16)))
    elements = sync_redis.lrange(queue, 0, -1)
    lines = [line for element in elements for line in element.split(b"\n")]
    assert sorted(json.loads(line)["client_id"] for line in lines) == sorted(
        f"{token}-{i}" for i in range(16)
    )
    assert len(elements) < 16, "each verification was queued alone: no rounds"

    # the same records as one element with a record PostgreSQL refuses (a NUL) among them
    nul = _nul_record(token)
    sync_redis.delete(queue)
    sync_redis.lpush(queue, b"\n".join([*lines[:7], nul, *lines[7:]]))
    with psycopg.connect(settings.database_url, autocommit=True) as pg:
        assert records.flush(sync_redis, pg, settings.redis_namespace, limit=1) == 17
    assert records.pending(sync_redis, settings.redis_namespace) == 0
    stored = await (
        await autocommit.execute(
            "SELECT client_id FROM verifications WHERE client_id LIKE %s ORDER BY client_id",
            (f"{token}-%",),
        )
    ).fetchall()
    assert sorted(r["client_id"] for r in stored) == sorted(f"{token}-{i}" for i in range(16))
    buried = (await _buried(autocommit, "verifications"))[-1:]
    assert [payload for payload, _ in buried] == [nul]
    assert (await _dead_letters(client))["verifications"] == before["verifications"] + 1


async def test_a_pass_read_again_after_a_lost_trim_buries_its_bad_record_once(
    client: Any, settings: Any, autocommit: Any
) -> None:
    """The flusher commits, then trims Redis: when the trim is lost (the connection dropped, the
    worker killed between the two), the next pass reads the same element again. Its good record
    is a no-op by its unique key, and its bad one is not set aside a second time (the probe found
    it buried twice: the dead letters' count, and an operator's replay, doubled)."""
    import json
    import secrets

    import psycopg
    import redis as redis_sync

    from app.verify import records

    token = secrets.token_hex(4)
    sync_redis = redis_sync.Redis.from_url(settings.redis_url)
    queue = f"{settings.redis_namespace}:verif:queue"
    good = json.loads(_nul_record(token))
    good.update(serial="ABCD", client_id=f"{token}-good")
    nul = _nul_record(token)
    element = b"\n".join([json.dumps(good).encode(), nul])
    with psycopg.connect(settings.database_url, autocommit=True) as pg:
        while records.flush(sync_redis, pg, settings.redis_namespace):  # earlier tests' records
            pass
        for _ in range(2):  # the second time: the element the lost trim left in the queue
            sync_redis.lpush(queue, element)
            assert records.flush(sync_redis, pg, settings.redis_namespace) == 2
    rows = await (
        await autocommit.execute(
            """SELECT (SELECT count(*) FROM verifications WHERE client_id = %s) AS stored,
                      (SELECT count(*) FROM dead_letters
                        WHERE queue = 'verifications' AND payload = %s) AS buried""",
            (f"{token}-good", nul),
        )
    ).fetchone()
    assert (rows["stored"], rows["buried"]) == (1, 1)


async def test_a_poison_stock_delta_is_dead_lettered_and_the_others_folded(
    client: Any, autocommit: Any
) -> None:
    import secrets

    from app.logistics.rollup import rollup_alone

    lot = f"T{secrets.token_hex(4)}"
    before = await _dead_letters(client)
    # a stock row at the top of bigint: one more unit cannot be added to it
    await autocommit.execute(
        "INSERT INTO stock (org_id, product_id, lot, on_hand, in_transit) "
        "VALUES (-1, -1, %s, 9223372036854775807, 0)",
        (lot,),
    )
    insert = (
        "INSERT INTO stock_deltas (org_id, product_id, lot, on_hand, in_transit, event_id) "
        "VALUES (%s, %s, %s, 1, 0, 0) RETURNING id"
    )
    await autocommit.execute(insert, (-2, -2, lot))
    poison = (await (await autocommit.execute(insert, (-1, -1, lot))).fetchone())["id"]
    await autocommit.execute(insert, (-2, -2, lot))
    try:
        assert await rollup_alone(autocommit, wait=True) is not None
        good = await (
            await autocommit.execute(
                "SELECT on_hand FROM stock WHERE org_id = -2 AND lot = %s", (lot,)
            )
        ).fetchone()
        assert good is not None and good["on_hand"] == 2  # the deltas around the poison
        left = await (
            await autocommit.execute(
                "SELECT count(*) AS n FROM stock_deltas WHERE lot = %s", (lot,)
            )
        ).fetchone()
        assert left["n"] == 0
        payload, reason = (await _buried(autocommit, "stock_deltas"))[-1]
        assert f'"id":{poison},' in payload.decode() and lot in payload.decode()
        assert "out of range" in reason, reason
        after = await _dead_letters(client)
        assert after["stock_deltas"] == before["stock_deltas"] + 1
    finally:  # leave no row that the stock recount of other tests would count
        await autocommit.execute("DELETE FROM stock WHERE lot = %s", (lot,))
        await autocommit.execute("DELETE FROM stock_deltas WHERE lot = %s", (lot,))


async def test_a_poison_inspection_delta_is_dead_lettered_and_the_others_folded(
    client: Any, autocommit: Any
) -> None:
    import secrets

    from app.inspect.summaries import rollup_alone

    result = f"t{secrets.token_hex(4)}"
    before = await _dead_letters(client)
    await autocommit.execute(
        "INSERT INTO inspection_summary (brand_id, day, store_org_id, source_org_id, result, units)"
        " VALUES (-1, '2026-11-30', -1, -1, %s, 9223372036854775807)",
        (result,),
    )
    insert = (
        "INSERT INTO inspection_deltas (brand_id, day, store_org_id, source_org_id, result, units)"
        " VALUES (%s, '2026-11-30', -1, -1, %s, 1) RETURNING id"
    )
    await autocommit.execute(insert, (-2, result))
    poison = (await (await autocommit.execute(insert, (-1, result))).fetchone())["id"]
    await autocommit.execute(insert, (-2, result))
    try:
        assert await rollup_alone(autocommit, wait=True) is not None
        good = await (
            await autocommit.execute(
                "SELECT units FROM inspection_summary WHERE brand_id = -2 AND result = %s",
                (result,),
            )
        ).fetchone()
        assert good is not None and good["units"] == 2
        payload, reason = (await _buried(autocommit, "inspection_deltas"))[-1]
        assert f'"id":{poison},' in payload.decode() and "out of range" in reason, reason
        after = await _dead_letters(client)
        assert after["inspection_deltas"] == before["inspection_deltas"] + 1
    finally:
        await autocommit.execute("DELETE FROM inspection_summary WHERE result = %s", (result,))
        await autocommit.execute("DELETE FROM inspection_deltas WHERE result = %s", (result,))


async def test_a_poison_job_is_dead_lettered_and_the_other_jobs_run(
    client: Any, settings: Any, autocommit: Any
) -> None:
    import asyncio
    import secrets

    import dramatiq

    from app.jobs import broker
    from workers import main  # noqa: F401 - every actor and middleware, as a worker loads them
    from workers.codes import run_export_job
    from workers.epcis import capture_job
    from workers.ops import ping

    # what earlier tests queued and never ran (test_exports runs its queued exports in the
    # test, one of them broken on purpose): this test's worker would take it up as a third
    broker.flush_all()
    before = await _dead_letters(client)
    token = secrets.token_hex(4)
    run_export_job.send("not-an-export-id")  # not a uuid: its data is wrong, no retry helps
    run_export_job.send_with_options(args=("a", "b"))  # wrong arguments
    capture_job.send(["x"])  # not a capture id: dead-lettered at once, no retry
    ping.send(token)
    worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=100)
    worker.start()
    try:
        pong = f"{settings.redis_namespace}:pong:{token}"
        deadline = time.monotonic() + 90  # three small jobs; generous for a loaded machine
        while True:
            jobs = await _buried(autocommit, "job:run_export_job")
            done = len(jobs) >= before.get("job:run_export_job", 0) + 2
            codes = await _buried(autocommit, "job:capture_job")
            done = done and len(codes) >= before.get("job:capture_job", 0) + 1
            if done and broker.client.get(pong):
                break
            assert time.monotonic() < deadline, (jobs, broker.client.get(pong))
            await asyncio.sleep(0.2)
    finally:
        worker.stop(timeout=10_000)
    reasons = [reason for _, reason in jobs[-2:]]
    assert any(r.startswith("ValueError") and "UUID" in r for r in reasons), reasons
    assert any(r.startswith("TypeError") for r in reasons), reasons
    assert b"not-an-export-id" in b"".join(payload for payload, _ in jobs[-2:])
    assert codes[-1][1].startswith("TypeError"), codes[-1]
    after = await _dead_letters(client)
    assert after["job:run_export_job"] == before.get("job:run_export_job", 0) + 2


def _poison(poison_id: str, token: str, kind: str) -> bytes:
    """A ``ping`` job message as dramatiq encodes one, spoilt as ``kind`` says."""
    import json

    if kind == "cut short":
        return b'{"queue_name": "default", "actor_name": "ping", "args": ["' + token.encode()
    message: dict[str, Any] = {
        "queue_name": "default",
        "actor_name": "ping",
        "args": [token],
        "kwargs": {},
        "options": {"redis_message_id": poison_id},
        "message_id": poison_id,
        "message_timestamp": int(time.time() * 1000),
    }
    spoilt: dict[str, dict[str, Any]] = {
        "another queue": {"queue_name": "elsewhere"},
        "options null": {"options": None},
        "no broker id": {"options": {}},
        "another broker id": {"options": {"redis_message_id": "not-its-id"}},
        "timestamp text": {"message_timestamp": "soon"},
        "args an object": {"args": {"token": token}},
        "retries text": {"options": {"redis_message_id": poison_id, "retries": "x"}},
        "max_retries text": {"options": {"redis_message_id": poison_id, "max_retries": "x"}},
        "time_limit true": {"options": {"redis_message_id": poison_id, "time_limit": True}},
        "throws": {"options": {"redis_message_id": poison_id, "throws": "x"}},
    }
    return json.dumps(message | spoilt[kind]).encode()


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("cut short", "does not decode"),
        ("another queue", "cannot be run: ValueError: it names queue 'elsewhere'"),
        ("options null", "cannot be run: ValueError: its options are not an object"),
        ("no broker id", "cannot be run: ValueError: it has no redis_message_id"),
        ("another broker id", "cannot be run: ValueError: its redis_message_id is not the id"),
        ("timestamp text", "cannot be run: ValueError: its message_timestamp"),
        ("args an object", "cannot be run: ValueError: its args are not a list"),
        ("retries text", "ValueError: its option retries is not a whole number"),
        ("max_retries text", "ValueError: its option max_retries is not a whole number"),
        ("time_limit true", "ValueError: its option time_limit is not a whole number"),
        ("throws", "cannot be run: ValueError: it carries option throws"),
    ],
)
async def test_a_job_message_a_worker_cannot_handle_is_set_aside_and_the_next_job_runs(
    client: Any, settings: Any, autocommit: Any, kind: str, reason: str
) -> None:
    """Probes: a message on the job queue that no longer decodes (written by another version,
    cut short, corrupted) made dramatiq's Redis consumer raise: the jobs fetched with it (a
    ``ping`` queued right after it) were dropped and sat unacknowledged while that worker
    lived, the bad message was taken again after every worker's death, and it was in no dead
    letter (README "Dead letters"). dramatiq checks only a message's keys: ``"options": null``
    did the same; another queue's name ended the worker thread that ran it (one thread: no job
    ran again); no ``redis_message_id`` of its own ran and was never acknowledged. Options of
    the wrong kind (``retries`` as text, ``throws`` at all: probe) made a failing job's retry
    raise, and the job was acknowledged, lost. Each is buried (queue ``job:undecodable``, with
    the reason), removed from Redis, and the next job runs, on a worker of one thread."""
    import asyncio
    import secrets
    import uuid

    import dramatiq

    from app.deadletters import UNDECODABLE_JOBS
    from app.jobs import broker
    from workers import main  # noqa: F401 - every actor and middleware, as a worker loads them
    from workers.ops import ping

    token = secrets.token_hex(4)
    poison_id = str(uuid.uuid4())
    poison = _poison(poison_id, f"poison-{token}", kind)
    broker.do_enqueue("default", poison_id, poison)
    ping_id = ping.send(token).options["redis_message_id"]
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    pong = f"{settings.redis_namespace}:pong:{token}"
    ns = broker.namespace
    try:
        deadline = time.monotonic() + 20
        while True:
            answered = broker.client.get(pong) is not None
            if answered or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        kept = broker.client.hexists(f"{ns}:default.msgs", poison_id)
    finally:
        worker.stop(timeout=10_000)
        # leave neither message behind for later tests' workers
        broker.client.hdel(f"{ns}:default.msgs", poison_id, ping_id)
        for key in broker.client.scan_iter(f"{ns}:__acks__.*"):
            if broker.client.type(key) == b"set":
                broker.client.srem(key, poison_id, ping_id)
        broker.client.lrem(f"{ns}:default", 0, poison_id)
        broker.client.lrem(f"{ns}:default", 0, ping_id)
    buried = [r for p, r in await _buried(autocommit, UNDECODABLE_JOBS) if p == poison]
    assert answered, "the job queued after a message a worker cannot handle never ran"
    assert len(buried) == 1 and reason in buried[0], buried
    assert not kept, "the message set aside is still in Redis"


async def test_a_failed_job_dramatiq_cannot_retry_is_dead_lettered_not_acknowledged(
    client: Any, settings: Any, autocommit: Any
) -> None:
    """Probe: a failing job whose retry dramatiq's Retries cannot work out (options of the right
    kind that still make it raise: ``retries`` below 0 and a ``min_backoff`` past a float's
    range) — the error logged and passed over, the job neither retried nor failed, and the
    worker acknowledged it: lost, in no dead letter. ``app.jobs.JobRetries`` fails it: it is
    dead-lettered (``job:ping``, with the job's own error), and the next job runs."""
    import asyncio
    import json
    import secrets
    import uuid

    import dramatiq

    from app.jobs import broker
    from workers import main  # noqa: F401 - every actor and middleware, as a worker loads them
    from workers.ops import ping

    token = secrets.token_hex(4)
    poison_id = str(uuid.uuid4())
    options = {"redis_message_id": poison_id, "retries": -1, "min_backoff": 10**400}
    poison = json.dumps(
        {
            "queue_name": "default",
            "actor_name": "ping",
            "args": [],  # ping takes a token: the run raises TypeError
            "kwargs": {"probe": token},
            "options": options,
            "message_id": poison_id,
            "message_timestamp": int(time.time() * 1000),
        }
    ).encode()
    broker.do_enqueue("default", poison_id, poison)
    ping_id = ping.send(token).options["redis_message_id"]
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    pong = f"{settings.redis_namespace}:pong:{token}"
    ns = broker.namespace
    try:
        deadline = time.monotonic() + 20
        buried: list[str] = []
        while not buried or broker.client.get(pong) is None:
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
            rows = await _buried(autocommit, "job:ping")
            buried = [r for p, r in rows if poison_id.encode() in p]
        answered = broker.client.get(pong) is not None
        waiting = broker.client.hexists(f"{ns}:default.msgs", poison_id)
    finally:
        worker.stop(timeout=10_000)
        for key in (f"{ns}:default.msgs", f"{ns}:default.DQ.msgs", f"{ns}:default.XQ.msgs"):
            broker.client.hdel(key, poison_id, ping_id)
        for key in broker.client.scan_iter(f"{ns}:__acks__.*"):
            if broker.client.type(key) == b"set":
                broker.client.srem(key, poison_id, ping_id)
        broker.client.lrem(f"{ns}:default", 0, poison_id)
        broker.client.lrem(f"{ns}:default", 0, ping_id)
        broker.client.zrem(f"{ns}:default.XQ", poison_id)
    assert answered, "the job queued after it never ran"
    assert len(buried) == 1 and buried[0].startswith("TypeError"), buried
    assert not waiting, "the failed job is still queued"


def test_either_broker_retries_with_job_retries_which_fails_what_it_cannot_retry() -> None:
    """The backstop on RabbitMQ too, whose messages ``JobBroker`` never sees: both brokers carry
    dramatiq's Retries once, as ``JobRetries``; it fails a message ``spoilt`` says a worker
    cannot run before its job runs (``throws`` on a message made the worker's thread end, the
    message acknowledged: probe), and one whose retry raises; it retries the others."""
    import dramatiq
    from dramatiq.broker import MessageProxy
    from dramatiq.middleware import Retries

    from app.config import load_settings
    from app.jobs import JobRetries, broker, build_broker
    from workers import main  # noqa: F401 - the ping actor

    rabbit = build_broker(
        load_settings({"TRACECODE_MASTER_KEY": "5a" * 32, "TRACECODE_BROKER_URL": "amqp://h/v"})
    )  # connects to nothing
    for built in (broker, rabbit):
        kinds = [type(m) for m in built.middleware if isinstance(m, Retries)]
        assert kinds == [JobRetries], kinds
    retries = JobRetries()

    def proxy(**options: Any) -> MessageProxy:
        message: dramatiq.Message[Any] = dramatiq.Message(
            queue_name="default", actor_name="ping", args=(), kwargs={}, options=options
        )
        return MessageProxy(dramatiq.Message.decode(message.encode()))

    spoilt = proxy(throws="x")
    retries.before_process_message(rabbit, spoilt)
    assert spoilt.failed and "it carries option throws" in str(spoilt._exception)
    good = proxy(retries=1)
    retries.before_process_message(rabbit, good)
    assert not good.failed
    unretriable = proxy(retries="x")  # past the check (a direct call): dramatiq's retry raises
    retries.after_process_message(broker, unretriable, exception=TypeError("the job's error"))
    assert unretriable.failed


async def test_a_control_character_that_reaches_the_verifier_is_not_recorded(
    app: Any, settings: Any, lenient_verifier: Any, autocommit: Any
) -> None:
    """Defence in depth: text that reaches the verifier another way than the JSON API (a page's
    path, say) is recorded without its control characters, so it cannot poison the queue."""
    import secrets

    import psycopg
    import redis as redis_sync

    from app.verify import records
    from app.verify.schemas import VerifyIn

    token = secrets.token_hex(4)
    out = await lenient_verifier.verify(VerifyIn(serial=f"X{token}\x00Y"), "192.0.2.1", None)
    assert (out.result, out.reason) == ("not_genuine", "malformed")
    before = len(await _buried(autocommit, "verifications"))
    with psycopg.connect(settings.database_url, autocommit=True) as pg:
        while records.flush(
            redis_sync.Redis.from_url(settings.redis_url), pg, settings.redis_namespace
        ):
            pass
    stored = await (
        await autocommit.execute(
            "SELECT serial FROM verifications WHERE serial LIKE %s", (f"X{token}%",)
        )
    ).fetchall()
    assert [r["serial"] for r in stored] == [f"X{token}Y"]
    assert len(await _buried(autocommit, "verifications")) == before


def test_a_failing_roll_up_backs_off_and_logs_its_traceback_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The defect: during a PostgreSQL outage each roll-up logged a traceback every second
    (117 in 16 s from one worker)."""
    from workers import periodic

    calls: list[float] = []

    async def broken(conn: Any) -> None:
        calls.append(time.monotonic())
        raise psycopg.OperationalError("the database is down")

    async def no_conn() -> Any:
        return None

    monkeypatch.setattr(periodic, "connect", no_conn)
    monkeypatch.setattr(periodic, "QUIET_SECONDS", 0.3)
    roller = periodic.PeriodicRollup("probe", broken, interval=0.02)
    with caplog.at_level(logging.WARNING, logger="tracecode.probe"):
        roller.after_worker_boot(None, None)  # type: ignore[arg-type]
        time.sleep(1.5)
        roller.before_worker_shutdown(None, None)  # type: ignore[arg-type]
    tracebacks = [r for r in caplog.records if r.exc_info]
    lines = [r.getMessage() for r in caplog.records if not r.exc_info]
    assert len(tracebacks) == 1
    assert lines and all("still failing" in line for line in lines)
    assert len(lines) <= 1.5 / 0.3 + 1
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert 4 <= len(calls) <= 10 and gaps[-1] > 4 * gaps[0], gaps  # each wait longer


def test_every_job_that_can_fail_for_a_passing_reason_rides_out_a_restart() -> None:
    """Probe Z: a capture or an export job tried three times a second apart gave up within
    15 s of a PostgreSQL restart, and its dead letter was lost with the database down: every
    retried actor now backs off for minutes when the database or Redis is unreachable — and
    only then (review R6: a 6-hour export failing for a bug would have run nine times)."""
    import psycopg
    import redis.exceptions

    from app.jobs import broker
    from workers import main  # noqa: F401 - every actor, as a worker loads them

    down = [psycopg.OperationalError("gone"), redis.exceptions.ConnectionError("gone")]
    other = [ValueError("a bug"), psycopg.errors.QueryCanceled("too long"), OSError("disk")]
    covered = {}
    for name in broker.get_declared_actors():
        options = broker.get_actor(name).options
        retry_when = options.get("retry_when")
        if retry_when is None:
            retries = options.get("max_retries", 20)  # dramatiq's default
            if retries == 0:
                continue  # a job that is never retried (a ping, the sweeper's own)
            transient = other_tries = retries
        else:
            transient = next(n for n in range(100) if not all(retry_when(n, e) for e in down))
            other_tries = next(n for n in range(100) if not any(retry_when(n, e) for e in other))
            assert other_tries <= 3, (name, other_tries)
        first, cap = options.get("min_backoff", 15_000), options.get("max_backoff", 604_800_000)
        covered[name] = sum(min(first * 2**i, cap) for i in range(transient)) / 1000
    assert {"capture_job", "run_export_job", "send_sms"} <= covered.keys()
    short = {name: seconds for name, seconds in covered.items() if seconds < 120}
    assert short == {}, f"retried for less than two minutes in all: {short}"


def _good_record(token: str, n: int) -> bytes:
    import json

    record = json.loads(_nul_record(token))
    record.update(serial=f"LOCK{n}", client_id=f"{token}-{n}")
    return json.dumps(record).encode()


async def test_a_flusher_whose_lock_was_taken_over_trims_nothing(
    client: Any, settings: Any, autocommit: Any, monkeypatch: Any
) -> None:
    """A probe: a pass that outlived its lock trimmed by its own count after a second flusher
    had taken the lock, read the same elements and trimmed them, so newer records nobody had
    stored were cut from the queue, and it then deleted the other's lock. Here the lock is taken
    over during the pass's write (as after its expiry)."""
    import secrets

    import psycopg
    import redis as redis_sync

    from app.verify import records

    token = secrets.token_hex(4)
    sync_redis = redis_sync.Redis.from_url(settings.redis_url)
    ns = settings.redis_namespace
    queue, lock = f"{ns}:verif:queue", f"{ns}:verif:flush-lock"
    real_store = records._store

    def taken_over(conn: Any, raw: Any) -> None:
        sync_redis.set(lock, "another flusher", px=60_000)  # the lock expired and was taken
        real_store(conn, raw)

    with psycopg.connect(settings.database_url, autocommit=True) as pg:
        while records.flush(sync_redis, pg, ns):  # earlier tests' records
            pass
        sync_redis.lpush(queue, _good_record(token, 1))
        sync_redis.lpush(queue, _good_record(token, 2))
        monkeypatch.setattr(records, "_store", taken_over)
        with pytest.raises(records.LockLost):
            records.flush(sync_redis, pg, ns)
        assert sync_redis.llen(queue) == 2  # not trimmed: the lock is another's
        assert sync_redis.get(lock) == b"another flusher"  # and not released by this pass
        monkeypatch.setattr(records, "_store", real_store)
        sync_redis.delete(lock)
        sync_redis.script_flush()  # a Redis restarted: its scripts are loaded again
        assert records.flush(sync_redis, pg, ns) == 2  # read again: no-ops by their key
        assert sync_redis.llen(queue) == 0 and sync_redis.get(lock) is None
    stored = await (
        await autocommit.execute(
            "SELECT count(*) AS n FROM verifications WHERE client_id LIKE %s", (f"{token}-%",)
        )
    ).fetchone()
    assert stored["n"] == 2


async def test_a_long_pass_keeps_its_lock_and_trims(
    client: Any, settings: Any, autocommit: Any, monkeypatch: Any
) -> None:
    """A pass that writes for longer than the lock's time (here 0.6 s: a batch split down to
    its bad records) renews the lock as it goes, so no other flusher comes in and the pass
    trims what it stored."""
    import secrets
    import time

    import psycopg
    import redis as redis_sync

    from app.verify import records

    token = secrets.token_hex(4)
    sync_redis = redis_sync.Redis.from_url(settings.redis_url)
    ns = settings.redis_namespace
    queue, lock = f"{ns}:verif:queue", f"{ns}:verif:flush-lock"
    real_store = records._store
    holders: list[bytes | None] = []

    def slow(conn: Any, raw: Any) -> None:
        time.sleep(0.25)
        holders.append(sync_redis.get(lock))
        real_store(conn, raw)

    with psycopg.connect(settings.database_url, autocommit=True) as pg:
        while records.flush(sync_redis, pg, ns):  # earlier tests' records
            pass
        monkeypatch.setattr(records, "FLUSH_LOCK_MS", 600)
        monkeypatch.setattr(records, "RENEW_S", 0.2)
        monkeypatch.setattr(records, "_store", slow)
        element = b"\n".join([_good_record(token, 1), _nul_record(token), _good_record(token, 2)])
        sync_redis.lpush(queue, element)
        assert records.flush(sync_redis, pg, ns) == 3  # ~5 writes of 0.25 s: past 0.6 s
        assert len(holders) >= 4 and None not in holders and len(set(holders)) == 1
        assert sync_redis.llen(queue) == 0 and sync_redis.get(lock) is None
    stored = await (
        await autocommit.execute(
            "SELECT count(*) AS n FROM verifications WHERE client_id LIKE %s", (f"{token}-%",)
        )
    ).fetchone()
    assert stored["n"] == 2


@pytest.mark.parametrize("actor", ["run_export_job", "capture_job"])
@pytest.mark.parametrize("argument", [123, ["x"], {"a": 1}])
def test_a_job_whose_id_is_no_text_is_dead_lettered_at_once(
    app: Any, actor: str, argument: Any
) -> None:
    """A probe: ``uuid.UUID(123)`` raises AttributeError, which the actors retried three times
    before the dead letter."""
    from app.jobs import broker
    from workers import main  # noqa: F401 - every actor, as a worker loads them

    job = broker.get_actor(actor)
    with pytest.raises(BaseException) as raised:
        job.fn(argument)
    assert isinstance(raised.value, job.options["throws"]), repr(raised.value)


def test_the_job_of_an_export_or_capture_that_is_gone_is_dropped_with_a_warning(
    client: Any, caplog: Any
) -> None:
    """A probe: acknowledged without a word. (``client``: the app started, so the database is
    migrated when this test runs alone.)"""
    import logging
    import uuid

    from workers.codes import run_export_job
    from workers.epcis import capture_job

    for job in (run_export_job, capture_job):
        missing = str(uuid.uuid4())
        with caplog.at_level(logging.WARNING):
            job.fn(missing)
        assert any(
            missing in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records
        ), job


async def test_every_kind_of_poison_verification_record_is_set_aside_alone(
    settings: Any, autocommit: Any, demo: Any
) -> None:
    """A probe (it held): records the flusher cannot store in every way a record can fail — an
    alert of a brand that is no organisation, numbers past integer and bigint, JSON that is no
    object, a record key that is no UUID, a time of -infinity — queued inside rounds of good
    ones (one queued element, records one per line), are each either stored or dead-lettered,
    and the good records around them are all stored."""
    import json
    import secrets

    import redis as redis_sync

    from app.verify import records

    token = secrets.token_hex(4)
    sync_redis = redis_sync.Redis.from_url(settings.redis_url)
    ns = settings.redis_namespace
    queue = f"{ns}:verif:queue"

    def rec(n: str, **extra: Any) -> bytes:
        base = {
            "at": "2026-11-30T10:00:00Z",
            "record_key": secrets.token_hex(16),
            "serial": f"PQ{n}",
            "client_id": f"{token}-{n}",
            "pin_given": False,
            "result": "not_genuine",
            "reason": "malformed",
            "queries": 0,
        }
        base.update(extra)
        return json.dumps(base).encode()

    bad = [
        rec("b1", brand_id=-5, reason="unknown"),  # an alert of a brand that is no org
        rec("b2", queries=3_000_000_000),  # past integer
        rec("b3", member_id=2**63 + 5),  # past bigint
        b"null",
        b"[1]",
        rec("b5", record_key="not-a-uuid"),
        rec("b6", brand_id=demo["BRAND-LUMI"], at="-infinity"),
    ]
    good = [rec(f"g{i}") for i in range(4)]
    with psycopg.connect(settings.database_url, autocommit=True) as pg:
        while records.flush(sync_redis, pg, ns):
            pass
        sync_redis.lpush(queue, b"\n".join([good[0], *bad[:4], good[1]]))
        sync_redis.lpush(queue, b"\n".join([good[2], *bad[4:], good[3]]))
        while records.flush(sync_redis, pg, ns):
            pass
    stored = await (
        await autocommit.execute(
            "SELECT client_id FROM verifications WHERE client_id LIKE %s", (f"{token}-%",)
        )
    ).fetchall()
    got = sorted(r["client_id"] for r in stored)
    assert all(f"{token}-g{i}" in got for i in range(4)), got
    buried = await (
        await autocommit.execute(
            "SELECT payload FROM dead_letters WHERE queue = 'verifications' AND payload = ANY(%s)",
            (bad,),
        )
    ).fetchall()
    assert len(buried) + len([g for g in got if "-b" in g]) == len(bad), (got, len(buried))
