"""Helpers of the stream tests: a WebSocket client that reads JSON frames with a deadline."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from typing import Any

from tornado.httpclient import HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect


class Stream:
    """One ``GET /v1/events`` WebSocket."""

    def __init__(self, conn: WebSocketClientConnection) -> None:
        self.conn = conn

    @classmethod
    async def open(cls, base_url: str, headers: Mapping[str, str] | None = None) -> "Stream":
        url = base_url.replace("http://", "ws://") + "/v1/events"
        conn = await websocket_connect(HTTPRequest(url, headers=dict(headers or {}), connect_timeout=10))
        return cls(conn)

    async def send(self, frame: Any) -> None:
        await self.conn.write_message(frame if isinstance(frame, (str, bytes)) else json.dumps(frame))

    async def next(self, timeout: float = 10.0) -> dict[str, Any] | None:
        """The next frame, or None once the server closed the stream."""
        raw = await asyncio.wait_for(self.conn.read_message(), timeout)
        return None if raw is None else json.loads(raw)

    async def until(self, check: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> list[dict[str, Any]]:
        """Frames up to and including the first that ``check`` accepts (fails at the deadline or the close)."""
        seen: list[dict[str, Any]] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            frame = await self.next(max(0.01, deadline - loop.time()))
            assert frame is not None, f"closed ({self.conn.close_code}) before the frame awaited; got {seen}"
            seen.append(frame)
            if check(frame):
                return seen

    async def closed(self, timeout: float = 10.0) -> tuple[int | None, list[dict[str, Any]]]:
        """Read to the end: the close code and the frames before it."""
        seen: list[dict[str, Any]] = []
        while True:
            frame = await self.next(timeout)
            if frame is None:
                return self.conn.close_code, seen
            seen.append(frame)

    async def ready(self) -> None:
        frame = await self.next()
        assert frame == {"type": "ready"}, frame

    async def subscribe(self, chats: dict[str, str | None]) -> list[dict[str, Any]]:
        """Subscribe; every frame up to "subscribed" (the backlog, maybe live ones)."""
        await self.send({"type": "subscribe", "chats": chats})
        return await self.until(lambda f: f["type"] == "subscribed")

    def close(self) -> None:
        self.conn.close()


def of_type(frames: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [frame for frame in frames if frame["type"] == kind]
