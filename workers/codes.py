"""Code issuance jobs: large printer-file exports."""

from __future__ import annotations

import logging
from functools import cache

import dramatiq

from app.codes.exports import run_export
from app.codes.scheme import Scheme, scheme_from_settings
from app.deadletters import POISON
from app.embedded import start_postgres
from app.jobs import RETRIES, settings

log = logging.getLogger("tracecode.exports")


@cache
def _context() -> tuple[str, Scheme]:
    db_url = settings.database_url or start_postgres(settings.var_path)
    scheme = scheme_from_settings(settings)
    return db_url, scheme


@dramatiq.actor(**RETRIES, time_limit=6 * 3600 * 1000, throws=POISON)
def run_export_job(export_id: str) -> None:
    """Write an export's files. Idempotent under at-least-once delivery: a done or failed export
    is left alone (failed is final, ``app.codes.exports._fail_run``), a second delivery while
    another runner writes it leaves the export to that runner after a short wait (a session lock
    on the export: ``RUN_LOCK_GRACE``), and a run killed midway leaves only ``*.partial`` files
    that the next run writes again from the start. A job whose data is wrong (not an
    export id, say) is not retried but dead-lettered; the job of an export that no longer exists
    is dropped with a warning."""
    if not isinstance(export_id, str):  # uuid.UUID(123) raises AttributeError: retried (a probe)
        raise TypeError("run_export_job takes an export id")
    db_url, scheme = _context()
    if run_export(db_url, settings, scheme, export_id) == "missing":
        log.warning("export job dropped: no export %s", export_id)
