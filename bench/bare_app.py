"""The bare-framework baseline of ``bench/bench_verify.py`` (issue 21): the same Litestar,
granian, uvloop and msgspec as the service, one route — ``GET /ping`` answering a small msgspec
Struct — and nothing else: no middleware, no logging, no metrics, no request ids.

    granian --interface asgi --factory bench.bare_app:create_app   (as bench_verify starts it:
    ``app.cli.server_command(..., target=BARE_TARGET)``, the service's own server command)
"""

from __future__ import annotations

import msgspec
from litestar import Litestar, get


class Pong(msgspec.Struct):
    pong: str


@get("/ping")
async def ping() -> Pong:
    return Pong("ok")


def create_app() -> Litestar:
    return Litestar(route_handlers=[ping])
