"""A long-poll and a stream through a real nginx running the repository's ``deploy/nginx/nginx.conf``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from chats_support import join, new_chat, read_page, say
from events_support import Stream
from support import Client, assert_error
from test_throttle_nginx import NGINX, behind_nginx

pytestmark = pytest.mark.skipif(not Path(NGINX).exists(), reason="nginx is not installed (make system-deps)")


async def held_poll_answers(client: Client) -> None:
    """A long-poll through nginx answers the message posted meanwhile."""
    chat = await new_chat(client, "other")
    user = await join(client, chat)
    _, start = await read_page(client, chat, 5)
    held = asyncio.ensure_future(client.get(f"/v1/chats/{chat}/messages?limit=5&from={start}&wait=30", timeout=40))
    sent = await say(client, chat, user, "through nginx")
    resp = await held
    assert resp.status == 200 and [m["message_id"] for m in resp.json["messages"]] == [sent], resp


async def test_long_poll_and_stream_through_nginx(env: dict[str, str], tmp_path: Path) -> None:
    async with behind_nginx(env, tmp_path, MESSENGER_APPS="messenger_chats,messenger_events") as (_, nginx):
        client = nginx.client
        chat = await new_chat(client)
        user = await join(client, chat)
        _, start = await read_page(client, chat, 5)
        # a chat where nothing is posted: held past nginx's usual 30 s read timeout, answered by the app
        quiet = await new_chat(client, "quiet")
        _, quiet_start = await read_page(client, quiet, 5)
        outlasting = asyncio.ensure_future(client.get(
            f"/v1/chats/{quiet}/messages?limit=5&from={quiet_start}&wait=32", timeout=45))
        assert_error(await client.get("/v1/events"), 400, "bad-parameters")  # no upgrade: the app's 400
        stream = await Stream.open(client.base_url)
        await stream.ready()
        assert await stream.subscribe({chat: start}) == [{"type": "subscribed", "chats": [chat]}]
        await held_poll_answers(client)
        in_stream = await say(client, chat, user, "streamed through nginx")
        frame = await stream.next()
        assert frame is not None and frame["type"] == "message" and frame["message"]["message_id"] == in_stream
        stream.close()
        resp = await outlasting
        assert (resp.status, resp.json) == (200, {"messages": [], "next": {"iterator": quiet_start}}), resp
