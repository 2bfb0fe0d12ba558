"""A member's phone number as typed, made into the one form stored and searched: 11 digits.

Members sign up with a mainland China mobile number (SMS codes go to it). What people type is
forgiven: full-width digits (``１３８…``, from Chinese input methods), blanks (zero-width marks of
a number pasted out of a chat too) and hyphens between the digits, the country code in front as
``+86``, ``0086``, ``86``, ``+0086`` or ``086``, and the trunk ``0`` of the domestic form before
the mobile (``+86 0138…``, ``0138…``). What is left must be a mobile number, ``1[3-9]`` and nine
more digits; anything else — letters, other country codes, landlines, too few or too many digits
— is 400 ``invalid_phone``. (A probe: ``+0086 138…``, ``086 138…`` and ``+86 (0)138…`` were no
mobile here and the SMS code kept them as other numbers, so an opt-out of ``138…`` missed them.)
"""

from __future__ import annotations

import re
import unicodedata

from app.errors import ValidationFailed
from app.textguard import without_blanks

_MOBILE = re.compile(r"1[3-9][0-9]{9}")
# a mobile as written: maybe a country code, maybe the trunk 0, the mobile (hyphens gone)
_WRITTEN = re.compile(r"(?:\+0086|\+86|0086|086|86)?0?(1[3-9][0-9]{9})")
_TYPED = re.compile(r"\+?[0-9][0-9\-]*")  # digits and hyphens (blanks gone), maybe a "+"


def normalise_phone(text: str, field: str = "phone", source: str = "body") -> str:
    """``13812341234`` from ``+86 138-1234-1234`` and the like; 400 ``invalid_phone`` otherwise."""
    typed = without_blanks(unicodedata.normalize("NFKC", text))
    digits = ""
    if _TYPED.fullmatch(typed):
        written = _WRITTEN.fullmatch(typed.replace("-", ""))
        digits = written.group(1) if written else ""
    if not _MOBILE.fullmatch(digits):
        raise ValidationFailed(
            "not a mainland China mobile number (11 digits starting with 13–19)",
            code="invalid_phone",
            details=[{"field": field, "message": "invalid phone number", "source": source}],
        )
    return digits


def phone_query(text: str, field: str = "phone") -> str:
    """A phone search term: a whole number (normalised as above) or its last 4 to 10 digits."""
    typed = without_blanks(unicodedata.normalize("NFKC", text)).replace("-", "")
    if re.fullmatch(r"[0-9]{4,10}", typed):
        return typed
    return normalise_phone(text, field, "query")
