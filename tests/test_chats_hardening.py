"""A page's bytes are bounded (PAGE_MAX_BYTES): long messages that JSON escapes six-fold cannot make the
server build a response of hundreds of megabytes."""

from __future__ import annotations

import json

import pytest

from chats_support import chats_server, join, new_chat, page, say

HEAVY = "\x01" * 65536  # 65,536 control characters: 393 KB of JSON, almost nothing in PostgreSQL


@pytest.mark.parametrize("cache", ["1", "0"])
async def test_a_page_stops_before_page_max_bytes_and_paging_misses_nothing(env: dict[str, str], cache: str) -> None:
    async with chats_server(env, CHATS_CACHE_PAGES=cache) as srv:
        client = srv.client
        chat = await new_chat(client)
        user = await join(client, chat)
        ids = [await say(client, chat, user, HEAVY) for _ in range(5)] + [await say(client, chat, user, "small")]
        seen, start, sizes = [], None, []
        for _ in range(10):
            resp = await page(client, chat, 1000, start)
            assert resp.status == 200
            sizes.append(len(resp.body))
            body = resp.json
            if not body["messages"]:
                break
            seen += [message["message_id"] for message in body["messages"]]
            start = body["next"]["iterator"]
        assert seen == ids
        assert max(sizes) <= 1024 * 1024, sizes
        assert sizes[0] > 700_000  # two heavy messages fit, a third would pass 1 MiB
        again = await page(client, chat, 1000)  # the same page twice (cached or not) is the same bytes
        first = await page(client, chat, 1000)
        assert again.body == first.body and len(json.loads(first.body)["messages"]) == 2


async def test_a_message_larger_than_the_bound_still_comes_alone(env: dict[str, str]) -> None:
    async with chats_server(env, PAGE_MAX_BYTES=4096) as srv:
        client = srv.client
        chat = await new_chat(client)
        user = await join(client, chat)
        ids = [await say(client, chat, user, "x" * 10_000) for _ in range(2)]
        small = [await say(client, chat, user, f"m{i}") for i in range(40)]
        resp = await page(client, chat, 1000)
        assert [m["message_id"] for m in resp.json["messages"]] == ids[:1]
        resp = await page(client, chat, 1000, resp.json["next"]["iterator"])
        assert [m["message_id"] for m in resp.json["messages"]] == ids[1:]
        resp = await page(client, chat, 1000, resp.json["next"]["iterator"])
        got = [m["message_id"] for m in resp.json["messages"]]
        assert 0 < len(got) < 40 and got == small[:len(got)] and len(resp.body) <= 4096
