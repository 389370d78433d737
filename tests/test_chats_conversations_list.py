"""GET /v1/chats: the summaries PostgreSQL builds are exactly what the pages show (texts of every kind,
timestamps, ids, edits), and the list stays one JSON document."""

from __future__ import annotations

import json

from chats_support import read_page, say
from conversations_support import account, auth_server, create, edit, member_of, my_chats
from support import AppServer

TEXTS = ['plain', 'quotes " and \\ backslash', "line\nbreak\ttab\r", "control \x01\x1f", "é ü 漢字 🦎",
         "</script><b>&amp;</b>", "\u2028 \u2029 separators", "x" * 65536]


async def test_each_summary_shows_the_last_message_exactly_as_a_page(env: dict[str, str]) -> None:
    async with auth_server(env) as srv:
        await check_summaries(srv)


async def check_summaries(srv: AppServer) -> None:
    alice = await account(srv.client, "alice")
    chats = {}
    for n, text in enumerate(TEXTS):
        chat = await create(alice, f'chat "{n}" é\\', private=bool(n % 2))
        member = await member_of(alice, chat, "alice")
        await say(alice, chat, member, "first")
        await say(alice, chat, member, text)
        chats[chat] = member
    resp = await alice.get("/v1/chats")
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("application/json")
    assert list(json.loads(resp.body)) == ["chats"]
    listed = await my_chats(alice)
    assert [s["chat_id"] for s in listed] == list(reversed(chats))  # the newest message first
    for n, summary in enumerate(reversed(listed)):
        chat = summary["chat_id"]
        messages, _ = await read_page(alice, chat, 10)
        assert summary["last_message"] == messages[-1] and messages[-1]["text"] == TEXTS[n]
        assert summary["chat_name"] == f'chat "{n}" é\\' and summary["private"] is bool(n % 2)
        assert summary["owner"] is True and summary["my_user_ids"] == [chats[chat]] and summary["unread"] == 0
        _, end = await read_page(alice, chat, 10)
        assert summary["read_iterator"] == end
    # an edited last message: edited_at as the page has it
    chat = listed[0]["chat_id"]
    resp = await edit(alice, chat, listed[0]["last_message"]["message_id"], "edited ✓")
    assert resp.status == 200, resp
    summary = {s["chat_id"]: s for s in await my_chats(alice)}[chat]
    assert summary["last_message"] == resp.json == (await read_page(alice, chat, 10))[0][-1]
    assert summary["last_message"]["edited_at"] is not None
