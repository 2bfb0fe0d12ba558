"""The import graph of app/: layered, with no cycle (issue 14).

The walk is static (``ast``): every ``import`` and ``from … import`` of every module under app/
counts — at module level, inside functions, under ``if TYPE_CHECKING`` alike — so a cycle
cannot hide behind a function-local import. An edge goes to the module imported (``from
app.codes import lookup`` → ``app.codes.lookup``; ``from app.codes.lookup import Read`` →
``app.codes.lookup``; ``from app.logistics import router`` → the package ``app.logistics``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def modules(package: Path) -> dict[str, Path]:
    """Every module under ``package`` (a directory), by dotted name."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imported_names(name: str, path: Path) -> Iterator[str]:
    """The dotted names module ``name`` (at ``path``) imports: ``import m`` yields ``m``, ``from
    m import x`` yields ``m.x`` (a module, or a name defined in ``m``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            yield from (f"{base}.{alias.name}" for alias in node.names)


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module → the modules of the same package it imports (never itself)."""
    mods = modules(package)
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        edges = set()
        for target in imported_names(name, path):
            while target and target not in mods:  # a name in a module: the module
                target = target.rpartition(".")[0]
            if target and target != name:
                edges.add(target)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a path back to its start) per strongly connected component of more than one
    module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(component)
    return [_loop(graph, component) for component in components]


def _loop(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest path from the component's first module back to itself, inside it."""
    start = min(component)
    paths = {start: [start]}
    queue = [start]
    for node in queue:
        for nxt in sorted(graph[node] & component):
            if nxt == start:
                return [*paths[node], start]
            if nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                queue.append(nxt)
    raise AssertionError("a strongly connected component without a cycle")


def test_no_import_cycle_under_app() -> None:
    found = cycles(import_graph(ROOT / "app"))
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_the_walk_finds_cycles_behind_function_local_and_type_checking_imports(
    tmp_path: Path,
) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.b import f\n")
    (pkg / "b.py").write_text("def f():\n    from pkg import a\n")
    (pkg / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .sub.d import D\n"
    )
    (pkg / "sub" / "d.py").write_text("from .. import c\n")
    (pkg / "e.py").write_text("import pkg.a\nfrom pkg.sub import d\n")  # imports, no cycle
    graph = import_graph(pkg)
    assert graph["pkg.b"] == {"pkg.a"}
    assert graph["pkg.sub.d"] == {"pkg.c"}
    assert graph["pkg.e"] == {"pkg.a", "pkg.sub.d"}
    assert sorted(cycles(graph)) == [["pkg.a", "pkg.b", "pkg.a"], ["pkg.c", "pkg.sub.d", "pkg.c"]]


def test_a_layered_package_has_no_cycle(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "low.py").write_text("import os\n")
    (pkg / "mid.py").write_text("from pkg.low import x\n")
    (pkg / "top.py").write_text("from pkg import low, mid\n\ndef f():\n    import pkg.mid\n")
    assert cycles(import_graph(pkg)) == []


# -- app never imports workers/ ------------------------------------------------------------------
# The broker is built app-side (app/jobs.py) and the API sends jobs by actor name: workers/
# depends on app/, never the other way.


def imports_of(package: Path, prefix: str) -> list[str]:
    """``module -> name`` for every import under ``package`` of ``prefix`` or one of its modules."""
    return [
        f"{name} -> {target}"
        for name, path in modules(package).items()
        for target in imported_names(name, path)
        if target == prefix or target.startswith(prefix + ".")
    ]


def test_app_never_imports_workers() -> None:
    found = imports_of(ROOT / "app", "workers")
    assert not found, "app/ imports workers/ (send jobs with app.jobs.send):\n" + "\n".join(found)


def test_the_workers_check_sees_every_kind_of_import(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from workers.codes import run_export_job\n")
    (pkg / "b.py").write_text("import workers\n")
    (pkg / "c.py").write_text("from workers import main\n")
    (pkg / "d.py").write_text("import workersx\nfrom app import workers_of\n")  # not workers/
    assert sorted(imports_of(pkg, "workers")) == [
        "pkg.a -> workers.codes.run_export_job",
        "pkg.b -> workers",
        "pkg.c -> workers.main",
    ]


# -- importing the broker starts nothing ----------------------------------------------------------

_PROBE = """
import json, os
import app.jobs
import workers.main  # the worker's module: its servers start at worker boot, not on import
me = str(os.getpid())
children, servers = [], []
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        stat = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        cmdline = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\\0", b" ").decode()
    except OSError:  # the process ended meanwhile
        continue
    if stat[1] == me:
        children.append(cmdline)
    if os.environ["TRACECODE_VAR_DIR"] in cmdline and pid != me:
        servers.append(cmdline)
sockets = []
for fd in os.listdir("/proc/self/fd"):
    try:
        if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
            sockets.append(fd)
    except OSError:  # the directory listing's own descriptor, closed by now
        pass
print(json.dumps({
    "children": children, "servers": servers, "sockets": len(sockets),
    "url": app.jobs.broker.client.connection_pool.connection_kwargs.get("path"),
}))
"""


def test_importing_the_broker_starts_no_server(tmp_path: Path) -> None:
    """``import app.jobs`` (and the worker module) with no Redis or PostgreSQL configured: the
    broker points at the embedded Redis's socket but nothing is started, spawned or connected;
    the var directory stays empty."""
    import json
    import os
    import subprocess
    import sys

    from app.embedded import redis_url

    var = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACECODE_")}
    env |= {"TRACECODE_VAR_DIR": str(var), "TRACECODE_MASTER_KEY": "5a" * 32}
    probe = subprocess.run(
        [sys.executable, "-c", _PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr
    seen = json.loads(probe.stdout.splitlines()[-1])
    assert seen["children"] == [] and seen["servers"] == [], seen
    assert seen["sockets"] == 0, seen
    assert f"unix://{seen['url']}" == redis_url(var)
    assert not var.exists() or not any(var.rglob("*")), sorted(var.rglob("*"))


# -- each domain's router loads with its package ---------------------------------------------------
# A domain's __init__.py builds its Router, so importing any of its modules (app.codes.scheme, say)
# loads the domain's routes first. A module the routes themselves need must therefore never import
# a domain at its top, or importing it first fails halfway (app.errors once imported
# app.codes.scheme: errors -> codes/__init__ -> codes.routes -> auth.principal -> errors).

_ENTRY_POINTS = {"app.cli", "app.demo", "app.main"}  # import everything; nothing imports them


def test_every_shared_module_imports_first_in_a_fresh_process() -> None:
    import os
    import subprocess
    import sys

    shared = [
        name
        for name, path in modules(ROOT / "app").items()
        if name.count(".") == 1 and path.name != "__init__.py" and name not in _ENTRY_POINTS
    ]
    names = [*shared, "app.codes.scheme", "app.auth.principal", "app.events.log"]
    env = os.environ | {"TRACECODE_MASTER_KEY": "5a" * 32}
    running = {
        name: subprocess.Popen(
            [sys.executable, "-c", f"import {name}"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in names
    }
    failed = {}
    for name, process in running.items():
        _, err = process.communicate(timeout=120)
        if process.returncode:
            failed[name] = err.strip().splitlines()[-1]
    assert not failed, failed


_NO_HTTP_FACE = {"app.events", "app.migrations"}  # the shared event layer; SQL files


def test_each_domain_exposes_one_router_and_main_mounts_them_all() -> None:
    import importlib

    from litestar import Router

    from app.main import ROUTERS

    domains = [
        name
        for name, path in modules(ROOT / "app").items()
        if path.name == "__init__.py" and name.count(".") == 1 and name not in _NO_HTTP_FACE
    ]
    routers = {name: importlib.import_module(name).router for name in domains}
    assert all(isinstance(router, Router) for router in routers.values()), routers
    assert {id(r) for r in ROUTERS} == {id(r) for r in routers.values()}
    assert len(ROUTERS) == len(routers)
