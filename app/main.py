"""create_app(): the domains' routers, dependencies, error handlers, plugins, lifespan — wiring
only, no logic."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, Router

from app import (
    _core,
    analytics,
    auth,
    b2b,
    catalog,
    chain,
    codes,
    content,
    db,
    draws,
    erp,
    field,
    forensics,
    inspect,
    logistics,
    marketing,
    media,
    members,
    ops,
    orgs,
    packing,
    rebates,
    replica,
    sms,
    triage,
    users,
    verify,
    web,
    webhooks,
    wechat,
)
from app.apidocs import document_errors, openapi_config
from app.codes import keycheck
from app.codes.scheme import scheme_from_settings
from app.config import (
    Settings,
    SettingsError,
    load_settings,
    one_line_errors,
    unknown_variables,
)
from app.deps import caller_first, dependencies
from app.draws.claims import Drawer
from app.draws.routes import document_draws
from app.edge import EdgeRequest, strict_path_ints
from app.embedded import resolve_urls
from app.epcis.routes import edge_refusal as epcis_refusal
from app.epcis.routes import router as epcis_router
from app.erp.routes import document_imports
from app.errors import exception_handlers
from app.front import Tracecode
from app.head import HeadForGet
from app.logs import configure_logging
from app.members import points
from app.members.routes_points import document_claims
from app.ops import request_metrics
from app.rebates import claims as rebate_claims
from app.rebates import routes_claims as rebate_routes
from app.redisconn import connect
from app.users.service import sync_builtin_roles
from app.verify.regions import ip_table
from app.verify.routes import document_verify
from app.verify.service import Verifier
from app.web.pages import edge_pages

#: One router per domain (each ``app/<domain>/__init__.py``), in the order of the OpenAPI document.
ROUTERS = [
    ops.router,
    analytics.router,
    auth.router,
    orgs.router,
    users.router,
    catalog.router,
    content.router,
    codes.router,
    packing.router,
    logistics.router,
    verify.router,
    b2b.router,
    triage.router,
    forensics.router,
    inspect.router,
    field.router,
    media.router,
    members.router,
    draws.router,
    marketing.router,
    rebates.router,
    sms.router,
    wechat.router,
    webhooks.router,
    chain.router,
    epcis_router,
    erp.router,
    web.router,
]

_OPEN = (ops.router, web.router)  # no route of theirs takes a body from a caller


def create_app(settings: Settings | None = None) -> Litestar:
    if settings is None:  # the API server's factory (granian): a bad setting is one line, exit 2
        with one_line_errors():
            settings = load_settings()
            # and so is an embedded server that cannot start, and a migration that cannot be
            # applied: started and migrated here, before the lifespan (whose own calls then
            # find them running and applied), where a failure was a traceback
            db_url, _ = resolve_urls(settings.database_url, settings.redis_url, settings.var_path)
            try:
                db.migrate(db_url)
            except db.MigrationError as exc:  # an applied migration edited since
                sys.stderr.write(f"tracecode: {exc}\n")
                raise SystemExit(2) from None
            keycheck.check(db_url, settings)  # another master key than the database's
            return create_app(settings)
    # Fails at start-up, with a clear message, when the master key is missing or malformed.
    settings.check_serving()
    scheme = scheme_from_settings(settings)
    try:  # the IP region table, read now rather than on the first verification
        ip_table(settings.ip_regions_file)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    configure_logging(settings.log_level)
    for name in unknown_variables():  # a typo would leave a default in force (probe V)
        logging.getLogger("tracecode").warning("%s is not a setting of Tracecode: ignored", name)
    strict_path_ints()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        db_url, redis_url = await asyncio.to_thread(
            resolve_urls, settings.database_url, settings.redis_url, settings.var_path
        )
        await asyncio.to_thread(db.migrate, db_url)
        # the database's master key, or no start (app.codes.keycheck): SettingsError
        await asyncio.to_thread(keycheck.check, db_url, settings)
        pool = db.create_pool(db_url, settings)
        await pool.open(wait=True, timeout=30)
        async with pool.connection() as conn:
            await sync_builtin_roles(conn)
        if settings.database_replica_url:  # lag-tolerant reads on a standby (app/replica.py)
            app.state.replica = replica.Replica(settings.database_replica_url, settings, pool)
            await app.state.replica.start()
        # one server or a Redis Cluster (app/redisconn.py)
        redis = connect(
            redis_url,
            socket_timeout=settings.redis_timeout,
            socket_connect_timeout=settings.redis_timeout,
        )
        app.state.pool = pool
        app.state.db_url = db_url
        app.state.redis = redis
        app.state.verifier = Verifier(pool, redis, scheme, settings, redis_url)
        app.state.claimer = points.Claimer(pool, app.state.verifier, scheme)  # points (M2)
        app.state.rebate_claimer = rebate_claims.Claimer(pool, app.state.verifier, scheme)  # R1
        app.state.drawer = Drawer(pool, app.state.verifier, scheme)  # lucky draws (B4)
        if "granian" in sys.modules:  # a worker of a granian server: one host's counts
            server = request_metrics.server_name(str(os.getppid())) or str(os.getppid())
            snapshots = request_metrics.Snapshots(settings.var_path / "metrics" / server)
            try:
                snapshots.start()
                request_metrics.snapshots = snapshots
            except OSError as exc:  # a read-only var/: this worker's own counts only
                logging.getLogger("tracecode").warning("metrics of this worker only: %s", exc)
        # Everything built so far lives as long as the process: keep it out of the cyclic GC's
        # full collections, which otherwise walk it again and again under load (latency tails).
        gc.freeze()
        try:
            yield
        finally:
            if request_metrics.snapshots is not None:
                with contextlib.suppress(OSError):  # the rest of the shutdown goes on
                    request_metrics.snapshots.stop()
            await app.state.claimer.close()
            await app.state.rebate_claimer.close()
            await app.state.drawer.close()
            await app.state.verifier.close()
            await redis.aclose()
            if app.state.replica is not None:
                await app.state.replica.close()
            await pool.close()

    # Tracecode: Litestar behind the request layer (request id, edge check, metrics, access log)
    app = Tracecode(
        route_handlers=[
            *_OPEN,
            # the caller before the body (app/deps.py); not on /ping and the consumer pages,
            # whose requests would pay the hook's call for nothing (issue 21)
            Router(
                "/",
                route_handlers=[r for r in ROUTERS if r not in _OPEN],
                before_request=caller_first,
            ),
        ],
        dependencies=dependencies,
        exception_handlers=exception_handlers,
        request_class=EdgeRequest,
        plugins=[HeadForGet()],  # every GET route answers HEAD too (app/head.py)
        lifespan=[lifespan],
        openapi_config=openapi_config(_core.version()),
        logging_config=None,
        access_log_sample=settings.access_log_sample,
        refusals={"/epcis/": epcis_refusal},  # problem+json, as every EPCIS error
        pages=edge_pages(settings),  # the consumer pages': a page to a browser
    )
    document_verify(app.openapi_schema)  # builds the schema now (~0.3 s), with /v1/verify in it
    document_claims(app.openapi_schema)  # POST /members/me/claims, an ASGI handler too
    rebate_routes.document_claims(app.openapi_schema)  # POST /rebates/claims, likewise
    document_draws(app.openapi_schema)  # POST /members/me/draws, likewise
    document_imports(app.openapi_schema)  # the CSV or JSON bodies of the ERP imports
    document_errors(app, app.openapi_schema)  # the real error shape and codes of each operation
    app.state.settings = settings
    app.state.scheme = scheme
    app.state.replica = None  # a replica.Replica once started, with TRACECODE_DATABASE_REPLICA_URL
    return app
