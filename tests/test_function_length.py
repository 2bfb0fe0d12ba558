"""Long functions on the hot paths stay split into named steps (issue 14 item 5).

A function of the modules below — bulk scan upload and line corrections, the ERP order import,
inspection, verification, code and case issuance, outbound documents and their movements, the
event log and stock deltas — has at most ``MAX_LINES`` lines of body, its docstring not counted.
A longer one is split into private steps, each with a docstring (``app/packing/scans.py``'s
``_write`` is the example). The count is static (``ast``), nested functions included.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 60
HOT_PATHS = (
    "app/packing/scans.py",
    "app/packing/edits.py",
    "app/logistics/imports.py",
    "app/logistics/orders.py",
    "app/logistics/documents.py",
    "app/logistics/movements.py",
    "app/inspect/service.py",
    "app/verify",
    "app/codes/service.py",
    "app/codes/cases.py",
    "app/codes/batches.py",
    "app/codes/lookup.py",
    "app/codes/exports.py",
    "app/events",
)

Function = ast.FunctionDef | ast.AsyncFunctionDef


def body_lines(function: Function) -> int:
    """Lines from the first statement after the docstring to the end of the last one."""
    body = function.body
    first = body[0]
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        body = body[1:]
    if not body:
        return 0
    end = body[-1].end_lineno
    assert end is not None
    return end - body[0].lineno + 1


def long_functions(source: str, limit: int = MAX_LINES) -> list[tuple[str, int, int]]:
    """(name, line, body lines) of every function in ``source`` longer than ``limit``."""
    return [
        (node.name, node.lineno, body_lines(node))
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and body_lines(node) > limit
    ]


def hot_modules() -> list[Path]:
    found: list[Path] = []
    for entry in HOT_PATHS:
        path = ROOT / entry
        found += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return found


@pytest.mark.parametrize("path", hot_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_hot_path_functions_are_short(path: Path) -> None:
    long = long_functions(path.read_text(encoding="utf-8"))
    assert not long, (
        f"{path.relative_to(ROOT)}: split into named steps (at most {MAX_LINES} lines): "
        + ", ".join(f"{name} (line {line}: {n} lines)" for name, line, n in long)
    )


def test_every_hot_path_module_exists() -> None:
    """A moved or renamed module is followed here, not silently dropped from the check."""
    missing = [entry for entry in HOT_PATHS if not (ROOT / entry).exists()]
    assert not missing


def _function(lines: int, docstring: bool = True) -> str:
    doc = '    """What it does,\n    over two lines."""\n' if docstring else ""
    return "async def step(x):\n" + doc + "".join(f"    x += {i}\n" for i in range(lines))


def test_the_count_skips_the_docstring_and_catches_one_line_too_many() -> None:
    assert long_functions(_function(MAX_LINES)) == []
    assert long_functions(_function(MAX_LINES + 1)) == [("step", 1, MAX_LINES + 1)]
    assert long_functions(_function(MAX_LINES + 1, docstring=False)) == [("step", 1, MAX_LINES + 1)]
    # a nested function counts on its own, and inside the function that holds it
    nested = "def outer():\n" + "\n".join(
        "    " + ln for ln in _function(MAX_LINES + 1).split("\n")
    )
    assert {name for name, _, _ in long_functions(nested)} == {"outer", "step"}
