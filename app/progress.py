"""A terminal progress bar with rate and ETA, for long CLI work (no dependency needed)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, total: int, label: str, stream: TextIO | None = None) -> None:
        self.total = max(total, 1)
        self.label = label
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self._last = 0.0

    def update(self, done: int, total: int | None = None, *, force: bool = False) -> None:
        if total:
            self.total = max(total, 1)
        now = time.monotonic()
        if not force and now - self._last < 0.2 and done < self.total:
            return
        self._last = now
        elapsed = max(now - self.started, 1e-9)
        rate = done / elapsed
        eta = (self.total - done) / rate if rate > 0 else 0.0
        filled = int(30 * done / self.total)
        bar = "#" * filled + "." * (30 - filled)
        self.stream.write(
            f"\r{self.label} [{bar}] {100 * done / self.total:5.1f}% "
            f"{done:,}/{self.total:,}  {rate:,.0f}/s  ETA {eta:,.0f}s "
        )
        self.stream.flush()

    def finish(self, done: int | None = None) -> None:
        self.update(self.total if done is None else done, force=True)
        self.stream.write(f"  ({time.monotonic() - self.started:.1f}s)\n")
        self.stream.flush()
