"""The H5 pieces of lucky draws (扫码抽奖) the answer page (``app.web.pages``) and the draw page
(``app.web.draw_pages``) share: their words and the answer page's 抽奖 box."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from app.draws.service import running_for
from app.web import html, session
from app.web.i18n import Lang

_WORDS: dict[str, dict[Lang, str]] = {
    "title": {"zh": "扫码抽奖", "en": "Lucky draw"},
    "link": {"zh": "抽奖", "en": "Lucky draw"},
    "offer": {
        "zh": "此产品正在抽奖：{name}",
        "en": "A lucky draw is running for this product: {name}",
    },
    "serial": {"zh": "防伪码", "en": "Code"},
    "pin": {"zh": "内码 PIN", "en": "PIN"},
    "draw": {"zh": "抽奖", "en": "Draw"},
    "won": {"zh": "恭喜中奖", "en": "You won"},
    "won_points": {"zh": "{name}：{points} 积分已到账", "en": "{name}: {points} points credited"},
    "won_prize": {"zh": "{name}：我们会尽快发放", "en": "{name}: we will send it to you soon"},
    "lost": {"zh": "谢谢参与", "en": "No prize this time"},
    "lost_message": {"zh": "很遗憾，这次没有中奖", "en": "Better luck next time"},
    "bad_input": {"zh": "请填写防伪码和内码", "en": "Enter the code and the PIN"},
    "review": {"zh": "抽奖审核中", "en": "Draw under review"},
    "review_message": {
        "zh": "您的会员账户正在审核中：此防伪码已为您保留，审核通过后为您抽奖",
        "en": "Your membership is under review: this code is kept for you and drawn once the "
        "review clears it",
    },
    "rejected": {"zh": "未能抽奖", "en": "No draw"},
    "rejected_message": {
        "zh": "审核未通过，此防伪码不参与抽奖",
        "en": "The review did not clear this draw: no prize",
    },
}


def w(key: str, lang: Lang, **values: object) -> str:
    return _WORDS[key][lang].format(**values)


def draw_link(lang: Lang, serial: str, campaign_name: str, ticket: str = "") -> str:
    """The answer page's 抽奖 box: the campaign, a link to the draw form of the unit — with the
    answer page's sealed ticket (its PIN and its check), the form draws without asking the PIN
    again and the draw's verification is not counted as another check of the code."""
    href = f"/member/draw?serial={quote(serial, safe='')}&lang={lang}"
    if ticket:
        href += f"&ticket={quote(ticket, safe='')}"
    return (
        f'<section class="card" id="draw"><h2>{html.esc(w("title", lang))}</h2>'
        f"<p class=hint>{html.esc(w('offer', lang, name=campaign_name))}</p>"
        f'<a class="button" id="draw-link" href="{html.esc(href)}">'
        f"{html.esc(w('link', lang))}</a></section>"
    )


async def draw_offer(
    state: Any, code: int, serial: str, lang: Lang, pin: str = "", check: str | None = None
) -> str:
    """``draw_link`` when a campaign covering unit ``code`` runs now and it was not drawn; with
    the PIN the answer page proved, a ticket of it (``session.issue_ticket``, nonce ``check``)."""
    async with state.pool.connection() as conn:
        running = await running_for(conn, code)
    if running.campaign_name is None or running.brand_id is None:
        return ""
    ticket = ""
    if pin:
        ticket = session.issue_ticket(state.settings, serial, pin, running.brand_id, check)
    return draw_link(lang, serial, running.campaign_name, ticket)
