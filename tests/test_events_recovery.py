"""A stream whose worker lost PostgreSQL (its LISTEN connection included) gets, once it is back, an edit or a
delete of every message it had sent that changed meanwhile, in the chat's change order and before the messages
posted meanwhile; a message it had not sent yet comes as it is now; nothing comes twice.  Auth on and off.

Worker A reaches PostgreSQL through a :class:`TcpProxy` (cut and restored); worker B reaches it directly and
makes every change while A is cut off, so A hears of none of them.  And a stream whose reads, subscribe or
opening meet the outage goes on (or says so and closes with 1013) instead of going silent."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import pytest

from auth_support import bearer, new_session
from chats_support import join, new_chat, read_all, read_page, say
from conversations_support import FAST_HASH, delete, edit
from events_support import Stream
from support import AppServer, Client, TcpProxy, conninfo, poll, serve_app

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


async def many_messages(database: str, chat: str, user: str, count: int) -> list[str]:
    """``count`` messages of ``user`` in ``chat``, inserted by SQL (as the bench does); their ids, in order."""
    async with await psycopg.AsyncConnection.connect(conninfo(database), autocommit=True) as conn:
        await conn.execute(
            "WITH c AS (UPDATE chats SET last_seq = %(count)s WHERE id = %(chat)s RETURNING id) "
            "INSERT INTO messages (id, chat_id, seq, member_id, text, created_at) "
            "SELECT gen_random_uuid(), %(chat)s, n, %(user)s, 'n' || (n - 1), now() + n * interval '1 ms' "
            "FROM generate_series(1, %(count)s) AS n",
            {"chat": uuid.UUID(chat), "user": uuid.UUID(user), "count": count})
        cur = await conn.execute("SELECT id FROM messages WHERE chat_id = %s ORDER BY seq", (uuid.UUID(chat),))
        return [row[0].hex for row in await cur.fetchall()]


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


async def test_an_outage_in_the_middle_of_a_replay(env: dict[str, str], database: str) -> None:
    """A replay (many reads of EVENTS_PAGE) is cut off part way; messages on both sides of where it stopped are
    edited and deleted meanwhile: each message comes once, a change only for one already received and at most
    once, and the frames give exactly what a page shows."""
    async with a_behind_a_proxy({**env, "EVENTS_PAGE": "2"}, CHATS_EVENTS) as (a, b, proxy):
        chat = await new_chat(b.client)
        user = await join(b.client, chat, "poster")
        ids = await many_messages(database, chat, user, 3000)  # a replay of 1,500 reads
        _, start = await read_page(b.client, chat, 1)
        stream = await Stream.open(a.url)
        await stream.ready()
        await stream.send({"type": "subscribe", "chats": {chat: start}})
        received = [frame["message"]["message_id"] for frame in await frames_of(stream, 5)]
        async with cut_off(a, proxy):
            query = f"?user_id={user}"
            for n in (2, 1500, 2996):  # before where the replay stops, and (surely) after it
                assert (await edit(b.client, chat, ids[n], f"n{n} edited", query)).status == 200
                assert (await delete(b.client, chat, ids[n + 2], query)).status == 204
        last = await say(b.client, chat, user, "after the outage")
        frames = await stream.until(lambda f: f["type"] == "message" and f["message"]["message_id"] == last, 60)
        view: dict[str, dict[str, Any]] = {message: {} for message in received}
        told: list[str] = []
        for frame in frames:
            if frame["type"] == "message":
                assert frame["message"]["message_id"] not in view, frame  # once
                view[frame["message"]["message_id"]] = frame["message"]
            elif frame["type"] == "message_edited":
                told.append(frame["message"]["message_id"])
                assert frame["message"]["message_id"] in view, frame  # never before the message itself
                view[frame["message"]["message_id"]] = frame["message"]
            elif frame["type"] == "message_deleted":
                told.append(frame["message_id"])
                assert frame["message_id"] in view, frame
                del view[frame["message_id"]]
            else:
                assert frame["type"] == "subscribed", frame
        assert len(told) == len(set(told)), told  # each change told at most once
        assert {ids[2996], ids[2998]}.isdisjoint(told)  # not sent before the outage: read as they are
        assert view[ids[2996]]["text"] == "n2996 edited" and ids[2998] not in view
        paged = {message["message_id"]: message for message in await read_all(b.client, chat)}
        del paged[ids[0]]  # before the iterator
        assert list(view) == list(paged) and all(view[key] == paged[key] for key in paged if view[key])
        stream.close()


async def test_a_subscribe_while_postgresql_is_away_is_an_error_frame(env: dict[str, str]) -> None:
    async with a_behind_a_proxy(env, CHATS_EVENTS) as (a, b, proxy):
        chat = await new_chat(b.client)
        user = await join(b.client, chat, "poster")
        stream = await Stream.open(a.url)
        await stream.ready()
        async with cut_off(a, proxy):
            await stream.send({"type": "subscribe", "chats": {chat: None}})
            assert await frames_of(stream, 1) == [{"type": "error", "message": "database-unavailable", "chat_id": chat}]
        # the stream goes on: the same subscribe succeeds once A has PostgreSQL back (one sent while A's
        # pool still reconnects is another error frame, as above)

        async def subscribed() -> bool:
            await stream.send({"type": "subscribe", "chats": {chat: None}})
            frame = (await frames_of(stream, 1))[0]
            if frame == {"type": "error", "message": "database-unavailable", "chat_id": chat}:
                return False
            assert frame == {"type": "subscribed", "chats": [chat]}
            return True
        await poll(subscribed, timeout=15, interval=0.2)
        sent = await say(b.client, chat, user, "carried")
        assert ids_of(await frames_of(stream, 1)) == [("message", sent)]
        stream.close()


async def test_a_stream_opened_while_postgresql_is_away_says_so(env: dict[str, str]) -> None:
    async with a_behind_a_proxy(env, AUTH_CHATS_EVENTS) as (a, b, proxy):
        headers = bearer(await new_session(b.client, "alice"))
        async with cut_off(a, proxy):
            stream = await Stream.open(a.url, headers)
            code, frames = await stream.closed()
            assert (code, frames) == (1013, [{"type": "error", "message": "database-unavailable"}])

        async def opens() -> bool:  # once A has PostgreSQL back (its pool may still be reconnecting)
            stream = await Stream.open(a.url, headers)
            try:
                frame = await stream.next(15)
            finally:
                stream.close()
            if frame == {"type": "error", "message": "database-unavailable"}:
                return False
            assert frame == {"type": "ready"}
            return True
        await poll(opens, timeout=15, interval=0.2)


async def test_a_live_read_the_pool_cannot_serve_is_tried_again_for_every_stream_of_the_chat(
        env: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    """Streams up to date in a chat get its new messages from one read per worker (the hub's feed); when that read
    finds no free connection in time, the feed tries again later for all of them: each gets the message once,
    and nothing fails (it used to log "handling an event failed" and hand every stream to a read of its own)."""
    caplog.set_level(logging.WARNING)
    async with serve_app({**env, "POOL_SIZE": "1", "DB_TIMEOUT": "0.5"}, plugins=CHATS_EVENTS) as a, \
            serve_app(env, plugins=CHATS_EVENTS) as b:
        chat = await new_chat(b.client)
        user = await join(b.client, chat)
        streams = [await Stream.open(a.url) for _ in range(3)]
        for stream in streams:
            await stream.ready()
            assert await stream.subscribe({chat: None}) == [{"type": "subscribed", "chats": [chat]}]
        hub = a.runtime.state["messenger_events"]
        await poll(lambda: asyncio.sleep(0, len(getattr(hub.feeds.get(uuid.UUID(chat)), "members", ())) == 3))
        async with a.runtime.db.connection(timeout=30):  # A's only connection: its read of the post times out
            sent = await say(b.client, chat, user, "while A's pool is taken")
            await poll(lambda: asyncio.sleep(0, "database went away" in caplog.text))
        for stream in streams:
            frame = await stream.next(timeout=10)
            assert frame is not None and frame["type"] == "message" and frame["message"]["message_id"] == sent, frame
            stream.close()
        assert "handling an event failed" not in caplog.text
