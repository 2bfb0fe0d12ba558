"""WeChat service accounts (SPEC W5): a brand's account (app id, sealed secret, template ids),
members signed in by WeChat OAuth on the phone site, and template messages sent through an
outbox.

``router`` is the domain's whole HTTP face, the member's WeChat pages
(``app.web.wechat_pages``) included; ``app.main`` mounts it. Other domains queue a message
with ``app.wechat.outbox`` in their own transaction; the workers send it (workers/wechat.py).
"""

from litestar import Router

from app.web import wechat_pages
from app.wechat.routes import route_handlers

router = Router(
    path="",
    route_handlers=[*route_handlers, *wechat_pages.route_handlers],
    tags=["wechat"],
)
