"""HTTP routes of alert triage and evidence packs (SPEC B6)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from litestar import Response, get, post, put
from litestar.params import Parameter, QueryParameter

from app.auth.principal import Principal
from app.codes.scheme import Scheme
from app.config import Settings
from app.db import Conn
from app.paging import Page, PageNo, PerPage
from app.textguard import VISIBLE
from app.triage import evidence, precision, verdicts
from app.triage.schemas import EvidenceKeyOut, PrecisionOut, VerdictIn, VerdictOut
from app.triage.signing import evidence_key

# one visible character at least, as every reference and reason a person reads (blanks only
# or zero-width marks only are 400 ``validation_failed``)
Reference = Annotated[
    str | None,
    Parameter(
        min_length=1,
        max_length=200,
        pattern=VISIBLE,
        description="the case's reference, kept in the pack",
    ),
]


@put("/alerts/{alert_id:int}/verdict", tags=["alerts"], status_code=200)
async def set_verdict(
    alert_id: int, data: VerdictIn, conn: Conn, principal: Principal
) -> VerdictOut:
    """Mark the alert a true or a false positive, with a note (``alerts.read``); marking again
    replaces the verdict (audited, the old one kept in its history); the same verdict and note
    again changes nothing, whatever ``expected_revision`` it names. Closes the alert if open.
    Another verdict or note with an ``expected_revision`` other than the verdict's now: 409
    ``verdict_changed``."""
    return await verdicts.set_verdict(conn, principal, alert_id, data)


@get("/alerts/{alert_id:int}/verdicts", tags=["alerts"])
async def verdict_history(
    alert_id: int, conn: Conn, principal: Principal, page: PageNo = 1, per_page: PerPage = 50
) -> Page[VerdictOut]:
    """Every verdict given on the alert, the first first (paged, as every list)."""
    return await verdicts.history(conn, principal, alert_id, page, per_page)


@get("/alerts/precision", tags=["alerts"])
async def alert_precision(
    conn: Conn,
    principal: Principal,
    settings: Settings,
    date_from: Annotated[
        date | None, QueryParameter(name="from", description="first day (Asia/Shanghai)")
    ] = None,
    date_to: Annotated[
        date | None, QueryParameter(name="to", description="last day, inclusive")
    ] = None,
    kind: Annotated[str | None, Parameter(min_length=1, max_length=40)] = None,
) -> PrecisionOut:
    """Precision per alert kind and per rule over the alerts raised in the period (default the
    last 30 days, at most 366: 400 ``bad_period``): true / (true + false), with the untriaged
    and open counts and the settings that tune each rule."""
    return await precision.precision(
        conn, principal, settings, date_from=date_from, date_to=date_to, kind=kind
    )


def _download(pack: evidence.Pack) -> Response[bytes]:
    return Response(
        content=pack.body,
        media_type="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="{pack.filename}"',
            "X-Evidence-Pack-Id": pack.pack_id,
            "X-Evidence-Sha256": pack.sha256,
            "Cache-Control": "no-store",
        },
    )


@post("/alerts/{alert_id:int}/evidence", tags=["alerts"], status_code=200)
async def alert_evidence(
    alert_id: int,
    conn: Conn,
    principal: Principal,
    settings: Settings,
    scheme: Scheme,
    reference: Reference = None,
) -> Response[bytes]:
    """The alert's signed evidence pack (a JSON download; ``alerts.read`` and ``orgs.read``;
    audited): the alert and its verdicts, the code, its product, verification records and
    trace, consumers' data masked. Verify it offline with ``app/triage/verify_pack.py`` and the
    key of ``GET /.well-known/tracecode-evidence-key``."""
    pack = await evidence.alert_pack(conn, principal, settings, scheme, alert_id, reference)
    return _download(pack)


@post("/codes/{serial:str}/evidence", tags=["codes"], status_code=200)
async def code_evidence(
    serial: str,
    conn: Conn,
    principal: Principal,
    settings: Settings,
    scheme: Scheme,
    reference: Reference = None,
) -> Response[bytes]:
    """A unit's (or a case's, by SSCC) signed evidence pack, as the alert's, with the code's
    alerts: 400 ``malformed_code``, 422 ``not_genuine``, 404 ``unknown_code`` as for its trace."""
    pack = await evidence.code_pack(conn, principal, settings, scheme, serial, reference)
    return _download(pack)


@get("/.well-known/tracecode-evidence-key", tags=["alerts"])
async def evidence_public_key(settings: Settings) -> EvidenceKeyOut:
    """The public key the evidence packs are signed with (Ed25519), as PEM, raw and JWK: fetch
    it once and pin it (compare its ``key_id`` with the packs')."""
    return EvidenceKeyOut(**evidence_key(settings).published())


PEM = "application/x-pem-file"


@get("/.well-known/tracecode-evidence-key.pem", tags=["alerts"], media_type=PEM)
async def evidence_public_key_pem(settings: Settings) -> str:
    """The same key as a PEM file (``curl -o tracecode-evidence-key.pem``)."""
    return evidence_key(settings).public_pem + "\n"
