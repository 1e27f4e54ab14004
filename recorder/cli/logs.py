"""Log output of the ``recorder`` command: plain text lines, or one JSON object per line.

``--log-format json`` is for log shippers: each record becomes ``{"ts", "level", "logger",
"message"}`` (plus ``"exc"`` with a traceback's text when there is one) on one line. Messages
are already free of secrets (credentials are never formatted into them), so nothing is
filtered here.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts (ISO 8601, UTC, ms), level, logger, message."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def formatter(fmt: str) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT)


def configure(level: str, fmt: str = "text") -> None:
    """Log records of ``level`` and above to stderr, in ``fmt`` (``text`` or ``json``)."""
    logging.basicConfig(level=level.upper(), stream=sys.stderr, format=TEXT_FORMAT)
    set_format(fmt)
    logging.getLogger("websockets").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)


def set_format(fmt: str) -> None:
    """Switch every handler of the root logger to ``fmt`` (a command's own ``--log-format``)."""
    for handler in logging.getLogger().handlers:
        handler.setFormatter(formatter(fmt))
