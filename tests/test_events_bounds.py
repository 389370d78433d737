"""The stream's bounds: a slow reader is cut with 4408 (memory bounded); client frames limited in size and rate."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import time

from chats_support import join, new_chat, read_page
from events_support import Stream
from support import serve_app

CHATS_EVENTS = ("messenger_chats", "messenger_events")
BOUND = 64 * 1024
TEXT = "x" * 60_000


def masked(payload: bytes, opcode: int = 0x1) -> bytes:
    """A client frame (clients must mask)."""
    mask = os.urandom(4)
    header = bytes([0x80 | opcode])
    if len(payload) < 126:
        header += bytes([0x80 | len(payload)])
    else:
        header += bytes([0x80 | 126]) + struct.pack(">H", len(payload))
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def read_frames_to_close(reader: asyncio.StreamReader) -> tuple[int, int]:
    """Read server frames until the close frame: (messages before it, its close code)."""
    count = 0
    while True:
        head = await reader.readexactly(2)
        length = head[1] & 0x7F
        if length == 126:
            length = struct.unpack(">H", await reader.readexactly(2))[0]
        elif length == 127:
            length = struct.unpack(">Q", await reader.readexactly(8))[0]
        payload = await reader.readexactly(length)
        if head[0] & 0x0F == 0x8:
            return count, struct.unpack(">H", payload[:2])[0]
        count += 1


async def test_a_slow_reader_is_cut_with_4408_and_memory_stays_bounded(env: dict[str, str]) -> None:
    async with serve_app({**env, "EVENTS_MAX_BACKLOG_BYTES": str(BOUND)}, plugins=CHATS_EVENTS) as srv:
        chat = await new_chat(srv.client)
        user = await join(srv.client, chat)
        _, start = await read_page(srv.client, chat, 1)
        host, port = srv.url.removeprefix("http://").split(":")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a client that takes little at a time
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
        reader, writer = await asyncio.open_connection(sock=sock)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((f"GET /v1/events HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
        writer.write(masked(json.dumps({"type": "subscribe", "chats": {chat: start}}).encode()))
        await writer.drain()
        hub = srv.runtime.state["messenger_events"]
        deadline = time.monotonic() + 60
        posted = 0
        while hub.cut == 0:  # the client reads nothing meanwhile
            assert time.monotonic() < deadline, f"not cut after {posted} posts"
            resp = await srv.client.post(f"/v1/chats/{chat}/messages?user_id={user}", {"message": TEXT})
            assert resp.status == 201
            posted += 1
        # what waited for the client never passed the bound by more than one frame
        assert hub.max_pending <= BOUND + len(TEXT) + 1024, hub.max_pending
        delivered, code = await asyncio.wait_for(read_frames_to_close(reader), 10)
        assert code == 4408
        assert 0 < delivered < posted + 3  # ready, subscribed, then what fit before the cut
        writer.close()
        assert srv.runtime.open_streams == 0 or await _closed_soon(srv.runtime)


async def _closed_soon(runtime: object) -> bool:
    for _ in range(200):
        if getattr(runtime, "open_streams") == 0:
            return True
        await asyncio.sleep(0.05)
    return False


async def test_client_frames_are_bounded_in_size_and_rate(env: dict[str, str]) -> None:
    overrides = {"EVENTS_MAX_FRAME_BYTES": "1024", "EVENTS_FRAMES_PER_SECOND": "5"}
    async with serve_app({**env, **overrides}, plugins=CHATS_EVENTS) as srv:
        stream = await Stream.open(srv.url)
        await stream.ready()
        await stream.send(json.dumps({"type": "subscribe", "chats": {"x" * 2000: None}}))
        code, frames = await stream.closed()
        assert (code, frames) == (1009, [])
        stream = await Stream.open(srv.url)
        await stream.ready()
        for _ in range(40):
            try:
                await stream.send({"type": "subscribe", "chats": {}})
            except Exception:  # pylint: disable=broad-exception-caught  # closed under us: expected
                break
        code, frames = await stream.closed()
        assert code == 4429
        assert frames[-1] == {"type": "error", "message": "request-limit-exceeded"}
        assert all(f == {"type": "subscribed", "chats": []} for f in frames[:-1])
        assert 5 <= len(frames) - 1 <= 12  # a burst of twice the rate, plus what refilled meanwhile
