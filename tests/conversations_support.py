"""Helpers of the conversations tests: servers with auth, accounts, and the new endpoints."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from chats_support import HEX32
from search_support import read_results, start_search, wait_status
from support import AppServer, Client, Response, serve_app

AUTH_AND_CHATS = ("messenger_auth", "messenger_chats")
WITH_SEARCH = ("messenger_auth", "messenger_chats", "messenger_search")
FAST_HASH = {"AUTH_SCRYPT_N": "1024"}  # tests need no brute-force resistance
MESSAGE_KEYS = {"message_id", "user_id", "text", "created_at", "edited_at"}
SUMMARY_KEYS = {"chat_id", "chat_name", "private", "owner", "my_user_ids", "last_message", "unread", "read_iterator"}


@asynccontextmanager
async def auth_server(env: Mapping[str, str], plugins: tuple[str, ...] = AUTH_AND_CHATS,
                      **overrides: Any) -> AsyncIterator[AppServer]:
    """An in-process app with auth on (and the plugins named)."""
    async with serve_app({**env, **FAST_HASH, **{k: str(v) for k, v in overrides.items()}},
                         plugins=plugins) as srv:
        yield srv


async def account(client: Client, user_name: str) -> Client:
    """Register and log in; a client that sends the session header."""
    body = {"user_name": user_name, "password": "pass-" + user_name}
    assert (await client.post("/v1/auth/register", body)).status == 201
    resp = await client.post("/v1/auth/login", body)
    assert resp.status == 200, resp
    return client.with_headers(Authorization=f"session_id {resp.json['session_id']}")


def on(client: Client, server: AppServer) -> Client:
    """The same session, sent to another server."""
    other = Client(server.url, client.headers)
    return other


async def create(client: Client, name: str = "chat", private: bool = False) -> str:
    """A new chat (private or not); its id."""
    resp = await client.post("/v1/chats", {"chat_name": name, "private": private})
    assert resp.status == 201, resp
    assert HEX32.match(resp.json["chat_id"]), resp.json
    return resp.json["chat_id"]


async def enter(client: Client, chat: str, name: str = "me", invite: str | None = None) -> Response:
    """POST a join (asserting nothing)."""
    body: dict[str, Any] = {"user_name": name}
    if invite is not None:
        body["invite"] = invite
    return await client.post(f"/v1/chats/{chat}/users", body)


async def member_of(client: Client, chat: str, name: str = "me", invite: str | None = None) -> str:
    """Join; the new member id."""
    resp = await enter(client, chat, name, invite)
    assert resp.status == 201, resp
    return resp.json["user_id"]


async def invite_to(client: Client, chat: str) -> str:
    """A new invite to the chat."""
    resp = await client.post(f"/v1/chats/{chat}/invites")
    assert resp.status == 201, resp
    assert set(resp.json) == {"invite"}, resp.json
    return resp.json["invite"]


async def my_chats(client: Client) -> list[dict[str, Any]]:
    """GET /v1/chats, which must be 200."""
    resp = await client.get("/v1/chats")
    assert resp.status == 200, resp
    assert set(resp.json) == {"chats"}, resp.json
    for summary in resp.json["chats"]:
        assert set(summary) == SUMMARY_KEYS, summary
        if summary["last_message"] is not None:
            assert set(summary["last_message"]) == MESSAGE_KEYS, summary
    return resp.json["chats"]


async def unread_of(client: Client) -> dict[str, int]:
    """Unread count by chat id."""
    return {summary["chat_id"]: summary["unread"] for summary in await my_chats(client)}


async def mark(client: Client, chat: str, iterator: str) -> Response:
    """POST a read marker (asserting nothing)."""
    return await client.post(f"/v1/chats/{chat}/read", {"iterator": iterator})


async def members(client: Client, chat: str, query: str = "") -> Response:
    """GET the members (asserting nothing)."""
    return await client.get(f"/v1/chats/{chat}/users{query}")


async def remove(client: Client, chat: str, user: str, query: str = "") -> Response:
    """DELETE a member (asserting nothing)."""
    return await client.request("DELETE", f"/v1/chats/{chat}/users/{user}{query}")


async def edit(client: Client, chat: str, message: str, text: str, query: str = "") -> Response:
    """PATCH a message (asserting nothing)."""
    return await client.request("PATCH", f"/v1/chats/{chat}/messages/{message}{query}", {"message": text})


async def delete(client: Client, chat: str, message: str, query: str = "") -> Response:
    """DELETE a message (asserting nothing)."""
    return await client.request("DELETE", f"/v1/chats/{chat}/messages/{message}{query}")


async def texts_of(client: Client, chat: str, limit: int = 100, start: str | None = None) -> list[str]:
    """The texts of one page, which must be 200."""
    query = f"limit={limit}" + (f"&from={start}" if start is not None else "")
    resp = await client.get(f"/v1/chats/{chat}/messages?{query}")
    assert resp.status == 200, resp
    for message in resp.json["messages"]:
        assert set(message) == MESSAGE_KEYS, message
    return [message["text"] for message in resp.json["messages"]]


async def found(client: Client, word: str) -> list[str]:
    """The texts a new search finds."""
    task = await start_search(client, word)
    await wait_status(client, task)
    return [r["text"] for r in (await read_results(client, task))[0]]
