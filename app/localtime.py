"""The brands' calendar: Asia/Shanghai. The days and months of documents, reports, filters and
file names are its days; a UTC date is the day before between midnight and 08:00 in Beijing
(probe L: a document made at 00:00:19 on 4 December was numbered and dated the 3rd)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

REPORT_TZ = "Asia/Shanghai"
ZONE = ZoneInfo(REPORT_TZ)
#: SQL: today's date in that calendar.
TODAY_SQL = f"(now() AT TIME ZONE '{REPORT_TZ}')::date"


def today() -> date:
    return datetime.now(ZONE).date()


def now() -> datetime:
    return datetime.now(ZONE)


def aware(moment: datetime) -> datetime:
    """A moment with its offset; one given without (``2026-12-01T00:00:00``) is a Beijing
    wall-clock time, as the brands' days are (probe AA: read in the database server's zone it
    missed a night's fulfilments, and compared with an offset one it was a 500)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=ZONE)


EARLIEST_DAY = date(2000, 1, 1)


def check_day(value: date | None, ahead_days: int, what: str) -> None:
    """ValueError unless ``value`` is a business day that can be: from 2000-01-01 to
    ``ahead_days`` after today (probe AA: a document dated 9999-12-31 came first in every list
    for ever, a production date of year 1 was shown to consumers). For a Struct's
    ``__post_init__``: msgspec makes the error a 400 ``validation_failed``."""
    if value is None:
        return
    latest = today() + timedelta(days=ahead_days)
    if not EARLIEST_DAY <= value <= latest:
        raise ValueError(f"{what} must be a day from {EARLIEST_DAY} to {latest}")
