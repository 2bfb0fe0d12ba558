"""Bodies of the chain's routes."""

from __future__ import annotations

from typing import Annotated

import msgspec

Position = Annotated[int, msgspec.Meta(ge=1, le=2**62)]


class CheckIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The positions to check (both optional: the whole chain, at most 200,000 links)."""

    from_: Position | None = msgspec.field(name="from", default=None)
    to: Position | None = None
