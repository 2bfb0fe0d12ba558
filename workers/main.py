"""Worker entry point: ``dramatiq workers.main`` loads the broker, every actor and middleware.

The broker is built app-side (``app.jobs``: Redis, or RabbitMQ when ``TRACECODE_BROKER_URL`` is
set) and imported first, so the actors bind to it. What a running worker needs besides — the
embedded Redis when no ``TRACECODE_REDIS_URL`` is set, the heartbeat, the write-behind flusher and
the roll-ups — starts as the worker boots (dramatiq's ``before_worker_boot`` /
``after_worker_boot``), never on import. None of these middlewares depends on the broker: they
work on the Redis of hot state (``app.jobs.redis_client``) and on PostgreSQL, so a worker on
RabbitMQ runs them all the same; each actor is idempotent, as at-least-once delivery requires.
"""

import logging
from typing import Any

import dramatiq
import psycopg
from dramatiq.middleware import Middleware

from app.codes import keycheck
from app.config import one_line_errors, redact_url
from app.embedded import start_postgres, start_redis
from app.jobs import broker, settings
from app.logs import configure_logging, quiet_libraries, writer
from workers import codes, epcis, points, sms, wechat  # noqa: F401
from workers.analytics import DashboardCounter, SalesRoller
from workers.analytics_people import PeopleRoller
from workers.chain import ChainRoller
from workers.deadletter import DeadLetters
from workers.forensics import ForensicsSweeper
from workers.heartbeat import Heartbeat
from workers.inspect import InspectionRoller
from workers.logistics import StockRoller
from workers.ops import OrphanSweeper, RetentionSweeper
from workers.points import RedemptionExpirer
from workers.rebates import RebateRoller
from workers.sms import SmsSweeper
from workers.verify import VerificationFlusher
from workers.webhooks import WebhookSender
from workers.wechat import WechatSweeper

log = logging.getLogger("tracecode.workers")


class EmbeddedRedis(Middleware):
    """Without ``TRACECODE_REDIS_URL``, start (or reuse) the embedded Redis (the Redis broker's,
    and the hot state's on either broker) before the worker's consumers connect."""

    def before_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        if not settings.redis_url:
            with one_line_errors():  # a Redis that cannot start: one line, not a traceback
                start_redis(settings.var_path)


class MasterKeyCheck(Middleware):
    """Each worker process, as it boots, compares its master key with the one the database's
    codes were made under (``app.codes.keycheck``): another key stops it in one line, exit 2
    (its exports' files and its verifications would not match the printed codes). A database
    not reachable yet, or not yet migrated by the API, is checked by the API as it starts: a
    warning here, and the worker boots as before."""

    def before_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        with one_line_errors():
            url = settings.database_url or start_postgres(settings.var_path)
            try:
                keycheck.check(url, settings)
            except psycopg.Error as exc:  # down, or migration 0101 not applied yet
                log.warning("master key not checked against the database: %s", redact_url(str(exc)))


class JsonLogs(Middleware):
    """The worker process's logs as the API's: JSON lines (``app.logs``) at
    ``TRACECODE_LOG_LEVEL``. dramatiq set up its own plain-text format, so dead letters and job
    failures came out in lines a JSON pipeline drops, tracebacks over many (probe S). The
    dramatiq parent process's few lines (boot, shutdown) stay in its own format."""

    def before_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        configure_logging(settings.log_level)

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        writer.flush()  # the last lines, before dramatiq closes the process's log pipe


quiet_libraries()
with one_line_errors():  # a bad key stops the worker now, not its first job: one line, exit 2
    settings.check_serving()
broker.add_middleware(JsonLogs())
broker.add_middleware(EmbeddedRedis())
broker.add_middleware(MasterKeyCheck())
broker.add_middleware(Heartbeat(settings.redis_namespace))
broker.add_middleware(DeadLetters())
broker.add_middleware(VerificationFlusher())
broker.add_middleware(StockRoller())
broker.add_middleware(InspectionRoller())
broker.add_middleware(RebateRoller())
broker.add_middleware(SalesRoller())
broker.add_middleware(PeopleRoller())
broker.add_middleware(DashboardCounter())
broker.add_middleware(SmsSweeper())
broker.add_middleware(WechatSweeper())
broker.add_middleware(RedemptionExpirer())
broker.add_middleware(WebhookSender())
broker.add_middleware(OrphanSweeper())
broker.add_middleware(RetentionSweeper())
broker.add_middleware(ChainRoller())
broker.add_middleware(ForensicsSweeper())
