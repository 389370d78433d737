"""Long-poll (``wait=`` on GET .../messages): held until another process commits, then the page; else empty."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from messenger_chats.waiting import held_polls

from auth_support import bearer, new_session
from chats_support import chats_server, join, longpolls_held, new_chat, read_page, say
from support import TcpProxy, assert_error, poll, serve_app, start_api


async def held(runtime: Any, count: int) -> bool:
    """Whether ``count`` long-polls are held in this in-process server."""
    return held_polls(runtime) == count


@pytest.mark.parametrize("cache", ["memory", "redis"])
async def test_a_held_request_answers_the_post_another_process_commits(
        env: dict[str, str], tmp_path: Path, cache: str) -> None:
    # PostgreSQL only with the memory cache; with Redis the poster's invalidation of the cached tail page
    # races the NOTIFY, and the waiter must still answer the message
    env = {**env, "CACHE_TYPE": cache}
    proc, other = await start_api({**env, "MESSENGER_APPS": "messenger_chats"}, tmp_path / "other.log")
    try:
        async with chats_server(env) as srv:
            chat = await new_chat(srv.client)
            user = await join(srv.client, chat)
            before, start = await read_page(srv.client, chat, 10)
            assert before == []
            waiting = asyncio.ensure_future(srv.client.get(
                f"/v1/chats/{chat}/messages?limit=10&from={start}&wait=30", timeout=40))
            await poll(lambda: held(srv.runtime, 1))
            await poll(lambda: asyncio.sleep(0, srv.runtime.pubsub.live))
            sent = time.monotonic()
            message_id = await say(other, chat, user, "from another process")  # 201: committed there
            posted = time.monotonic()
            resp = await waiting
            answered = time.monotonic()
            assert resp.status == 200, resp
            assert [m["message_id"] for m in resp.json["messages"]] == [message_id]
            assert resp.json["messages"][0]["text"] == "from another process"
            again, _ = await read_page(other, chat, 10, start)  # paging shows the same
            assert resp.json == {"messages": again, "next": resp.json["next"]}
            assert held_polls(srv.runtime) == 0
            # woken by the commit, not by the 30 s timeout (the latency is measured in bench/, not here)
            assert answered - sent < 10
            print(f"long-poll answered {1000 * (answered - posted):.1f} ms after the post's 201")
    finally:
        assert proc.stop() == 0


async def test_wait_runs_out_with_the_empty_page(env: dict[str, str]) -> None:
    async with chats_server(env) as srv:
        chat = await new_chat(srv.client)
        user = await join(srv.client, chat)
        _, start = await read_page(srv.client, chat, 5)
        resp = await srv.client.get(f"/v1/chats/{chat}/messages?limit=5&wait=1")
        assert resp.status == 200 and resp.json == {"messages": [], "next": {"iterator": start}}, resp
        await say(srv.client, chat, user, "one")
        _, after = await read_page(srv.client, chat, 5)
        resp = await srv.client.get(f"/v1/chats/{chat}/messages?limit=5&from={after}&wait=1")
        assert resp.status == 200 and resp.json == {"messages": [], "next": {"iterator": after}}, resp
        # a page that is not empty answers at once, wait or not
        resp = await srv.client.get(f"/v1/chats/{chat}/messages?limit=5&from={start}&wait=60", timeout=5)
        assert resp.status == 200 and [m["text"] for m in resp.json["messages"]] == ["one"]
        assert held_polls(srv.runtime) == 0


@pytest.mark.parametrize("wait", ["-1", "61", "abc", "1.5", "", "1e3"])
async def test_wait_out_of_range_is_400(env: dict[str, str], wait: str) -> None:
    async with chats_server(env) as srv:
        chat = await new_chat(srv.client)
        user = await join(srv.client, chat)
        await say(srv.client, chat, user, "kept")
        resp = await srv.client.get(f"/v1/chats/{chat}/messages?limit=5&wait={wait}")
        assert_error(resp, 400, "bad-parameters")
        messages, _ = await read_page(srv.client, chat, 5)
        assert [m["text"] for m in messages] == ["kept"]


async def test_held_requests_hold_no_database_connection(env: dict[str, str]) -> None:
    async with chats_server(env, POOL_SIZE=2, DB_TIMEOUT=2) as srv:
        chats = [await new_chat(srv.client, f"c{i}") for i in range(6)]
        users = [await join(srv.client, chat) for chat in chats]
        waiting = [asyncio.ensure_future(srv.client.get(f"/v1/chats/{chat}/messages?limit=5&wait=20", timeout=30))
                   for chat in chats]
        await poll(lambda: held(srv.runtime, 6))

        async def none_taken() -> bool:  # (a connection given back a moment ago may still be on its way)
            stats = srv.runtime.db.pool.get_stats()
            return stats.get("pool_size", 0) == stats.get("pool_available", -1) and held_polls(srv.runtime) == 6
        await poll(none_taken)
        # with six requests held, the pool of two still serves everything else
        other = await new_chat(srv.client, "other")
        member = await join(srv.client, other)
        await say(srv.client, other, member, "still served")
        messages, _ = await read_page(srv.client, other, 5)
        assert [m["text"] for m in messages] == ["still served"]
        for chat, user, task in zip(chats, users, waiting):
            await say(srv.client, chat, user, f"for {chat}")
            resp = await task
            assert resp.status == 200 and [m["text"] for m in resp.json["messages"]] == [f"for {chat}"], resp
        assert held_polls(srv.runtime) == 0


async def test_a_client_that_hangs_up_is_no_longer_held(env: dict[str, str]) -> None:
    async with chats_server(env) as srv:
        chat = await new_chat(srv.client)
        await join(srv.client, chat)
        host, port = srv.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(f"GET /v1/chats/{chat}/messages?limit=5&wait=60 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await writer.drain()
        await poll(lambda: held(srv.runtime, 1))
        writer.close()  # hangs up
        await poll(lambda: held(srv.runtime, 0))
        assert await reader.read() == b""  # nothing was answered


async def test_long_poll_with_auth(env: dict[str, str]) -> None:
    async with serve_app(env) as srv:
        alice = srv.client.with_headers(**bearer(await new_session(srv.client, "alice")))
        bob = srv.client.with_headers(**bearer(await new_session(srv.client, "bob")))
        chat = await new_chat(alice)
        user = await join(alice, chat, "alice")
        _, start = await read_page(alice, chat, 5)
        # not a member: 404 at once, never held
        assert_error(await bob.get(f"/v1/chats/{chat}/messages?limit=5&wait=30", timeout=5), 404, "chat-not-found")
        assert_error(await srv.client.get(f"/v1/chats/{chat}/messages?limit=5&wait=30", timeout=5),
                     401, "auth-failed")
        waiting = asyncio.ensure_future(alice.get(f"/v1/chats/{chat}/messages?limit=5&from={start}&wait=30",
                                                  timeout=40))
        await poll(lambda: held(srv.runtime, 1))
        message_id = await say(alice, chat, user, "hello")
        resp = await waiting
        assert resp.status == 200 and [m["message_id"] for m in resp.json["messages"]] == [message_id]


async def test_held_long_polls_are_a_gauge_on_metrics(env: dict[str, str]) -> None:
    async with chats_server(env) as srv:
        chat = await new_chat(srv.client)
        await join(srv.client, chat)
        _, start = await read_page(srv.client, chat, 5)
        waiting = [asyncio.ensure_future(srv.client.get(f"/v1/chats/{chat}/messages?limit=5&from={start}&wait=4",
                                                        timeout=30)) for _ in range(2)]
        await poll(lambda: held(srv.runtime, 2))
        await poll(lambda: longpolls_held(srv.client, 2.0), timeout=10)  # sampled every second
        assert [(await request).status for request in waiting] == [200, 200]  # their wait ran out
        await poll(lambda: longpolls_held(srv.client, 0.0), timeout=10)


async def test_polling_again_from_each_answer_misses_nothing_across_processes(
        env: dict[str, str], tmp_path: Path) -> None:
    # a client that long-polls again from each answer's next.iterator; the server then knows from the
    # post's event that nothing follows that iterator and waits without reading: the messages another
    # process commits meanwhile must all arrive, once each, and a timeout answers the page a read gives
    env = {**env, "CACHE_TYPE": "redis"}
    proc, other = await start_api({**env, "MESSENGER_APPS": "messenger_chats"}, tmp_path / "other.log")
    try:
        async with chats_server(env) as srv:
            chat = await new_chat(srv.client)
            user = await join(srv.client, chat)
            _, iterator = await read_page(srv.client, chat, 10)
            got: list[str] = []
            for round_ in range(5):
                waiting = asyncio.ensure_future(srv.client.get(
                    f"/v1/chats/{chat}/messages?limit=10&from={iterator}&wait=30", timeout=40))
                await poll(lambda: held(srv.runtime, 1))
                await poll(lambda: asyncio.sleep(0, srv.runtime.pubsub.live))  # LISTEN opens with the first
                await say(other, chat, user, f"message {round_}")
                resp = await waiting
                assert resp.status == 200, resp
                got += [m["text"] for m in resp.json["messages"]]
                iterator = resp.json["next"]["iterator"]
            assert got == [f"message {i}" for i in range(5)]
            resp = await srv.client.get(f"/v1/chats/{chat}/messages?limit=10&from={iterator}&wait=1")
            assert resp.status == 200 and resp.json == {"messages": [], "next": {"iterator": iterator}}, resp
            again, after = await read_page(other, chat, 10, iterator)
            assert again == [] and after == iterator
            # a message committed before the poll asks again is answered at once, not waited for
            await say(other, chat, user, "meanwhile")
            await poll(lambda: asyncio.sleep(0, srv.runtime.pubsub.received >= 6))
            resp = await srv.client.get(f"/v1/chats/{chat}/messages?limit=10&from={iterator}&wait=30", timeout=5)
            assert resp.status == 200 and [m["text"] for m in resp.json["messages"]] == ["meanwhile"], resp
            assert held_polls(srv.runtime) == 0
    finally:
        assert proc.stop() == 0


async def test_a_poll_asked_again_after_its_wait_ran_out_waits_without_reading(env: dict[str, str]) -> None:
    # 5,000 idle long-polls ask again every `wait` seconds, all from where they were: after one read from
    # PostgreSQL found nothing there (with LISTEN live), every later poll from that position waits without
    # any read, so it needs neither the cache nor the pool; a post afterwards is still answered at once
    proxy = TcpProxy(6379)
    try:
        async with chats_server({**env, "CACHE_TYPE": "redis", "REDIS_URL": f"redis://127.0.0.1:{proxy.port}/0"},
                                POOL_SIZE=1, DB_TIMEOUT=1) as srv:
            chat = await new_chat(srv.client)
            user = await join(srv.client, chat)
            _, start = await read_page(srv.client, chat, 5)
            path = f"/v1/chats/{chat}/messages?limit=5&from={start}&wait=1"
            empty = {"messages": [], "next": {"iterator": start}}
            resp = await srv.client.get(path)  # the first long-poll opens LISTEN
            assert resp.status == 200 and resp.json == empty, resp
            await poll(lambda: asyncio.sleep(0, srv.runtime.pubsub.live))
            resp = await srv.client.get(path)  # reads: nothing after start
            assert resp.status == 200 and resp.json == empty, resp
            proxy.cut()  # no cache any more
            async with srv.runtime.db.connection(timeout=30):  # and the pool's only connection taken: a read gets 503
                for _ in range(2):
                    resp = await srv.client.get(path, timeout=5)
                    assert resp.status == 200 and resp.json == empty, resp
                waiting = asyncio.ensure_future(srv.client.get(path.replace("wait=1", "wait=30"), timeout=40))
                await poll(lambda: held(srv.runtime, 1))
            message_id = await say(srv.client, chat, user, "after all")
            resp = await waiting
            assert resp.status == 200 and [m["message_id"] for m in resp.json["messages"]] == [message_id], resp
            resp = await srv.client.get(path.replace("wait=1", "wait=30"), timeout=5)  # there already: at once
            assert resp.status == 200 and [m["message_id"] for m in resp.json["messages"]] == [message_id], resp
    finally:
        proxy.close()
