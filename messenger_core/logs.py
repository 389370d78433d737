"""Logging: one format for every process, the request id on every line, ``LOG_FORMAT=json`` for collectors.

The id of the request being served (or of the request that queued the task being run) lives in a
context variable: asyncio copies it into every task started while it is set, so the lines a
request's handler, hooks and helpers write all name it without passing it around.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from contextvars import ContextVar
from datetime import datetime, timezone

REQUEST_ID: ContextVar[str | None] = ContextVar("messenger_request_id", default=None)
REQUEST_ID_HEADER = "X-Request-Id"
_VALID_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
TEXT_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s%(request_tag)s"
#: extra fields of an access line, copied into its JSON object
ACCESS_FIELDS = ("method", "route", "path", "status", "duration_ms", "client")


def new_request_id() -> str:
    """A fresh request id: 16 random bytes as 32 hex digits, like nginx's ``$request_id``."""
    return os.urandom(16).hex()


def valid_request_id(value: str | None) -> bool:
    """Whether a proxy's id can be kept: 1 to 128 letters, digits or ``._:-`` (nothing to inject)."""
    return bool(value) and _VALID_ID.fullmatch(value or "") is not None


def current_request_id() -> str | None:
    """The id of the request (or task) this code runs for, if any."""
    return REQUEST_ID.get()


class RequestIdFilter(logging.Filter):
    """Gives every record a ``request_id``: its own ``extra``, else the context's, else None.

    ``request_tag`` is the same for the text format: `` request_id=<id>`` or nothing.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        rid = getattr(record, "request_id", None) or REQUEST_ID.get()
        record.request_id = rid
        record.request_tag = f" request_id={rid}" if rid else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, request id, pid (and the access fields)."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
            "pid": record.process,
        }
        for name in ACCESS_FIELDS:
            if hasattr(record, name):
                data[name] = getattr(record, name)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


def setup_logging(level: str, fmt: str = "text") -> None:
    """Configure the root logger of this process: text (with the pid and request id) or JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("tornado.access").setLevel(logging.WARNING)
    logging.getLogger("pika").setLevel(logging.WARNING)
