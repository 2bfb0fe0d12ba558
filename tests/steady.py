"""Values and waits that keep chance out of a test's outcome.

``phone``: a mobile number no other caller in this test process (one xdist worker, one database)
was given. Random numbers collided: members are unique by (brand, phone), and a few hundred
random "139…" numbers a worker drew met one another about once in two thousand runs (a member's
insert failed, or an OTP sign-in signed in to another test's member). The numbers count up from
a random start in 20000000–80999999 (the last eight digits): clear of every fixed number the
tests spell (13912345678, 13800138003, 13900000042, 13999999998 …), and no two share their last
eight digits, whatever their prefixes (staff search members by a number's tail).

``clear_of_midnight``: a test that reads "today" and then writes or counts today's figures fails
when the day turns between the two (the day is Beijing's, ``app.localtime``, or UTC's).
"""

from __future__ import annotations

import asyncio
import itertools
import random
from datetime import datetime, timedelta, tzinfo

from app.localtime import ZONE

_numbers = itertools.count(random.SystemRandom().randrange(20_000_000, 80_000_000, 1000))


def phone(prefix: str = "139") -> str:
    """A mobile number (``prefix`` + 8 digits) no other test of this process uses."""
    return f"{prefix}{next(_numbers):08d}"


def seconds_to_midnight(zone: tzinfo = ZONE) -> float:
    now = datetime.now(zone)
    midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), now.tzinfo)
    return (midnight - now).total_seconds()


async def clear_of_midnight(seconds: float = 120.0, zones: tuple[tzinfo, ...] = (ZONE,)) -> None:
    """Wait for the day to turn (in each of ``zones``: Beijing's by default, ``UTC`` too if the
    test reads UTC days) when fewer than ``seconds`` are left of it, and for a few seconds of
    the new day: the test's "today" then stays its day for ``seconds``, and a moment a second
    or two before now is of it too."""
    for zone in zones:
        left = seconds_to_midnight(zone)
        if left < seconds:
            await asyncio.sleep(left + 5)
        elif left > 86_400 - 5:  # the day is less than 5 s old
            await asyncio.sleep(left - (86_400 - 5))
