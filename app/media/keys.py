"""The one shape of a photo's storage key (``<brand>/<yyyy>/<mm>/<uuid>.<ext>``), checked by
every store before a file or an object is touched."""

from __future__ import annotations

import re

from app.errors import ValidationFailed

KEY = re.compile(r"[1-9][0-9]{0,17}/[0-9]{4}/[0-9]{2}/[0-9a-f]{32}\.(jpg|png|webp)")


def check_key(key: str) -> str:
    """``key`` when it has the one shape the service makes; 400 ``invalid_key`` otherwise."""
    if not KEY.fullmatch(key):
        raise ValidationFailed("not a media key", code="invalid_key")
    return key
