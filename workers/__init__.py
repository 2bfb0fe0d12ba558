"""Dramatiq actors of Tracecode."""
