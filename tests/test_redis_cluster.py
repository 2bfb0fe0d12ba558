"""Every Redis use on a Redis Cluster (issue 20 item 1): a real local cluster of three masters and
three replicas (``tests/redis_cluster_support.py``: the project's own redis-server, cluster mode,
free ports of 127.0.0.1) and an app of its own on it (``create_app`` with
``TRACECODE_REDIS_URL=redis+cluster://…``, its own lifespan; the session's database).

Shown on the cluster: verification answers (first query, repeat counts, region jump, wrong-PIN
lockout, rate limits counted one by one) by the existing tests of ``tests/test_verify.py``,
rerun against the cluster app; the verification and claim races (one query counted once each;
exactly one points claim and one rebate claim of a code win); log-in limits; the write-behind
queues reaching PostgreSQL through the worker's own flusher on the worker's own client; the
rebuild command's keys; every key on the master that serves its slot; and a master failover in
the middle of verifications — answers go on, and every verification answered 200 is stored
exactly once, as it was answered; a master stalled longer than the command timeout, and every
script call sent twice: each query still counted once. The settings rule (jobs need RabbitMQ with a cluster) and
the key layout are checked without servers.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import msgspec
import psycopg
import pytest
import redis.exceptions
from redis.crc import key_slot

from app.config import SettingsError, load_settings
from app.redisconn import (
    SHARDS,
    cluster_nodes,
    code_tag,
    connect,
    connect_sync,
    is_cluster_url,
    shard_tags,
    text_tag,
)
from app.verify import records
from tests import test_verify
from tests.conftest import ROOT
from tests.helpers import activate, issue_units, served
from tests.points_support import claim_body, member_client, new_member, set_rule
from tests.rebates_support import rebate_body, set_rebate, store_goods
from tests.redis_cluster_support import LocalCluster
from tests.test_rebate_claims import new_clerk

AMQP = "amqp://guest:guest@127.0.0.1:5672/"


# -- no servers: the URL, the settings rule, the key layout ------------------------------------


def test_cluster_urls_and_the_broker_rule(monkeypatch: Any, capsys: Any) -> None:
    """A cluster URL names seed nodes (and credentials); a bad one is a settings error that
    hides the password; with a cluster, jobs need TRACECODE_BROKER_URL — at start-up."""
    from app.cli import main
    from app.jobs import build_broker

    url = "redis+cluster://ops:s%40cret@10.0.0.1:7000,10.0.0.2:7001"
    assert is_cluster_url(url) and is_cluster_url("rediss+cluster://h:1")
    assert not is_cluster_url("redis://127.0.0.1:6379/0") and not is_cluster_url(None)
    nodes, options = cluster_nodes(url)
    assert nodes == [("10.0.0.1", 7000), ("10.0.0.2", 7001)]
    assert options == {"ssl": False, "username": "ops", "password": "s@cret"}
    assert cluster_nodes("rediss+cluster://[::1]:7000")[0] == [("::1", 7000)]
    for bad in ("redis+cluster://ops:pw@h:x", "redis+cluster://h:7000/3", "redis+cluster://:pw@"):
        with pytest.raises(SettingsError) as error:
            cluster_nodes(bad)
        assert "pw" not in str(error.value) and "TRACECODE_REDIS_URL" in str(error.value)

    env = {"TRACECODE_REDIS_URL": url}
    with pytest.raises(SettingsError, match="TRACECODE_BROKER_URL"):
        load_settings(env)
    settings = load_settings({**env, "TRACECODE_BROKER_URL": AMQP})
    assert settings.redis_url == url
    with pytest.raises(SettingsError, match="TRACECODE_BROKER_URL"):
        build_broker(msgspec.structs.replace(settings, broker_url=None))

    monkeypatch.setenv("TRACECODE_REDIS_URL", url)
    monkeypatch.delenv("TRACECODE_BROKER_URL", raising=False)
    assert main(["redis", "rebuild"]) == 2  # any command: the settings are read first
    err = capsys.readouterr().err
    assert "configuration error" in err and "TRACECODE_BROKER_URL" in err and "cret" not in err


def test_tags_spread_over_the_slots_and_each_operation_is_one_slot(settings: Any) -> None:
    """The shard tags fall one in each 1/SHARDS of the slot range (so a cluster whose slots are
    split evenly holds the same number on each master); the keys one script uses share a slot."""
    from app.auth.limits import LoginLimiter
    from app.ops import rebuild
    from app.verify import records

    slots = [key_slot(tag.encode()) for tag in shard_tags()]
    width = 16384 / SHARDS
    assert [int(slot // width) for slot in slots] == list(range(SHARDS))
    thirds = [sum(1 for s in slots if low <= s < high) for low, high in _even_split(3)]
    assert thirds == [SHARDS // 3] * 3

    ns, code = settings.redis_namespace, (7 << 32) | 12345
    keys = [builder(ns, code, True) for builder in (rebuild.count_key, rebuild.fails_key)]
    keys.append(rebuild.lock_key(ns, code, True))
    assert len({key_slot(k.encode()) for k in keys}) == 1
    assert key_slot(keys[0].encode()) == key_slot(code_tag(code).encode())
    assert rebuild.count_key(ns, code) == f"{ns}:q:{code}"  # one server: untagged, as before
    who = "2001:db8:1:2::/64"  # a client's PIN keys (``_RATE``'s), in its rate counter's slot
    client_keys = [rebuild.client_lock_key(ns, who, True), rebuild.client_fails_key(ns, who, True)]
    assert {key_slot(k.encode()) for k in client_keys} == {key_slot(text_tag(who).encode())}
    assert rebuild.client_lock_key(ns, who) == f"{ns}:clientlock:{who}"

    cluster_client = connect_sync("redis+cluster://127.0.0.1:1")  # connects on first use only
    pairs = records.queues(cluster_client, ns)
    assert len(pairs) == SHARDS
    assert all(key_slot(q.encode()) == key_slot(lock.encode()) for q, lock in pairs)
    limiter = LoginLimiter(connect("redis+cluster://127.0.0.1:1"), settings)
    _, *account = limiter._keys("admin", "10.1.2.3")
    assert len({key_slot(k.encode()) for k in account}) == 1
    # a staff account's guess counters: its own, its organisation's and its branch's (the
    # organisation right below the brand: ``t<id>``; none at the brand organisation), in the
    # brand's slot (one script), a user's and an API key's of one brand alike, whichever of its
    # organisations; a user moved to another organisation keeps its own key (a review: tagged by
    # the organisation, it got a fresh one on a cluster only); a brandless account's under a tag
    # of its own; untagged on one server
    from app.auth.principal import Principal
    from app.members.limits import MemberLimits

    member = MemberLimits(connect("redis+cluster://127.0.0.1:1"), settings)
    key = Principal(9, "/1/9/", frozenset(), api_key_id=5, key_maker=7)
    user = Principal(9, "/1/9/", frozenset(), user_id=7)
    moved = Principal(12, "/1/10/12/", frozenset(), user_id=7)
    slots = set()
    for account, branch in ((key, 9), (user, 9), (moved, 10)):
        guess_keys = member._guess_keys(account, "code-guess")
        assert len(guess_keys) == 3 and guess_keys[2].endswith(f":t{branch}{{b1}}"), guess_keys
        assert guess_keys[1].endswith(f":o{account.org_id}{{b1}}"), guess_keys
        slots |= {key_slot(k.encode()) for k in guess_keys}
    assert slots == {key_slot(b"b1")}
    assert member._guess_keys(user, "code-guess")[0] == f"{ns}:member:code-guess:u7{{b1}}"
    assert member._guess_keys(moved, "code-guess")[0] == member._guess_keys(user, "code-guess")[0]
    head = member._guess_keys(Principal(1, "/1/", frozenset(), user_id=3), "code-guess")
    assert head == [f"{ns}:member:code-guess:{who}{{b1}}" for who in ("u3", "o1")], head
    brandless = member._guess_keys(Principal(0, "/", frozenset(), api_key_id=3), "code-guess")
    assert len(brandless) == 2 and brandless[1].endswith(":o0{sys}"), brandless
    assert {key_slot(k.encode()) for k in brandless} == {key_slot(b"sys")}
    single = MemberLimits(connect("redis://127.0.0.1:1"), settings)
    assert single._guess_keys(moved, "phone-miss") == [
        f"{ns}:member:phone-miss:u7",
        f"{ns}:member:phone-miss:o12",
        f"{ns}:member:phone-miss:t10",
    ]
    assert single._guess_keys(key, "phone-miss")[0] == f"{ns}:member:phone-miss:k5"


def _even_split(masters: int) -> list[tuple[int, int]]:
    """The slot ranges ``redis-cli --cluster create`` gives ``masters`` masters."""
    per = 16384 / masters
    return [(round(i * per), round((i + 1) * per)) for i in range(masters)]


# -- the cluster and an app on it -----------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    running = LocalCluster()
    try:
        running.start()
        yield running
    finally:
        running.stop()


class OnCluster(msgspec.Struct):
    app: Any
    client: httpx.AsyncClient


@pytest.fixture(scope="module")
async def on_cluster(settings: Any, cluster: LocalCluster) -> AsyncIterator[OnCluster]:
    """An app of its own on the cluster (lifespan run by this fixture) and a client calling it."""
    async with app_on(cluster, settings) as running:
        yield running


@asynccontextmanager
async def app_on(cluster: LocalCluster, settings: Any, **changes: Any) -> AsyncIterator[OnCluster]:
    """An app on ``cluster`` with ``settings`` and ``changes``, its lifespan running, and a
    client calling it."""
    from app.main import create_app

    app: Any = create_app(msgspec.structs.replace(settings, redis_url=cluster.url, **changes))
    async with served(app) as client:
        yield OnCluster(app, client)


@asynccontextmanager
async def verifier_with(app: Any) -> AsyncIterator[Any]:
    """``tests/test_verify.py``'s ``verifier_with`` fixture, for the cluster app, one test long."""
    from app.verify.service import Verifier

    original, made = app.state.verifier, []

    def swap(**changes: Any) -> Verifier:
        local = msgspec.structs.replace(app.state.settings, **changes)
        app.state.verifier = Verifier(app.state.pool, app.state.redis, app.state.scheme, local)
        made.append(app.state.verifier)
        return app.state.verifier  # type: ignore[no-any-return]

    try:
        yield swap
    finally:
        app.state.verifier = original
        for verifier in made:
            await verifier.close()


def _strays(cluster: LocalCluster) -> list[tuple[int, bytes]]:
    """Keys held by a master that does not serve their slot (a script that reached across
    slots on Redis 6.2 would leave them there; Redis 7 refuses it)."""
    strays = []
    for node in cluster.masters():
        served = cluster.slots_of(node)
        strays += [(node.port, k) for k in node.client().scan_iter() if key_slot(k) not in served]
    return strays


# -- verification and claims on the cluster -------------------------------------------------


async def test_verification_answers_on_the_cluster(
    on_cluster: OnCluster, cluster: LocalCluster, login: Any, demo: Any, conn: Any
) -> None:
    """``tests/test_verify.py``'s answers against the cluster app: first query and repeat counts
    up to over-threshold, region jump and never shipped, the wrong-PIN lockout and its expiry,
    a client's lockout over many codes, rate limits counted one by one within a round and by an
    IPv6 client's /64, 100 concurrent queries of one code counted once each. Nothing lands
    outside its slot; /health sees the cluster."""
    app, client = on_cluster.app, on_cluster.client
    assert app.state.verifier.cluster
    for answers in (
        test_verify.test_genuine_first_then_repeat_then_over_threshold,
        test_verify.test_region_jump_and_never_shipped,
        test_verify.test_wrong_pins_lock_the_code_until_the_lockout_expires,
        test_verify.test_concurrent_verifications_count_every_query_once,
        test_verify.test_one_client_guessing_pins_across_many_codes_is_locked_out,
    ):
        async with verifier_with(app) as swap:
            await answers(client, login, demo, app, conn, swap)
    for limits in (
        test_verify.test_rate_limit_per_client_ip,
        test_verify.test_rate_limit_counts_each_of_a_round,
        test_verify.test_verify_rate_limit_is_not_bypassed_by_rotating_ipv6_addresses_of_one_slash64,
    ):
        async with verifier_with(app) as swap:
            await limits(client, app, swap)
    health = await client.get("/health")
    assert health.json()["redis"]["status"] == "ok", health.text
    assert not _strays(cluster)


async def test_a_script_call_sent_twice_changes_nothing_the_second_time(
    on_cluster: OnCluster, login: Any, demo: Any, conn: Any, monkeypatch: Any
) -> None:
    """Every shard call of a round sent twice, the first reply thrown away — as when a
    connection is lost after the write and the call is tried again (``app.verify.shardcalls``):
    the second run returns the first's replies from the call's own key and changes nothing, so
    ``tests/test_verify.py``'s counts (repeat queries, concurrent queries of one code, wrong
    PINs, the n-th verification of an address in a minute) come out as with one run each."""
    from app.verify.shardcalls import ShardCalls

    run = ShardCalls.run

    async def twice(self: ShardCalls, script: Any, calls: Any, shared: Any = ()) -> Any:
        await run(self, script, calls, shared)  # its replies lost
        return await run(self, script, calls, shared)

    monkeypatch.setattr(ShardCalls, "run", twice)
    app, client = on_cluster.app, on_cluster.client
    for answers in (
        test_verify.test_genuine_first_then_repeat_then_over_threshold,
        test_verify.test_wrong_pins_lock_the_code_until_the_lockout_expires,
        test_verify.test_concurrent_verifications_count_every_query_once,
        test_verify.test_one_client_guessing_pins_across_many_codes_is_locked_out,
    ):
        async with verifier_with(app) as swap:
            await answers(client, login, demo, app, conn, swap)
    async with verifier_with(app) as swap:
        await test_verify.test_rate_limit_counts_each_of_a_round(client, app, swap)


async def test_round_calls_survive_a_script_flush_and_closed_connections(
    on_cluster: OnCluster, cluster: LocalCluster, client: Any, login: Any, demo: Any, settings: Any
) -> None:
    """A round's shard calls are packed per master on connections of the masters' own pools
    (``app.verify.shardcalls``): after every master lost the scripts (SCRIPT FLUSH) they are
    loaded again, and after every master closed the app's connections (CLIENT KILL) the calls
    go once more through the cluster client; either way every verification is answered through
    Redis (queued, none stored directly), each query counted once."""
    app, c = on_cluster.app, on_cluster.client
    serials = await _codes(app, client, login, demo, 30)  # their codes spread over the shards
    pin = app.state.scheme.pin

    async def verify_all(queries: int) -> str:
        token = secrets.token_hex(4)
        bodies = [
            {"serial": s, "pin": pin(s), "client_id": f"{token}-{i}"} for i, s in enumerate(serials)
        ]
        answers = await asyncio.gather(*(c.post("/v1/verify", json=body) for body in bodies))
        assert [a.status_code for a in answers] == [200] * len(serials)
        assert [a.json()["queries"] for a in answers] == [queries] * len(serials)
        return token

    await verify_all(1)
    for master in cluster.masters():
        await asyncio.to_thread(master.client().script_flush)
    flushed = await verify_all(2)
    for master in cluster.masters():
        await asyncio.to_thread(master.client().client_kill_filter, _type="normal")
    killed = await verify_all(3)
    await verify_all(4)
    assert not _stored(settings, f"{flushed}-%") and not _stored(settings, f"{killed}-%")
    assert not _strays(cluster)


async def test_a_cluster_client_failure_is_answered_from_postgres(
    on_cluster: OnCluster, client: Any, login: Any, demo: Any, settings: Any, monkeypatch: Any
) -> None:
    """When the cluster client itself fails with an error that is not Redis's (CI saw an
    AttributeError from inside redis-py during a failover), the round's verifications are
    answered from PostgreSQL and stored there directly — 200, never a 500."""
    from redis.commands.core import AsyncScript

    from app.verify.shardcalls import ShardCalls

    app, c = on_cluster.app, on_cluster.client
    serials = await _codes(app, client, login, demo, 8)
    pin = app.state.scheme.pin

    async def nodes_down(batches: list[Any]) -> list[Any]:  # every master's write "failed"
        return [redis.exceptions.ConnectionError("down")] * len(batches)

    async def client_broken(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise AttributeError("'NoneType' object has no attribute 'writelines'")

    monkeypatch.setattr(ShardCalls, "_on_nodes", staticmethod(nodes_down))
    monkeypatch.setattr(AsyncScript, "__call__", client_broken)
    token = secrets.token_hex(4)
    answers = await asyncio.gather(
        *(
            c.post("/v1/verify", json={"serial": s, "pin": pin(s), "client_id": f"{token}-{i}"})
            for i, s in enumerate(serials)
        )
    )
    assert [a.status_code for a in answers] == [200] * len(serials), answers[0].text
    assert {a.json()["result"] for a in answers} <= {"genuine", "suspicious"}
    assert len(_stored(settings, f"{token}-%")) == len(serials)  # inserted directly


async def test_claim_races_on_the_cluster(
    on_cluster: OnCluster, client: Any, login: Any, demo: Any, conn: Any
) -> None:
    """The claim races of ``tests/test_points.py`` and ``tests/test_rebate_claims.py`` through
    the cluster app: 100 points claims of one code from 20 members, and 100 rebate claims of
    one code from two clerks — exactly one of each is credited."""
    app = on_cluster.app
    goods = await store_goods(client, login, app, demo)  # case 0 at the store, 1 at the agent
    admin = await login("admin")
    await set_rule(client, admin, goods["product_id"], 10)
    await set_rebate(client, admin, goods["product_id"], 2)
    scheme, points_serial, rebate_serial = app.state.scheme, goods["units"][12], goods["units"][3]

    members = [await new_member(app, demo["BRAND-LUMI"]) for _ in range(20)]
    async with member_client(app) as mc:
        answers = await asyncio.gather(
            *[
                mc.post(
                    "/members/me/claims",
                    headers=members[i % 20][1],
                    json=claim_body(scheme, points_serial, f"cl-{i}"),
                )
                for i in range(100)
            ]
        )
    statuses = [a.status_code for a in answers]
    assert statuses.count(201) == 1 and statuses.count(409) == 99, statuses

    _, second = await new_clerk(client, login, demo["STORE-HZ-01"])
    clerks = [await login("store_clerk"), second]
    async with member_client(app) as mc:
        answers = await asyncio.gather(
            *[
                mc.post(
                    "/rebates/claims",
                    headers=clerks[i % 2],
                    json=rebate_body(scheme, rebate_serial),
                )
                for i in range(100)
            ]
        )
    statuses = [a.status_code for a in answers]
    assert statuses.count(201) == 1 and statuses.count(409) == 99, statuses
    codes = [_code(app, points_serial), _code(app, rebate_serial)]
    row = await (
        await conn.execute(
            """SELECT (SELECT count(*) FROM point_claims WHERE code_id = %s) AS points,
                      (SELECT count(*) FROM rebate_claims WHERE code_id = %s) AS rebates""",
            codes,
        )
    ).fetchone()
    assert (row["points"], row["rebates"]) == (1, 1)


async def test_login_limits_on_the_cluster(on_cluster: OnCluster, settings: Any, demo: Any) -> None:
    """A log-in (its MULTI on the account's slot), wrong passwords up to the lockout, then even
    the right password waits: the account's keys share one slot on the cluster."""
    from app.demo import DEMO_PASSWORD

    client = on_cluster.client

    async def log_in(password: str) -> httpx.Response:
        return await client.post(
            "/auth/login", json={"username": "inspector", "password": password}
        )

    assert (await log_in(DEMO_PASSWORD)).status_code == 200
    for _ in range(settings.login_max_failures):
        assert (await log_in("not-the-password")).status_code == 401
    locked = await log_in(DEMO_PASSWORD)
    assert locked.status_code == 429 and locked.json()["error"]["code"] == "login_locked"


# -- the write-behind, the rebuild and a failover -------------------------------------------


def _code(app: Any, serial: str) -> int:
    batch_no, index, _ = app.state.scheme.verify(serial)
    return int(batch_no << 32 | index)


def _worker_flush(cluster: LocalCluster) -> None:
    """The worker's own flusher (``workers/verify.py``) on the worker's own Redis client
    (``app.jobs.redis_client``, built from the environment: the cluster, jobs on RabbitMQ), in
    a process of its own, until the queues are empty. RabbitMQ is not contacted: nothing is
    sent."""
    code = (
        "from app.redisconn import SyncCluster\n"
        "from app.jobs import redis_client\n"
        "from workers.verify import VerificationFlusher\n"
        "assert isinstance(redis_client, SyncCluster)\n"
        "flusher = VerificationFlusher()\n"
        "flusher._stop.set()  # flush until a pass moves nothing, then return\n"
        "flusher._run(redis_client)\n"
    )
    env = {**os.environ, "TRACECODE_REDIS_URL": cluster.url, "TRACECODE_BROKER_URL": AMQP}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


def _stored(settings: Any, pattern: str) -> dict[str, tuple[str, str, int]]:
    """client id -> (result, reason, queries) of the stored verifications matching ``pattern``."""
    with psycopg.connect(settings.database_url, autocommit=True) as pg:
        rows = pg.execute(
            "SELECT client_id, result, reason, queries FROM verifications WHERE client_id LIKE %s",
            (pattern,),
        ).fetchall()
    stored: dict[str, tuple[str, str, int]] = {}
    for client_id, result, reason, queries in rows:
        assert client_id not in stored, f"{client_id} stored twice"
        stored[client_id] = (result, reason, queries)
    return stored


async def test_one_flush_stores_every_shards_records_in_one_statement(
    cluster: LocalCluster, settings: Any, client: Any
) -> None:
    """Records in every shard's queue (two rounds of two records each) reach PostgreSQL in ONE
    flush, one transaction (every row the same xmin) — a statement per shard cost the services'
    core more than the cluster itself; a queue whose lock another flusher holds is left alone,
    and flushed once the lock is gone."""
    ns, token = settings.redis_namespace, secrets.token_hex(4)
    queued = connect_sync(cluster.url)
    pairs = records.queues(queued, ns)
    with psycopg.connect(settings.database_url, autocommit=True) as pg:
        while records.flush(queued, pg, ns):  # earlier tests' records
            pass

        def record(shard: int, n: int) -> bytes:
            return msgspec.json.encode(
                {
                    "at": "2026-12-02T13:00:00Z",
                    "record_key": secrets.token_hex(16),
                    "serial": f"S{shard}-{n}",
                    "client_id": f"{token}-{shard}-{n}",
                    "pin_given": False,
                    "result": "not_genuine",
                    "reason": "malformed",
                    "queries": 0,
                }
            )

        for shard, (queue, _) in enumerate(pairs):
            for first in (0, 2):
                queued.lpush(queue, record(shard, first) + b"\n" + record(shard, first + 1))
        busy_queue, busy_lock = pairs[5]
        queued.set(busy_lock, "another flusher", px=60_000)

        assert records.flush(queued, pg, ns) == 4 * (SHARDS - 1)
        rows = pg.execute(
            "SELECT client_id, xmin::text FROM verifications WHERE client_id LIKE %s",
            (f"{token}-%",),
        ).fetchall()
        assert sorted(r[0] for r in rows) == sorted(
            f"{token}-{shard}-{n}" for shard in range(SHARDS) if shard != 5 for n in range(4)
        )
        assert len({r[1] for r in rows}) == 1  # one transaction
        assert [queued.llen(q) for q, _ in pairs if q != busy_queue] == [0] * (SHARDS - 1)
        assert queued.llen(busy_queue) == 2 and queued.get(busy_lock) == b"another flusher"
        assert not any(queued.exists(lock) for _, lock in pairs if lock != busy_lock)

        queued.delete(busy_lock)
        assert records.flush(queued, pg, ns) == 4
    assert len(_stored(settings, f"{token}-%")) == 4 * SHARDS
    assert records.pending(queued, ns) == 0


class Load:
    """Twelve clients verifying codes (with their PINs) through the cluster app, each verification
    with a client id of its own (``{token}-{n}``); ``reached`` is set once ``at`` are answered."""

    def __init__(self, app: Any, client: httpx.AsyncClient, serials: list[str]) -> None:
        self.app, self.client, self.serials = app, client, serials
        self.token = secrets.token_hex(4)
        self.answered: dict[str, dict[str, Any]] = {}
        self.refused: list[tuple[int, str]] = []
        self.reached, self.at = asyncio.Event(), 0

    async def run(self, todo: list[tuple[int, int]], at: int = 0) -> list[asyncio.Task[None]]:
        """Start the clients on ``todo`` ((code index, n) pairs, taken in order)."""
        self.reached.clear()
        self.at = at
        return [asyncio.create_task(self._client(todo)) for _ in range(12)]

    async def _client(self, todo: list[tuple[int, int]]) -> None:
        pin = self.app.state.scheme.pin
        while todo:
            index, n = todo.pop(0)
            serial = self.serials[index]
            body = {"serial": serial, "pin": pin(serial), "client_id": f"{self.token}-{n}"}
            response = await self.client.post("/v1/verify", json=body)
            if response.status_code != 200:
                self.refused.append((response.status_code, response.text))
                continue
            self.answered[body["client_id"]] = response.json()
            if len(self.answered) >= self.at:
                self.reached.set()


async def _codes(app: Any, client: Any, login: Any, demo: Any, size: int) -> list[str]:
    batch_no, product_id = await issue_units(client, login, demo, size)
    serials = [app.state.scheme.serial(batch_no, i) for i in range(size)]
    await activate(client, login, serials, product_id)
    return serials


async def test_a_master_failover_mid_load_loses_no_answered_verification(
    on_cluster: OnCluster, cluster: LocalCluster, client: Any, login: Any, demo: Any, settings: Any
) -> None:
    """Twelve clients verify 160 codes (three times each, so counts matter) while a replica
    takes over its master (``CLUSTER FAILOVER``): every verification is answered 200, the
    records wait in the shards' queues, the worker's flusher stores them, and every answer is
    in PostgreSQL exactly once as it was given (result, reason, count)."""
    size = 160
    load = Load(
        on_cluster.app, on_cluster.client, await _codes(on_cluster.app, client, login, demo, size)
    )
    runners = await load.run([(i % size, i) for i in range(3 * size)], at=150)
    await load.reached.wait()
    old = cluster.masters()[0]
    new = cluster.replica_of(old)
    await asyncio.to_thread(new.client().execute_command, "CLUSTER FAILOVER")
    await asyncio.gather(*runners)  # the load goes on through the switch
    await asyncio.to_thread(cluster.wait_ready)
    assert new.role() == "master" and old.role() == "slave"

    assert not load.refused, load.refused[:3]
    assert len(load.answered) == 3 * size
    assert not _stored(settings, f"{load.token}-%")  # none answered from PostgreSQL
    queries = sorted(a["queries"] for a in load.answered.values())
    assert queries == sorted([1, 2, 3] * size)  # each of the three counted once, none twice
    cluster_client = connect_sync(cluster.url)
    assert records.pending(cluster_client, settings.redis_namespace) > 0
    await asyncio.to_thread(_worker_flush, cluster)
    assert records.pending(cluster_client, settings.redis_namespace) == 0
    stored = _stored(settings, f"{load.token}-%")
    assert sorted(stored) == sorted(load.answered)
    for client_id, answer in load.answered.items():
        assert stored[client_id] == (answer["result"], answer["reason"], answer["queries"])
    assert not _strays(cluster)


async def test_a_master_stalled_longer_than_the_command_timeout_counts_each_query_once(
    cluster: LocalCluster, client: Any, login: Any, demo: Any, settings: Any
) -> None:
    """A master stops (SIGSTOP) for 0.7 s — longer than the app's command timeout (0.1 s here)
    and the cluster client's own retries, shorter than the cluster's node timeout, its replica
    told not to take over — while twelve clients verify. Its shards are tried again until it
    answers (``TRACECODE_REDIS_FAILOVER_WAIT``), not answered from PostgreSQL; a call that
    timed out and still ran when the master woke is answered from its kept replies when it
    comes again. Every query is counted once and stored once, as it was answered."""
    size = 120
    async with app_on(cluster, settings, redis_timeout=0.1) as on:
        load = Load(on.app, on.client, await _codes(on.app, client, login, demo, size))
        runners = await load.run([(i % size, i) for i in range(3 * size)], at=100)
        await load.reached.wait()
        victim = cluster.masters()[0]
        heir = cluster.replica_of(victim).client()
        heir.config_set("cluster-replica-no-failover", "yes")  # a slow host: still no failover
        assert victim.process is not None
        try:
            os.kill(victim.process.pid, signal.SIGSTOP)
            try:
                await asyncio.sleep(0.7)
            finally:
                os.kill(victim.process.pid, signal.SIGCONT)
            await asyncio.gather(*runners)
        finally:
            heir.config_set("cluster-replica-no-failover", "no")
    assert victim.role() == "master"

    assert not load.refused, load.refused[:3]
    assert len(load.answered) == 3 * size
    assert not _stored(settings, f"{load.token}-%")  # none answered from PostgreSQL
    queries = sorted(a["queries"] for a in load.answered.values())
    assert queries == sorted([1, 2, 3] * size)
    await asyncio.to_thread(_worker_flush, cluster)
    stored = _stored(settings, f"{load.token}-%")
    assert sorted(stored) == sorted(load.answered)
    for client_id, answer in load.answered.items():
        assert stored[client_id] == (answer["result"], answer["reason"], answer["queries"])


async def test_a_master_killed_mid_load_is_replaced_and_answers_go_on(
    on_cluster: OnCluster, cluster: LocalCluster, client: Any, login: Any, demo: Any, settings: Any
) -> None:
    """kill -9 of a master while twelve clients verify: its replica is promoted (the cluster's
    own failure detection), every verification is answered 200 meanwhile (those of the dead
    master's shards retried by the client, or answered from PostgreSQL), verifications after
    the promotion go through Redis again (queued, not stored directly), and every answered
    verification is in PostgreSQL exactly once after the flush."""
    size = 120
    load = Load(
        on_cluster.app, on_cluster.client, await _codes(on_cluster.app, client, login, demo, size)
    )
    runners = await load.run([(i % size, i) for i in range(2 * size)], at=60)
    await load.reached.wait()
    victim = next(m for m in cluster.masters() if _has_replica(cluster, m))
    heir = cluster.replica_of(victim)
    victim.kill()
    await asyncio.to_thread(cluster.wait_ready)  # the replica promoted, meanwhile answers go on
    assert heir.role() == "master"
    await asyncio.gather(*runners)
    after = [(i, 2 * size + i) for i in range(size)]  # a third query of each, once promoted
    await asyncio.gather(*await load.run(after))

    assert not load.refused, load.refused[:3]
    assert len(load.answered) == 3 * size
    direct = _stored(settings, f"{load.token}-%")  # answered from PostgreSQL, if any
    assert not {f"{load.token}-{n}" for _, n in after} & set(direct)  # Redis serves again
    await asyncio.to_thread(_worker_flush, cluster)
    stored = _stored(settings, f"{load.token}-%")
    assert sorted(stored) == sorted(load.answered)  # every answer stored, once
    assert {(a["result"], a["reason"]) for a in load.answered.values()} == {
        ("suspicious", "never_shipped")  # activated, never shipped: the default flag
    }
    assert not _strays(cluster)


def _has_replica(cluster: LocalCluster, master: Any) -> bool:
    try:
        cluster.replica_of(master)
    except AssertionError:
        return False
    return True


async def test_rebuild_on_the_cluster(
    on_cluster: OnCluster, cluster: LocalCluster, client: Any, login: Any, demo: Any, settings: Any
) -> None:
    """A code's counter deleted from the cluster (by the rebuild's own key names: they are the
    script's) comes back from PostgreSQL with ``rebuild``; the queues are drained first."""
    from app.ops import rebuild

    app, c = on_cluster.app, on_cluster.client
    batch_no, product_id = await issue_units(client, login, demo, 1)
    serial = app.state.scheme.serial(batch_no, 0)
    await activate(client, login, [serial], product_id)
    body = {"serial": serial, "pin": app.state.scheme.pin(serial)}
    for _ in range(3):
        third = (await c.post("/v1/verify", json=body)).json()
    assert third["queries"] == 3
    cluster_client = connect_sync(cluster.url)
    key = rebuild.count_key(settings.redis_namespace, _code(app, serial), cluster=True)
    assert cluster_client.delete(key) == 1
    with psycopg.connect(settings.database_url, autocommit=True) as pg:
        report = rebuild.rebuild(cluster_client, pg, settings)
    assert report.drained >= 3 and report.counters_raised >= 1
    fourth = (await c.post("/v1/verify", json=body)).json()
    assert (fourth["queries"], fourth["first_query_at"]) == (4, third["first_query_at"])
    assert not _strays(cluster)
