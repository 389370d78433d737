"""The web client (messenger_web) in headless Chromium against a real server: what a person does.

Every page runs behind a guard that blocks and records any request to another host; each test ends
by asserting that the guard saw none.
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import Browser, Page, Route, expect
from playwright.async_api import Error as PlaywrightError

from auth_support import bearer, new_session
from chats_support import join, new_chat, read_all, say
from support import AppServer, TcpProxy, poll, serve_app
from web_support import (FAST, WEB_PLUGINS, HostGuard, chat_button, create_chat, log_in, message_log, open_page,
                         register, send)

MESSAGE_READ = re.compile(r"/v1/chats/[0-9a-f]{32}/messages\?")
ASSET = re.compile(r'(?:src|href)="(/web/[0-9a-f]{16}/[a-z]+\.(?:js|css|svg))"')


@pytest.fixture
def guard(web: AppServer) -> HostGuard:
    return HostGuard(web.url)


async def test_page_and_assets_are_public_long_cached_and_under_a_strict_csp(web: AppServer) -> None:
    client = web.client
    page = await client.get("/")
    assert page.status == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert page.headers["Cache-Control"] == "no-cache"
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp and "http" not in csp
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assets = set(ASSET.findall(page.body.decode()))
    assert {path.rsplit("/", 1)[1] for path in assets} == {"app.js", "style.css", "icon.svg"}
    build = next(iter(assets)).split("/")[2]
    types = {"app.js": "text/javascript; charset=utf-8", "api.js": "text/javascript; charset=utf-8",
             "live.js": "text/javascript; charset=utf-8", "dom.js": "text/javascript; charset=utf-8",
             "style.css": "text/css; charset=utf-8", "icon.svg": "image/svg+xml"}
    for name, content_type in types.items():
        resp = await client.get(f"/web/{build}/{name}")
        assert resp.status == 200, name
        assert resp.headers["Content-Type"] == content_type
        assert resp.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        body = resp.body.replace(b'xmlns="http://www.w3.org/2000/svg"', b"")  # a namespace, never fetched
        assert b"http://" not in body and b"https://" not in body, f"{name} names another host"
    # another build's file is the API's 404; a name the build does not ship is an unknown path (401)
    missing = await client.get(f"/web/{'0' * 16}/app.js")
    assert (missing.status, missing.json) == (404, {"message": "not-found"})
    for path in (f"/web/{build}/secret.js", f"/web/{build}/", "/web", "/index.html", "/app.js"):
        resp = await client.get(path)
        assert (resp.status, resp.json) == (401, {"message": "auth-failed"}), path
    # the API around it is unchanged: its routes need a session, and with one they answer as before
    assert (await client.post("/v1/chats", {"chat_name": "x"})).status == 401
    session = await new_session(client, "probe")
    created = await client.post("/v1/chats", {"chat_name": "x"}, headers=bearer(session))
    assert created.status == 201 and set(created.json) == {"chat_id"}


async def test_register_log_out_log_in_create_a_chat_and_send_with_enter(
        web: AppServer, browser: Browser, guard: HostGuard) -> None:
    page = await open_page(browser, web.url, guard)
    await expect(page.get_by_role("button", name="Log in")).to_be_visible()
    await register(page, "ann")
    await create_chat(page, "team room")
    await send(page, "hello from the browser")
    await expect(message_log(page)).to_contain_text("hello from the browser")
    await expect(chat_button(page, "team room")).to_be_visible()
    # what the browser did went through the API: the message is there for any client of it
    session = await page.evaluate("localStorage.getItem('messenger.session')")
    chat_id = await chat_button(page, "team room").get_attribute("data-chat-id")
    resp = await web.client.get(f"/v1/chats/{chat_id}/messages?limit=10", headers=bearer(session))
    assert [m["text"] for m in resp.json["messages"]] == ["hello from the browser"]
    # a reload keeps the session; logging out ends it at the server too
    await page.reload()
    await expect(message_log(page)).to_have_count(0)
    await chat_button(page, "team room").click()
    await expect(message_log(page)).to_contain_text("hello from the browser")
    await page.get_by_role("button", name="Log out").click()
    await expect(page.get_by_role("button", name="Log in")).to_be_visible()
    assert (await web.client.get(f"/v1/chats/{chat_id}/messages?limit=1", headers=bearer(session))).status == 401
    await log_in(page, "ann")
    await expect(page.get_by_role("button", name="New chat")).to_be_visible()
    guard.assert_clean()


async def seeded_chat(web: AppServer, name: str, texts: list[str]) -> str:
    """An open chat with ``texts`` posted by the account "writer"; its id."""
    session = await new_session(web.client, f"writer-{name}", "correct horse battery")
    client = web.client.with_headers(Authorization=f"session_id {session}")
    chat_id = await new_chat(client, name)
    user_id = await join(client, chat_id, "writer")
    for text in texts:
        await say(client, chat_id, user_id, text)
    return chat_id


async def join_by_link(page: Page, chat_id: str, invite: str | None = None) -> None:
    """Open the invite link of a chat in this page and press Join."""
    await page.goto(f"/#/join/{chat_id}" + (f"/{invite}" if invite else ""))
    await page.get_by_role("button", name="Join").click()
    await expect(page.get_by_role("button", name="Join")).to_be_hidden()


def reads_of(page: Page) -> list[str]:
    """The URLs of the page's reads of chat messages from now on (not its long-polls, ``wait=``)."""
    reads: list[str] = []
    page.on("request", lambda request: reads.append(request.url)
            if MESSAGE_READ.search(request.url) and "wait=" not in request.url and request.method == "GET" else None)
    return reads


async def scroll_to_the_start(page: Page, first_text: str, steps: int) -> None:
    """Scroll the message log up, a page at a time, until ``first_text`` is shown (at most ``steps`` times)."""
    log = message_log(page)
    articles = log.get_by_role("article")
    for _ in range(steps):
        if await log.locator(".text").first.inner_text() == first_text:
            return
        shown = await articles.count()
        await log.evaluate("box => { box.scrollTop = 0; box.dispatchEvent(new Event('scroll')); }")
        await expect(articles).not_to_have_count(shown)
    await expect(log.locator(".text").first).to_have_text(first_text)


async def test_older_messages_load_while_scrolling_up(web: AppServer, browser: Browser, guard: HostGuard) -> None:
    chat_id = await seeded_chat(web, "history", [f"line {number:03d}" for number in range(1, 131)])
    page = await open_page(browser, web.url, guard)
    await register(page, "bob")
    reads = reads_of(page)
    await join_by_link(page, chat_id)
    log = message_log(page)
    await expect(log).to_contain_text("line 130")
    articles = log.get_by_role("article")
    await expect(articles).to_have_count(50)  # the newest page of 50
    assert "line 080" not in await log.inner_text()
    # bob's read marker is where he joined, after line 130: nothing after it, then the chat from its start
    assert len(reads) == 2 and "&from=" in reads[0] and reads[1].endswith("?limit=1000"), reads
    await scroll_to_the_start(page, "line 001", steps=5)
    await expect(articles).to_have_count(130)
    texts = await log.locator(".text").all_inner_texts()
    assert texts == [f"line {n:03d}" for n in range(1, 131)]
    assert len(reads) == 2, reads  # read once, shown 50 at a time
    guard.assert_clean()


async def post_many(web: AppServer, chat_id: str, session: str, user_id: str, texts: list[str]) -> None:
    """Post ``texts`` to the chat, one after the other."""
    client = web.client.with_headers(Authorization=f"session_id {session}")
    for text in texts:
        await say(client, chat_id, user_id, text)


async def test_opening_a_long_chat_reads_a_few_chunks_not_every_page(
        web: AppServer, browser: Browser, guard: HostGuard) -> None:
    writer = await new_session(web.client, "writer-long", "correct horse battery")
    client = web.client.with_headers(Authorization=f"session_id {writer}")
    chat_id = await new_chat(client, "long")
    user_id = await join(client, chat_id, "writer")
    await post_many(web, chat_id, writer, user_id, [f"early {number:04d}" for number in range(2500)])
    page = await open_page(browser, web.url, guard, viewport={"width": 1100, "height": 700})
    await register(page, "lou")
    log = message_log(page)
    articles = log.get_by_role("article")

    # the first open in this browser: lou's read marker is at the end (he just joined), so the messages
    # before it are walked from the start, a thousand a request (before: 50 a request, 51 requests)
    reads = reads_of(page)
    await join_by_link(page, chat_id)
    stored = await read_all(client, chat_id)
    await expect(log.locator(".text").last).to_have_text(stored[-1]["text"])
    await expect(articles).to_have_count(50)
    assert len(reads) == 4, reads  # after the marker (empty), then 1000 + 1000 + 500 from the start

    # opened again (a reload): from the positions it remembered, whatever the chat's length
    await page.reload()
    reads.clear()
    await chat_button(page, "long").click()
    await expect(log.locator(".text").last).to_have_text(stored[-1]["text"])
    await expect(articles).to_have_count(50)
    assert len(reads) <= 2 and all("&from=" in url for url in reads), reads
    await post_many(web, chat_id, writer, user_id, [f"later {number:04d}" for number in range(1500)])
    await page.reload()
    reads.clear()
    await chat_button(page, "long").click()
    stored = await read_all(client, chat_id)
    assert len(stored) == 4000
    await expect(log.locator(".text").last).to_have_text(stored[-1]["text"])
    await expect(articles).to_have_count(50)
    assert len(reads) <= 2 and all("&from=" in url for url in reads), reads  # the new 1500: two chunks

    # and every older message comes back scrolling up, in order, the reads by their iterators
    reads.clear()
    await scroll_to_the_start(page, stored[0]["text"], steps=90)
    assert await log.locator(".text").all_inner_texts() == [message["text"] for message in stored]
    # a chunk (1000) a request at most, the last one from the chat's start
    assert 1 <= len(reads) <= 4 and reads[-1].endswith("?limit=1000"), reads
    assert all(url.endswith("?limit=1000") or "&from=" in url for url in reads), reads
    guard.assert_clean()


async def test_a_chat_that_opens_late_leaves_the_focus_where_the_reader_moved_it(
        web: AppServer, browser: Browser, guard: HostGuard) -> None:
    """Opening a chat puts the cursor in its message box, unless the person went elsewhere while it loaded (here:
    joined by a link, then typed a search before the chat's messages came): the Enter meant for the search
    then stays there, and the search runs."""
    chat_id = await seeded_chat(web, "slow", ["the zebra crossing is closed today", "see you at nine"])
    page = await open_page(browser, web.url, guard)
    await register(page, "cleo")
    release = asyncio.Event()
    held: list[str] = []

    async def hold_reads(route: Route) -> None:
        if "wait=" not in route.request.url:  # the chat's reads, not its long-polls
            held.append(route.request.url)
            await release.wait()
        await route.fallback()  # on to the guard

    async def a_read_is_held() -> bool:
        return bool(held)
    await page.route(MESSAGE_READ, hold_reads)
    await join_by_link(page, chat_id)
    await poll(a_read_is_held, timeout=10)
    search = page.get_by_role("searchbox", name="Search messages")
    await search.fill("zebra crossing closed")
    release.set()
    await expect(message_log(page).locator(".text").last).to_have_text("see you at nine")
    await expect(search).to_be_focused()
    await page.keyboard.press("Enter")
    results = page.get_by_role("list", name="Search results")
    await expect(results).to_contain_text("the zebra crossing is closed today")
    await page.unroute(MESSAGE_READ)
    guard.assert_clean()


async def test_search_finds_a_message_and_opening_the_result_shows_it(
        web: AppServer, browser: Browser, guard: HostGuard, web_screenshot: Path) -> None:
    texts = ["Is the zebra crossing on Elm Street open again?", "the zebra crossing is closed today",
             *[f"filler {number}" for number in range(120)], "see you at the station at nine"]
    chat_id = await seeded_chat(web, "neighbours", texts)
    page = await open_page(browser, web.url, guard, viewport={"width": 1100, "height": 640})
    await register(page, "cleo")
    await create_chat(page, "book club")
    await send(page, "next month: The Left Hand of Darkness")
    await join_by_link(page, chat_id)
    search = page.get_by_role("searchbox", name="Search messages")
    await search.fill("zebra crossing closed")
    await search.press("Enter")
    results = page.get_by_role("list", name="Search results")
    # the text first: a failure then shows what the list said instead ("Searching…", an error, no match)
    await expect(results).to_contain_text("the zebra crossing is closed today")
    await expect(results.get_by_role("button")).to_have_count(1)
    await results.get_by_role("button", name=re.compile("zebra crossing")).click()
    found = message_log(page).locator(".message.found")
    await expect(found).to_contain_text("the zebra crossing is closed today")
    await expect(found).to_be_in_viewport()
    await page.get_by_role("textbox", name="Message", exact=True).fill("Thanks! I'll take the bridge then")
    # meanwhile in the book club (an open chat: its id lets a friend in), two answers: cleo's count goes up
    book_club = await chat_button(page, "book club").get_attribute("data-chat-id")
    friend = web.client.with_headers(**bearer(await new_session(web.client, "dana")))
    dana = await join(friend, book_club, "dana")
    await say(friend, book_club, dana, "Le Guin! I'm in")
    await say(friend, book_club, dana, "Can we meet on Thursday?")
    await expect(chat_button(page, "book club")).to_contain_text("2 unread")
    # the README's picture (`make screenshot` saves it as docs/web-client.png)
    await page.screenshot(path=str(web_screenshot))
    assert web_screenshot.read_bytes().startswith(b"\x89PNG")
    guard.assert_clean()


async def test_a_wrong_password_then_429_with_its_wait(env: dict[str, str], browser: Browser) -> None:
    async with serve_app({**env, **FAST, "LOGIN_ATTEMPTS_PER_MINUTE": "2"}, plugins=WEB_PLUGINS) as srv:
        guard = HostGuard(srv.url)
        page = await open_page(browser, srv.url, guard)
        await register(page, "dan")
        await page.get_by_role("button", name="Log out").click()

        async def enough_of_the_minute_left() -> bool:  # the limit counts in calendar minutes
            return 60 - time.time() % 60 >= 15
        await poll(enough_of_the_minute_left, timeout=20, interval=0.2)
        alert = page.get_by_role("alert")
        await page.get_by_label("Password").fill("not the password")
        await page.get_by_role("button", name="Log in").click()
        await expect(alert).to_have_text("Wrong password.")
        limited = re.compile(r"^Too many requests: wait \d+ s and try again\.$")
        for _ in range(3):  # the limit is 2 failures: one of the next attempts is refused with its wait
            await page.evaluate("document.getElementById('banner').textContent = ''")
            await page.get_by_role("button", name="Log in").click()
            await expect(alert).not_to_have_text("")
            if limited.match(await alert.inner_text()):
                break
        await expect(alert).to_have_text(limited)
        wait = int(re.search(r"\d+", await alert.inner_text()).group())
        assert 1 <= wait <= 60
        guard.assert_clean()


async def test_an_expired_session_returns_to_the_login_with_a_message(env: dict[str, str], browser: Browser) -> None:
    async with serve_app({**env, **FAST, "AUTH_TOKEN_LIFETIME": "3"}, plugins=WEB_PLUGINS) as srv:
        guard = HostGuard(srv.url)
        page = await open_page(browser, srv.url, guard)
        await register(page, "eve")
        await expect(page.get_by_text("Your session has expired. Please log in again.")).to_be_visible(
            timeout=20_000)
        await expect(page.get_by_role("button", name="Log in")).to_be_visible()
        assert await page.evaluate("localStorage.getItem('messenger.session')") is None
        await log_in(page, "eve")
        guard.assert_clean()


async def test_a_clear_message_while_postgres_is_down_and_it_goes_when_it_is_back(
        env: dict[str, str], browser: Browser) -> None:
    proxy = TcpProxy(5432)
    try:
        settings = {**env, **FAST, "POSTGRES_HOSTS": f"127.0.0.1:{proxy.port}", "DB_TIMEOUT": "1"}
        async with serve_app(settings, plugins=WEB_PLUGINS) as srv:
            guard = HostGuard(srv.url)
            page = await open_page(browser, srv.url, guard)
            await register(page, "finn")
            await create_chat(page, "ops")
            await send(page, "before the outage")
            await expect(message_log(page)).to_contain_text("before the outage")
            proxy.cut()
            box = page.get_by_role("textbox", name="Message", exact=True)
            await box.fill("during the outage")
            await box.press("Enter")
            alert = page.get_by_role("alert")
            await expect(alert).to_have_text(
                "The database is unavailable right now. Your messages are safe; retrying…")
            await expect(box).to_have_value("during the outage")  # not lost: it can be sent again
            proxy.restore()
            await expect(page.locator("#banner")).to_be_hidden(timeout=20_000)
            await page.get_by_role("button", name="Send").click()
            await expect(message_log(page)).to_contain_text("during the outage")
            guard.assert_clean()
    finally:
        proxy.close()


async def test_the_guard_records_and_blocks_a_request_to_another_host(
        web: AppServer, browser: Browser, guard: HostGuard) -> None:
    page = await open_page(browser, web.url, guard)
    await expect(page.get_by_role("button", name="Log in")).to_be_visible()
    guard.assert_clean()
    # inside the app the content security policy refuses it before it is a request; the guard hears of it
    outcome = await page.evaluate("fetch('http://127.0.0.2:9/x').then(() => 'sent', () => 'refused')")
    assert outcome == "refused"
    assert not guard.blocked, guard.blocked

    async def reported() -> bool:
        return guard.violations == ["connect-src http://127.0.0.2:9/x"]
    await poll(reported, timeout=5)
    guard.violations.clear()
    # a navigation is not the app's to stop: the guard is what blocks and records it
    with pytest.raises(PlaywrightError):
        await page.goto("http://127.0.0.2:9/y")
    assert guard.blocked == ["http://127.0.0.2:9/y"]


async def test_the_guard_records_and_blocks_a_websocket_to_another_host(
        web: AppServer, browser: Browser, guard: HostGuard) -> None:
    # without the policy (bypass_csp) a page could open one: the guard, not the policy, stops it here
    page = await open_page(browser, web.url, guard, bypass_csp=True)
    await expect(page.get_by_role("button", name="Log in")).to_be_visible()
    closed = await page.evaluate("""() => new Promise((resolve) => {
        const socket = new WebSocket("ws://127.0.0.2:9/elsewhere");
        socket.onopen = () => resolve("open");
        socket.onclose = (event) => resolve(`closed ${event.code}`);
    })""")
    assert closed.startswith("closed"), closed
    assert guard.blocked == ["ws://127.0.0.2:9/elsewhere"]
    assert not guard.violations, guard.violations
    # the app's own stream on its origin still goes through (the page registers and gets "ready")
    guard.blocked.clear()
    sockets: list[str] = []
    page.on("websocket", lambda socket: sockets.append(socket.url))
    await register(page, "wes")
    await expect(page.get_by_role("button", name="New chat")).to_be_visible()
    ready = await page.evaluate("""() => new Promise((resolve) => {
        const socket = new WebSocket(`ws://${location.host}/v1/events`);
        socket.onopen = () => socket.send(JSON.stringify(
            {type: "auth", session_id: localStorage.getItem("messenger.session")}));
        socket.onmessage = (event) => { resolve(JSON.parse(event.data).type); socket.close(); };
    })""")
    assert ready == "ready"
    assert sockets and all(url.endswith("/v1/events") for url in sockets), sockets
    guard.assert_clean()


async def test_a_phone_sized_screen_shows_one_pane_at_a_time(
        web: AppServer, browser: Browser, guard: HostGuard) -> None:
    page = await open_page(browser, web.url, guard, viewport={"width": 390, "height": 780})
    await register(page, "gus")
    await create_chat(page, "pocket")
    await expect(page.get_by_role("button", name="New chat")).to_be_hidden()
    await page.get_by_role("button", name="Back to chats").click()
    await expect(chat_button(page, "pocket")).to_be_visible()
    await expect(page.get_by_role("log")).to_be_hidden()
    guard.assert_clean()


async def test_timestamps_in_the_readers_locale_and_time_zone(
        web: AppServer, browser: Browser, guard: HostGuard) -> None:
    page = await open_page(browser, web.url, guard, locale="de-DE", timezone_id="Asia/Kolkata")
    await register(page, "hana")
    await create_chat(page, "zeit")
    await send(page, "wie spät ist es")
    stamp = message_log(page).locator("time")
    await expect(stamp).to_have_count(1)
    created = datetime.fromisoformat((await stamp.get_attribute("datetime")).replace("Z", "+00:00"))
    local = created.astimezone(ZoneInfo("Asia/Kolkata"))
    shown = await stamp.inner_text()
    # German 24-hour time in UTC+05:30, wherever the test machine is
    assert re.search(rf"(^|\D)0?{local.hour}:{local.minute:02d}($|\D)", shown), (shown, local)
    assert "AM" not in shown and "PM" not in shown
    guard.assert_clean()


async def test_light_and_dark_follow_the_systems_preference(
        web: AppServer, browser: Browser, guard: HostGuard) -> None:
    backgrounds = {}
    for scheme in ("light", "dark"):
        page = await open_page(browser, web.url, guard, color_scheme=scheme)
        await expect(page.get_by_role("button", name="Log in")).to_be_visible()
        backgrounds[scheme] = await page.evaluate("getComputedStyle(document.body).backgroundColor")
    light = [int(v) for v in re.findall(r"\d+", backgrounds["light"])[:3]]
    dark = [int(v) for v in re.findall(r"\d+", backgrounds["dark"])[:3]]
    assert sum(light) > 600 and sum(dark) < 150, backgrounds
    guard.assert_clean()


async def test_keyboard_only_from_sign_up_to_a_sent_message(
        web: AppServer, browser: Browser, guard: HostGuard) -> None:
    page = await open_page(browser, web.url, guard)
    keys = page.keyboard
    await expect(page.get_by_label("User name")).to_be_focused()
    await keys.type("ida")
    await keys.press("Tab")
    await keys.type("correct horse battery")
    await keys.press("Tab")
    await expect(page.get_by_role("button", name="Log in")).to_be_focused()
    await keys.press("Tab")
    await expect(page.get_by_role("button", name="Register")).to_be_focused()
    await keys.press("Enter")
    await expect(page.get_by_role("searchbox", name="Search messages")).to_be_focused()
    await keys.press("Shift+Tab")
    await expect(page.get_by_role("button", name="New chat")).to_be_focused()
    await keys.press("Enter")
    await expect(page.get_by_label("Chat name")).to_be_focused()
    await keys.type("keys only")
    await keys.press("Tab")
    await expect(page.get_by_role("checkbox", name="Private")).to_be_focused()
    await keys.press("Tab")
    await expect(page.get_by_role("button", name="Create")).to_be_focused()
    await keys.press("Enter")
    box = page.get_by_role("textbox", name="Message", exact=True)
    await expect(box).to_be_focused()
    await keys.type("first line")
    await keys.press("Shift+Enter")
    await keys.type("second line")
    await keys.press("Enter")
    await expect(message_log(page).locator(".text")).to_have_text(["first line\nsecond line"])
    await expect(box).to_have_value("")
    guard.assert_clean()
