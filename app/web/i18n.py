"""The page language (Chinese by default, English on request) and the pages' own words."""

from __future__ import annotations

from typing import Any, Literal

from litestar import Request

Lang = Literal["zh", "en"]
LANGS: tuple[Lang, ...] = ("zh", "en")
COOKIE = "tc_lang"

# Words of the pages themselves; verification answers come from app.verify.messages.
WORDS: dict[str, dict[Lang, str]] = {
    "site": {"zh": "正品验证", "en": "Authenticity check"},
    "switch": {"zh": "English", "en": "中文"},
    "verify_title": {"zh": "防伪查询", "en": "Verify your product"},
    "product_title": {"zh": "产品信息", "en": "Product information"},
    "serial": {"zh": "防伪码", "en": "Code"},
    "lot": {"zh": "批号", "en": "Lot"},
    "production_date": {"zh": "生产日期", "en": "Production date"},
    "spec": {"zh": "规格", "en": "Size"},
    "category": {"zh": "类别", "en": "Category"},
    "type": {"zh": "类型", "en": "Type"},
    "colour": {"zh": "色号", "en": "Shade"},
    "efficacy": {"zh": "功效", "en": "Benefits"},
    "brand": {"zh": "品牌", "en": "Brand"},
    "gtin": {"zh": "商品条码", "en": "GTIN"},
    "video": {"zh": "观看产品视频", "en": "Watch the product video"},
    "product_link": {"zh": "查看产品详情", "en": "Product details"},
    "pin_label": {
        "zh": "请输入包装内刮开的验证码",
        "en": "Enter the PIN hidden inside the pack",
    },
    "pin_hint": {"zh": "{n} 位数字", "en": "{n} digits"},
    "submit": {"zh": "验证真伪", "en": "Verify"},
    "again": {"zh": "重新输入验证码", "en": "Enter the PIN again"},
    "bad_pin": {
        "zh": "验证码应为 {n} 位数字，请核对后重新输入。",
        "en": "The PIN is {n} digits. Please check it and try again.",
    },
    "genuine": {"zh": "正品", "en": "Genuine"},
    "suspicious": {"zh": "请注意", "en": "Caution"},
    "not_genuine": {"zh": "非正品码", "en": "Not genuine"},
    "wrong_pin": {"zh": "验证码错误", "en": "Wrong PIN"},
    "locked": {"zh": "已暂时锁定", "en": "Locked"},
    "queries": {"zh": "查询次数", "en": "Times checked"},
    "first_at": {"zh": "首次查询时间", "en": "First checked"},
    "first_place": {"zh": "首次查询地点", "en": "First checked in"},
    "attempts_left": {"zh": "剩余尝试次数", "en": "Attempts left"},
    "retry_after": {"zh": "请在 {minutes} 分钟后再试", "en": "Try again in {minutes} minutes"},
    "rate_limited_title": {"zh": "查询过于频繁", "en": "Too many checks"},
    "rate_limited": {
        "zh": "您的查询过于频繁，请 {seconds} 秒后再试。",
        "en": "Too many checks from your network. Please try again in {seconds} seconds.",
    },
    "not_found_title": {"zh": "未找到", "en": "Not found"},
    "no_product": {
        "zh": "未找到该商品条码对应的产品。",
        "en": "There is no product with this GTIN.",
    },
    "bad_gtin": {
        "zh": "商品条码格式不正确。",
        "en": "That is not a valid GTIN.",
    },
    "error_title": {"zh": "出错了", "en": "Something went wrong"},
    "error": {
        "zh": "请求无法处理，请稍后再试。",
        "en": "The request could not be handled. Please try again later.",
    },
    "footer": {
        "zh": "本页面由品牌方防伪溯源平台提供。",
        "en": "This page is provided by the brand's track-and-trace platform.",
    },
}


def word(key: str, lang: Lang, **values: object) -> str:
    text = WORDS[key][lang]
    return text.format(**values) if values else text


def pick(value: str | None) -> Lang | None:
    """``zh``/``en`` (also ``zh-CN``, ``en-US``…) as a supported language, else None."""
    if not value:
        return None
    primary = value.strip().lower().split("-", 1)[0].split("_", 1)[0]
    return primary if primary in LANGS else None  # type: ignore[return-value]


def from_accept_language(header: str | None) -> Lang | None:
    """The supported language the client ranks highest in ``Accept-Language`` (RFC 9110 q)."""
    best: tuple[float, int, Lang] | None = None
    for position, item in enumerate((header or "").split(",")):
        tag, _, params = item.partition(";")
        lang = pick(tag)
        if lang is None:
            continue
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        # higher q wins; on a tie the earlier entry wins
        if q > 0 and (best is None or (q, -position) > (best[0], best[1])):
            best = (q, -position, lang)
    return best[2] if best else None


def choose(request: Request[Any, Any, Any], override: str | None = None) -> tuple[Lang, bool]:
    """The page language and whether the visitor chose it now (so it goes into the cookie).

    Order: ``?lang=`` (the switch link), the form's field, the cookie, ``Accept-Language``, zh.
    """
    chosen = pick(request.query_params.get("lang"))
    if chosen:
        return chosen, True
    posted = pick(override)  # the language of the page the form was on: already remembered
    if posted:
        return posted, False
    remembered = pick(request.cookies.get(COOKIE))
    if remembered:
        return remembered, False
    return from_accept_language(request.headers.get("accept-language")) or "zh", False
