"""SMS (I2, M6, W4): the outbox every message goes through, the gateway adapters, delivery and
reply callbacks, marketing opt-outs, the brand's campaign templates and campaigns, reminders.

``router`` is the domain's whole HTTP face; ``app.main`` mounts it. Other domains send a message
with ``app.sms.outbox.enqueue`` in their own transaction; the workers send it (workers/sms.py).
"""

from litestar import Router

from app.sms.routes import (
    CallbackController,
    CampaignController,
    OptOutController,
    TemplateController,
)

router = Router(
    path="",
    route_handlers=[CallbackController, OptOutController, TemplateController, CampaignController],
    tags=["sms"],
)
