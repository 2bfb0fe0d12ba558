"""Jobs that failed for good go to the dead letters (issue 13).

Dramatiq retries a failed job with back-off; a job whose retries are spent, or that failed with
an error that is its data's fault (``app.deadletters.POISON``: actors name those in ``throws``,
so they are not retried at all), or whose actor does not exist, is rejected. Dramatiq would keep
it in its own Redis dead-letter queue, out of sight; this middleware also writes it to the
``dead_letters`` table (queue ``job:<actor>``, the message as dramatiq encodes it, the error), so
/health and /metrics show it next to the other queues. The other jobs are never held up.
"""

from __future__ import annotations

import logging
from typing import Any

import dramatiq
import psycopg
from dramatiq.middleware import Middleware

from app.deadletters import bury, reason_of
from app.embedded import start_postgres
from app.jobs import settings

log = logging.getLogger("tracecode.deadletters")


class DeadLetters(Middleware):
    def after_nack(self, broker: dramatiq.Broker, message: Any) -> None:
        exc = getattr(message, "_exception", None)
        reason = reason_of(exc) if exc is not None else "rejected"
        queue = f"job:{message.actor_name}"
        try:
            payload = message.encode()
        except Exception:
            payload = repr(message).encode()
        try:
            url = settings.database_url or start_postgres(settings.var_path)
            with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
                bury(conn, queue, payload, reason)
        except Exception:  # the message is still in dramatiq's own dead-letter queue
            log.exception("could not record dead letter of %s (%s)", queue, reason)
        else:
            log.warning("job %s %s dead-lettered: %s", queue, message.message_id, reason)
