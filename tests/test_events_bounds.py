"""The stream's bounds: a slow reader is cut with 4408 (memory bounded); client frames limited in size and rate."""

from __future__ import annotations

import asyncio
import json
import struct
import time
from typing import Any

from messenger_events.state import open_streams

from chats_support import join, new_chat, read_page, say
from events_support import Stream, masked, raw_stream, read_frames_to_close, server_frames
from support import poll, serve_app

CHATS_EVENTS = ("messenger_chats", "messenger_events")
BOUND = 64 * 1024
TEXT = "x" * 60_000


async def no_open_streams(runtime: Any) -> None:
    """Wait until the server counts no open stream (a cut one is counted until Tornado closes it)."""
    async def closed() -> bool:
        return open_streams(runtime) == 0
    await poll(closed, timeout=10)


async def test_a_slow_reader_is_cut_with_4408_and_memory_stays_bounded(env: dict[str, str]) -> None:
    async with serve_app({**env, "EVENTS_MAX_BACKLOG_BYTES": str(BOUND)}, plugins=CHATS_EVENTS) as srv:
        chat = await new_chat(srv.client)
        user = await join(srv.client, chat)
        _, start = await read_page(srv.client, chat, 1)
        reader, writer = await raw_stream(srv.url)
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
        await no_open_streams(srv.runtime)


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


async def test_edits_piling_up_for_a_stream_that_reads_nothing_cut_it_with_4408(env: dict[str, str]) -> None:
    """A stream whose client stopped reading holds its chat's edits and deletes until it gets to them: they count
    against EVENTS_MAX_BACKLOG_BYTES with what waits to be sent, so its memory stays bounded there too."""
    text = "y" * 20_000
    async with serve_app({**env, "EVENTS_MAX_BACKLOG_BYTES": str(BOUND)}, plugins=CHATS_EVENTS) as srv:
        chat = await new_chat(srv.client)
        user = await join(srv.client, chat)
        _, start = await read_page(srv.client, chat, 1)
        first = await say(srv.client, chat, user, "to be edited")
        reader, writer = await raw_stream(srv.url)
        writer.write(masked(json.dumps({"type": "subscribe", "chats": {chat: start}}).encode()))
        await writer.drain()
        hub = srv.runtime.state["messenger_events"]
        stream = await poll(lambda: _only_stream(hub))
        deadline = time.monotonic() + 60
        while stream.pending_bytes <= BOUND // 2:  # until its pump waits for the client to take what was sent
            assert time.monotonic() < deadline, "the stream's pump never had to wait"
            await say(srv.client, chat, user, text)
        assert hub.cut == 0
        edits = 0
        while hub.cut == 0:
            assert edits <= BOUND // 128, f"not cut after {edits} edits"
            resp = await srv.client.request("PATCH", f"/v1/chats/{chat}/messages/{first}?user_id={user}",
                                            {"message": f"edit {edits}"})
            assert resp.status == 200, resp
            edits += 1
        assert edits > 1 and hub.cut == 1
        _, code = await asyncio.wait_for(read_frames_to_close(reader), 30)
        assert code == 4408
        writer.close()
        await no_open_streams(srv.runtime)


async def _only_stream(hub: object) -> object | None:
    streams = [s for s in getattr(hub, "streams") if getattr(s, "carried")]
    return streams[0] if len(streams) == 1 else None


async def _all_frames(reader: asyncio.StreamReader) -> list[tuple[int, bytes]]:
    return [frame async for frame in server_frames(reader)]


async def test_an_idle_stream_is_pinged_and_one_whose_client_never_answers_is_closed(env: dict[str, str]) -> None:
    """EVENTS_PING_INTERVAL: every idle stream gets a ping; a client that answers (any WebSocket library does)
    stays, one whose peer is gone (here: a socket that never answers) is closed a ping interval later, so a
    vanished client's stream does not stay open until TCP notices."""
    async with serve_app({**env, "EVENTS_PING_INTERVAL": "0.5"}, plugins=CHATS_EVENTS) as srv:
        answering = await Stream.open(srv.url)
        await answering.ready()
        reader, writer = await raw_stream(srv.url)
        started = time.monotonic()
        frames = await asyncio.wait_for(_all_frames(reader), 10)
        opcodes = [opcode for opcode, _ in frames]
        assert opcodes[0] == 0x1 and json.loads(frames[0][1]) == {"type": "ready"}, frames
        assert 0x9 in opcodes[1:-1], frames  # pinged before being given up
        code, reason = struct.unpack(">H", frames[-1][1][:2])[0], frames[-1][1][2:]
        assert code == 1000 and reason == b"ping timed out", frames[-1]
        assert 0.9 <= time.monotonic() - started < 5  # a ping interval, then its timeout
        writer.close()
        # the client that answered every ping meanwhile (more than two intervals) is still served
        assert await answering.subscribe({}) == [{"type": "subscribed", "chats": []}]
        answering.close()
        await no_open_streams(srv.runtime)
