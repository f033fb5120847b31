"""Structured worker logs: every line carries ``session_id`` and ``run_id``.

``FENCE_LOG_FORMAT=json`` writes one JSON object per line for log shippers;
the default is Celery's text format with the two ids added. Message bodies
and answers are never logged at INFO.
"""

from __future__ import annotations

import json
import logging

CONTEXT_FIELDS = ("session_id", "run_id")
TEXT_FORMAT = (
    "[%(asctime)s: %(levelname)s/%(processName)s] %(name)s "
    "session=%(session_id)s run=%(run_id)s: %(message)s"
)


class ContextFilter(logging.Filter):
    """Give every record the context fields, so one format fits all loggers."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name in CONTEXT_FIELDS:
            if not hasattr(record, name):
                setattr(record, name, "-")
        return True


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "process": record.processName,
            "message": record.getMessage(),
            **{name: getattr(record, name, "-") for name in CONTEXT_FIELDS},
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure(logger: logging.Logger, log_format: str) -> None:
    """Attach the context filter and the chosen formatter to ``logger``'s handlers."""
    formatter = JSONFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    for handler in logger.handlers:
        handler.addFilter(ContextFilter())
        handler.setFormatter(formatter)
