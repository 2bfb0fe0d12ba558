"""SMS texts: the built-in templates and the one way a text is rendered.

A template is a body with ``{name}`` placeholders. The built-in ones (one-time code, redemption
code, reminder) come in zh-CN (the default) and English (``variables["lang"] == "en"``); a brand's
campaign templates (table ``sms_templates``) have one body each. Rendering is strict: a
placeholder without a value is an error of the message (the sender dead-letters it), never a
text sent with a hole in it. The signature (``【品牌】``) goes first; marketing texts end with the
opt-out line the carriers require.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

BUILTIN: dict[str, dict[str, str]] = {
    "otp": {
        "zh-CN": "您的验证码为{code}，{minutes}分钟内有效，请勿泄露给他人。",
        "en": "Your verification code is {code}, valid for {minutes} minutes. Do not share it.",
    },
    "redemption": {
        "zh-CN": "您已成功兑换{gift}，兑换码{code}，请于{until}前使用：{how}",
        "en": "You redeemed {gift}. Your code is {code}, valid until {until}: {how}",
    },
    "reminder": {
        "zh-CN": "您的积分已达{points}分，可兑换{gift}，快来兑换吧！",
        "en": "You have {points} points, enough for {gift}. Redeem it now!",
    },
}
OPT_OUT_LINE = {"zh-CN": "回复TD退订", "en": "Reply TD to opt out"}
MARKETING = frozenset({"reminder", "campaign"})
#: Variables holding a secret: masked in logs, wiped from the outbox once the row is done.
SECRET_VARIABLES = ("code",)

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]{0,39})\}")
_BRACES = re.compile(r"\{[^{}]*\}|[{}]")
#: The one variable a campaign may give that is no placeholder: the opt-out line's language.
LANG = "lang"


class RenderError(ValueError):
    """A text cannot be made from its template and variables (the message's fault)."""


def placeholders(body: str) -> set[str]:
    return set(_PLACEHOLDER.findall(body))


def stray_braces(body: str) -> list[str]:
    """What of ``body`` is in braces but no placeholder, as written (``{季节}``,
    ``{discount-rate}``, ``{}``, a lone ``{``): the renderer leaves it in the text as it is, so
    a brand's template holding one is refused (a probe: ``{季节}新品上市`` was taken with no
    placeholder, no campaign asked for it, and every SMS went out with the braces)."""
    return [m.group() for m in _BRACES.finditer(body) if not _PLACEHOLDER.fullmatch(m.group())]


def language(variables: Mapping[str, str]) -> str:
    return "en" if variables.get(LANG) == "en" else "zh-CN"


def body_of(template: str, variables: Mapping[str, str], brand_body: str | None) -> str:
    """The body of a built-in template in the message's language, else the brand's."""
    if template in BUILTIN:
        return BUILTIN[template][language(variables)]
    if brand_body is None:
        raise RenderError(f"unknown template {template!r}")
    return brand_body


def render(
    body: str, variables: Mapping[str, str], *, signature: str, purpose: str, lang: str = "zh-CN"
) -> str:
    """``signature + body`` with every placeholder filled (+ the opt-out line for marketing)."""

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        value = variables.get(name)
        if not isinstance(value, str):
            raise RenderError(f"the variable {name!r} is missing")
        return value

    text = signature + _PLACEHOLDER.sub(fill, body)
    if purpose in MARKETING:
        text += (" " if lang == "en" else "") + OPT_OUT_LINE[lang]
    return text


def mask_secrets(text: str, variables: Mapping[str, str]) -> str:
    """The text with each secret variable's value replaced by asterisks (for logs)."""
    for name in SECRET_VARIABLES:
        value = variables.get(name)
        if isinstance(value, str) and value:
            text = text.replace(value, "*" * len(value))
    return text
