"""Worker entry point: ``dramatiq workers.main`` loads the broker and every actor module."""

from workers import codes, ops  # noqa: F401
from workers.broker import broker
from workers.inspect import inspection_roller
from workers.logistics import stock_roller
from workers.verify import VerificationFlusher

broker.add_middleware(VerificationFlusher())
broker.add_middleware(stock_roller())
broker.add_middleware(inspection_roller())
