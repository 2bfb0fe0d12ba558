"""Background jobs, app side: the dramatiq broker and ``send()``.

The broker is built here, once, and shared: the API enqueues through ``send(actor_name, ...)``,
by the actor's name, so ``app/`` never imports ``workers/``; the workers import ``broker`` from
here before any actor module, so every actor binds to it (dramatiq's "broker in a module of its
own" layout). Importing this module starts nothing and connects to nothing: the Redis client
connects on its first command, the RabbitMQ broker opens its connections when first used, and
the embedded Redis (no ``TRACECODE_REDIS_URL``) is started by whoever runs — ``tracecode run``,
the API's lifespan, or a worker as it boots (workers/main.py).

Two brokers, one behaviour (``build_broker``): dramatiq on Redis by default (the embedded one, or
``TRACECODE_REDIS_URL``), on RabbitMQ when ``TRACECODE_BROKER_URL`` names one (``amqp://…``).
Both deliver a job at least once: a job whose worker dies before acknowledging it is delivered
again — by RabbitMQ as soon as the worker's connection drops (or its AMQP heartbeats stop), by
the Redis broker once the worker has been silent ``TRACECODE_JOB_REQUEUE_SECONDS``. So every
actor of ``workers/`` is idempotent (each says how in its docstring). Publishing waits for
RabbitMQ's confirmation, so a job ``send`` returned is on the broker. What the workers keep in
Redis besides jobs — heartbeats, the verification write-behind queue — is in the Redis of hot
state (``redis_client``) whichever broker carries the jobs.

The worker heartbeat's keys are named here too: workers write them, ``/health`` reads them.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.errors import DecodeError
from dramatiq.middleware import Middleware, Retries, default_middleware

from app.config import (
    Settings,
    SettingsError,
    check_broker,
    load_settings,
    one_line_errors,
    redact_url,
)
from app.embedded import redis_url
from app.redisconn import AnySyncRedis, connect_sync

with one_line_errors():  # the worker's and the API server's imports: one line, no traceback
    settings = load_settings()

TRANSIENT_RETRIES, OTHER_RETRIES = 8, 3


def retry_when(retries: int, exc: BaseException) -> bool:
    """Whether a failed job is tried again: one that failed for a passing reason (PostgreSQL or
    Redis unreachable, restarting) up to TRANSIENT_RETRIES times — 1, 2, 4, … seconds apart, at
    most a minute, ~3 minutes in all (three tries a second apart gave up within 15 s of a
    restart, and their dead letters were lost with the database: probe Z) — any other failure
    (a bug, a full disk, a time limit) OTHER_RETRIES times, as before (review R6: a 6-hour
    export would have run nine times). A job still failing is dead-lettered; one whose dead
    letter could not be written either is sent again by the sweeper (``app.ops.orphans``).
    An error the job marked ``final_failure`` (an export it failed for good: no run takes it up
    again, ``app.codes.exports``) is not retried at all: a retry would find nothing to do."""
    if getattr(exc, "final_failure", False) is True:
        return False
    import psycopg
    from redis.exceptions import ConnectionError as RedisDown
    from redis.exceptions import TimeoutError as RedisSlow

    passing = psycopg.OperationalError | RedisDown | RedisSlow
    transient = isinstance(exc, passing) and not isinstance(exc, psycopg.errors.QueryCanceled)
    return retries < (TRANSIENT_RETRIES if transient else OTHER_RETRIES)


RETRIES: dict[str, Any] = {"retry_when": retry_when, "min_backoff": 1_000, "max_backoff": 60_000}

#: Options of a job message that dramatiq's middleware read as whole numbers.
WHOLE_OPTIONS = ("retries", "max_retries", "min_backoff", "max_backoff", "time_limit")
#: Options dramatiq reads as exception classes or a function: no sender of ours puts them on a
#: message (``send``, ``actor.send``: actors name them as their own options), JSON cannot carry
#: them, and one on a message made its failure raise in the worker (its thread ended).
FOREIGN_OPTIONS = ("throws", "retry_when")


def spoilt(message: dramatiq.Message[Any]) -> str | None:
    """Why a worker cannot run ``message`` and then retry or fail it, or None: an option of
    ``WHOLE_OPTIONS`` not a whole number (``true`` is none), or an option of
    ``FOREIGN_OPTIONS``. When such a message's job failed, dramatiq's Retries raised — the error
    logged and passed over — or its worker did (``throws``: the thread ended); either way the
    message, neither retried nor failed, was acknowledged: lost, in no dead letter (probe)."""
    if not isinstance(message.options, dict):
        return "its options are not an object"
    for name in WHOLE_OPTIONS:
        value = message.options.get(name, 0)
        if not isinstance(value, int) or isinstance(value, bool):
            return f"its option {name} is not a whole number"
    foreign = [name for name in FOREIGN_OPTIONS if name in message.options]
    return f"it carries option {foreign[0]}" if foreign else None


class JobRetries(Retries):
    """dramatiq's Retries (``build_broker`` installs it in the stock one's place, on either
    broker), which cannot lose a failed job: a message ``spoilt`` says a worker cannot run is
    failed before it runs (RabbitMQ: the Redis broker sets such a message aside as it fetches
    it), and where dramatiq's retry of a failed job raises all the same, the job is failed:
    the error logged, the message dead-lettered by ``workers.deadletter.DeadLetters`` with its
    job's error. dramatiq logged such an error and went on, and the worker acknowledged the
    message, neither retried nor failed: lost, in no dead letter (probe)."""

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        reason = spoilt(message)
        if reason is not None:
            message.stuff_exception(ValueError(f"the job message cannot be run: {reason}"))
            message.fail()

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        try:
            super().after_process_message(broker, message, result=result, exception=exception)
        except Exception:
            logging.getLogger("tracecode.jobs").exception(
                "could not retry job %s %s: it is failed", message.actor_name, message.message_id
            )
            message.fail()


def job_middleware() -> list[Middleware]:
    """dramatiq's default middleware, with ``JobRetries`` in the place of its ``Retries``."""
    return [JobRetries() if kind is Retries else kind() for kind in default_middleware]


class JobBroker(RedisBroker):
    """The Redis broker of the jobs (``build_broker``), burying what it cannot handle."""

    def __init__(self, settings: Settings, **options: Any) -> None:
        super().__init__(**options)
        self.settings = settings

    def do_fetch(self, queue_name: str, prefetch: int) -> list[bytes | None]:
        """dramatiq's fetch of up to ``prefetch`` messages, each checked before its consumer
        sees it: one that does not decode, or decodes into what the worker cannot run and
        acknowledge, is set aside and the rest returned. dramatiq checks only a message's keys:
        one that did not decode raised out of the consumer, which dropped the jobs fetched with
        it (each sat unacknowledged until the worker died); ``"options": null`` did the same;
        another ``queue_name`` ended the worker thread that ran it (its acknowledgement looked
        that queue's consumer up); no ``redis_message_id`` of its own was never acknowledged —
        each taken again after every worker's death, and in no dead letter (probes)."""
        fetched: list[bytes | None] = self._dispatch("fetch")(queue_name, prefetch)
        decoded = [(data, _decoded(data, queue_name)) for data in fetched if data is not None]
        ids = [m.options["redis_message_id"] for _, m in decoded if isinstance(m, dramatiq.Message)]
        held = self.client.smismember(self._acks(queue_name), ids) if ids else []
        unheld = {i for i, was in zip(ids, held, strict=True) if not was}
        kept: list[bytes | None] = []
        for data, message in decoded:
            if isinstance(message, dramatiq.Message):
                if message.options["redis_message_id"] not in unheld:
                    kept.append(data)
                    continue
                message = ValueError("its redis_message_id is not the id it was fetched by")
            self.set_aside(queue_name, data, message)
        return kept

    def _acks(self, queue_name: str) -> str:
        return f"{self.namespace}:__acks__.{self.broker_id}.{queue_name}"

    def set_aside(self, queue_name: str, data: bytes, error: BaseException) -> None:
        """A fetched message the worker cannot handle: buried as it is, with the reason, in the
        dead letters (queue ``job:undecodable``), then removed from Redis. Its id, which only
        the message names, is that of the fetched and unacknowledged message holding ``data``:
        a set of at most the prefetch's size. Left unacknowledged when it cannot be buried
        (PostgreSQL down: it is delivered again once this worker is gone)."""
        import psycopg

        from app.deadletters import UNDECODABLE_JOBS, bury, reason_of
        from app.embedded import start_postgres

        if isinstance(error, DecodeError):
            reason = f"the job message does not decode: {reason_of(error.error)}"
        else:
            reason = f"the job message cannot be run: {reason_of(error)}"
        log = logging.getLogger("tracecode.deadletters")
        try:
            ids = list(self.client.smembers(self._acks(queue_name)))
            held = self.client.hmget(f"{self.namespace}:{queue_name}.msgs", ids) if ids else []
            message_id = next(i for i, d in zip(ids, held, strict=True) if d == data)
            url = self.settings.database_url or start_postgres(self.settings.var_path)
            with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
                bury(conn, UNDECODABLE_JOBS, data, reason)
            self.do_ack(queue_name, message_id.decode())
        except Exception:
            log.exception("could not set aside a job message of %s (%s)", queue_name, reason)
        else:
            log.warning("job message %s of %s dead-lettered: %s", message_id, queue_name, reason)


def _decoded(data: bytes, queue_name: str) -> dramatiq.Message | BaseException:
    """The message ``data`` holds, fetched from ``queue_name``, or why a worker cannot run it."""
    try:
        message = dramatiq.Message.decode(data)
    except DecodeError as exc:
        return exc
    # dramatiq's decode makes a tuple of any iterable ``args``: a text's letters, an object's keys
    if not isinstance(dramatiq.get_encoder().decode(data).get("args"), list):
        return ValueError("its args are not a list")
    if message.queue_name != queue_name:
        return ValueError(f"it names queue {message.queue_name!r}")
    if not isinstance(message.options, dict):
        return ValueError("its options are not an object")
    if not isinstance(message.options.get("redis_message_id"), str):
        return ValueError("it has no redis_message_id")
    shapes = (message.actor_name, str), (message.message_id, str), (message.kwargs, dict)
    if not all(isinstance(value, kind) for value, kind in shapes):
        return ValueError("its actor_name, message_id or kwargs are not of their kinds")
    if not isinstance(message.message_timestamp, int):
        return ValueError("its message_timestamp is not an integer")
    reason = spoilt(message)
    return message if reason is None else ValueError(reason)


def build_broker(settings: Settings) -> dramatiq.Broker:
    """The broker ``settings`` name: RabbitMQ for ``broker_url``, else Redis. Connects to nothing.

    On Redis, a job taken by a worker that dies (kill -9, OOM) is queued again by the broker's
    maintenance once the worker has been silent for ``job_requeue_seconds``; maintenance runs on
    one broker command in five (dramatiq's default, one in a thousand, could take many minutes).
    On RabbitMQ, the server itself delivers a dead consumer's unacknowledged jobs again, and
    ``confirm_delivery`` makes each publish wait for the server's acknowledgement. A Redis
    Cluster cannot carry jobs: with one, ``broker_url`` is required (``SettingsError``).
    A Redis message that does not decode or cannot be run is dead-lettered and removed
    (``JobBroker``); RabbitMQ moves one to its own dead-letter queue (dramatiq's consumer), not
    to ``dead_letters``. On either, dramatiq's Retries is ``JobRetries``: a job it cannot retry
    is failed (dead-lettered), never acknowledged.
    """
    check_broker(settings)
    if settings.broker_url:
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        try:
            return RabbitmqBroker(
                url=settings.broker_url, confirm_delivery=True, middleware=job_middleware()
            )
        except (ValueError, TypeError) as exc:  # pika's URL parser; the message may quote it
            raise SettingsError(
                f"TRACECODE_BROKER_URL is not a valid AMQP URL: {redact_url(str(exc))}"
            ) from None
    return JobBroker(
        settings,
        url=settings.redis_url or redis_url(settings.var_path),
        namespace=f"{settings.redis_namespace}-dramatiq",
        heartbeat_timeout=settings.job_requeue_seconds * 1000,
        maintenance_chance=200_000,
        middleware=job_middleware(),
    )


broker = build_broker(settings)
dramatiq.set_broker(broker)

#: The Redis of hot state, for worker threads (heartbeats, the verification write-behind queue):
#: the Redis broker's own client, or one of its own beside RabbitMQ (a ``RedisCluster`` for a
#: cluster URL: ``app.redisconn``). Connects on first use.
redis_client: AnySyncRedis = (
    broker.client
    if isinstance(broker, RedisBroker)
    else connect_sync(settings.redis_url or redis_url(settings.var_path))
)

#: A worker whose heartbeat key is older than this is not counted by ``/health``.
WORKER_STALE_SECONDS = 30


def heartbeat_key(namespace: str, host: str, pid: int) -> str:
    """The Redis key a worker process refreshes while it runs."""
    return f"{namespace}:worker:{host}:{pid}"


def heartbeat_pattern(namespace: str) -> str:
    """A ``SCAN`` pattern matching every worker's heartbeat key."""
    return f"{namespace}:worker:*"


def workers_key(namespace: str) -> str:
    """The sorted set of every worker's heartbeat key by its last beat (a Unix time): the
    index ``/health`` reads, then checks those keys, in time proportional to the workers, where
    a ``SCAN`` for the keys walked the whole keyspace — one key per verified code — and took
    seconds (probe S). A heartbeat is its key; the set only finds them."""
    return f"{namespace}:workers"


def beat(client: Any, namespace: str, key: str) -> None:
    """One heartbeat of the worker whose key is ``key`` (a synchronous Redis client)."""
    now = time.time()
    pipe = client.pipeline(transaction=False)
    pipe.set(key, str(now), ex=WORKER_STALE_SECONDS)
    pipe.zadd(workers_key(namespace), {key: now})
    pipe.zremrangebyscore(workers_key(namespace), "-inf", now - 10 * WORKER_STALE_SECONDS)
    pipe.execute()


def stop_beating(client: Any, namespace: str, key: str) -> None:
    pipe = client.pipeline(transaction=False)
    pipe.delete(key)
    pipe.zrem(workers_key(namespace), key)
    pipe.execute()


def send(actor_name: str, *args: Any, queue_name: str = "default") -> dramatiq.Message[Any]:
    """Enqueue a job for the actor named ``actor_name`` (a function of ``workers/``) with ``args``.

    The message is the one ``actor.send(*args)`` would make: the actor's options (retries,
    time limit, which errors are poison) are applied by the worker that runs it.
    """
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=queue_name, actor_name=actor_name, args=args, kwargs={}, options={}
    )
    return broker.enqueue(message)


HAND_OVER_SECONDS = 2.0  # to hand a job to the broker before leaving it to a sweeper
# Threads a hung broker may hold at once: a timed-out hand-over's thread stays blocked, and
# the event loop's default executor (argon2 log-ins, document parsing) must not fill with them.
_HANDING = threading.BoundedSemaphore(2)


async def hand_over(actor_name: str, *args: Any) -> bool:
    """``send`` from a request: off the event loop (a hung broker stalled every request of the
    process for seconds, probe J) and within ``HAND_OVER_SECONDS``; False, and a warning, when
    the broker could not take it. Only for jobs a sweeper sends again from PostgreSQL (the SMS
    outbox's, ``app.ops.orphans``'): the caller's answer stands either way.

    The slot of ``_HANDING`` it takes is given back by the thread that sends, once ``send``
    returns — or by the hand-over itself when no thread started sending: one whose call was
    still queued for the default executor when the wait ended (an executor busy past
    ``HAND_OVER_SECONDS``, a cancelled request) never runs, and two such stalls left every later
    hand-over of the process refusing, the broker healthy (a probe). ``started`` decides who
    owns the slot: whichever takes it first — the thread, which then sends, or the hand-over
    giving up, after which a thread that starts late sends nothing."""
    if not _HANDING.acquire(blocking=False):  # hand-overs already stuck on a hung broker
        logging.getLogger("tracecode.jobs").warning("broker hung: %s left to a sweeper", actor_name)
        return False
    started = threading.Lock()

    def handed() -> None:
        if not started.acquire(blocking=False):  # the hand-over gave up before this thread ran
            raise TimeoutError("the hand-over gave up before its thread started")
        try:
            send(actor_name, *args)
        finally:
            _HANDING.release()

    try:
        await asyncio.wait_for(asyncio.to_thread(handed), HAND_OVER_SECONDS)
    except Exception as exc:
        logging.getLogger("tracecode.jobs").warning(
            "could not queue %s, a sweeper will send it: %s", actor_name, type(exc).__name__
        )
        return False
    finally:
        if started.acquire(blocking=False):  # no thread started sending: nothing holds the slot
            _HANDING.release()
    return True
