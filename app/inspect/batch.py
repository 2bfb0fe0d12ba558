"""Many inspections in one request (issue 18: the staff app's offline queue sent in bulk).

``POST /inspections/batch`` records each scan as ``POST /inspections`` would (the same verdicts,
records, events, summary deltas, alerts and audit rows) and answers per scan, but with a few
set-based statements for the whole batch instead of a dozen round trips per scan: the client ids
are locked and looked up at once, the codes read at once (``read_codes``), the units judged from
one query, the scans, records and events written with one statement each. Case scans (rare on a
shelf) go through the single-scan path one by one.

Idempotent per client id, like the single scan: a client id this inspector recorded before (in
an earlier batch, by ``POST /inspections``, or earlier in the same batch) answers the first scan
(200) and is never counted again. An item whose client id an earlier item of the batch carried
but was refused under (nothing recorded) is answered as a single scan would be, through the
single-scan path. One transaction: all the recorded scans commit together.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import Any

import msgspec
from psycopg.rows import args_row

from app import audit, idempotency, locks
from app.auth.principal import Principal
from app.codes.batches import serials_of
from app.codes.lookup import read_codes
from app.codes.scheme import Scheme
from app.db import Conn, in_utc
from app.errors import AppError, BadRequest, PayloadTooLarge
from app.events.log import allocate_ids, write_events
from app.field.checkins import check_client_at
from app.inspect import service
from app.inspect.schemas import (
    BATCH_MAX,
    RESULTS,
    BatchItemOut,
    InspectionBatchOut,
    InspectionIn,
    ItemError,
    ScanOut,
)
from app.inspect.service import Finding, Store, _Scanned, _Unit
from app.inspect.summaries import require_reader
from app.locks import Lock


def _error(item: InspectionIn, error: AppError) -> BatchItemOut:
    return BatchItemOut(
        client_id=item.client_id,
        status=error.status,
        error=ItemError(code=error.code, message=error.message, details=error.details),
    )


async def inspect_batch(
    conn: Conn, actor: Principal, scheme: Scheme, items: list[InspectionIn]
) -> InspectionBatchOut:
    actor.require("inspect.scan")
    require_reader(actor)
    if not items:
        raise BadRequest("the batch is empty: send at least one scan", code="empty_batch")
    if len(items) > BATCH_MAX:
        raise PayloadTooLarge(
            f"at most {BATCH_MAX} scans in one batch",
            code="batch_too_large",
            details={"max_items": BATCH_MAX, "items": len(items)},
        )
    answers: list[BatchItemOut | None] = [None] * len(items)
    first: dict[str, int] = {}  # client id -> the first item carrying it
    same_as: dict[int, int] = {}  # a repeated client id -> that first item
    for i, item in enumerate(items):
        if item.client_id is None:
            answers[i] = _error(
                item,
                BadRequest("a batched scan needs its client_id", code="client_id_required"),
            )
        elif item.client_id in first:
            same_as[i] = first[item.client_id]
        else:
            first[item.client_id] = i
    found = await _earlier_scans(conn, actor, sorted(first))
    earlier: dict[str, int] = {}
    for cid, (scan_id, stored) in found.items():
        try:
            idempotency.check(stored, items[first[cid]], "scan")
            earlier[cid] = scan_id
        except AppError as error:
            answers[first[cid]] = _error(items[first[cid]], error)
    stores: dict[tuple[int | None, str | None], Store | AppError] = {}
    fresh: list[tuple[int, Store]] = []
    for cid, i in first.items():
        # answered already: its client id was used for another scan; or recorded before: the
        # first answer, whatever became of its store since (a probe: one moved to another
        # agent's area was 422 unknown_store, and the app dropped a scan the server holds)
        if answers[i] is not None or cid in earlier:
            continue
        item = items[i]
        try:  # the phone's scan time: checked as a single scan's, after a replay
            check_client_at(item.client_at)
        except AppError as error:
            answers[i] = _error(item, error)
            continue
        key = (item.store_id, item.store_code)
        if key not in stores:
            try:
                stores[key] = await service.store_for(conn, actor, item)
            except AppError as error:
                stores[key] = error
        store = stores[key]
        if isinstance(store, AppError):
            answers[i] = _error(item, store)
        else:
            fresh.append((i, store))
    fresh = await _with_photos(conn, actor, items, fresh, answers)
    scanned = await _scan_all(conn, actor, scheme, items, fresh, answers)
    recorded = await _record(conn, actor, items, scanned)
    # every recorded item is the first of its client id (``first``)
    wanted = {**{cid: recorded[i] for cid, i in first.items() if i in recorded}, **earlier}
    retried = {found[c][0] for c in (items[i].client_id for i in same_as) if c in found}
    scans = await scans_out(conn, sorted({*wanted.values(), *retried}))
    for cid, i in first.items():
        if answers[i] is not None:
            continue
        scan_id = wanted[cid]
        answers[i] = _answer(items[i], scans[scan_id], replayed=i not in recorded)
    alone = await _repeated(conn, actor, scheme, items, same_as, found, scans, answers)
    out = [a for a in answers if a is not None]
    return InspectionBatchOut(
        recorded=len(recorded) + alone,
        replayed=sum(1 for a in out if a.scan is not None and a.scan.replayed),
        refused=sum(1 for a in out if a.scan is None),
        items=out,
    )


async def _repeated(
    conn: Conn,
    actor: Principal,
    scheme: Scheme,
    items: list[InspectionIn],
    same_as: dict[int, int],
    found: dict[str, tuple[int, bytes | None]],
    scans: dict[int, ScanOut],
    answers: list[BatchItemOut | None],
) -> int:
    """Answer the items repeating a client id of an earlier item of the batch (``same_as``);
    how many of them were recorded (through the single-scan path, see below)."""
    recorded = 0
    alone: set[str] = set()  # client ids a scan was recorded under by the single-scan path
    for i, j in same_as.items():
        answer, cid = answers[j], items[i].client_id or ""
        assert answer is not None
        held = found.get(cid)
        if held is not None:  # recorded before the batch: the scan recorded under it holds
            # it, not the batch's first item carrying it (a probe: a retry of the recorded scan
            # behind an item reusing its id was 409, and the app dropped a scan the server holds)
            try:
                idempotency.check(held[1], items[i], "scan")
                answers[i] = _answer(items[i], scans[held[0]], replayed=True)
            except AppError as error:
                answers[i] = _error(items[i], error)
        elif answer.scan is not None:  # the first item recorded: it holds the client id
            if items[i] == items[j]:
                answers[i] = _answer(items[i], scans[answer.scan.id], replayed=True)
            else:
                answers[i] = _error(items[i], idempotency.reused("scan"))
        elif items[i] == items[j] and cid not in alone:  # the same refused scan: refused again
            answers[i] = answer
        else:  # the first was refused, nothing recorded under the id: answered as a single
            # scan would be, in the batch's order (a probe: 409 client_id_reused, and the app
            # dropped a scan nobody had recorded); the id's lock is held already
            try:
                scan = await service.inspect(conn, actor, scheme, items[i])
                answers[i] = _answer(items[i], scan, replayed=scan.replayed)
                recorded += not scan.replayed
                alone.add(cid)
            except AppError as error:
                answers[i] = _error(items[i], error)
    return recorded


def _answer(item: InspectionIn, scan: ScanOut, replayed: bool) -> BatchItemOut:
    scan = msgspec.structs.replace(scan, replayed=replayed)
    if scan.result == "counterfeit" and all(i.result == "counterfeit" for i in scan.items):
        error = ItemError(
            code="counterfeit",
            message=f"{scan.scanned}: not a genuine code ({scan.items[0].reason}); recorded",
            details=scan,
        )
        return BatchItemOut(client_id=item.client_id, status=422, scan=scan, error=error)
    return BatchItemOut(client_id=item.client_id, status=200 if replayed else 201, scan=scan)


async def _earlier_scans(
    conn: Conn, actor: Principal, client_ids: list[str]
) -> dict[str, tuple[int, bytes | None]]:
    """The scans this inspector already recorded under these client ids (id, fingerprint of
    the request). Each client id is locked until the transaction ends (the same lock as a
    single scan's: its slot, ``service.client_id_locks``, all taken in one statement, in a
    stable order), so a concurrent re-send waits and then finds them."""
    if not client_ids:
        return {}
    prefix, owner, params = service.client_scope(actor)
    await conn.execute(
        *locks.xact_each(Lock.INSPECTION_CLIENT_ID, service.client_id_locks(prefix, client_ids))
    )
    rows = await (
        await conn.execute(
            "SELECT client_id, id, client_hash FROM inspection_scans "
            f"WHERE {owner} AND client_id = ANY(%s)",
            (*params, client_ids),
        )
    ).fetchall()
    return {r["client_id"]: (int(r["id"]), r["client_hash"]) for r in rows}


async def _with_photos(
    conn: Conn,
    actor: Principal,
    items: list[InspectionIn],
    fresh: list[tuple[int, Store]],
    answers: list[BatchItemOut | None],
) -> list[tuple[int, Store]]:
    """The fresh scans whose photos are the caller's own uploads; the others refused."""
    wanted = sorted({str(p) for i, _ in fresh for p in items[i].photo_ids})
    if not wanted:
        return fresh
    missing = await service.missing_photos(conn, actor, wanted)
    kept = []
    for i, store in fresh:
        gone = {str(p) for p in items[i].photo_ids} & missing
        if gone:
            answers[i] = _error(items[i], service.unknown_photos(gone))
        else:
            kept.append((i, store))
    return kept


async def _scan_all(
    conn: Conn,
    actor: Principal,
    scheme: Scheme,
    items: list[InspectionIn],
    fresh: list[tuple[int, Store]],
    answers: list[BatchItemOut | None],
) -> list[tuple[int, Store, _Scanned]]:
    """What each fresh scan read and the verdict on its units: the unit scans from one read of
    the codes and one query of their state."""
    reads = await read_codes(conn, scheme, actor.brand_id, [items[i].code for i, _ in fresh])
    codes = sorted({r.code for r in reads if r.kind == "unit" and r.reason is None})
    cur = conn.cursor(row_factory=args_row(_Unit))
    await cur.execute(f"{service._UNITS} WHERE u.code = ANY(%s)", (codes,))
    units = {row.code: row for row in await cur.fetchall()}
    serials = await serials_of(conn, scheme, list(units))
    out: list[tuple[int, Store, _Scanned]] = []
    for (i, store), read in zip(fresh, reads, strict=True):
        if read.kind == "unit":
            if read.reason is not None:
                code = read.code if read.reason == "void" else None
                bad = Finding(read.label, "counterfeit", read.reason, code)
                out.append((i, store, _Scanned("unit", read.label, None, [bad])))
            elif (row := units.get(read.code)) is None:
                bad = Finding(read.label, "counterfeit", "not_activated", read.code)
                out.append((i, store, _Scanned("unit", read.label, None, [bad])))
            else:
                found = service._judge(row, serials.get(row.code, str(row.code)), store)
                out.append((i, store, _Scanned("unit", read.label, None, [found])))
            continue
        try:  # a case: its units through the single-scan path
            out.append(
                (i, store, await service._findings(conn, actor, scheme, store, items[i].code))
            )
        except AppError as error:
            answers[i] = _error(items[i], error)
    await _documents([f for _, _, s in out for f in s.findings], conn, scheme)
    return out


async def _documents(findings: list[Finding], conn: Conn, scheme: Scheme) -> None:
    """``service._documents`` for findings that may name the same unit more than once."""
    one: dict[int | None, Finding] = {}
    for f in findings:
        one.setdefault(f.code, f)
    await service._documents(conn, list(one.values()), scheme)
    for f in findings:
        twin = one[f.code]
        f.document_no, f.store_document_no = twin.document_no, twin.store_document_no


async def _record(
    conn: Conn,
    actor: Principal,
    items: list[InspectionIn],
    scanned: list[tuple[int, Store, _Scanned]],
) -> dict[int, int]:
    """Write the scans, their records, events, summary deltas, alerts and audit rows; the scan
    id of each item recorded."""
    if not scanned:
        return {}
    now = datetime.now(UTC)
    event_ids = await allocate_ids(conn, len(scanned))
    overall = []
    for _, _, s in scanned:
        counts = Counter(f.result for f in s.findings)
        overall.append((next(r for r in RESULTS if counts[r]), counts))
    rows = await (
        await conn.execute(
            """INSERT INTO inspection_scans (brand_id, at, store_org_id, inspector_id,
                   api_key_id, inspector_org_id, scanned, scan_kind, case_sscc, lat, lng, note,
                   photo_url, client_id, client_hash, result, units, event_id, photo_ids,
                   client_at)
               SELECT %(brand)s, %(at)s, s.store, %(user)s, %(key)s, %(org)s, s.scanned, s.kind,
                      s.sscc, s.lat, s.lng, s.note, s.photo_url, s.client_id, s.client_hash,
                      s.result, s.units, s.event_id, string_to_array(s.photos, ',')::uuid[],
                      s.client_at
               FROM unnest(%(stores)s::bigint[], %(scanned)s::text[], %(kinds)s::text[],
                           %(ssccs)s::bigint[], %(lats)s::float8[], %(lngs)s::float8[],
                           %(notes)s::text[], %(urls)s::text[], %(cids)s::text[],
                           %(hashes)s::bytea[], %(results)s::text[], %(units)s::int[],
                           %(events)s::bigint[], %(photos)s::text[], %(ats)s::timestamptz[])
                    AS s (store, scanned, kind, sscc, lat, lng, note, photo_url, client_id,
                          client_hash, result, units, event_id, photos, client_at)
               RETURNING id, event_id""",
            {
                "brand": actor.brand_id,
                "at": now,
                "user": actor.user_id,
                "key": actor.api_key_id,
                "org": actor.org_id,
                "stores": [store.id for _, store, _ in scanned],
                "scanned": [s.label for _, _, s in scanned],
                "kinds": [s.kind for _, _, s in scanned],
                "ssccs": [s.case_sscc for _, _, s in scanned],
                "lats": [items[i].gps.lat for i, _, _ in scanned],
                "lngs": [items[i].gps.lng for i, _, _ in scanned],
                "notes": [items[i].note for i, _, _ in scanned],
                "urls": [items[i].photo_url for i, _, _ in scanned],
                "cids": [items[i].client_id for i, _, _ in scanned],
                "hashes": [idempotency.fingerprint(items[i]) for i, _, _ in scanned],
                "results": [r for r, _ in overall],
                "units": [len(s.findings) for _, _, s in scanned],
                "events": event_ids,
                "photos": [",".join(str(p) for p in items[i].photo_ids) for i, _, _ in scanned],
                # in UTC: in an array PostgreSQL reads each offset itself (±15:59 at most)
                "ats": [in_utc(items[i].client_at) for i, _, _ in scanned],
            },
        )
    ).fetchall()
    scan_of_event = {r["event_id"]: int(r["id"]) for r in rows}
    scan_ids = [scan_of_event[e] for e in event_ids]
    await service.record_findings(
        conn,
        actor,
        now,
        [
            (sid, store.id, f)
            for sid, (_, store, s) in zip(scan_ids, scanned, strict=True)
            for f in s.findings
        ],
    )
    await write_events(
        conn,
        [
            service._event(actor, items[i], store, s, sid, result, counts, eid, now)
            for (i, store, s), sid, (result, counts), eid in zip(
                scanned, scan_ids, overall, event_ids, strict=True
            )
        ],
    )
    await service.deltas(
        conn,
        actor.brand_id,
        [(service.scan_time(items[i], now), store.id, s.findings) for i, store, s in scanned],
    )
    alerts: list[dict[str, Any]] = []
    for (_, store, s), sid in zip(scanned, scan_ids, strict=True):
        if any(f.result != "in_channel" for f in s.findings):
            alerts += await service.alert_rows(conn, actor, store, sid, s)
    await service.write_alerts(conn, alerts)  # all at once, in a stable order
    for (_, store, s), sid, (result, counts) in zip(scanned, scan_ids, overall, strict=True):
        await audit.record(
            conn, actor, "inspect", "inspection", sid,
            after={"store": store.erp_code, "scanned": s.label, "result": result,
                   "counts": dict(counts), "batch": True},
            org_id=store.id,
        )  # fmt: skip
    return {i: sid for (i, _, _), sid in zip(scanned, scan_ids, strict=True)}


async def scans_out(conn: Conn, scan_ids: list[int]) -> dict[int, ScanOut]:
    """Many scans with their records, in two queries (the caller may see them: they are its own
    scans at stores of its area)."""
    if not scan_ids:
        return {}
    heads = await (
        await conn.execute(
            """SELECT id, at, client_at, scanned, scan_kind, result, units, event_id
               FROM inspection_scans WHERE id = ANY(%s)""",
            (scan_ids,),
        )
    ).fetchall()
    rows = await (
        await conn.execute(
            f"""SELECT {service.RECORD_COLUMNS} FROM {service.RECORD_SOURCE}
                WHERE i.scan_id = ANY(%s) ORDER BY i.scan_id, i.id""",
            (scan_ids,),
        )
    ).fetchall()
    records: dict[int, list[Any]] = defaultdict(list)
    for row in rows:
        records[row["scan_id"]].append(service.record_out(row))
    out = {}
    for head in heads:
        items = records[head["id"]]
        counts = Counter(i.result for i in items)
        out[head["id"]] = ScanOut(
            id=head["id"],
            at=head["at"],
            client_at=head["client_at"],
            store=items[0].store,
            scanned=head["scanned"],
            kind=head["scan_kind"],
            result=head["result"],
            units=head["units"],
            counts={r: counts[r] for r in RESULTS},
            event_id=head["event_id"],
            items=items,
        )
    return out
