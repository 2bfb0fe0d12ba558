"""EPCIS 2.0: identifier canonicalisation, CBV 2.0 event hashes, document capture and query."""
