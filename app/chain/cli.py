"""``tracecode chain …``: chain now, anchor, check, export and verify offline (SPEC B7)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from app.config import Settings


def _brand_id(text: str) -> int:
    """A brand's id: a whole number from 1 (a probe: ``--brand 0`` was taken as no ``--brand``,
    and every brand was anchored and checked)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a brand's id, a whole number from 1")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    chain = sub.add_parser("chain", help="the tamper-evident event log (SPEC B7)")
    actions = chain.add_subparsers(dest="action", required=True)
    actions.add_parser(
        "run", help="chain every brand's committed events now, broken chains too (after a repair)"
    )
    anchor = actions.add_parser("anchor", help="chain, then anchor every brand's head now")
    anchor.add_argument("--brand", type=_brand_id, help="only this brand (id)")
    check = actions.add_parser(
        "check", help="re-hash the stored events; exit 1 naming what no longer matches"
    )
    check.add_argument("--brand", type=_brand_id, help="only this brand (id)")
    export = actions.add_parser("export", help="write links of a brand's chain as JSON lines")
    export.add_argument("--brand", type=_brand_id, required=True, help="the brand (id)")
    export.add_argument("--from", dest="first", type=int, default=1, help="first position")
    export.add_argument("--to", dest="last", type=int, help="last position (default: the head)")
    export.add_argument("--out", required=True, help="the file to write")
    verify = actions.add_parser("verify", help="verify an export offline (no database)")
    verify.add_argument("--file", required=True, help="the export (JSON lines)")
    verify.add_argument("--public-key", help="the anchors' public key (hex, GET /chain)")
    verify.add_argument(
        "--require-anchor",
        action="store_true",
        help="fail unless a verified anchor covers every link (needs --public-key)",
    )


async def _connect(url: str):  # type: ignore[no-untyped-def]
    import psycopg
    from psycopg.rows import dict_row

    return await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row)


async def _known_brand(conn, brand_id: int) -> None:  # type: ignore[no-untyped-def]
    """``NotFound`` unless ``brand_id`` is a brand's, active or not (a probe: an unknown id
    re-hashed nothing and answered "0 links … ok", exit 0)."""
    from app.errors import NotFound

    found = await (
        await conn.execute("SELECT 1 FROM orgs WHERE id = %s AND kind = 'brand'", (brand_id,))
    ).fetchone()
    if found is None:
        raise NotFound(f"no brand {brand_id}")


async def _run(url: str, settings: Settings, args: argparse.Namespace) -> int:
    """One action; an ``AppError`` (an unknown brand, positions not within the chain) is left
    to ``app.cli.main``: one ``tracecode: code: message`` line, exit 2."""
    from app.chain import anchors, chainer, check, service
    from app.errors import Conflict

    async with await _connect(url) as conn:
        brand = getattr(args, "brand", None)
        if brand is not None:
            await _known_brand(conn, brand)
        only = [brand] if brand is not None else None
        # broken chains too: the workers leave them out until one is repaired and chained here
        done = await chainer.chain_all(conn, only, broken=True)
        print(f"chained {done.appended} events")
        for brand_id, reason in done.failed.items():
            print(f"brand {brand_id} not chained: {reason}", file=sys.stderr)
        if args.action == "run":
            return 1 if done.failed else 0
        brands = [brand] if brand is not None else await check.brands_chained(conn)
        if args.action == "anchor":
            broken = False
            for brand_id in brands:
                try:
                    made, created = await anchors.anchor_head(conn, settings, brand_id)
                except Conflict as exc:  # no link yet, or its position signed with another hash
                    print(f"brand {brand_id}: {exc}")
                    broken = broken or exc.code == "chain_broken"
                    continue
                state = "anchored" if created else "already anchored"
                print(f"brand {brand_id}: {state} position {made.position} hash {made.hash}")
            return 1 if broken else 0
        if args.action == "export":
            head = await service.head_of(conn, settings, args.brand)
            first, last = service.chain_range(head.position, args.first, args.last, 2**62, False)
            target = Path(args.out)
            with target.open("w", encoding="utf-8") as out:  # noqa: ASYNC230 (the CLI alone)
                async for line in service.export_lines(conn, settings, args.brand, first, last):
                    out.write(line)
            print(f"wrote positions {first}..{last} of brand {args.brand} to {target}")
            return 0
        failed = False
        for brand_id in brands:
            report = await check.check_chain(conn, settings, brand_id)
            print(
                f"brand {brand_id}: {report.links_checked} links, {report.anchors_checked} "
                f"anchors checked, head {report.head_position}: "
                + ("ok" if report.ok else f"{len(report.problems)} problems")
            )
            for p in report.problems:
                where = f"position {p.position}" if p.position is not None else "unchained"
                print(f"  {p.problem} ({where}, event {p.event_id}): {p.message}")
            failed = failed or not report.ok
        return 1 if failed else 0


def run(settings: Settings, args: argparse.Namespace, db_url: str) -> int:
    """Dispatch ``tracecode chain ACTION``."""
    if args.action == "verify":
        from app.events import chainverify

        argv = ["--file", args.file] + (
            ["--public-key", args.public_key] if args.public_key else []
        )
        argv += ["--require-anchor"] if args.require_anchor else []
        return chainverify.main(argv)
    return asyncio.run(_run(db_url, settings, args))
