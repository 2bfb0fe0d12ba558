"""Helpers of the field-force tests (tests/test_field_*.py): the demo's reps and stores."""

from __future__ import annotations

import itertools
import secrets
from typing import Any

from tests.helpers import onboarded_brand

# the demo stores' recorded positions (app/demo.py STORE_POSITIONS)
HZ = (30.2590, 120.1550)
_ids = itertools.count()


def client_id() -> str:
    return f"t-{secrets.token_hex(4)}-{next(_ids)}"


async def user_id(app: Any, username: str) -> int:
    async with app.state.pool.connection() as conn:
        row = await (
            await conn.execute("SELECT id FROM users WHERE username = %s", (username,))
        ).fetchone()
    assert row is not None, username
    return int(row["id"])


async def nameplate(client: Any, login: Any, store_id: int, by: str = "fieldsup") -> dict[str, Any]:
    """The store's nameplate as a demo user (the Zhejiang field supervisor) prints it."""
    answer = await client.get(f"/field/stores/{store_id}/nameplate", headers=await login(by))
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


async def check_in(
    client: Any,
    headers: dict[str, str],
    plate: str,
    at: tuple[float, float] = HZ,
    **extra: Any,
) -> Any:
    body = {
        "client_id": extra.pop("client_id", None) or client_id(),
        "nameplate": plate,
        "lat": at[0],
        "lng": at[1],
        "accuracy": 12.5,
        **extra,
    }
    return await client.post("/field/checkins", headers=headers, json=body)


async def other_brand_admin(client: Any, login: Any) -> dict[str, str]:
    """The admin of a brand onboarded for the test (it holds every field permission)."""
    _, headers = await onboarded_brand(client, login)
    return headers
