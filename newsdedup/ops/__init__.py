"""What the ``newsdedup`` command runs beside the API and the workers.

The embedded Redis and the ``up`` supervisor, and the operator commands (ingest, export, eval, retry, sweep).
These may import the entry points (``workers``); the core packages never import these.
"""
