"""The ``tracecode`` command: run the stack, manage embedded services, migrate, demo data."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time

from app import embedded
from app.config import PREFIX, Settings, SettingsError, load_settings


def _fail(message: str) -> int:
    print(f"tracecode: {message}", file=sys.stderr)
    return 2


def _urls(settings: Settings) -> tuple[str, str]:
    return embedded.resolve_urls(settings.database_url, settings.redis_url, settings.var_path)


def ensure_dev_master_key(settings: Settings) -> Settings:
    """For local runs only: with no key configured, create ``var/master.key`` once and use it."""
    if settings.master_key or settings.master_key_file:
        return settings
    path = settings.var_path / "master.key"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32) + "\n")
        print(f"Created a development master key in {path} (keep it; printed codes depend on it)")
    os.environ[PREFIX + "MASTER_KEY_FILE"] = str(path)
    return load_settings()


async def _load_demo(url: str) -> None:
    import psycopg
    from psycopg.rows import dict_row

    from app.demo import load_demo

    async with await psycopg.AsyncConnection.connect(url, row_factory=dict_row) as conn:
        await load_demo(conn)


def cmd_migrate(settings: Settings) -> int:
    from app.db import migrate

    db_url, _ = _urls(settings)
    applied = migrate(db_url)
    print("applied: " + ", ".join(applied) if applied else "database is up to date")
    return 0


def cmd_demo(settings: Settings) -> int:
    from app.db import migrate
    from app.demo import describe

    db_url, _ = _urls(settings)
    migrate(db_url)
    asyncio.run(_load_demo(db_url))
    print(describe())
    return 0


def cmd_services(settings: Settings, action: str) -> int:
    var = settings.var_path
    if action == "up":
        db_url, redis_url = _urls(settings)
        print(f"{PREFIX}DATABASE_URL={db_url}\n{PREFIX}REDIS_URL={redis_url}")
    elif action == "down":
        embedded.stop(var)
        print("embedded services stopped")
    return 0


def cmd_run(settings: Settings, demo: bool, worker: bool) -> int:
    """Everything a newcomer needs: services, migrations, demo data, API and one worker."""
    from app.db import migrate
    from app.demo import describe

    settings = ensure_dev_master_key(settings)
    embedded_services = not (settings.database_url and settings.redis_url)
    db_url, redis_url = _urls(settings)
    os.environ[PREFIX + "DATABASE_URL"] = db_url
    os.environ[PREFIX + "REDIS_URL"] = redis_url
    migrate(db_url)
    if demo:
        asyncio.run(_load_demo(db_url))
    children: list[subprocess.Popen[bytes]] = []
    api = [
        sys.executable, "-m", "granian", "--interface", "asgi", "--factory",
        "--host", settings.host, "--port", str(settings.port),
        "--workers", str(settings.http_workers), "app.main:create_app",
    ]  # fmt: skip
    children.append(subprocess.Popen(api))
    if worker:
        work = [sys.executable, "-m", "dramatiq", "workers.main", "--processes", "1"]
        children.append(subprocess.Popen([*work, "--threads", "4"]))
    base = f"http://{settings.host}:{settings.port}"
    print(
        f"\nTracecode is starting.\n  API:      {base}\n  OpenAPI:  {base}/schema "
        f"(JSON: {base}/schema/openapi.json)\n  Health:   {base}/health\n"
        f"  Database: {db_url}\n  Redis:    {redis_url}\n"
    )
    if demo:
        print(describe())
    print("\nPress Ctrl-C to stop.\n", flush=True)
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        while not stopping:
            if any(child.poll() is not None for child in children):
                print("tracecode: a child process exited; stopping", file=sys.stderr)
                break
            time.sleep(0.3)
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
        for child in children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
        if embedded_services:
            embedded.stop(settings.var_path)
        print("Tracecode stopped.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tracecode", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start services, migrate, load demo data, run API + worker")
    run.add_argument("--no-demo", action="store_true", help="do not load demo data")
    run.add_argument("--no-worker", action="store_true", help="do not start a dramatiq worker")
    services = sub.add_parser("services", help="embedded PostgreSQL and Redis under var/")
    services.add_argument("action", choices=["up", "down"])
    db = sub.add_parser("db", help="database")
    db.add_argument("action", choices=["migrate"])
    demo = sub.add_parser("demo", help="demo data")
    demo.add_argument("action", choices=["load"])
    sub.add_parser("keygen", help="print a new random 32-byte master key (hex)")
    args = parser.parse_args(argv)

    if args.command == "keygen":
        print(secrets.token_hex(32))
        return 0
    try:
        settings = load_settings()
        if args.command == "run":
            return cmd_run(settings, demo=not args.no_demo, worker=not args.no_worker)
        if args.command == "services":
            return cmd_services(settings, args.action)
        if args.command == "db":
            return cmd_migrate(settings)
        if args.command == "demo":
            return cmd_demo(settings)
    except SettingsError as exc:
        return _fail(f"configuration error: {exc}")
    return _fail(f"unknown command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
