"""HTTP route of a store clerk's rebate claim (R1): ``POST /rebates/claims``."""

from __future__ import annotations

from litestar import asgi
from litestar.openapi.spec import OpenAPI
from litestar.types import Receive, Scope, Send

from app.claims import answer_claim, decode_claim, document_claim_route, read_claim
from app.rebates.claims import NotAStore
from app.rebates.schemas_claims import RebateClaimOut


@asgi("/rebates/claims", copy_scope=False)
async def claim(scope: Scope, receive: Receive, send: Send) -> None:
    """POST /rebates/claims (documented in the OpenAPI schema by ``document_claims``): a plain
    ASGI handler (``app.claims.read_claim``); the clerk is looked up by the claimer with the other
    claims in flight (``app.rebates.claims.Clerks``), never on a pooled connection."""
    request = await read_claim(scope, receive)
    claimer = scope["litestar_app"].state.rebate_claimer
    try:
        clerk = await claimer.clerks.lookup(request.authorization)  # 401/403 before the body
    except NotAStore as refused:  # a clerk moved out of stores: only a re-send is answered
        out, created = await claimer.replay(
            refused, decode_claim(request.body), request.ip, request.user_agent
        )
    else:
        data = decode_claim(request.body)
        out, created = await claimer.claim_rebate(clerk, data, request.ip, request.user_agent)
    await answer_claim(send, out, created)


_CLAIM_DOC = """Claim the sales rebate of a unit the clerk's store sold, by its outer code (serial
or QR content) and inner PIN (201), as a signed-in store clerk (a staff access token with
``sales.claim``, of a store: 403 ``not_a_store``, or the missing permission; 401
``account_inactive`` for an inactive account). First a verification, with the same answers and
lockout as ``/v1/verify``: 422 ``not_genuine`` (details: the verification, e.g. reason ``forged``,
``void``, ``not_activated``), 422 ``wrong_pin`` (``pin_attempts_left``), 429 ``locked`` or
``rate_limited`` (Retry-After). The unit must have been delivered to the clerk's store: 422
``wrong_store`` / ``wrong_agent`` / ``not_delivered`` name where it was supposed to be (details
``expected_store``, ``expected_agent``) and the attempt is kept as an anti-diversion signal; 422
``not_received`` while it is still in transit to the store. A unit not yet sold is recorded as sold
by the claim (``sale_recorded``). The amount is the rebate in force at the clerk's store: its
nearest agent's rule for the product, else the product's default, as at the claim (422
``no_rebate``: none). A code's rebate is credited once, ever: 409 ``already_claimed``. The
same ``client_id`` again answers the first claim (200); 409 ``client_id_reused`` for another
code. 422 ``other_brand``, ``not_claimable`` (void or destroyed); 400 on a bad body
(``invalid_character`` for a control character); 413 over 16 KB."""


def document_claims(openapi: OpenAPI) -> None:
    """Add POST /rebates/claims to the schema."""
    document_claim_route(
        openapi, "/rebates/claims", "rebates", "RebatesClaimsClaim", _CLAIM_DOC, RebateClaimOut
    )


route_handlers = [claim]
