"""Code issuance (SPEC C): the serial scheme's Python face lives in ``app.codes.scheme``.

The domain owns a code's identity — batches, case codes, exports, the code lookup and a code's
trace, and the serial allocation API (pools, allocations). ``router`` is its whole HTTP face;
``app.main`` mounts it. Its operations keep their own tags ("codes", and "trace" for the trace).
"""

from litestar import Router

from app.codes.routes import (
    AllocationController,
    BatchController,
    CaseBatchController,
    ExportController,
    PoolController,
    code_allocation,
    code_status,
    get_trace,
    list_printers,
    set_printer_key,
)

router = Router(
    path="",
    route_handlers=[
        BatchController,
        ExportController,
        CaseBatchController,
        list_printers,
        set_printer_key,
        code_status,
        get_trace,
        PoolController,
        AllocationController,
        code_allocation,
    ],
)
