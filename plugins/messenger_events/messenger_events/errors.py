"""Close codes and error frames of the stream."""

from __future__ import annotations

from typing import Any

from messenger_core import dumps

GOING_AWAY = 1001  # the server shuts down: reconnect elsewhere with your iterators
TOO_LARGE = 1009  # a client frame over EVENTS_MAX_FRAME_BYTES (tornado sends it)
UNAUTHORIZED = 4401  # no, a bad, an expired or a logged-out session
TOO_SLOW = 4408  # the client's backlog passed EVENTS_MAX_BACKLOG_BYTES
TOO_MANY = 4429  # more client frames than EVENTS_FRAMES_PER_SECOND


def error_frame(code: str, **extra: Any) -> str:
    """``{"type": "error", "message": code, ...}``."""
    return dumps({"type": "error", "message": code, **extra}).decode()
