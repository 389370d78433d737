"""Server WebSocket frames encoded once and written as they are to every stream that gets them.

Tornado's ``write_message`` frames its payload again for each connection (a header, a copy of the payload
behind it) and wraps the write in a task of its own: with the same message going to hundreds of streams that
is most of a delivery's cost (bench/README.md, "Fan-out").  A message frame is the same bytes for every
stream, so :func:`text_frame` builds it once and :func:`write_frame` hands those bytes to the connection's
``IOStream``, where ``write_message`` would have put its own copy.

This is the one place that reaches below ``write_message``: it uses the handler's ``ws_connection`` and that
connection's ``stream``, both public attributes of Tornado's WebSocket protocol, and it is only valid because
the stream never negotiates compression (``EventsHandler.get_compression_options`` is Tornado's default,
None: the frames are sent as they are) and a server's frames are never masked (RFC 6455, 5.1).  Frames go to
the ``IOStream`` whole and in order with Tornado's own (pings, the close frame).
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketClosedError

FIN_TEXT = 0x81  # FIN, opcode 1 (text)


def text_frame(payload: bytes) -> bytes:
    """A whole unmasked text frame carrying ``payload`` (UTF-8 JSON)."""
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", FIN_TEXT, size)
    elif size <= 0xFFFF:
        header = struct.pack("!BBH", FIN_TEXT, 126, size)
    else:
        header = struct.pack("!BBQ", FIN_TEXT, 127, size)
    return header + payload


def write_frame(handler: Any, frame: bytes) -> "asyncio.Future[None]":
    """Write a frame of :func:`text_frame` to ``handler``'s connection; the future resolves once the bytes left
    the process (done already when the socket took them at once).  ``WebSocketClosedError`` once it closes."""
    connection = handler.ws_connection
    if connection is None or connection.is_closing():
        raise WebSocketClosedError()
    try:
        return connection.stream.write(frame)
    except StreamClosedError:
        raise WebSocketClosedError() from None
