"""Helpers of the stream tests: a WebSocket client that reads JSON frames with a deadline."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
from collections.abc import AsyncIterator, Callable, Mapping
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


def masked(payload: bytes, opcode: int = 0x1) -> bytes:
    """A client frame (clients must mask)."""
    mask = os.urandom(4)
    header = bytes([0x80 | opcode])
    if len(payload) < 126:
        header += bytes([0x80 | len(payload)])
    else:
        header += bytes([0x80 | 126]) + struct.pack(">H", len(payload))
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def server_frames(reader: asyncio.StreamReader) -> AsyncIterator[tuple[int, bytes]]:
    """The server's frames on a raw stream, ``(opcode, payload)``, up to and including its close frame."""
    while True:
        head = await reader.readexactly(2)
        length = head[1] & 0x7F
        if length == 126:
            length = struct.unpack(">H", await reader.readexactly(2))[0]
        elif length == 127:
            length = struct.unpack(">Q", await reader.readexactly(8))[0]
        opcode = head[0] & 0x0F
        yield opcode, await reader.readexactly(length)
        if opcode == 0x8:
            return


async def read_frames_to_close(reader: asyncio.StreamReader) -> tuple[int, int]:
    """Read server frames until the close frame: (messages before it, its close code)."""
    count = 0
    async for opcode, payload in server_frames(reader):
        if opcode == 0x8:
            return count, struct.unpack(">H", payload[:2])[0]
        count += 1
    raise AssertionError("the server frames ended without a close frame")  # pragma: no cover


async def raw_stream(base_url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """An upgraded ``/v1/events`` on a plain socket with a tiny receive buffer: a client that takes little at
    a time (and nothing unless the test reads)."""
    host, port = base_url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    reader, writer = await asyncio.open_connection(sock=sock)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET /v1/events HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    return reader, writer
