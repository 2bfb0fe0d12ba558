"""The dramatiq broker, shared by the API (enqueue) and the workers (consume).

Imported before any actor module so actors bind to this Redis broker.
"""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from app.config import load_settings
from app.embedded import start_redis
from workers.heartbeat import Heartbeat

settings = load_settings()
redis_url = settings.redis_url or start_redis(settings.var_path)
# A job taken by a worker that dies (kill -9, OOM) is queued again by the broker's maintenance,
# once the worker has been silent for TRACECODE_JOB_REQUEUE_SECONDS; maintenance runs on one
# broker command in five (dramatiq's default, one in a thousand, could take many minutes).
broker = RedisBroker(
    url=redis_url,
    namespace=f"{settings.redis_namespace}-dramatiq",
    heartbeat_timeout=settings.job_requeue_seconds * 1000,
    maintenance_chance=200_000,
)
broker.add_middleware(Heartbeat(settings.redis_namespace))
dramatiq.set_broker(broker)
