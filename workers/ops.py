"""Operational actors."""

from __future__ import annotations

import time

import dramatiq

from app.jobs import redis_client, settings


@dramatiq.actor(max_retries=0)
def ping(token: str) -> None:
    """Answer through Redis, so a test or an operator can prove the worker pipeline end to end.
    Idempotent: a second delivery sets the same key again."""
    redis_client.set(f"{settings.redis_namespace}:pong:{token}", str(time.time()), ex=300)
