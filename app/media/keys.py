"""The shapes of a media object's storage key, checked by every store before a file or an object
is touched: a photo's ``<brand>/<yyyy>/<mm>/<uuid>.<ext>``, a catalogue medium's the same under
``catalog/`` (``app.media.catalog``)."""

from __future__ import annotations

import re

from app.errors import ValidationFailed

KEY = re.compile(
    r"(?:catalog/)?[1-9][0-9]{0,17}/[0-9]{4}/[0-9]{2}/[0-9a-f]{32}\.(jpg|png|webp|mp4|webm)"
)


def check_key(key: str) -> str:
    """``key`` when it has the one shape the service makes; 400 ``invalid_key`` otherwise."""
    if not KEY.fullmatch(key):
        raise ValidationFailed("not a media key", code="invalid_key")
    return key
