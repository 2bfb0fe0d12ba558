"""Code issuance (SPEC C): the serial scheme's Python face lives in ``app.codes.scheme``."""
