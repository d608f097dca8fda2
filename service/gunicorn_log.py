"""gunicorn's own log lines (boot, worker start/exit) as JSON when NEWSDEDUP_LOG_FORMAT=json.

``newsdedup serve`` passes ``--logger-class service.gunicorn_log.JsonLogger`` then, so
every line a serving process writes is one JSON object.
"""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger

from newsdedup.observe.logs import JsonFormatter, RequestIdFilter


class JsonLogger(Logger):  # type: ignore[misc]
    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(JsonFormatter())
                handler.addFilter(RequestIdFilter())
