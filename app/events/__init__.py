"""The event log: every state change, EPCIS 2.0-shaped, append-only (SPEC L, P, I3)."""
