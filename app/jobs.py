"""Background jobs, app side: the dramatiq broker and ``send()``.

The broker is built here, once, and shared: the API enqueues through ``send(actor_name, ...)``,
by the actor's name, so ``app/`` never imports ``workers/``; the workers import ``broker`` from
here before any actor module, so every actor binds to it (dramatiq's "broker in a module of its
own" layout). Importing this module starts nothing and connects to nothing: the Redis client
connects on its first command, and the embedded Redis (no ``TRACECODE_REDIS_URL``) is started by
whoever runs — ``tracecode run``, the API's lifespan, or a worker as it boots (workers/main.py).

The worker heartbeat's keys are named here too: workers write them, ``/health`` reads them.
"""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from app.config import load_settings
from app.embedded import redis_url

settings = load_settings()

# A job taken by a worker that dies (kill -9, OOM) is queued again by the broker's maintenance,
# once the worker has been silent for TRACECODE_JOB_REQUEUE_SECONDS; maintenance runs on one
# broker command in five (dramatiq's default, one in a thousand, could take many minutes).
broker = RedisBroker(
    url=settings.redis_url or redis_url(settings.var_path),
    namespace=f"{settings.redis_namespace}-dramatiq",
    heartbeat_timeout=settings.job_requeue_seconds * 1000,
    maintenance_chance=200_000,
)
dramatiq.set_broker(broker)

#: A worker whose heartbeat key is older than this is not counted by ``/health``.
WORKER_STALE_SECONDS = 30


def heartbeat_key(namespace: str, host: str, pid: int) -> str:
    """The Redis key a worker process refreshes while it runs."""
    return f"{namespace}:worker:{host}:{pid}"


def heartbeat_pattern(namespace: str) -> str:
    """A ``SCAN`` pattern matching every worker's heartbeat key."""
    return f"{namespace}:worker:*"


def send(actor_name: str, *args: Any, queue_name: str = "default") -> dramatiq.Message[Any]:
    """Enqueue a job for the actor named ``actor_name`` (a function of ``workers/``) with ``args``.

    The message is the one ``actor.send(*args)`` would make: the actor's options (retries,
    time limit, which errors are poison) are applied by the worker that runs it.
    """
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=queue_name, actor_name=actor_name, args=args, kwargs={}, options={}
    )
    return broker.enqueue(message)
