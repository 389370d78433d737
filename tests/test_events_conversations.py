"""The stream and the conversations: chat_joined with the chat's summary, a join carried from its 201 on (in
another worker too), and edits and deletes in order with the chat's messages, auth on and off."""

from __future__ import annotations

import asyncio
from pathlib import Path
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from auth_support import bearer, new_session
from chats_support import join, new_chat, read_all, read_page, say
from conversations_support import FAST_HASH, account, delete, edit, enter, my_chats
from events_support import Stream, of_type
from support import Client, free_port, serve_app, start_api

AUTH_CHATS_EVENTS = ("messenger_auth", "messenger_chats", "messenger_events")
ROUNDS = 25


async def next_of(stream: Stream, kinds: set[str], timeout: float = 20.0) -> dict[str, Any]:
    """The next frame of one of ``kinds`` (fails on a close or at the deadline)."""
    frames = await stream.until(lambda f: f["type"] in kinds, timeout)
    return frames[-1]


async def frames_of(stream: Stream, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
    """The next ``count`` frames, whatever they are."""
    out = []
    for _ in range(count):
        frame = await stream.next(timeout)
        assert frame is not None, f"closed ({stream.conn.close_code}) after {out}"
        out.append(frame)
    return out


def summary_of(summaries: list[dict[str, Any]], chat: str) -> dict[str, Any]:
    (found,) = [summary for summary in summaries if summary["chat_id"] == chat]
    return found


async def test_chat_joined_carries_the_summary_the_list_shows(env: dict[str, str]) -> None:
    async with serve_app({**env, **FAST_HASH}, plugins=AUTH_CHATS_EVENTS) as srv:
        alice = await account(srv.client, "alice")
        bob = await account(srv.client, "bob")
        chat = await new_chat(bob, "bob's")
        bob_user = await join(bob, chat, "bob")
        for n in range(3):
            await say(bob, chat, bob_user, f"before {n}")
        stream = await Stream.open(srv.url, {"Authorization": alice.headers["Authorization"]})
        await stream.ready()
        member = await join(alice, chat, "alice")
        joined = await stream.next()
        assert joined is not None and joined["type"] == "chat_joined", joined
        listed = summary_of(await my_chats(alice), chat)
        assert joined == {"type": "chat_joined", "chat": listed}
        assert listed["my_user_ids"] == [member] and listed["last_message"]["text"] == "before 2"
        assert listed["owner"] is False and listed["unread"] == 0
        # a chat alice creates and joins: owner, no message yet
        own = await new_chat(alice, "alice's")
        await join(alice, own, "alice")
        joined = await stream.next()
        assert joined == {"type": "chat_joined", "chat": summary_of(await my_chats(alice), own)}
        assert joined["chat"]["owner"] is True and joined["chat"]["last_message"] is None
        # a second member in a chat already carried: no second chat_joined; the next message comes as usual
        await join(alice, own, "alice again")
        sent = await say(bob, chat, bob_user, "after")
        frame = await stream.next()
        assert frame is not None and frame["type"] == "message" and frame["message"]["message_id"] == sent, frame
        stream.close()


@asynccontextmanager
async def kept_busy(client: Client, tasks: int = 6) -> AsyncIterator[None]:
    """Requests that read PostgreSQL through ``client``'s worker without a pause (its pool is kept busy)."""
    async def read() -> None:
        while True:
            assert (await client.get("/ping_db")).status == 200

    busy = [asyncio.ensure_future(read()) for _ in range(tasks)]
    try:
        yield
    finally:
        for task in busy:
            task.cancel()
        await asyncio.gather(*busy, return_exceptions=True)


async def two_workers(env: dict[str, str], tmp_path: Path,
                      a_env: dict[str, str] | None = None) -> tuple[list[Any], list[Client]]:
    procs, clients = [], []
    for name, extra in (("a", a_env or {}), ("b", {})):
        proc, client = await start_api({**env, **extra, "PORT": str(free_port())}, tmp_path / f"{name}.log")
        procs.append(proc)
        clients.append(client)
    return procs, clients


async def test_a_join_in_another_worker_is_carried_from_its_201(env: dict[str, str], tmp_path: Path) -> None:
    env = {**env, **FAST_HASH, "MESSENGER_APPS": ",".join(AUTH_CHATS_EVENTS)}  # PostgreSQL only
    # the stream's worker has one database connection, kept busy by other requests: nothing it reads after
    # the join's notification arrives can decide where the chat is carried from
    procs, (a, b) = await two_workers(env, tmp_path, {"POOL_SIZE": "1"})
    try:
        alice_headers = bearer(await new_session(a, "alice"))
        alice_b = b.with_headers(**alice_headers)
        bob_headers = bearer(await new_session(b, "bob"))
        bob_b = b.with_headers(**bob_headers)
        chats = [await new_chat(bob_b, f"chat {n}") for n in range(ROUNDS)]
        stream = await Stream.open(a.base_url, alice_headers)
        await stream.ready()
        async with kept_busy(a):
            await join_and_post(chats, alice_b, bob_b, stream)
        stream.close()
    finally:
        for proc in procs:
            assert proc.stop() == 0


async def join_and_post(chats: list[str], alice_b: Client, bob_b: Client, stream: Stream) -> None:
    """For each chat: alice joins and posts right after the 201; her stream gets chat_joined, then the message."""
    for n, chat in enumerate(chats):
        if n % 2:  # half of the chats have messages before the join
            await say(bob_b, chat, await join(bob_b, chat, "bob"), "before")
        resp = await enter(alice_b, chat, "alice")
        assert resp.status == 201, resp
        # right after the 201, from the same client, in the same worker
        sent = await say(alice_b, chat, resp.json["user_id"], f"right after {n}")
        frames = await stream.until(lambda f, c=chat: f["type"] == "message" and f["chat_id"] == c)
        assert [f["type"] for f in frames] == ["chat_joined", "message"], frames
        assert frames[0]["chat"]["chat_id"] == chat and frames[1]["message"]["message_id"] == sent


async def edits_and_deletes_in_order(poster: Client, chat: str, user: str, stream: Stream) -> None:
    """post m1, m2 (received), then edit m1, delete m2, post m3 back to back, several rounds: frames in that order."""
    for n in range(ROUNDS // 5):
        m1 = await say(poster, chat, user, f"m1 of {n}")
        m2 = await say(poster, chat, user, f"m2 of {n}")
        got = await frames_of(stream, 2)
        assert [(f["type"], f["message"]["message_id"]) for f in got] == [("message", m1), ("message", m2)], got
        query = "" if "Authorization" in poster.headers else f"?user_id={user}"
        resp = await edit(poster, chat, m1, f"m1 of {n}, edited", query)
        assert resp.status == 200, resp
        edited = resp.json
        assert (await delete(poster, chat, m2, query)).status == 204
        m3 = await say(poster, chat, user, f"m3 of {n}")
        got = await frames_of(stream, 3)
        assert [f["type"] for f in got] == ["message_edited", "message_deleted", "message"], got
        assert got[0] == {"type": "message_edited", "chat_id": chat, "message": edited}
        assert edited["edited_at"] is not None and edited["text"] == f"m1 of {n}, edited"
        assert got[1] == {"type": "message_deleted", "chat_id": chat, "message_id": m2}
        assert got[2]["message"]["message_id"] == m3
        # the edited message is exactly as a page shows it
        paged = {m["message_id"]: m for m in await read_all(poster, chat)}
        assert paged[m1] == edited and m2 not in paged


async def test_edits_and_deletes_reach_a_stream_in_another_worker_in_order(
        env: dict[str, str], tmp_path: Path) -> None:
    env = {**env, **FAST_HASH, "CACHE_TYPE": "redis"}
    procs, (a, b) = await two_workers(env, tmp_path, {"POOL_SIZE": "1"})
    try:
        headers = bearer(await new_session(a, "alice"))
        alice_b = b.with_headers(**headers)
        chat = await new_chat(alice_b)
        user = await join(alice_b, chat, "alice")
        _, start = await read_page(alice_b, chat, 1)
        stream = await Stream.open(a.base_url, headers)
        await stream.ready()
        async with kept_busy(a):
            await edits_and_deletes_in_order(alice_b, chat, user, stream)
        stream.close()
        # a replay after the deletions carries no deleted message, and the edited text
        again = await Stream.open(a.base_url, headers)
        await again.ready()
        replay = of_type(await again.subscribe({chat: start}), "message")
        assert [f["message"] for f in replay] == await read_all(alice_b, chat)
        assert [f["message"]["text"] for f in replay] == [
            text for n in range(ROUNDS // 5) for text in (f"m1 of {n}, edited", f"m3 of {n}")]
        again.close()
    finally:
        for proc in procs:
            assert proc.stop() == 0


async def test_edits_and_deletes_auth_off_with_subscribe(env: dict[str, str], tmp_path: Path) -> None:
    env = {**env, "MESSENGER_APPS": "messenger_chats,messenger_events"}
    procs, (a, b) = await two_workers(env, tmp_path, {"POOL_SIZE": "1"})
    try:
        chat = await new_chat(b)
        user = await join(b, chat, "poster")
        stream = await Stream.open(a.base_url)
        await stream.ready()
        assert await stream.subscribe({chat: None}) == [{"type": "subscribed", "chats": [chat]}]
        async with kept_busy(a):
            await edits_and_deletes_in_order(b, chat, user, stream)
        stream.close()
        again = await Stream.open(a.base_url)
        await again.ready()
        replay = of_type(await again.subscribe({chat: (await read_page(b, chat, 1))[1]}), "message")
        assert [f["message"]["text"] for f in replay][:2] == ["m3 of 0", "m1 of 1, edited"]
        assert [f["message"] for f in replay] == (await read_all(b, chat))[1:]
        again.close()
    finally:
        for proc in procs:
            assert proc.stop() == 0


async def test_a_change_during_a_replay_is_not_lost(env: dict[str, str]) -> None:
    """Messages edited and deleted while a stream replays the chat (several reads of EVENTS_PAGE): every edit
    comes after its message, and the frames up to a message posted after the changes give what a page shows."""
    async with serve_app({**env, "EVENTS_PAGE": "5"}, plugins=("messenger_chats", "messenger_events")) as srv:
        chat = await new_chat(srv.client)
        user = await join(srv.client, chat)
        ids = [await say(srv.client, chat, user, f"n{n}") for n in range(60)]
        _, start = await read_page(srv.client, chat, 1)
        stream = await Stream.open(srv.url)
        await stream.ready()
        await stream.send({"type": "subscribe", "chats": {chat: start}})
        changes = []
        for n in range(1, 59, 6):
            changes.append(edit(srv.client, chat, ids[n], f"n{n} edited", f"?user_id={user}"))
            changes.append(delete(srv.client, chat, ids[n + 1], f"?user_id={user}"))
        results = await asyncio.gather(*changes)
        assert [r.status for r in results] == [200, 204] * 10
        last = await say(srv.client, chat, user, "after the changes")
        frames = await stream.until(lambda f: f["type"] == "message" and f["message"]["message_id"] == last)
        view: dict[str, dict[str, Any]] = {}
        for frame in frames:
            if frame["type"] == "message_edited":
                assert frame["message"]["message_id"] in view, frame  # never before the message itself
                view[frame["message"]["message_id"]] = frame["message"]
            elif frame["type"] == "message":
                view[frame["message"]["message_id"]] = frame["message"]
            elif frame["type"] == "message_deleted":
                view.pop(frame["message_id"], None)
        assert list(view.values()) == (await read_all(srv.client, chat))[1:]
        stream.close()


async def test_leaving_then_joining_again_is_carried_again(env: dict[str, str]) -> None:
    async with serve_app({**env, **FAST_HASH}, plugins=AUTH_CHATS_EVENTS) as srv:
        alice = await account(srv.client, "alice")
        bob = await account(srv.client, "bob")
        own = await new_chat(alice, "alice's")
        own_user = await join(alice, own, "alice")
        chat = await new_chat(bob, "bob's")
        bob_user = await join(bob, chat, "bob")
        stream = await Stream.open(srv.url, {"Authorization": alice.headers["Authorization"]})
        await stream.ready()
        for round_ in range(3):
            member = await join(alice, chat, "alice")
            joined = await stream.next()
            assert joined is not None and joined["type"] == "chat_joined" and joined["chat"]["chat_id"] == chat
            sent = await say(bob, chat, bob_user, f"while in {round_}")
            frame = await stream.next()
            assert frame is not None and frame["message"]["message_id"] == sent, frame
            resp = await alice.request("DELETE", f"/v1/chats/{chat}/users/{member}")
            assert resp.status == 204, resp
            await say(bob, chat, bob_user, f"after leaving {round_}")  # not for alice any more
            mark = await say(alice, own, own_user, f"mark {round_}")
            frame = await stream.next()
            assert frame is not None and frame["message"]["message_id"] == mark, frame
        stream.close()
