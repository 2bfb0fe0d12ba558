"""What shows as nothing (``app.textguard``): names of such characters only are refused, and a
brand's name compares without them (migration 0142's ``brand_name_key``, the same sets)."""

from __future__ import annotations

import re
import sys
import unicodedata
from typing import Any

import pytest

from app.textguard import BLANK, FORMAT, MARKS, SPACES, VISIBLE

# Unicode's prepended concatenation marks: format characters (Cf) that show a sign
_SHOWN_FORMAT = {0x600, 0x601, 0x602, 0x603, 0x604, 0x605, 0x6DD, 0x70F, 0x890, 0x891, 0x8E2,
                 0x110BD, 0x110CD}  # fmt: skip
# a probe's: a soft hyphen, invisible operators, Hangul fillers, the braille blank, the combining
# grapheme joiner, a variation selector, the Mongolian vowel separator
PROBED = ["\u00ad", "\u2061", "\u3164", "\u2800", "\u034f", "\u115f", "\ufe0f", "\u180e", "\u2064"]


def _members(char_class: str) -> list[str]:
    pattern = re.compile(f"[{char_class}]")
    return [
        chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c < 0xE000
        if pattern.fullmatch(chr(c))
    ]  # fmt: skip


@pytest.mark.parametrize(
    "name",
    [*PROBED, "\u1160\uffa0", " \u200b\u2060\ufeff\u3000", "\U000e0020\U000e007f", "\U000e0100"],
    ids=ascii,
)
def test_a_name_of_characters_that_show_nothing_has_nothing_visible(name: str) -> None:
    assert re.search(VISIBLE, name) is None


@pytest.mark.parametrize("name", ["a", "丽", ".", "❤\ufe0f", "\u0600", "Lumière"], ids=ascii)
def test_a_name_with_something_shown_has_it(name: str) -> None:
    assert re.search(VISIBLE, name) is not None


def test_every_format_character_that_shows_nothing_is_a_blank() -> None:
    """Every Unicode Cf character but the prepended concatenation marks."""
    blank = re.compile(f"[{BLANK}]")
    missed = [
        f"U+{c:04X}"
        for c in range(sys.maxunicode + 1)
        if unicodedata.category(chr(c)) == "Cf" and c not in _SHOWN_FORMAT
        and not blank.fullmatch(chr(c))
    ]  # fmt: skip
    assert missed == []


def test_a_name_may_end_with_an_emoji_s_variation_selector() -> None:
    """``VISIBLE`` takes the marks after the character: a name ends in "❤\ufe0f" as in "❤"."""
    ends_seen = re.compile(rf"^{VISIBLE}(?:.*{VISIBLE})?(?!\n)$")  # the catalog's category names
    assert ends_seen.match("Love ❤\ufe0f")
    assert not ends_seen.match("Love \u200b")
    assert not ends_seen.match("\ufe0fLove")


async def test_the_brand_name_key_drops_and_joins_the_same_characters(
    client: Any, conn: Any
) -> None:
    """Migration 0142's ``brand_name_key`` writes the classes of app/textguard.py out again: it
    drops every character of ``FORMAT`` and ``MARKS`` and makes each of ``SPACES`` a space, and
    no other character."""
    dropped, spaces = _members(FORMAT + MARKS), _members(SPACES)
    rows = await (
        await conn.execute(
            """SELECT c, brand_name_key('a' || c || 'b') AS key
                 FROM unnest(%s::text[]) AS c""",
            (dropped + spaces,),
        )
    ).fetchall()
    keys = {row["c"]: row["key"] for row in rows}
    assert [f"U+{ord(c):04X}" for c in dropped if keys[c] != "ab"] == []
    assert [f"U+{ord(c):04X}" for c in spaces if keys[c] != "a b"] == []
    # and a character shown is kept (a sample: the Latin and CJK letters, digits, punctuation)
    shown = [chr(c) for c in (0x41, 0x31, 0x2E, 0x4E3D, 0xE9, 0x2764, 0x600)]
    rows = await (
        await conn.execute(
            "SELECT c, brand_name_key('a' || c || 'b') AS key FROM unnest(%s::text[]) AS c",
            (shown,),
        )
    ).fetchall()
    assert all(len(row["key"]) == 3 for row in rows), rows


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("Lumie\u0300re Cosmetics", "lumière cosmetics"),  # NFD: "e" and the grave accent
        ("Lumi\u200bère\u00ad Cosmetics\ufe0f", "lumière cosmetics"),
        ("  Lumière\u00a0\u3000Cosmetics\u2800", "lumière cosmetics"),
        ("ＬＵＭＩÈＲＥ\u3164COSMETICS", "lumière cosmetics"),  # fullwidth, a Hangul filler
        ("LumièreCosmetics", "lumièrecosmetics"),  # no blank is not a blank
        ("丽美 化妆品", "丽美 化妆品"),
    ],
    ids=ascii,
)
async def test_the_brand_name_key_is_the_name_as_it_shows(
    client: Any, conn: Any, name: str, key: str
) -> None:
    row = await (await conn.execute("SELECT brand_name_key(%s) AS key", (name,))).fetchone()
    assert row["key"] == key
