"""Worker entry point: ``dramatiq workers.main`` loads the broker and every actor module."""

from workers import codes, ops  # noqa: F401
from workers.broker import broker
from workers.deadletter import DeadLetters
from workers.inspect import InspectionRoller
from workers.logistics import StockRoller
from workers.verify import VerificationFlusher

broker.add_middleware(DeadLetters())
broker.add_middleware(VerificationFlusher())
broker.add_middleware(StockRoller())
broker.add_middleware(InspectionRoller())
