"""Shared state of the serial benchmarks: rates recorded by each benchmark, ratios at the end."""

from __future__ import annotations

import pytest

RATES: dict[str, float] = {}
EXTRA: list[str] = []


@pytest.fixture(scope="session")
def rates() -> dict[str, float]:
    """name -> items per second (median round), filled in by the benchmarks."""
    return RATES


@pytest.fixture(scope="session")
def notes() -> list[str]:
    """Free-form lines (memory, distinctness) for the summary."""
    return EXTRA


def pytest_terminal_summary(terminalreporter) -> None:
    if not RATES and not EXTRA:
        return
    tr = terminalreporter
    tr.section("serial core rates (median round)")
    for name, rate in RATES.items():
        tr.write_line(f"{name:<34} {rate:>14,.0f} /s")
    pairs = [
        ("generate 1 thread / reference", "generate serial+pin, 1 thread", "reference generate"),
        ("verify 1 thread / reference", "verify buffer, 1 thread", "reference verify"),
        (
            "generate 2 threads / 1 thread",
            "generate serial+pin, 2 threads",
            "generate serial+pin, 1 thread",
        ),
        ("verify 2 threads / 1 thread", "verify buffer, 2 threads", "verify buffer, 1 thread"),
    ]
    for label, a, b in pairs:
        if a in RATES and b in RATES:
            tr.write_line(f"{label:<34} {RATES[a] / RATES[b]:>14.2f} x")
    for line in EXTRA:
        tr.write_line(line)
