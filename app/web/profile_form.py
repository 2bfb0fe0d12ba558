"""The member's profile on the phone (seed 1.6 "注册成功后可针对个人资料信息进行完善", 1.10.1
"通过会员注册搜集消费者手机号码、年龄段,微信号"): the form of ``/member/profile`` and what it posts,
read as ``PATCH /members/me`` reads its body.

The form posts every field of ``ProfilePatch`` but the phone (which is the membership): gender,
birthday, age band, e-mail, WeChat id, province, city, and the marketing opt-out when the box
was changed from what the page showed (``marketing_opt_out_shown``). An empty field
clears it (the API's ``null``). With a birthday the age band is left out, so that it follows
the birthday (``app.members.profile``: a band contradicting it would be 422); without one the
band chosen is kept. The fields go through the API's own decoding (``msgspec.json`` into
``ProfilePatch``, the same constraints, the same ``validation_failed`` naming the field) and then
``app.members.profile.update_profile``: the same checks and the same writes as the JSON API.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from app.errors import AppError, invalid_body
from app.members.profile import BANDS
from app.members.schemas import MemberOut, ProfilePatch
from app.provinces import CAPITALS
from app.web.html import esc
from app.web.i18n import Lang, word
from app.web.member_html import alert, form, hidden, nav

_TEXT = ("gender", "email", "wechat_id", "province", "city")
GENDERS = ("male", "female", "other")
FIELDS = ("gender", "birthday", "age_band", "email", "wechat_id", "province", "city")

# the selects and the checkbox in the pages' one column (the pages' input style is the PIN's)
_STYLE = (
    "<style>.profile select,.profile input.text{width:100%;font-size:18px;min-height:48px;"
    "padding:8px 10px;margin:0 0 12px;border:2px solid #9aa5b1;border-radius:10px;"
    "background:#fff;letter-spacing:normal;text-align:left}"
    ".profile label.check{display:flex;gap:10px;align-items:center;font-weight:400}"
    ".profile input[type=checkbox]{width:24px;min-height:24px;margin:0}</style>"
)


def patch_of(posted: Mapping[str, str]) -> ProfilePatch:
    """The form's fields as ``PATCH /members/me``'s body: 400 ``validation_failed`` naming the
    field the API would name."""
    body: dict[str, Any] = {name: posted.get(name, "").strip() or None for name in _TEXT}
    birthday = posted.get("birthday", "").strip()
    body["birthday"] = birthday or None
    if not birthday:
        body["age_band"] = posted.get("age_band", "").strip() or None
    opted, shown = posted.get("marketing_opt_out") == "1", posted.get("marketing_opt_out_shown")
    # the box left as the page showed it changes nothing: a page shown before a TD reply, saved
    # for another field after it, switched marketing back on (a review)
    if shown is None or (shown == "1") != opted:
        body["marketing_opt_out"] = opted
    try:
        return msgspec.json.decode(msgspec.json.encode(body), type=ProfilePatch)
    except msgspec.ValidationError as exc:
        raise invalid_body(exc) from None


def values_of(member: MemberOut) -> dict[str, str]:
    """A saved profile as the form shows it."""
    values = {name: getattr(member, name) for name in FIELDS}
    shown = {k: "" if v is None else str(v) for k, v in values.items()}
    shown["marketing_opt_out"] = "1" if member.marketing_opt_out else ""
    return shown


def refusal(exc: AppError, lang: Lang) -> str:
    """A refusal of the profile in the page's language: the field that is wrong, or the rule."""
    if exc.code == "validation_failed" and isinstance(exc.details, list) and exc.details:
        field = str(exc.details[0].get("field", ""))
        label = word(f"profile_{field}", lang) if field in FIELDS else field
        return word("profile_invalid", lang, field=label)
    key = f"err_{exc.code}"
    return word(key, lang) if key in _KNOWN else word("error", lang)


_KNOWN = {"err_age_band_mismatch", "err_city_without_province", "err_member_erased"}


def _select(name: str, chosen: str, options: list[tuple[str, str]], lang: Lang) -> str:
    if chosen and chosen not in {value for value, _ in options}:  # kept as stored
        options = [*options, (chosen, chosen)]
    items = [("", word("profile_unset", lang)), *options]
    return (
        f'<select id="{name}" name="{name}">'
        + "".join(
            f'<option value="{esc(value)}"{" selected" if value == chosen else ""}>{esc(text)}'
            "</option>"
            for value, text in items
        )
        + "</select>"
    )


def _label(name: str, lang: Lang) -> str:
    return f'<label for="{name}">{esc(word("profile_" + name, lang))}</label>'


def _input(name: str, kind: str, value: str, maxlength: int, extra: str = "") -> str:
    return (
        f'<input class="text" id="{name}" name="{name}" type="{kind}" maxlength="{maxlength}" '
        f'value="{esc(value)}"{extra}>'
    )


def _fields(lang: Lang, v: Mapping[str, str]) -> str:
    genders = [(g, word(f"gender_{g}", lang)) for g in GENDERS]
    bands: list[tuple[str, str]] = [(band, word(f"age_{band}", lang)) for _, band in BANDS]
    provinces = [(zh, zh if lang == "zh" else en) for zh, _, _, _, en, _ in CAPITALS]
    opted = " checked" if v.get("marketing_opt_out") else ""
    # "0", not "": a form's blank values are not read (``read_form``)
    shown = v.get("marketing_opt_out_shown") or ("1" if v.get("marketing_opt_out") else "0")
    return (
        f"{_label('gender', lang)}{_select('gender', v.get('gender', ''), genders, lang)}"
        f"{_label('birthday', lang)}"
        f"{_input('birthday', 'date', v.get('birthday', ''), 10, ' min=1900-01-01')}"
        f"{_label('age_band', lang)}{_select('age_band', v.get('age_band', ''), bands, lang)}"
        f'<p class="hint">{esc(word("profile_age_hint", lang))}</p>'
        f"{_label('email', lang)}"
        f"{_input('email', 'email', v.get('email', ''), 254, ' autocomplete=email')}"
        f"{_label('wechat_id', lang)}{_input('wechat_id', 'text', v.get('wechat_id', ''), 40)}"
        f'<p class="hint">{esc(word("profile_wechat_hint", lang))}</p>'
        f"{_label('province', lang)}"
        f"{_select('province', v.get('province', ''), provinces, lang)}"
        f"{_label('city', lang)}{_input('city', 'text', v.get('city', ''), 40)}"
        f'<label class="check"><input type="checkbox" name="marketing_opt_out" value="1"{opted}>'
        f"{esc(word('profile_opt_out', lang))}</label>{hidden('lang', lang)}"
        f"{hidden('marketing_opt_out_shown', shown)}"
    )


def page(
    lang: Lang, csrf: str, values: Mapping[str, str], notice: str = "", error: str = ""
) -> str:
    """The profile form, filled with ``values`` (saved, or as typed when refused)."""
    said = f'<p class="notice" id="notice">{esc(notice)}</p>' if notice else ""
    fields = f"{alert(error)}{said}<p>{esc(word('profile_intro', lang))}</p>{_fields(lang, values)}"
    return (
        f"{_STYLE}{nav(lang, '/member/profile')}"
        f'<section class="card profile" id="profile">'
        f"{form('/member/profile', csrf, fields, word('profile_save', lang))}</section>"
    )
