"""Logistics and inventory: orders, documents, movements of codes, stock (SPEC L1–L10)."""
