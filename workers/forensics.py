"""Leak detection and the ring detector (B5, ``app.forensics``): both run every
``FORENSICS_INTERVAL_SECONDS`` in every worker process, one process at a time (their locks);
``tracecode forensics leaks|rings`` runs them now. The ring detector runs first (it settles the
held claims of decided holds before its rules); each detector, the settling and each rule fail
alone: logged, the others still run."""

from __future__ import annotations

import logging

from app.db import Conn
from app.forensics.leaks import detect_leaks
from app.forensics.rings import detect_rings
from app.jobs import settings
from workers.periodic import PeriodicRollup

log = logging.getLogger("tracecode.forensics")


class ForensicsSweeper(PeriodicRollup):
    def __init__(self) -> None:
        super().__init__("forensics", _detect, interval=settings.forensics_interval_seconds)


async def _detect(conn: Conn) -> None:
    try:
        rings = await detect_rings(conn, settings)
        if rings.ran and (rings.held or rings.settled or rings.failed):
            log.info(
                "ring detection: held %s, settled %d claims, %d failed",
                rings.held,
                rings.settled,
                rings.failed,
            )
    except Exception:
        log.exception("ring detection failed")
    try:
        leaks = await detect_leaks(conn, settings)
        if leaks.ran and (leaks.findings or leaks.alerts or leaks.failed):
            log.info(
                "leak detection: %d new findings, %d unattributed, %d alerts, %d failed",
                leaks.findings,
                leaks.unattributed,
                leaks.alerts,
                leaks.failed,
            )
    except Exception:
        log.exception("leak detection failed")
