"""The WSGI entry point for gunicorn (``gunicorn service.wsgi:app``): the only module-level app."""

from __future__ import annotations

from newsdedup.config import Config
from newsdedup.observe.logs import setup as setup_logging
from newsdedup.text.tokens import warm_up

from .app import create_app

config = Config.from_env()
setup_logging(config)
app = create_app(config)
warm_up()  # build the character tables now, not during this process's first request
