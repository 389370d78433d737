"""The stream across processes: posters and readers on different workers, resume, logout elsewhere."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from auth_support import bearer, new_session
from chats_support import join, new_chat, read_all, read_page
from events_support import Stream, of_type
from support import Client, free_port, start_api

POSTERS = 4
EACH = 15


async def collect(stream: Stream, count: int) -> list[dict[str, Any]]:
    """The next ``count`` message frames."""
    frames: list[dict[str, Any]] = []
    while len(frames) < count:
        frame = await stream.next(timeout=20)
        assert frame is not None, f"closed after {len(frames)} messages"
        assert frame["type"] == "message", frame
        frames.append(frame)
    return frames


async def resume_after_ten(clients: tuple[Client, Client], chat: str, member: str, live_reader: Stream,
                           last: str, headers: dict[str, str]) -> None:
    """Ten posts while a reader is away; it reconnects to the first process with ``last`` and gets exactly those."""
    for n in range(10):
        resp = await clients[n % 2].post(f"/v1/chats/{chat}/messages?user_id={member}", {"message": f"m{n}"})
        assert resp.status == 201
    live = await collect(live_reader, 10)
    again = await Stream.open(clients[0].base_url, headers)
    await again.ready()
    frames = await again.subscribe({chat: last})
    missed = of_type(frames, "message")
    assert [f["message"]["text"] for f in missed] == [f"m{n}" for n in range(10)]
    assert [f["message"] for f in missed] == [f["message"] for f in live]
    assert frames[-1] == {"type": "subscribed", "chats": [chat]} and len(frames) == 11
    assert missed[-1]["iterator"] == live[-1]["iterator"]
    again.close()


@pytest.mark.parametrize("stack", ["postgres-only", "full"])
async def test_four_posters_two_readers_on_two_processes(env: dict[str, str], tmp_path: Path, stack: str) -> None:
    if stack == "full":
        env = {**env, "CACHE_TYPE": "redis"}
    else:
        env = {**env, "MESSENGER_APPS": "messenger_chats,messenger_events"}
    procs, clients = [], []
    for name in ("a", "b"):
        proc, client = await start_api({**env, "PORT": str(free_port())}, tmp_path / f"{name}.log")
        procs.append(proc)
        clients.append(client)
    try:
        headers: dict[str, str] = {}
        if stack == "full":
            headers = bearer(await new_session(clients[0], "alice"))
        a, b = (client.with_headers(**headers) for client in clients)
        chat = await new_chat(a)
        members = [await join(a if i % 2 else b, chat, f"poster {i}") for i in range(POSTERS)]
        _, start = await read_page(a, chat, 1)
        readers = [await Stream.open(a.base_url, headers), await Stream.open(b.base_url, headers)]
        for reader in readers:
            await reader.ready()
            if stack == "postgres-only":
                assert await reader.subscribe({chat: start}) == [{"type": "subscribed", "chats": [chat]}]

        async def poster(index: int) -> None:
            for n in range(EACH):
                client = (a, b)[(index + n) % 2]
                resp = await client.post(f"/v1/chats/{chat}/messages?user_id={members[index]}",
                                         {"message": f"{index}-{n}"})
                assert resp.status == 201, resp

        got = await asyncio.gather(*(collect(r, POSTERS * EACH) for r in readers),
                                   *(poster(i) for i in range(POSTERS)))
        paged = await read_all(a, chat)
        assert len(paged) == POSTERS * EACH
        for frames in got[:2]:
            assert [f["message"] for f in frames] == paged  # each exactly once, in paging order
            assert all(f["chat_id"] == chat for f in frames)
        # the second reader leaves, misses ten, resumes with its last iterator in the other process
        readers[1].close()
        await resume_after_ten((a, b), chat, members[0], readers[0], got[1][-1]["iterator"], headers)
        readers[0].close()
    finally:
        for proc in procs:
            assert proc.stop() == 0


async def test_logout_in_another_process_closes_the_stream(env: dict[str, str], tmp_path: Path) -> None:
    env = {**env, "CACHE_TYPE": "redis"}
    proc_a, a = await start_api({**env, "PORT": str(free_port())}, tmp_path / "a.log")
    proc_b, b = await start_api({**env, "PORT": str(free_port())}, tmp_path / "b.log")
    try:
        session = await new_session(a, "dave")
        stream = await Stream.open(a.base_url, bearer(session))
        await stream.ready()
        other = await Stream.open(a.base_url, bearer(await new_session(a, "erin")))
        await other.ready()
        resp = await Client(b.base_url, bearer(session)).post("/v1/auth/logout")
        assert resp.status == 200, resp
        assert await stream.closed() == (4401, [{"type": "error", "message": "invalid-session-id"}])
        # another account's stream stays open
        await other.send({"type": "subscribe", "chats": {}})
        assert await other.next() == {"type": "subscribed", "chats": []}
        other.close()
    finally:
        assert proc_a.stop() == 0
        assert proc_b.stop() == 0
