"""The ``Accept`` header's q-values (RFC 9110 12.5.1), read one way for the H5 pages
(``pages.wants_page``) and the resolver (``resolver.linkset_type``). Litestar's
``request.accept`` takes a type of ``q=0`` for a type accepted; a q-value of 0 is "not
acceptable". No imports of app: any module of ``app.web`` can use it without a cycle."""

from __future__ import annotations

import re

_QVALUE = re.compile(r"0(\.[0-9]{0,3})?|1(\.0{0,3})?")  # RFC 9110 12.4.2

MediaRange = tuple[str, str, float]


def media_ranges(accept: str) -> list[MediaRange]:
    """The media ranges of ``Accept`` with their q-values (RFC 9110 12.5.1; one that is no
    qvalue counts as 1, as Litestar's ``request.accept`` has it); none: ``*/*``."""
    if not accept.strip():
        return [("*", "*", 1.0)]
    ranges = []
    for item in accept.split(","):
        kind, *params = item.split(";")
        main, _, sub = kind.strip().lower().partition("/")
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q" and _QVALUE.fullmatch(value.strip()):
                q = float(value)
        ranges.append((main, sub, q))
    return ranges


def quality(ranges: list[MediaRange], media_type: str) -> tuple[float, int]:
    """The q-value of ``media_type``: that of the most specific range matching it (RFC 9110
    12.5.1), 0 if none does; and how specific (3: the type itself, 2: ``type/*``, 1: ``*/*``)."""
    main, sub = media_type.split("/", 1)
    specific = {(main, sub): 3, (main, "*"): 2, ("*", "*"): 1}
    best = (0.0, 0)
    for range_main, range_sub, q in ranges:
        rank = specific.get((range_main, range_sub), 0)
        if rank > best[1]:
            best = (q, rank)
    return best
