"""One way for each rule (issue 14 item 4): each repeated rule has one function or registry, and
nothing in app/ or workers/ spells it another way."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest
from psycopg.rows import dict_row

from app import locks
from app.locks import Lock

ROOT = Path(__file__).resolve().parent.parent
Conn = psycopg.AsyncConnection[dict[str, Any]]


def _sources(*patterns: str, allowed: set[str]) -> list[str]:
    """``path:line`` of each line of app/ and workers/ matching one of ``patterns``, outside the
    ``allowed`` files."""
    found = []
    for folder in ("app", "workers"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            name = path.relative_to(ROOT).as_posix()
            if name in allowed:
                continue
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if any(re.search(p, line) for p in patterns):
                    found.append(f"{name}:{n}: {line.strip()}")
    return found


@pytest.fixture
async def two() -> AsyncIterator[tuple[Conn, Conn]]:
    url = os.environ["TRACECODE_DATABASE_URL"]
    a = await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row)
    b = await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row)
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


# -- advisory locks ---------------------------------------------------------------------------


def test_every_advisory_lock_key_is_unique_and_fits_a_lock_class() -> None:
    values = [member.value for member in Lock.__members__.values()]  # aliases included
    assert len(values) == len(set(values))
    assert all(0 < v < 2**31 for v in values)  # the class of a two-key lock is an int4


def test_advisory_locks_are_taken_only_through_the_registry() -> None:
    spelled = _sources(r"pg_(try_)?advisory", r"\b7_?245_?0\d\d\b", allowed={"app/locks.py"})
    assert spelled == []


async def _held(conn: Conn) -> list[tuple[int, int, int]]:
    rows = await (
        await conn.execute(
            "SELECT classid::bigint AS c, objid::bigint AS o, objsubid AS s FROM pg_locks "
            "WHERE locktype = 'advisory' AND pid = pg_backend_pid() ORDER BY 1, 2"
        )
    ).fetchall()
    return [(r["c"], r["o"], r["s"]) for r in rows]


async def test_each_lock_keeps_its_form(two: tuple[Conn, Conn]) -> None:
    """One key (a bigint: objsubid 1) and two keys (class, key: objsubid 2) are different locks;
    the builders keep the form every caller has always used."""
    a, _ = two
    async with a.transaction():
        await locks.xact_lock(a, Lock.EVENT_PARTITIONS, 0)
        await locks.xact_lock(a, Lock.ORDER_IMPORT, 17)
        await a.execute(*locks.xact(Lock.INSPECTION_CLIENT_ID, "1:2:abc"))
        hashed = (await (await a.execute("SELECT hashtext('1:2:abc') AS h")).fetchone())["h"]
        assert await _held(a) == sorted(
            [(7_245_006, 0, 2), (7_245_008, 17, 2), (7_245_012, hashed & 0xFFFFFFFF, 2)]
        )
    assert await _held(a) == []  # transaction locks end with it
    await a.execute(*locks.acquire(Lock.MIGRATIONS))
    assert await _held(a) == [(0, 7_245_001, 1)]
    await a.execute(*locks.release(Lock.MIGRATIONS))
    assert await _held(a) == []


async def test_a_session_lock_excludes_another_connection(two: tuple[Conn, Conn]) -> None:
    a, b = two
    got = await (await a.execute(*locks.try_acquire(Lock.EXPORT_RUN, "some-export"))).fetchone()
    assert got is not None and got["ok"] is True
    other = await (await b.execute(*locks.try_acquire(Lock.EXPORT_RUN, "some-export"))).fetchone()
    assert other is not None and other["ok"] is False
    elsewhere = await (await b.execute(*locks.try_acquire(Lock.EXPORT_RUN, "another"))).fetchone()
    assert elsewhere is not None and elsewhere["ok"] is True
    await b.execute(*locks.release(Lock.EXPORT_RUN, "another"))
    await a.execute(*locks.release(Lock.EXPORT_RUN, "some-export"))


async def test_run_alone_runs_once_at_a_time(two: tuple[Conn, Conn]) -> None:
    a, b = two
    seen: list[Any] = []

    async def inner() -> str:
        seen.append(await locks.run_alone(b, Lock.STOCK_ROLLUP, _work("inner")))
        return "outer"

    assert await locks.run_alone(a, Lock.STOCK_ROLLUP, inner) == "outer"
    assert seen == [None]  # the other connection did not run while the lock was held
    assert await locks.run_alone(b, Lock.STOCK_ROLLUP, _work("after")) == "after"
    assert await _held(a) == [] and await _held(b) == []


def _work(result: str) -> Any:
    async def work() -> str:
        return result

    return work


# -- the serial scheme from settings ----------------------------------------------------------


def test_the_scheme_is_built_from_settings_in_one_place() -> None:
    from app.codes.scheme import load_scheme, scheme_from_settings
    from app.config import SettingsError, load_settings

    key = "17" * 32
    settings = load_settings(
        {
            "TRACECODE_MASTER_KEY": key,
            "TRACECODE_KEY_VERSIONS": "1,2",
            "TRACECODE_CURRENT_KEY_VERSION": "2",
            "TRACECODE_PIN_LENGTH": "8",
        }
    )
    scheme = scheme_from_settings(settings)
    assert (scheme.versions, scheme.current_version, scheme.pin_length) == ((1, 2), 2, 8)
    reference = load_scheme(bytes.fromhex(key), [1, 2], 2, 8)
    for version in (1, 2):
        serial = scheme.serial(7, 4, version)
        assert serial == reference.serial(7, 4, version)
        assert scheme.pin(serial) == reference.pin(serial)
    with pytest.raises(SettingsError):
        scheme_from_settings(load_settings({}))  # no master key: a clear start-up error
    spelled = _sources(r"master_key_bytes\(\)", allowed={"app/config.py", "app/codes/scheme.py"})
    assert spelled == []


# -- "the caller needs any of these permissions" ----------------------------------------------


def test_require_any_passes_with_one_and_names_them_all_when_none() -> None:
    from app.auth.principal import Principal
    from app.errors import Forbidden

    reader = Principal(org_id=5, org_path="/1/5/", permissions=frozenset({"reports.read"}))
    reader.require_any("logistics.scan", "reports.read")
    reader.require_any("reports.read")
    with pytest.raises(Forbidden) as caught:
        reader.require_any("logistics.scan", "orders.write")
    assert caught.value.code == "permission_denied"
    assert caught.value.details == {"missing": ["logistics.scan", "orders.write"]}
    assert str(caught.value) == "missing permission logistics.scan or orders.write"


def test_permissions_are_checked_only_by_the_principal() -> None:
    """Services call ``actor.require(...)`` / ``actor.require_any(...)``; nobody else writes the
    403 ``permission_denied`` or ors ``actor.has(...)`` into a check of its own."""
    spelled = _sources(
        r"permission_denied",
        r"any\(\w+\.has\(",
        r"not \(\w+\.has\(",
        allowed={"app/auth/principal.py"},
    )
    assert spelled == []


async def test_readers_missing_every_permission_get_one_403(client: Any, login: Any) -> None:
    """The printer operator reads none of these, the inspector no export; each answer names
    every permission that would do (documents and orders name all four, where they used to name
    two; an export names both, where it used to name codes.export)."""
    from tests.helpers import assert_error

    printer = await login("printer")
    wanted = {
        "/documents": ["logistics.scan", "logistics.approve", "orders.write", "reports.read"],
        "/orders": ["logistics.scan", "logistics.approve", "orders.write", "reports.read"],
        "/stock": ["reports.read", "logistics.scan"],
        "/center/documents": ["reports.read", "logistics.scan"],
        "/inspections": ["inspect.scan", "reports.read"],
    }
    inspector = await login("inspector")
    export = "/exports/00000000-0000-0000-0000-000000000000"
    wanted_by = [(printer, path, missing) for path, missing in wanted.items()]
    wanted_by.append((inspector, export, ["codes.export", "codes.download"]))
    for headers, path, missing in wanted_by:
        error = assert_error(await client.get(path, headers=headers), 403, "permission_denied")
        assert error["details"] == {"missing": missing}, path
        assert error["message"] == "missing permission " + " or ".join(missing), path


# -- organisations: the path by id, the brand of a path ---------------------------------------


def test_the_brand_of_a_path_is_its_root() -> None:
    from app.auth.principal import Principal, brand_of

    assert brand_of("/7/") == 7
    assert brand_of("/7/12/30/") == 7
    assert Principal(org_id=30, org_path="/7/12/30/", permissions=frozenset()).brand_id == 7
    spelled = _sources(
        r'strip\("/"\)\.split\("/"\)', r'split\("/"\)\[1\]', allowed={"app/auth/principal.py"}
    )
    assert spelled == []


async def test_the_path_of_an_organisation_by_id(client: Any, demo: Any, conn: Any) -> None:
    from app.orgs.service import org_path

    row = await (
        await conn.execute("SELECT id, path FROM orgs WHERE id = %s", (demo["STORE-HZ-01"],))
    ).fetchone()
    assert await org_path(conn, row["id"]) == row["path"]
    assert await org_path(conn, 2**62) is None
    # app.auth sits below app.orgs (orgs import auth), so the API-key check keeps its own query
    allowed = {"app/orgs/service.py", "app/auth/service.py"}
    assert _sources(r"SELECT path FROM orgs WHERE id", allowed=allowed) == []


# -- CSV and XLSX ------------------------------------------------------------------------------


def test_every_csv_and_xlsx_export_goes_through_tabular() -> None:
    """app.tabular is the one writer, with the spreadsheet-formula guard; the CSV readers
    (imports, the IP table) and the CLI's list of generated demo codes write no spreadsheet."""
    spelled = _sources(
        r"csv\.(writer|DictWriter)",
        r"xlsxwriter|openpyxl",
        r"media_type=.*(text/csv|spreadsheetml)",
        allowed={"app/tabular.py"},
    )
    assert spelled == []


# -- PATCH: the fields a body sets, written to the row ----------------------------------------


class _Patch(msgspec.Struct, frozen=True, kw_only=True):
    name: str | msgspec.UnsetType = msgspec.UNSET
    note: str | msgspec.UnsetType | None = msgspec.UNSET


def test_a_patch_is_applied_one_way() -> None:
    from app.db import changes_of

    assert changes_of(msgspec.json.decode(b'{"note": null}', type=_Patch)) == {"note": None}
    assert changes_of(_Patch()) == {}
    spelled = _sources(r"is not msgspec\.UNSET\}", r"SET \{sets\}", allowed={"app/db.py"})
    assert spelled == []
