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
broker = RedisBroker(url=redis_url, namespace=f"{settings.redis_namespace}-dramatiq")
broker.add_middleware(Heartbeat(settings.redis_namespace))
dramatiq.set_broker(broker)
