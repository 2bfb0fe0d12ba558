"""(being written)"""

from typing import Any

route_handlers: list[Any] = []
