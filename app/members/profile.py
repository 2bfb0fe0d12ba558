"""The member's own profile (M1): read it, change it.

The phone is the membership (its points and codes hang on it) and cannot be changed here or by
staff; a member with a new number signs up anew. The age band follows the birthday when there
is one (computed when read, so it moves with the years; ``AGE_BAND_SQL`` is the same rule for
filters in SQL) and is chosen freely when there is none; a band contradicting the birthday is
422 ``age_band_mismatch``. Provinces are the province-level divisions by their Chinese name,
also accepted by their short name (``浙江``) and in English (``Zhejiang`` → ``浙江省``); a city
needs a province.
"""

from __future__ import annotations

from datetime import date, datetime
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

from app.db import Conn, changes_of, update_row
from app.errors import Unauthorized, Unprocessable, ValidationFailed
from app.localtime import REPORT_TZ
from app.members.principal import Member
from app.members.schemas import AgeBand, MemberOut, ProfilePatch
from app.provinces import PROVINCES


def member_provinces(names: list[str], field: str) -> list[str]:
    """Provinces as members' are stored (the full Chinese name), named ``浙江省`` or
    ``Zhejiang``; an unknown one is 400 on ``field`` (probes: a gift and an SMS campaign for
    ``Zhejiang`` reached no one, without a word)."""
    found = []
    for i, name in enumerate(names):
        province = PROVINCES.get(name.strip().casefold())
        if province is None:
            raise ValidationFailed(
                f"invalid request ({field}): {name[:40]!r} is not a province-level division of "
                "China",
                details=[
                    {"field": f"{field}[{i}]", "message": "unknown province", "source": "body"}
                ],
            )
        found.append(province)
    return found


# (lowest age, band): the band of an age is the last one whose lowest age it reaches.
BANDS: list[tuple[int, AgeBand]] = [
    (0, "under_18"),
    (18, "18_24"),
    (25, "25_34"),
    (35, "35_44"),
    (45, "45_54"),
    (55, "55_plus"),
]


_TODAY_SQL = f"(now() AT TIME ZONE '{REPORT_TZ}')::date"
AGE_BAND_SQL = (
    "CASE WHEN {m}.birthday IS NULL THEN {m}.age_band "
    + " ".join(
        f"WHEN {{m}}.birthday > {_TODAY_SQL} - interval '{lowest} years' THEN '{band}'"
        for (_, band), (lowest, _) in pairwise(BANDS)
    )
    + f" ELSE '{BANDS[-1][1]}' END"
)
"""A member's age band in SQL, as ``age_band_of`` computes it: ``AGE_BAND_SQL.format(m="m")``
for a query over ``members m``. (Born after today less N years: younger than N.)"""

OLDEST = date(1900, 1, 1)


def business_today() -> date:
    return datetime.now(ZoneInfo(REPORT_TZ)).date()


def age_band_of(birthday: date, today: date | None = None) -> AgeBand:
    today = today or business_today()
    age = today.year - birthday.year - ((today.month, today.day) < (birthday.month, birthday.day))
    band = BANDS[0][1]
    for lowest, name in BANDS:
        if age >= lowest:
            band = name
    return band


def member_out(row: dict[str, Any]) -> MemberOut:
    """A member row as the member sees it."""
    birthday = row["birthday"]
    return MemberOut(
        id=row["id"],
        brand_id=row["brand_id"],
        phone=row["phone"],
        status=row["status"],
        gender=row["gender"],
        birthday=birthday,
        age_band=age_band_of(birthday) if birthday else row["age_band"],
        email=row["email"],
        wechat_id=row["wechat_id"],
        province=row["province"],
        city=row["city"],
        marketing_opt_out=row["marketing_opt_out"],
        created_at=row["created_at"],
        last_login_at=row["last_login_at"],
    )


async def _row(conn: Conn, member_id: int, lock: bool = False) -> dict[str, Any]:
    sql = "SELECT * FROM members WHERE id = %s" + (" FOR NO KEY UPDATE" if lock else "")
    row = await (await conn.execute(sql, (member_id,))).fetchone()
    assert row is not None  # the token's member was loaded in this request
    return row


async def get_profile(conn: Conn, member: Member) -> MemberOut:
    return member_out(await _row(conn, member.id))


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        f"invalid request ({field}): {message}",
        details=[{"field": field, "message": message, "source": "body"}],
    )


def _checked(patch: ProfilePatch, row: dict[str, Any]) -> dict[str, Any]:
    """The columns to write: the patch's fields checked against each other and the row."""
    changes = changes_of(patch)
    if changes.get("email"):
        changes["email"] = changes["email"].strip()
    if "province" in changes and changes["province"] is not None:
        province = PROVINCES.get(changes["province"].strip().casefold())
        if province is None:
            raise _invalid("province", "not a province-level division of China")
        changes["province"] = province
    if "city" in changes and changes["city"] is not None:
        changes["city"] = changes["city"].strip()
        if not changes["city"]:
            raise _invalid("city", "empty")
    birthday = changes.get("birthday", row["birthday"])
    if "birthday" in changes and birthday is not None:
        if not OLDEST <= birthday <= business_today():
            raise _invalid("birthday", "must lie between 1900-01-01 and today")
    if birthday is not None:
        derived = age_band_of(birthday)
        if changes.get("age_band", derived) != derived:
            raise Unprocessable(
                "the age band contradicts the birthday",
                code="age_band_mismatch",
                details={"age_band": derived},
            )
        changes["age_band"] = derived
    if changes.get("city", row["city"]) and not changes.get("province", row["province"]):
        raise Unprocessable("a city needs a province", code="city_without_province")
    return {k: v for k, v in changes.items() if v != row[k]}


async def update_profile(conn: Conn, member: Member, patch: ProfilePatch) -> MemberOut:
    """Change the member's own profile (a frozen member may too: it is their data). An erasure
    that committed while this waited for the row is 401 ``member_erased`` and writes nothing (a
    probe: the edit put personal data back into the erased row). Marketing switched back on
    takes the phone off the brand's opt-out list too (``app.sms.optouts.member_opted_in``),
    before the member's row, as staff's opt-in takes them — only when it was off: a ``false``
    that changes nothing is no opt-in (a review: the profile form posts its box every time),
    read under the phone's opt-out lock: a ``TD`` reply committed meanwhile is seen, not undone
    by a switch-on that read the switch before it."""
    if patch.marketing_opt_out is False:
        from app.sms.optouts import lock_phone, member_opted_in  # here: app.sms imports this

        await lock_phone(conn, member.brand_id, member.phone)
        if (await _row(conn, member.id))["marketing_opt_out"]:
            await member_opted_in(conn, member.brand_id, member.phone)
    row = await _row(conn, member.id, lock=True)
    if row["status"] == "erased":
        raise Unauthorized("the membership was erased", code="member_erased")
    changes = _checked(patch, row)
    await update_row(conn, "members", member.id, changes)
    if changes.get("marketing_opt_out"):  # its queued campaign messages stay unsent
        from app.sms.outbox import drop_marketing  # here: app.sms imports this module

        await drop_marketing(conn, member.brand_id, member.phone, "opted out of marketing")
    return member_out(await _row(conn, member.id))
