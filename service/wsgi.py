"""The WSGI entry point for gunicorn (``gunicorn service.wsgi:app``): the only module-level app."""

from __future__ import annotations

from .app import create_app

app = create_app()
