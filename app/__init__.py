"""Tracecode: one unique, unforgeable code on every unit, traced from printer to consumer."""
