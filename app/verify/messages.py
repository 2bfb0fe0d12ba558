"""What a consumer reads, in Chinese (default) or English (SPEC "Consumer verification
messages")."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

CHINA = timezone(timedelta(hours=8))

TEXTS: dict[str, dict[str, str]] = {
    "first_query": {
        "zh": "您查询的产品是正品。这是该防伪码第一次被查询，感谢您的支持！",
        "en": "This product is genuine. This is the first time this code has been checked.",
    },
    "repeat_query": {
        "zh": "您查询的产品是正品。该防伪码已被查询 {queries} 次，首次查询时间 {first_at}，"
        "地点 {first_place}。如首次查询不是您本人，请谨防假冒。",
        "en": "This product is genuine. This code has been checked {queries} times; first on "
        "{first_at} in {first_place}. If that was not you, beware of a counterfeit.",
    },
    "over_threshold": {
        "zh": "警告：该防伪码已被查询 {queries} 次（首次 {first_at}，{first_place}），"
        "很可能已被复制，请谨慎购买并联系品牌方。",
        "en": "Warning: this code has been checked {queries} times (first on {first_at} in "
        "{first_place}); it has probably been copied. Contact the brand before you buy.",
    },
    "region_jump": {
        "zh": "该防伪码首次于 {first_at} 在 {first_place} 被查询，与本次查询地点不同，请谨防假冒。",
        "en": "This code was first checked on {first_at} in {first_place}, far from here. "
        "Beware of a counterfeit.",
    },
    "never_shipped": {
        "zh": "该防伪码有效，但对应产品没有正式出货记录，来源可疑，请谨慎购买。",
        "en": "This code is valid but the product was never shipped through the brand's "
        "channels. Its origin is doubtful; be careful.",
    },
    "pin_required": {
        "zh": "防伪码有效。请刮开包装内的验证码并输入，确认您手中的产品为正品。",
        "en": "The code is valid. Enter the PIN hidden inside the pack to confirm your item.",
    },
    "not_activated": {
        "zh": "该防伪码尚未启用，不是正品码，谨防假冒！",
        "en": "This code was never put on a product. It is not a genuine code.",
    },
    "forged": {
        "zh": "您查询的防伪码不存在，不是正品码，谨防假冒！",
        "en": "This code does not exist. It is not a genuine code; beware of a counterfeit.",
    },
    "unknown": {
        "zh": "您查询的防伪码不存在，不是正品码，谨防假冒！",
        "en": "This code does not exist. It is not a genuine code; beware of a counterfeit.",
    },
    "malformed": {
        "zh": "防伪码格式不正确，请核对后重新输入。",
        "en": "That is not a valid code. Please check it and try again.",
    },
    "void": {
        "zh": "该防伪码已作废，不是有效的正品码。",
        "en": "This code has been voided by the brand. It is not a valid genuine code.",
    },
    "wrong_product": {
        "zh": "该防伪码属于另一款产品，与包装上的商品条码不符，不是正品，谨防假冒！",
        "en": "This code belongs to another product than the one its label names. It is not "
        "genuine; beware of a counterfeit.",
    },
    "wrong_pin": {
        "zh": "验证码错误，请核对后重新输入（还可尝试 {left} 次）。",
        "en": "Wrong PIN. Please check it and try again (attempts left: {left}).",
    },
    "locked": {
        "zh": "验证码错误次数过多，该防伪码已暂时锁定，请 {minutes} 分钟后再试。",
        "en": "Too many wrong PINs: this code is locked. Try again in {minutes} min.",
    },
    "client_locked": {
        "zh": "您的网络输入错误验证码的次数过多，验证已暂停，请 {minutes} 分钟后再试。",
        "en": "Too many wrong PINs from your network: PIN checks are paused. Try again in "
        "{minutes} min.",
    },
}

UNKNOWN_PLACE = {"zh": "未知地区", "en": "an unknown place"}


def when(at: datetime | None) -> str:
    """``2026-11-25 18:44``, in China time."""
    if at is None:
        return ""
    try:
        t = at.astimezone(CHINA)
    except OverflowError:  # past 9999 there, stored before bodies were bounded (AwareTime)
        t = datetime.max if at.year == datetime.max.year else datetime.min
    return f"{t.year}-{t.month:02}-{t.day:02} {t.hour:02}:{t.minute:02}"


def text(reason: str, lang: str, **values: object) -> str:
    lang = lang if lang in ("zh", "en") else "zh"
    template = TEXTS.get(reason, TEXTS["unknown"])[lang]
    if "{" not in template:
        return template
    if "{first_at}" in template:
        first_at = values.get("first_at")
        values["first_at"] = when(first_at) if isinstance(first_at, datetime) else first_at or ""
        values["first_place"] = values.get("first_place") or UNKNOWN_PLACE[lang]
    return template.format(**values)
