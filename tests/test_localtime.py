"""The brands' calendar (``app.localtime``): no module dates a brand's record by the server's or
UTC's day. Probe L found documents numbered and dated the day before between midnight and 08:00
in Beijing; a test of a document's date finds that only when it runs in those hours (16:00–24:00
UTC), so this one reads the source for the ways the bug was written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# The server's or UTC's day, as SQL or Python: each a brand's day only in its zone.
UTC_DAYS = re.compile(
    r"\bcurrent_date\b|\bdate\.today\(\)|\bdatetime\.utcnow\(\)"
    r"|\bnow\(UTC\)\.date\(\)|\bnow\(UTC\):%Y|\bnow\(\)::date\b",
    re.IGNORECASE,
)


def test_no_module_takes_a_day_from_the_servers_or_utcs_clock() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sorted([*(ROOT / "app").rglob("*.py"), *(ROOT / "workers").rglob("*.py")])
        if path.name != "localtime.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if UTC_DAYS.search(line)
    ]
    assert not found, "use app.localtime (today(), now(), TODAY_SQL):\n" + "\n".join(found)


def test_the_pattern_finds_the_ways_the_bug_was_written() -> None:
    for line in (
        "VALUES (coalesce(%s, current_date))",
        "return f'{prefix}{datetime.now(UTC):%Y%m%d}{n:07d}'",
        "day = datetime.now(UTC).date()",
        "since = date.today()",
    ):
        assert UTC_DAYS.search(line), line
    assert not UTC_DAYS.search("coalesce(%s, (now() AT TIME ZONE 'Asia/Shanghai')::date)")


async def test_no_column_defaults_to_the_servers_day(client: Any, conn: Any) -> None:
    """Probe V: a sale (its insert names no date) took ``documents.doc_date``'s default,
    ``current_date``: the database server's day, the day before in Beijing's early hours. The
    source guard above reads Python only; this one asks the migrated database."""
    rows = await (
        await conn.execute(
            """SELECT table_name, column_name, column_default
                 FROM information_schema.columns
                WHERE table_schema = current_schema()
                  AND (column_default ILIKE '%current_date%'
                       OR column_default ILIKE '%now()::date%'
                       OR column_default ILIKE '%''now''::text)::date%')"""
        )
    ).fetchall()
    assert not rows, rows
