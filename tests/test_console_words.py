"""The office console shows the codes the API answers in words: every reason a rejected line scan
(app/packing/scans.py), an inspection (app/inspect/service.py), a verification record
(app/verify) and a refused rebate claim (app/rebates/claims.py) can carry has a zh-CN and an
English text in the console's maps, and the pages show the words, not the code.

The reasons are collected from the app's source (the places that set them), so a reason added
later without words fails here. Probes: the line's uploads showed ``id_reused``, inspection and
verification records ``never_shipped``, refused claims ``not_delivered`` (which apiErrors.ts has
words for)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from app.codes.lookup import VOID_STATES
from app.packing.scans import MESSAGES
from app.verify.messages import TEXTS

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "app"
SRC = ROOT / "console" / "src"
PAGES = SRC / "pages"
CODE = re.compile(r"[a-z][a-z0-9_]*")
# a table column showing the row's reason as the API answers it
RAW_REASON = re.compile(r'<el-table-column prop="reason"[^>]*/>')


# -- the reasons, from the app's source --------------------------------------------------------


def _strings(node: ast.expr | None) -> set[str]:
    """The string constants an expression may evaluate to (``a if c else b``, ``a or b``)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value} if CODE.fullmatch(node.value) else set()
    if isinstance(node, ast.IfExp):
        return _strings(node.body) | _strings(node.orelse)
    if isinstance(node, ast.BoolOp):
        return set().union(*(_strings(v) for v in node.values))
    return set()


def _assigned(target: ast.expr, value: ast.expr) -> set[str]:
    """What an assignment puts in a ``reason`` (or ``problem``), a tuple's paired element."""
    if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple):
        return set().union(
            *(_assigned(t, v) for t, v in zip(target.elts, value.elts, strict=False))
        )
    name = target.id if isinstance(target, ast.Name) else getattr(target, "attr", None)
    return _strings(value) if name in ("reason", "problem") else set()


def reasons_in(
    path: Path, calls: dict[str, int], returns: dict[str, int] | None = None
) -> set[str]:
    """The reason codes a module sets: assigned to a ``reason`` (or ``problem``), passed as
    ``reason=``, as the argument at the index ``calls`` names of a function or method of that
    name, or returned (the tuple's element at the index ``returns`` names) by those functions."""
    returns = returns or {}
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                found |= _assigned(target, node.value)
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in calls and len(node.args) > calls[name]:
                found |= _strings(node.args[calls[name]])
            found |= set().union(*(_strings(k.value) for k in node.keywords if k.arg == "reason"))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in returns:
            for ret in ast.walk(node):
                if isinstance(ret, ast.Return) and ret.value is not None:
                    value = ret.value
                    if isinstance(value, ast.Tuple):
                        value = value.elts[returns[node.name]]
                    found |= _strings(value)
    return found


def _read_reasons() -> set[str]:
    """Why a scanned text is no code of the brand (``app.codes.lookup``: ``read.reason``)."""
    return reasons_in(APP / "codes" / "lookup.py", {})


def packing_reasons() -> set[str]:
    """Every reason a line's upload rejects a scan for (``_reject``), its texts (``MESSAGES``)."""
    scans = reasons_in(
        APP / "packing" / "scans.py",
        {"_reject": 1},
        {"_not_here": 0, "_inactive": 0, "_other_context": 0},
    )
    return scans | set(MESSAGES) | _read_reasons()


def inspection_reasons() -> set[str]:
    """Every reason of an inspection's verdict (``Finding``: its third field), a unit's void
    state and a scanned text's reason among them."""
    found = reasons_in(APP / "inspect" / "service.py", {"Finding": 2})
    return found | set(VOID_STATES) | _read_reasons()


_LUA_RESULT = re.compile(r"result, reason = '\w+', (.*)$", re.M)
_LUA_RECORD = re.compile(r"record\('\w+', (.*?), \w+\)")


def verification_reasons() -> set[str]:
    """Every reason a verification record carries: the consumer's texts (``TEXTS``), the Redis
    script's (``_SCRIPT``: the results' reasons, ``claim_retry``) and PostgreSQL's fallback."""
    script = (APP / "verify" / "service.py").read_text()
    lua = {
        word
        for line in _LUA_RESULT.findall(script) + _LUA_RECORD.findall(script)
        for word in re.findall(r"'([a-z_]+)'", line)
    }
    service = reasons_in(APP / "verify" / "service.py", {"_refuse": 1})
    fallback = reasons_in(
        APP / "verify" / "fallback.py", {"_not_genuine": 2, "_insert": 3}, {"decide": 1}
    )
    return set(TEXTS) | lua | service | fallback


def refusal_reasons() -> set[str]:
    """The codes of a refused rebate claim kept as a signal (``Diverted``'s code)."""
    return reasons_in(APP / "rebates" / "claims.py", {"Diverted": 1})


# -- the console's maps -------------------------------------------------------------------------


def map_keys(relative: str, section: str) -> dict[str, set[str]]:
    """The keys of ``section: { … }`` (one key a line) in each half, zh-CN and en, of a page
    area's messages.ts."""
    text = (PAGES / relative).read_text()
    zh, en = text.split("\n  en:", 1)
    keys = {}
    for locale, half in (("zh-CN", zh), ("en", en)):
        block = re.search(rf"\n\s+{section}: \{{\n(.*?)\n\s*\}}", half, re.S)
        assert block, f"{relative}: no {section} map in {locale}"
        keys[locale] = set(re.findall(r"^\s+'?([a-z0-9_]+)'?:", block.group(1), re.M))
    return keys


def api_error_codes() -> set[str]:
    """The codes apiErrors.ts has a zh-CN text for (``ZH_CN``, one ``code: '文本',`` a line)."""
    text = (SRC / "i18n" / "apiErrors.ts").read_text()
    block = text.split("export const ZH_CN", 1)[1].split("\n}", 1)[0]
    return set(re.findall(r"^\s+'?([a-z0-9_]+)'?:", block, re.M))


def _missing(reasons: set[str], keys: dict[str, set[str]]) -> dict[str, list[str]]:
    return {locale: sorted(reasons - have) for locale, have in keys.items() if reasons - have}


# -- the tests ----------------------------------------------------------------------------------


def test_the_collectors_find_the_reasons_they_are_known_to_give() -> None:
    """The collectors read the source as it is (a collector finding nothing passes any map)."""
    assert {"id_reused", "unit_with_children", "not_held", "in_transit", "not_a_factory"} <= (
        packing_reasons()
    )
    assert {"bad_time", "wrong_product", "already_active", "short_case", "forged"} <= (
        packing_reasons()
    )
    assert {
        "never_shipped",
        "outside_agent_area",
        "designated_store",
        "agent_area",
        "no_channel",
        "returned_to_stock",
        "void",
        "destroyed",
        "not_packed",
        "case_void",
        "not_activated",
    } <= inspection_reasons()
    assert {
        "never_shipped",
        "pin_required",
        "first_query",
        "repeat_query",
        "over_threshold",
        "region_jump",
        "wrong_pin",
        "claim_retry",
        "locked",
        "client_locked",
        "malformed",
    } <= verification_reasons()
    assert {"not_delivered", "wrong_store", "wrong_agent"} <= refusal_reasons()


def test_every_rejected_scan_reason_of_a_line_upload_has_words() -> None:
    """lines/LineUploads.vue shows ``lines.reasons.<reason>``, else the raw code (``id_reused``,
    ``unit_with_children``, ``not_held``, ``in_transit``, ``not_a_factory`` were raw)."""
    missing = _missing(packing_reasons(), map_keys("lines/messages.ts", "reasons"))
    assert not missing, f"line scan rejections without words (lines.reasons): {missing}"


def test_every_inspection_reason_has_words_and_the_page_shows_them() -> None:
    """inspections/InspectionsPage.vue showed the record's reason raw (``never_shipped``,
    ``outside_agent_area``, ``designated_store`` beside a result in Chinese)."""
    missing = _missing(inspection_reasons(), map_keys("inspections/messages.ts", "reasons"))
    assert not missing, f"inspection reasons without words (inspections.reasons): {missing}"
    page = (PAGES / "inspections" / "InspectionsPage.vue").read_text()
    assert not RAW_REASON.findall(page), RAW_REASON.findall(page)
    assert "inspections.reasons" in page


def test_every_verification_reason_has_words_and_both_pages_show_them() -> None:
    """verifications/VerificationsPage.vue and a member's scans (members/MemberDrawer.vue)
    showed the record's reason raw (``pin_required``, ``first_query``, ``claim_retry``): one map,
    ``verifications.reasons``, for both."""
    missing = _missing(verification_reasons(), map_keys("verifications/messages.ts", "reasons"))
    assert not missing, f"verification reasons without words (verifications.reasons): {missing}"
    drawer = (PAGES / "members" / "MemberDrawer.vue").read_text()
    scans = drawer.split('data-table="scans"', 1)[1].split("</el-table>", 1)[0]
    for name, source in (
        ("VerificationsPage.vue", (PAGES / "verifications" / "VerificationsPage.vue").read_text()),
        ("MemberDrawer.vue (scans)", scans),
    ):
        assert not RAW_REASON.findall(source), (name, RAW_REASON.findall(source))
        assert "verificationReason(" in source, f"{name} does not show the reason in words"


def test_a_refused_claims_reason_is_shown_through_the_api_error_texts() -> None:
    """rebates/RefusalsPage.vue showed ``not_delivered``, ``wrong_store``, ``wrong_agent`` raw,
    though they are the codes of the clerk's refusal with texts in apiErrors.ts."""
    missing = sorted(refusal_reasons() - api_error_codes())
    assert not missing, f"refusal codes without a text in apiErrors.ts: {missing}"
    page = (PAGES / "rebates" / "RefusalsPage.vue").read_text()
    assert not RAW_REASON.findall(page), RAW_REASON.findall(page)
    assert re.search(r"import \{[^}]*\berrorText\b[^}]*\} from '@/i18n/apiErrors'", page)
    assert "errorText(" in page


# a list read in ONE request of its first 200 and used whole (no ``page`` beside ``per_page``)
_FIRST_200 = re.compile(r"\{ per_page: 200 \}|\?per_page=200")


def test_the_pickers_and_lists_named_by_probes_reach_past_the_first_200() -> None:
    """Probes: the batch page's product and printer pickers (``GET /products?per_page=200``,
    ``/printers``), the campaign dialog's templates (``/sms/templates``) and the field pages'
    rep filter (the reps of the newest 200 check-ins) offered only what one first page held;
    the batch's files dialog listed the OLDEST 200 exports, not the one just made. They search
    as typed (ProductSelect, ``GET /field/reps``), read every page (api/everyPage.ts) or ask
    for the newest first, paged."""
    sources = {
        name: (PAGES / name).read_text()
        for name in (
            "batches/BatchesPage.vue",
            "batches/ExportDialog.vue",
            "sms/CampaignsTab.vue",
            "field/reps.ts",
            "field/RepSelect.vue",
        )
    }
    first_200 = {name: _FIRST_200.findall(text) for name, text in sources.items()}
    assert not {name: found for name, found in first_200.items() if found}, first_200
    assert "<ProductSelect" in sources["batches/BatchesPage.vue"]
    assert "everyPage(" in sources["batches/BatchesPage.vue"]
    assert "everyPage(" in sources["sms/CampaignsTab.vue"]
    assert "'/field/reps'" in sources["field/reps.ts"]
    assert "order: 'newest'" in sources["batches/ExportDialog.vue"]
