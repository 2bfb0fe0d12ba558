"""The brands' calendar: Asia/Shanghai. The days and months of documents, reports, filters and
file names are its days; a UTC date is the day before between midnight and 08:00 in Beijing
(probe L: a document made at 00:00:19 on 4 December was numbered and dated the 3rd)."""

from __future__ import annotations

from datetime import date, datetime
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
