"""The web client's live parts, two people in two browser contexts: private chats and invite links,
messages both ways within two seconds, live unread counts, edits and deletes, the long-poll fallback
and a worker restart.  These need the Conversations and Real-time parts of API.md.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from playwright.async_api import Browser, Page, WebSocket, WebSocketRoute, expect

from auth_support import bearer, login
from support import AppServer, poll, start_api
from web_support import (FAST, HostGuard, chat_button, create_chat, guarded_context, message_log, open_page, register,
                         send)

LIVE_MS = 2000  # "sees it within two seconds, without reloading"


async def invite_link(page: Page) -> str:
    """Invite → the link shown in the read-only field."""
    await page.get_by_role("button", name="Invite").click()
    field = page.get_by_role("textbox", name="Invite link")
    await expect(field).to_have_value(re.compile(r"^http://127\.0\.0\.1:\d+/#/join/[0-9a-f]{32}/.+"))
    assert await field.get_attribute("readonly") is not None
    return await field.input_value()


async def join_by(page: Page, link: str, chat_name: str) -> None:
    """Open an invite link and press Join; the chat is open afterwards."""
    await page.goto(link)
    await page.get_by_role("button", name="Join").click()
    await expect(page.get_by_role("heading", name=chat_name)).to_be_visible()


async def test_two_people_a_private_chat_an_invite_link_and_messages_both_ways_live(
        web: AppServer, browser: Browser) -> None:
    guard = HostGuard(web.url)
    ann = await open_page(browser, web.url, guard, viewport={"width": 1100, "height": 700})
    bob = await open_page(browser, web.url, guard, viewport={"width": 1100, "height": 700})
    await register(ann, "ann")
    await create_chat(ann, "plans", private=True)
    link = await invite_link(ann)
    # the chat is private: its id alone does not let anybody in
    await register(bob, "bob")
    chat_id = link.split("/#/join/")[1].split("/")[0]
    stranger = await login(web.client, "bob", "correct horse battery")
    refused = await web.client.post(f"/v1/chats/{chat_id}/users", {"user_name": "bob"}, headers=bearer(stranger))
    assert (refused.status, refused.json) == (404, {"message": "chat-not-found"})
    await join_by(bob, link, "plans")

    await send(ann, "hello bob")
    await expect(message_log(bob)).to_contain_text("hello bob", timeout=LIVE_MS)
    await send(bob, "hello ann")
    await expect(message_log(ann)).to_contain_text("hello ann", timeout=LIVE_MS)
    await expect(message_log(ann).get_by_role("article")).to_have_count(2)
    await expect(message_log(bob).get_by_role("article")).to_have_count(2)

    # two more chats: bob keeps "plans" open while ann writes in "lobby"; its count goes up live, "garden"
    # stays read, and "lobby" moves to the top of his list (the newest message first)
    await create_chat(ann, "lobby")
    await join_by(bob, await invite_link(ann), "lobby")
    await create_chat(ann, "garden")
    await join_by(bob, await invite_link(ann), "garden")
    await chat_button(bob, "plans").click()
    names = bob.get_by_role("list", name="Chats").locator(".chat-name")
    await expect(names).to_have_text(["garden", "lobby", "plans"])  # no messages yet: by when he joined
    await chat_button(ann, "lobby").click()
    for number in range(1, 4):
        await send(ann, f"lobby news {number}")
        await expect(chat_button(bob, "lobby")).to_contain_text(f"{number} unread", timeout=LIVE_MS)
        await expect(names).to_have_text(["lobby", "garden", "plans"])
        await expect(chat_button(bob, "garden")).not_to_contain_text("unread")
        await expect(chat_button(bob, "plans")).not_to_contain_text("unread")
    await chat_button(bob, "lobby").click()
    await expect(message_log(bob)).to_contain_text("lobby news 3")
    await expect(chat_button(bob, "lobby")).not_to_contain_text("unread")
    # opening it moved his read marker at the server: the API says so, and a reload shows no count
    session = await bob.evaluate("localStorage.getItem('messenger.session')")

    async def unread_at_server() -> dict[str, int] | None:
        resp = await web.client.get("/v1/chats", headers=bearer(session))
        assert resp.status == 200, resp
        counts = {chat["chat_name"]: chat["unread"] for chat in resp.json["chats"]}
        return counts if counts["lobby"] == 0 else None
    assert await poll(unread_at_server, timeout=5) == {"lobby": 0, "garden": 0, "plans": 0}
    await bob.reload()
    await expect(names).to_have_text(["lobby", "garden", "plans"])
    for name in ("lobby", "garden", "plans"):
        await expect(chat_button(bob, name)).not_to_contain_text("unread")
    guard.assert_clean()


async def test_edit_and_delete_are_seen_live_by_the_other_side(web: AppServer, browser: Browser) -> None:
    guard = HostGuard(web.url)
    ann = await open_page(browser, web.url, guard)
    bob = await open_page(browser, web.url, guard)
    await register(ann, "ann")
    await register(bob, "bob")
    await create_chat(ann, "edits")
    await join_by(bob, await invite_link(ann), "edits")
    await send(ann, "a mesage with a typo")
    await send(bob, "bob's own words")
    theirs = message_log(bob)
    await expect(theirs).to_contain_text("a mesage with a typo", timeout=LIVE_MS)
    # only the author can edit or delete: ann sees no buttons on bob's message
    bobs = message_log(ann).get_by_role("article").filter(has_text="bob's own words")
    await expect(bobs).to_be_visible()
    await expect(bobs.get_by_role("button")).to_have_count(0)

    mine = message_log(ann).get_by_role("article").filter(has_text="a mesage with a typo")
    await mine.get_by_role("button", name="Edit").click()
    editor = mine.get_by_role("textbox", name="Edit message")
    await editor.fill("a message without a typo")
    await editor.press("Enter")
    edited = theirs.get_by_role("article").filter(has_text="a message without a typo")
    await expect(edited).to_contain_text("(edited)", timeout=LIVE_MS)
    await expect(theirs).not_to_contain_text("a mesage with a typo")

    await message_log(ann).get_by_role("article").filter(has_text="a message without a typo").get_by_role(
        "button", name="Delete").click()
    await expect(theirs).not_to_contain_text("a message without a typo", timeout=LIVE_MS)
    await expect(message_log(ann)).not_to_contain_text("a message without a typo")
    await bob.reload()
    await chat_button(bob, "edits").click()
    await expect(message_log(bob)).to_contain_text("bob's own words")
    await expect(message_log(bob)).not_to_contain_text("without a typo")
    guard.assert_clean()


async def test_when_the_websocket_fails_long_polls_carry_the_messages(web: AppServer, browser: Browser) -> None:
    guard = HostGuard(web.url)
    ann = await open_page(browser, web.url, guard)
    bob_context = await guarded_context(browser, web.url, guard)
    refused: list[str] = []

    async def refuse(socket: WebSocketRoute) -> None:
        refused.append(socket.url)
        await socket.close(code=1011)
    await bob_context.route_web_socket(re.compile(r".*/v1/events$"), refuse)
    bob = await bob_context.new_page()
    polls: list[str] = []
    bob.on("request", lambda request: polls.append(request.url) if "wait=" in request.url else None)
    await bob.goto("/")
    await register(ann, "ann")
    await register(bob, "bob")
    await create_chat(ann, "fallback")
    await join_by(bob, await invite_link(ann), "fallback")
    await send(ann, "carried by a long-poll")
    await expect(message_log(bob)).to_contain_text("carried by a long-poll", timeout=LIVE_MS)
    await send(bob, "and back over the socket")
    await expect(message_log(ann)).to_contain_text("and back over the socket", timeout=LIVE_MS)
    assert refused and polls, (refused, polls)
    guard.assert_clean()


class Streams:
    """The WebSockets a page opens, and how many of them got the server's ``ready`` frame."""

    def __init__(self, page: Page) -> None:
        self.opened: list[str] = []
        self.ready = 0
        page.on("websocket", self.opening)

    def opening(self, socket: WebSocket) -> None:
        self.opened.append(socket.url)
        socket.on("framereceived", self.received)

    def received(self, payload: str | bytes) -> None:
        try:
            frame = json.loads(payload)
        except ValueError:
            return
        if isinstance(frame, dict) and frame.get("type") == "ready":
            self.ready += 1

    async def ready_count(self) -> int:
        """How many streams were ready (for ``poll``)."""
        return self.ready


async def test_the_client_resumes_after_the_worker_restarts_and_misses_nothing(
        env: dict[str, str], browser: Browser, tmp_path: Path) -> None:
    settings = {**env, **FAST}
    proc, client = await start_api(settings, tmp_path / "first.log")
    port = client.base_url.rsplit(":", 1)[1]
    try:
        guard = HostGuard(client.base_url)
        ann = await open_page(browser, client.base_url, guard)
        streams = Streams(ann)
        await register(ann, "ann")
        await create_chat(ann, "steady")
        await poll(streams.ready_count, timeout=10)
        assert len(streams.opened) == 1, streams.opened
        await send(ann, "before the restart")
        await expect(message_log(ann)).to_contain_text("before the restart")
        session = await ann.evaluate("localStorage.getItem('messenger.session')")
        chat_id = await chat_button(ann, "steady").get_attribute("data-chat-id")
        user_id = (await client.get(f"/v1/chats/{chat_id}/messages?limit=1", headers=bearer(session))).json[
            "messages"][0]["user_id"]
        assert proc.stop() == 0
        proc, client = await start_api({**settings, "PORT": port}, tmp_path / "second.log")
        # posted while the page is still reconnecting: it arrives through the resumed iterator
        for number in range(1, 4):
            resp = await client.post(f"/v1/chats/{chat_id}/messages?user_id={user_id}",
                                     {"message": f"after the restart {number}"}, headers=bearer(session))
            assert resp.status == 201, resp
        log = message_log(ann)
        await expect(log).to_contain_text("after the restart 3", timeout=15_000)

        # it came back over a new stream, not the long-poll fallback: a second socket opened and was ready
        async def second_ready() -> bool:
            return await streams.ready_count() >= 2
        await poll(second_ready, timeout=15)
        assert all(url.endswith("/v1/events") for url in streams.opened), streams.opened
        texts = await log.locator(".text").all_inner_texts()
        assert texts == ["before the restart"] + [f"after the restart {n}" for n in range(1, 4)]
        await send(ann, "still here")
        await expect(log).to_contain_text("still here", timeout=LIVE_MS)
        page = await client.get(f"/v1/chats/{chat_id}/messages?limit=100", headers=bearer(session))
        stored = [m["text"] for m in page.json["messages"]]
        assert stored == texts + ["still here"]
        # a reload keeps the session: the app comes back, not the login
        await ann.reload()
        await expect(ann.get_by_role("button", name="Log out")).to_be_visible()
        guard.assert_clean()
    finally:
        proc.stop()
