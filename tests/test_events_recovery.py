"""A stream whose worker lost PostgreSQL (its LISTEN connection included) gets, once it is back, an edit or a
delete of every message it had sent that changed meanwhile, in the chat's change order and before the messages
posted meanwhile; a message it had not sent yet comes as it is now; nothing comes twice.  Auth on and off.

Worker A reaches PostgreSQL through a :class:`TcpProxy` (cut and restored); worker B reaches it directly and
makes every change while A is cut off, so A hears of none of them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from auth_support import bearer, new_session
from chats_support import join, new_chat, read_all, say
from conversations_support import FAST_HASH, delete, edit
from events_support import Stream
from support import AppServer, Client, TcpProxy, poll, serve_app

AUTH_CHATS_EVENTS = ("messenger_auth", "messenger_chats", "messenger_events")
CHATS_EVENTS = ("messenger_chats", "messenger_events")


@asynccontextmanager
async def a_behind_a_proxy(env: dict[str, str], plugins: tuple[str, ...]) -> AsyncIterator[
        tuple[AppServer, AppServer, TcpProxy]]:
    """Worker A (PostgreSQL through a proxy) and worker B (PostgreSQL directly)."""
    proxy = TcpProxy(5432)
    try:
        async with serve_app({**env, **FAST_HASH, "POSTGRES_HOSTS": f"127.0.0.1:{proxy.port}", "DB_TIMEOUT": "1"},
                             plugins=plugins) as a, serve_app({**env, **FAST_HASH}, plugins=plugins) as b:
            yield a, b, proxy
    finally:
        proxy.close()


@asynccontextmanager
async def cut_off(a: AppServer, proxy: TcpProxy) -> AsyncIterator[None]:
    """A's PostgreSQL is cut (once A's LISTEN connection is known lost) while the block runs, then restored."""
    proxy.cut()

    async def down() -> bool:
        return not a.runtime.pubsub.live
    await poll(down, timeout=10)
    try:
        yield
    finally:
        proxy.restore()


async def frames_of(stream: Stream, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
    """The next ``count`` frames (fails on a close, or when they do not come, with those that did)."""
    out: list[dict[str, Any]] = []
    for _ in range(count):
        try:
            frame = await stream.next(timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"{count} frames awaited, {len(out)} came: {out}") from None
        assert frame is not None, f"closed ({stream.conn.close_code}) after {out}"
        out.append(frame)
    return out


def ids_of(frames: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(f["type"], f["message_id"] if f["type"] == "message_deleted" else f["message"]["message_id"])
            for f in frames]


async def recovers(a: AppServer, proxy: TcpProxy, poster: Client, chat: str, user: str, stream: Stream) -> None:
    """m1, m2 received; A cut off; B edits m1, deletes m2, posts m3; A back: edited m1, deleted m2, m3. Then a
    second outage: m3 edited twice, m4 posted and edited, m1 deleted: one edit of m3 (as it is now), m1 deleted,
    then m4 as it is now; and a message posted afterwards comes next (nothing twice)."""
    query = "" if "Authorization" in poster.headers else f"?user_id={user}"
    m1 = await say(poster, chat, user, "m1")
    m2 = await say(poster, chat, user, "m2")
    assert ids_of(await frames_of(stream, 2)) == [("message", m1), ("message", m2)]

    async with cut_off(a, proxy):
        resp = await edit(poster, chat, m1, "m1, edited", query)
        assert resp.status == 200, resp
        edited = resp.json
        assert (await delete(poster, chat, m2, query)).status == 204
        m3 = await say(poster, chat, user, "m3")
    got = await frames_of(stream, 3)
    assert ids_of(got) == [("message_edited", m1), ("message_deleted", m2), ("message", m3)], got
    assert got[0] == {"type": "message_edited", "chat_id": chat, "message": edited}
    assert got[1] == {"type": "message_deleted", "chat_id": chat, "message_id": m2}
    assert got[2]["message"]["text"] == "m3"

    async with cut_off(a, proxy):
        assert (await edit(poster, chat, m3, "m3, edited once", query)).status == 200
        resp = await edit(poster, chat, m3, "m3, edited twice", query)
        assert resp.status == 200, resp
        edited_m3 = resp.json
        m4 = await say(poster, chat, user, "m4")
        resp = await edit(poster, chat, m4, "m4, edited before it was sent", query)
        assert resp.status == 200, resp
        edited_m4 = resp.json
        assert (await delete(poster, chat, m1, query)).status == 204
    m5 = await say(poster, chat, user, "m5, after the outage")
    got = await frames_of(stream, 4)
    assert ids_of(got) == [("message_edited", m3), ("message_deleted", m1), ("message", m4), ("message", m5)], got
    assert got[0]["message"] == edited_m3 and got[2]["message"] == edited_m4
    assert [m["message_id"] for m in await read_all(poster, chat)][-3:] == [m3, m4, m5]
    m6 = await say(poster, chat, user, "m6")
    assert ids_of(await frames_of(stream, 1)) == [("message", m6)]


async def test_a_stream_recovers_the_edits_and_deletes_it_missed(env: dict[str, str]) -> None:
    async with a_behind_a_proxy(env, AUTH_CHATS_EVENTS) as (a, b, proxy):
        headers = bearer(await new_session(b.client, "alice"))
        alice_b = b.client.with_headers(**headers)
        chat = await new_chat(alice_b)
        user = await join(alice_b, chat, "alice")
        stream = await Stream.open(a.url, headers)
        await stream.ready()
        await recovers(a, proxy, alice_b, chat, user, stream)
        stream.close()


async def test_a_stream_recovers_the_edits_and_deletes_it_missed_auth_off(env: dict[str, str]) -> None:
    async with a_behind_a_proxy(env, CHATS_EVENTS) as (a, b, proxy):
        chat = await new_chat(b.client)
        user = await join(b.client, chat, "poster")
        before = await say(b.client, chat, user, "before the stream")
        stream = await Stream.open(a.url)
        await stream.ready()
        assert await stream.subscribe({chat: None}) == [{"type": "subscribed", "chats": [chat]}]
        await recovers(a, proxy, b.client, chat, user, stream)
        # a message before the subscribe, edited during an outage: told like a live edit would be
        async with cut_off(a, proxy):
            resp = await edit(b.client, chat, before, "before, edited", f"?user_id={user}")
            assert resp.status == 200, resp
        got = await frames_of(stream, 1)
        assert got == [{"type": "message_edited", "chat_id": chat, "message": resp.json}]
        stream.close()
