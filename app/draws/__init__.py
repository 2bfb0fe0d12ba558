"""Lucky draws (扫码抽奖, SPEC B4): the brand's draw campaigns and prizes, members' draws by scan
+ PIN (once per code, ever), the results and their fulfilment.

``router`` is the domain's whole HTTP face; ``app.main`` mounts it.
"""

from litestar import Router

from app.draws import routes

router = Router(path="", route_handlers=routes.route_handlers, tags=["draws"])
