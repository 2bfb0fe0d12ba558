"""The packing line: production context, activation, aggregation, undo, replace (SPEC P1–P6)."""
