"""The web client's sentence for every error code of API.md, where each can happen.

The routed test makes the API answer each code (a JSON error body in API.md's shape, fulfilled by the
browser for one request of the kind where the code can come) and reads what the page says; the others
make the real server answer it: an unknown user name, a taken one, a session logged out elsewhere, a
position the chat does not have, search with RabbitMQ cut, and the whole app gone behind nginx.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Page, Request, Route, WebSocketRoute, expect

from auth_support import bearer, new_session
from chats_support import join, new_chat, say
from support import AppServer, TcpProxy, delete_rabbit_queue, poll, serve_app, start_api
from test_throttle_nginx import Nginx
from web_support import (FAST, PASSWORD, WEB_PLUGINS, HostGuard, chat_button, create_chat, guarded_context,
                         log_in, message_log, open_page, register, send)

MESSAGES = re.compile(r"/v1/chats/[0-9a-f]{32}/messages(\?|$)")
MESSAGE = re.compile(r"/v1/chats/[0-9a-f]{32}/messages/[0-9a-f]{32}$")
MEMBERS = re.compile(r"/v1/chats/[0-9a-f]{32}/users$")
CHATS = re.compile(r"/v1/chats$")
SEARCH = re.compile(r"/v1/chats/search$")
SEARCH_STATUS = re.compile(r"/v1/chats/search/status/[0-9a-f]{32}$")
SEARCH_RESULTS = re.compile(r"/v1/chats/search/[0-9a-f]{32}/messages\?")
PING_DB = re.compile(r"/ping_db$")


class Answer:
    """Answers the first ``times`` requests of ``method`` to ``url`` (and ``where``) with an API error."""

    def __init__(self, page: Page, url: re.Pattern[str], method: str, status: int, code: str, *,
                 times: int | None = 1, headers: dict[str, str] | None = None,
                 where: Callable[[Request], bool] | None = None) -> None:
        self.page, self.url, self.method = page, url, method
        self.status, self.code, self.times = status, code, times
        self.headers = headers or {}
        self.where = where
        self.hits: list[str] = []

    async def handle(self, route: Route) -> None:
        request = route.request
        if (request.method != self.method or (self.times is not None and len(self.hits) >= self.times)
                or (self.where is not None and not self.where(request))):
            await route.fallback()
            return
        self.hits.append(request.url)
        await route.fulfill(status=self.status, json={"message": self.code}, headers=self.headers)

    async def answered_once(self) -> bool:
        """Whether a request was answered (for ``poll``)."""
        return len(self.hits) >= 1

    async def answered_twice(self) -> bool:
        """Whether two requests were answered (for ``poll``: a probe that keeps trying)."""
        return len(self.hits) >= 2

    async def __aenter__(self) -> Answer:
        await self.page.route(self.url, self.handle)
        return self

    async def __aexit__(self, *_: Any) -> None:
        await self.page.unroute(self.url, self.handle)


async def quiet(page: Page) -> None:
    """Empty the alert, so that the next sentence is the next error's."""
    await page.evaluate("document.getElementById('banner').textContent = ''")


async def says(page: Page, sentence: str) -> None:
    """The alert says exactly ``sentence``."""
    await expect(page.get_by_role("alert")).to_have_text(sentence)


async def search_says(page: Page, text: str, sentence: str) -> None:
    """Search for ``text``; the results list says ``sentence``."""
    box = page.get_by_role("searchbox", name="Search messages")
    await box.fill(text)
    await box.press("Enter")
    await expect(page.get_by_role("list", name="Search results")).to_have_text(sentence)


class Person:
    """ann, registered in a page under the guard, in her chat "sentences" with one message of hers."""

    def __init__(self, page: Page, guard: HostGuard) -> None:
        self.page = page
        self.guard = guard
        self.mine = message_log(page).get_by_role("article").filter(has_text="a message to edit")
        self.composer = page.get_by_role("textbox", name="Message", exact=True)

    @classmethod
    async def start(cls, web: AppServer, browser: Browser) -> Person:
        guard = HostGuard(web.url)
        page = await open_page(browser, web.url, guard, viewport={"width": 1100, "height": 700})
        await register(page, "ann")
        await create_chat(page, "sentences")
        await send(page, "a message to edit")
        return cls(page, guard)

    async def post(self, text: str) -> None:
        """Type a message and press Enter, the alert emptied first."""
        await quiet(self.page)
        await self.composer.fill(text)
        await self.composer.press("Enter")

    async def edit(self) -> None:
        """Edit her message (Enter saves), the alert emptied first."""
        await quiet(self.page)
        await self.mine.get_by_role("button", name="Edit").click()
        editor = self.mine.get_by_role("textbox", name="Edit message")
        await editor.fill("an edit")
        await editor.press("Enter")

    async def cancel_edit(self) -> None:
        await self.mine.get_by_role("textbox", name="Edit message").press("Escape")


async def test_posting_creating_and_joining_say_what_went_wrong(web: AppServer, browser: Browser) -> None:
    ann = await Person.start(web, browser)
    page = ann.page
    posting = {
        ("bad-parameters", 400): "That was not accepted: check what you typed.",
        ("chat-not-found", 404): "That chat does not exist, or you cannot write in it.",
        ("user-not-found", 404): "You are no longer a member of this chat.",
        ("payload-too-large", 413): "That is too long to send.",
        ("method-not-allowed", 405): "The server does not support this action.",
        ("internal-error", 500): "Something went wrong on the server. Try again.",
    }
    for (code, status), sentence in posting.items():
        async with Answer(page, MESSAGES, "POST", status, code) as answer:
            await ann.post(f"refused with {code}")
            await says(page, sentence)
            assert len(answer.hits) == 1, (code, answer.hits)
        await expect(ann.composer).to_have_value(f"refused with {code}")  # kept: it can be sent again
    async with Answer(page, MESSAGES, "POST", 429, "request-limit-exceeded", headers={"Retry-After": "7"}):
        await ann.post("too fast")
        await says(page, "Too many requests: wait 7 s and try again.")

    await quiet(page)
    async with Answer(page, CHATS, "POST", 400, "bad-parameters"):
        await page.get_by_role("button", name="New chat").click()
        await page.get_by_label("Chat name").fill("refused")
        await page.get_by_role("button", name="Create").click()
        await says(page, "That was not accepted: check what you typed.")
    other = await new_session(web.client, "owner")
    other_chat = await new_chat(web.client.with_headers(**bearer(other)), "elsewhere")
    await quiet(page)
    async with Answer(page, MEMBERS, "POST", 404, "chat-not-found"):
        await page.goto(f"/#/join/{other_chat}")
        await page.get_by_role("button", name="Join").click()
        await says(page, "That chat does not exist, or you cannot open it.")
    ann.guard.assert_clean()


async def test_editing_and_deleting_say_what_went_wrong(web: AppServer, browser: Browser) -> None:
    ann = await Person.start(web, browser)
    page = ann.page
    edits = {
        ("message-not-found", 404): "That message no longer exists.",
        ("chat-not-found", 404): "That chat does not exist, or you cannot open it.",
        ("bad-parameters", 400): "That was not accepted: check what you typed.",
        ("not-found", 404): "The server does not offer this yet.",
    }
    for (code, status), sentence in edits.items():
        async with Answer(page, MESSAGE, "PATCH", status, code):
            await ann.edit()
            await says(page, sentence)
        await ann.cancel_edit()
    await quiet(page)
    async with Answer(page, MESSAGE, "DELETE", 404, "message-not-found"):
        await ann.mine.get_by_role("button", name="Delete").click()
        await says(page, "That message no longer exists.")
    await expect(ann.mine).to_be_visible()
    ann.guard.assert_clean()


async def test_searching_says_what_went_wrong(web: AppServer, browser: Browser) -> None:
    ann = await Person.start(web, browser)
    page = ann.page
    async with Answer(page, SEARCH, "POST", 503, "service-unavailable"):
        await search_says(page, "message", "Search is unavailable right now. Try again in a moment.")
    async with Answer(page, SEARCH_STATUS, "GET", 404, "task-not-found"):
        await search_says(page, "message", "That search is no longer available: search again.")
    async with Answer(page, SEARCH_RESULTS, "GET", 400, "task-not-complete"):
        await search_says(page, "message", "The search is still running.")
    async with Answer(page, SEARCH_RESULTS, "GET", 400, "task-failed"):
        await search_says(page, "message", "The search failed: try again.")
    async with Answer(page, SEARCH_RESULTS, "GET", 400, "bad-cursor"):
        await search_says(page, "message", "The search results moved on: search again.")
    async with Answer(page, SEARCH, "POST", 429, "request-limit-exceeded", headers={"Retry-After": "3"}):
        await search_says(page, "message", "Too many requests: wait 3 s and try again.")
    box = page.get_by_role("searchbox", name="Search messages")  # and with no error, it finds it
    await box.fill("message")
    await box.press("Enter")
    await expect(page.get_by_role("list", name="Search results").get_by_role("button")).to_contain_text(
        ["a message to edit"])
    ann.guard.assert_clean()


async def test_outages_say_so_until_ping_db_answers_again(web: AppServer, browser: Browser) -> None:
    ann = await Person.start(web, browser)
    page = ann.page
    outages = [(503, "database-unavailable", "The database is unavailable right now. Your messages are safe; "
                "retrying…"), (502, "service-unavailable", "The service is unavailable right now. Retrying…"),
               (504, "service-unavailable", "The service is unavailable right now. Retrying…")]
    for status, code, sentence in outages:
        async with Answer(page, PING_DB, "GET", status, code, times=None) as probes:
            async with Answer(page, MESSAGES, "POST", status, code):
                await ann.post(f"sent once {code} {status} is over")
                await says(page, sentence)
            await poll(probes.answered_twice, timeout=10)
            await says(page, sentence)  # still: nothing answered yet
        await expect(page.locator("#banner")).to_be_hidden(timeout=10_000)
        await page.get_by_role("button", name="Send").click()
        await expect(message_log(page)).to_contain_text(f"sent once {code} {status} is over")
    await page.route(MESSAGES, lambda route: route.abort() if route.request.method == "POST" else route.fallback())
    await ann.post("no network")
    await says(page, "The server cannot be reached. Retrying…")
    await page.unroute(MESSAGES)
    await expect(page.locator("#banner")).to_be_hidden(timeout=10_000)
    ann.guard.assert_clean()


async def test_a_session_the_server_refuses_returns_to_the_login_with_the_reason(
        web: AppServer, browser: Browser) -> None:
    ann = await Person.start(web, browser)
    page = ann.page
    for code, sentence in [("auth-failed", "Please log in."),
                           ("invalid-session-id", "Your session has ended. Please log in again."),
                           ("session-id-expired", "Your session has expired. Please log in again.")]:
        async with Answer(page, MESSAGES, "POST", 401, code):
            await ann.post(f"after {code}")
            await expect(page.get_by_role("button", name="Log in")).to_be_visible()
            await expect(page.get_by_text(sentence)).to_be_visible()
        await log_in(page, "ann")
        await chat_button(page, "sentences").click()
        await expect(ann.mine).to_be_visible()
    # login itself refused while the password hashing queue is full: its own 503, no outage watch
    await page.get_by_role("button", name="Log out").click()
    async with Answer(page, re.compile(r"/v1/auth/login$"), "POST", 503, "service-unavailable"):
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_role("button", name="Log in").click()
        await says(page, "Too many people are signing in right now. Try again in a moment.")
    await log_in(page, "ann")
    ann.guard.assert_clean()


async def test_the_servers_own_answers_user_names_and_a_session_ended_elsewhere(
        web: AppServer, browser: Browser) -> None:
    guard = HostGuard(web.url)
    page = await open_page(browser, web.url, guard)
    alert = page.get_by_role("alert")
    await page.get_by_label("User name").fill("nobody-yet")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await expect(alert).to_have_text("No account with that user name.")
    await register(page, "bea")
    await page.get_by_role("button", name="Log out").click()
    await page.get_by_label("User name").fill("bea")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Register").click()
    await expect(alert).to_have_text("That user name is taken: choose another one, or log in.")
    await log_in(page, "bea")
    await create_chat(page, "ended")
    # the same session logged out by another client of the API: the page returns to the login (its stream
    # is closed with the code, or its next request answered with it)
    session = await page.evaluate("localStorage.getItem('messenger.session')")
    assert (await web.client.post("/v1/auth/logout", headers=bearer(session))).status == 200
    await expect(page.get_by_text("Your session has ended. Please log in again.")).to_be_visible()
    await expect(page.get_by_role("button", name="Log in")).to_be_visible()
    guard.assert_clean()


async def test_a_removed_member_is_told_so_when_posting(web: AppServer, browser: Browser) -> None:
    guard = HostGuard(web.url)
    page = await open_page(browser, web.url, guard)
    await register(page, "cy")
    owner = await new_session(web.client, "owner-of-it")
    client = web.client.with_headers(**bearer(owner))
    chat_id = await new_chat(client, "members only")
    await say(client, chat_id, await join(client, chat_id, "owner"), "welcome")
    await page.goto(f"/#/join/{chat_id}")
    await page.get_by_role("button", name="Join").click()
    await expect(message_log(page)).to_contain_text("welcome")
    # cy joins a second time from another client; the page, reloaded, knows both members
    session = await page.evaluate("localStorage.getItem('messenger.session')")
    second = await join(web.client.with_headers(**bearer(session)), chat_id, "cy again")
    users = (await client.get(f"/v1/chats/{chat_id}/users")).json["users"]
    first = next(user["user_id"] for user in users if not user["mine"] and user["user_id"] != second)
    await page.reload()
    await chat_button(page, "members only").click()
    await expect(message_log(page)).to_contain_text("welcome")
    # the owner removes the member the page posts as: the server answers user-not-found
    assert (await client.request("DELETE", f"/v1/chats/{chat_id}/users/{first}")).status == 204
    await send_refused(page, "still here?", "You are no longer a member of this chat.")
    # the page learnt its remaining member: the same text goes out as that one
    await page.get_by_role("button", name="Send").click()
    await expect(message_log(page)).to_contain_text("still here?")
    # removed altogether: the stream says the chat is no longer cy's, and it closes and leaves the list
    # (a post racing that frame would get chat-not-found: that sentence is in the posting test above)
    assert (await client.request("DELETE", f"/v1/chats/{chat_id}/users/{second}")).status == 204
    await expect(chat_button(page, "members only")).to_have_count(0)
    await expect(message_log(page)).to_be_hidden()
    guard.assert_clean()


async def send_refused(page: Page, text: str, sentence: str) -> None:
    """Type and press Enter: the alert says ``sentence`` and the text stays in the box (it was not sent)."""
    await quiet(page)
    box = page.get_by_role("textbox", name="Message", exact=True)
    await box.fill(text)
    await box.press("Enter")
    await says(page, sentence)
    await expect(box).to_have_value(text)


async def test_search_with_rabbitmq_cut_says_search_is_unavailable(env: dict[str, str], browser: Browser) -> None:
    proxy = TcpProxy(5672)
    settings = {**env, **FAST, "RMQ_URL": f"amqp://guest:guest@127.0.0.1:{proxy.port}/%2F"}
    try:
        async with serve_app(settings, plugins=WEB_PLUGINS) as srv:
            guard = HostGuard(srv.url)
            page = await open_page(browser, srv.url, guard)
            await register(page, "dee")
            await create_chat(page, "no broker")
            await send(page, "a searchable sentence")
            proxy.cut()
            await search_says(page, "searchable", "Search is unavailable right now. Try again in a moment.")
            await expect(page.get_by_role("alert")).to_have_text(
                "Search is unavailable right now. Try again in a moment.")
            # chats do not need the broker
            await send(page, "still sending")
            await expect(message_log(page)).to_contain_text("still sending")
            guard.assert_clean()
    finally:
        proxy.close()
        delete_rabbit_queue(env["SEARCH_QUEUE"], env["SEARCH_EXCHANGE"])


async def test_behind_nginx_the_app_gone_is_a_sentence_and_the_page_recovers(
        env: dict[str, str], browser: Browser, tmp_path: Path) -> None:
    settings = {**env, **FAST, "TRUSTED_PROXIES": "127.0.0.1", "MESSENGER_APPS": ",".join(WEB_PLUGINS)}
    app, client = await start_api(settings, tmp_path / "first.log")
    port = client.base_url.rsplit(":", 1)[1]
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    nginx = Nginx(prefix, int(port))
    try:
        await nginx.start()
        origin = nginx.client.base_url
        guard = HostGuard(origin)
        page = await (await guarded_context(browser, origin, guard)).new_page()
        await page.goto("/")
        await register(page, "eli")
        await create_chat(page, "through nginx")
        await send(page, "before the app went away")
        assert app.stop() == 0
        box = page.get_by_role("textbox", name="Message", exact=True)
        await box.fill("while it is away")
        await box.press("Enter")
        await expect(page.get_by_role("alert")).to_have_text("The service is unavailable right now. Retrying…")
        app, client = await start_api({**settings, "PORT": port}, tmp_path / "second.log")
        await expect(page.locator("#banner")).to_be_hidden(timeout=20_000)
        await page.get_by_role("button", name="Send").click()
        await expect(message_log(page)).to_contain_text("while it is away")
        guard.assert_clean()
    finally:
        nginx.stop()
        app.stop()


#: An iterator of the right shape that the server refuses (its check does not match): 400 bad-cursor.
FORGED_ITERATOR = "A" * 38


async def test_a_position_the_chat_does_not_have_reopens_it_from_its_start(web: AppServer, browser: Browser) -> None:
    guard = HostGuard(web.url)
    page = await open_page(browser, web.url, guard)
    await register(page, "flo")
    await create_chat(page, "places")
    for text in ("one", "two", "three"):
        await send(page, text)
    chat_id = await chat_button(page, "places").get_attribute("data-chat-id")
    # what the browser remembers of the chat is wrong (say, another database's): the real server refuses it
    await page.evaluate("([key, value]) => localStorage.setItem(key, value)",
                        [f"messenger.anchors.flo.{chat_id}", json.dumps([FORGED_ITERATOR])])
    await page.reload()
    reads = message_reads(page)
    await chat_button(page, "places").click()
    await says(page, "The chat lost its place: reopening it at its newest messages.")
    await expect(message_log(page).locator(".text")).to_have_text(["one", "two", "three"])
    assert [FORGED_ITERATOR in url for url in reads] == [True, False], reads  # asked once, then from the start
    assert reads[1].endswith("?limit=1000"), reads
    stored = await page.evaluate("key => localStorage.getItem(key)", f"messenger.anchors.flo.{chat_id}")
    assert FORGED_ITERATOR not in stored
    await send(page, "four")
    await expect(message_log(page).locator(".text")).to_have_text(["one", "two", "three", "four"])
    guard.assert_clean()


def wait_read(request: Request) -> bool:
    """A long-poll."""
    return "wait=" in request.url


def message_reads(page: Page) -> list[str]:
    """The page's GETs of chat messages from now on, long-polls included."""
    reads: list[str] = []
    page.on("request", lambda request: reads.append(request.url)
            if request.method == "GET" and MESSAGES.search(request.url) else None)
    return reads


async def test_a_long_poll_refused_with_bad_cursor_is_not_asked_again(env: dict[str, str], browser: Browser) -> None:
    async with serve_app({**env, **FAST, "WEB_LONG_POLL_WAIT": "2"}, plugins=WEB_PLUGINS) as web:
        await long_poll_refused(web, browser)


async def long_poll_refused(web: AppServer, browser: Browser) -> None:
    guard = HostGuard(web.url)
    context = await guarded_context(browser, web.url, guard)

    async def refuse(socket: WebSocketRoute) -> None:
        await socket.close(code=1011)
    await context.route_web_socket(re.compile(r".*/v1/events$"), refuse)  # long-polls carry the messages
    page = await context.new_page()
    await page.goto("/")
    await register(page, "gil")
    await create_chat(page, "polled")
    await send(page, "before")
    await expect(message_log(page)).to_contain_text("before")
    session = await page.evaluate("localStorage.getItem('messenger.session')")
    chat_id = await chat_button(page, "polled").get_attribute("data-chat-id")
    me = (await web.client.get("/v1/chats", headers=bearer(session))).json["chats"][0]["my_user_ids"][0]
    reads = message_reads(page)

    # once: the client drops that iterator, reopens the chat (a read, not a poll), and follows it again
    async with Answer(page, MESSAGES, "GET", 400, "bad-cursor", where=wait_read) as answer:
        await poll(answer.answered_once, timeout=10)  # once the poll held meanwhile has answered
        await says(page, "The chat lost its place: reopening it at its newest messages.")
    after = reads[reads.index(answer.hits[0]) + 1:]
    await expect(message_log(page).locator(".text")).to_have_text(["before"])
    assert after and "wait=" not in after[0], after
    resp = await web.client.post(f"/v1/chats/{chat_id}/messages?user_id={me}", {"message": "after"},
                                 headers=bearer(session))
    assert resp.status == 201, resp
    await expect(message_log(page).locator(".text")).to_have_text(["before", "after"])

    # refused again and again: reopened once, then left alone with a sentence (no loop of retries)
    async with Answer(page, MESSAGES, "GET", 400, "bad-cursor", where=wait_read, times=None) as answer:
        await poll(answer.answered_twice, timeout=10)
        await says(page, "This chat cannot be read right now: open it again later.")
        assert len(answer.hits) == 2, answer.hits
        # the poll loop turns at least once more (it reloads the list meanwhile), asking nothing of the chat
        async with page.expect_request(lambda request: CHATS.search(request.url) is not None, timeout=15_000):
            pass
        assert len(answer.hits) == 2, answer.hits
    guard.assert_clean()


async def test_a_bad_cursor_frame_of_the_stream_reopens_the_chat(web: AppServer, browser: Browser) -> None:
    guard = HostGuard(web.url)
    context = await guarded_context(browser, web.url, guard)
    sockets: list[WebSocketRoute] = []

    def through(socket: WebSocketRoute) -> None:
        socket.connect_to_server()
        sockets.append(socket)
    await context.route_web_socket(re.compile(r".*/v1/events$"), through)
    page = await context.new_page()
    await page.goto("/")
    await register(page, "hal")
    await create_chat(page, "streamed")
    await send(page, "carried")
    await expect(message_log(page)).to_contain_text("carried")
    chat_id = await chat_button(page, "streamed").get_attribute("data-chat-id")
    reads = message_reads(page)
    sockets[-1].send(json.dumps({"type": "error", "message": "bad-cursor", "chat_id": chat_id}))
    await says(page, "The chat lost its place: reopening it at its newest messages.")

    async def reopened() -> bool:  # a read of the chat again, from its start
        return any(url.endswith("?limit=1000") for url in reads)
    await poll(reopened, timeout=10)
    await expect(message_log(page).locator(".text")).to_have_text(["carried"])
    await send(page, "still carried")
    await expect(message_log(page).locator(".text")).to_have_text(["carried", "still carried"])
    guard.assert_clean()
