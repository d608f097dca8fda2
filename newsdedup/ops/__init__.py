"""Operator commands that are not the service itself: ingest, export (and, after issue 11, more)."""
