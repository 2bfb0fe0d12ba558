"""Test set-up on real services.

With ``TRACECODE_DATABASE_URL`` / ``TRACECODE_REDIS_URL`` set, tests use those servers; otherwise
they start the embedded PostgreSQL and Redis under ``var/``. Each test session gets a database of
its own (dropped at the end) and a Redis namespace of its own, so sessions never see each other.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SESSION = secrets.token_hex(4)
TEST_DB = f"tracecode_test_{SESSION}"
TEST_MASTER_KEY = "5a" * 32

_admin_db_url: str | None = None


def _configure_environment() -> None:
    """Runs at import, before any app module reads settings."""
    global _admin_db_url
    from app import embedded

    var = ROOT / "var"
    admin = os.environ.get("TRACECODE_DATABASE_URL") or embedded.start_postgres(var)
    redis_url = os.environ.get("TRACECODE_REDIS_URL") or embedded.start_redis(var)
    _admin_db_url = admin
    os.environ["TRACECODE_DATABASE_URL"] = embedded.ensure_database(admin, TEST_DB)
    _commit_without_waiting_for_the_disk(admin)
    os.environ["TRACECODE_REDIS_URL"] = redis_url
    os.environ["TRACECODE_REDIS_NAMESPACE"] = f"tctest{SESSION}"
    os.environ["TRACECODE_MASTER_KEY"] = TEST_MASTER_KEY
    os.environ.pop("TRACECODE_MASTER_KEY_FILE", None)
    os.environ.pop("TRACECODE_JWT_SECRET", None)
    os.environ["TRACECODE_LOG_LEVEL"] = "WARNING"
    # Media under a folder of the session's own: files are kept by brand id, and brand ids start
    # again in each session's database — another xdist worker's brand, or a brand of an earlier
    # run, of the same id wrote into the same folder the media tests look in.
    os.environ["TRACECODE_MEDIA_DIR"] = str(var / "test-media" / SESSION)
    # Every request of the shared test client comes from one address, and fuzzing tests fail
    # logins by the hundred: the per-IP login limit is tested on an app of its own
    # (tests/test_hardening_access.py), not left to trip the rest of the suite.
    os.environ["TRACECODE_LOGIN_IP_MAX_FAILURES"] = "100000"
    # Likewise the one-time codes a member may ask for per client IP (tests/test_members_auth.py
    # tests that limit on an app of its own).
    os.environ["TRACECODE_MEMBER_OTP_IP_MAX"] = "100000"
    # And verifications: 120 a minute from the one address is what a busy stretch of the suite
    # (a worker of `make test -n auto` running verification-heavy files back to back) can reach;
    # the limit is tested on verifiers of their own (tests/test_verify.py, tests/test_h5.py).
    os.environ["TRACECODE_VERIFY_RATE_LIMIT"] = "1000000"
    # And a client's wrong PINs over all codes (20 in 15 min lock its PIN checks): the suite's
    # wrong-PIN tests, all from the one address, pass that; tested on verifiers of their own
    # (tests/test_verify.py, tests/test_redis_durability.py).
    os.environ["TRACECODE_PIN_CLIENT_MAX_FAILURES"] = "100000"


def _commit_without_waiting_for_the_disk(admin: str) -> None:
    """The session's database commits without waiting for its WAL to reach the disk
    (``synchronous_commit = off``, for this database only, set before any connection to it):
    a commit cost 1.7–3.5 ms on this machine kind's disk against 0.1–0.2 ms, and the suite
    commits tens of thousands of times, most of them one after another. A crash of the server
    could lose its last commits — nothing a test checks: the replica and restore drills run
    servers of their own, and no test kills this one. The service's own default stays durable."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("ALTER DATABASE {} SET synchronous_commit = off").format(
                sql.Identifier(TEST_DB)
            )
        )


_configure_environment()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A browser test whose Chromium died under it runs once more, on a fresh one
    (tests/browser.py says why); every other failure of it fails at once."""
    from tests.browser import BROWSER_DIED

    once_more = pytest.mark.flaky(reruns=1, only_rerun=BROWSER_DIED)
    for item in items:
        if item.path.name.endswith("_browser.py"):
            item.add_marker(once_more)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    import shutil

    from app import embedded

    shutil.rmtree(os.environ["TRACECODE_MEDIA_DIR"], ignore_errors=True)

    if _admin_db_url:
        try:
            embedded.drop_database(_admin_db_url, TEST_DB)
        except Exception as exc:  # leave the database behind rather than fail the run
            print(f"could not drop {TEST_DB}: {exc}")
    try:
        import redis

        client = redis.Redis.from_url(os.environ["TRACECODE_REDIS_URL"])
        for key in client.scan_iter(match=f"tctest{SESSION}*"):
            client.delete(key)
    except Exception as exc:
        print(f"could not clean Redis keys: {exc}")


@pytest.fixture(scope="session")
def settings() -> Any:
    from app.config import load_settings

    return load_settings()


@pytest.fixture(scope="session")
async def app(settings: Any) -> Any:
    from app.main import create_app

    return create_app(settings)


@pytest.fixture(scope="session")
async def client(app: Any) -> AsyncIterator[Any]:
    """An HTTP client calling the ASGI app in the test's own event loop (lifespan included)."""
    from tests.helpers import served

    async with served(app) as test_client:
        yield test_client


@pytest.fixture(autouse=True)
def _an_empty_cookie_jar_for_the_next_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """The session's ``client`` keeps cookies: a test's ``?lang=en`` left the next test on the
    same worker reading English pages where it looks for Chinese (a CI run failed so, by the
    order xdist gave the tests). Each test's cookies are gone when it ends."""
    yield
    shared = request.node.funcargs.get("client")  # type: ignore[attr-defined]
    if shared is not None:
        shared.cookies.clear()


@pytest.fixture(scope="session")
async def demo(client: Any, app: Any) -> dict[str, int]:
    """The demo data set (loaded once per session); org ids by ERP code."""
    from app.demo import load_demo

    async with app.state.pool.connection() as conn:
        return await load_demo(conn)


Login = Callable[[str], Awaitable[dict[str, str]]]


@pytest.fixture(scope="session")
async def login(client: Any, app: Any, demo: dict[str, int]) -> Login:
    """``await login("admin")`` -> Authorization headers of that demo user (cached for half the
    access token's life: the whole suite outlasts one token)."""
    from app.demo import DEMO_PASSWORD

    cache: dict[str, tuple[dict[str, str], float]] = {}
    fresh_for = app.state.settings.access_token_ttl / 2

    async def _login(username: str, password: str = DEMO_PASSWORD) -> dict[str, str]:
        cached = cache.get(username)
        if cached is None or time.monotonic() - cached[1] > fresh_for:
            response = await client.post(
                "/auth/login", json={"username": username, "password": password}
            )
            assert response.status_code == 200, response.text
            headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
            cache[username] = cached = (headers, time.monotonic())
        return cached[0]

    return _login


@pytest.fixture
async def conn(app: Any) -> AsyncIterator[Any]:
    """A connection of the app's pool for direct checks (committed at the end)."""
    async with app.state.pool.connection() as connection:
        yield connection
