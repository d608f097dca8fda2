"""The HTTP API: a thin Flask layer over :class:`newsdedup.dedup.Dedup`.

``create_app()`` is the only way to build the app (``service.wsgi`` calls it for
gunicorn), so importing this package never reads the environment or connects
to Redis.
"""

from __future__ import annotations

from .app import create_app

__all__ = ["create_app"]
