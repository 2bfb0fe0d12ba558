"""Alert triage and evidence packs (SPEC B6): verdicts on alerts, precision per rule, signed
evidence packs of an alert or a code, and the packs' public key.

``router`` is the domain's whole HTTP face; ``app.main`` mounts it. ``verify_pack.py`` is the
standalone offline verifier handed to whoever receives a pack.
"""

from litestar import Router

from app.triage.routes import (
    alert_evidence,
    alert_precision,
    code_evidence,
    evidence_public_key,
    evidence_public_key_pem,
    set_verdict,
    verdict_history,
)

router = Router(
    path="",
    route_handlers=[
        set_verdict,
        verdict_history,
        alert_precision,
        alert_evidence,
        code_evidence,
        evidence_public_key,
        evidence_public_key_pem,
    ],
)
