"""The WSGI entry point for gunicorn (``gunicorn service.wsgi:app``): the only module-level app."""

from __future__ import annotations

from newsdedup.text.tokens import warm_up

from .app import create_app

app = create_app()
warm_up()  # build the character tables now, not during this process's first request
