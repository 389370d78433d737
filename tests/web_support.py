"""Helpers of the web client's tests: Debian's Chromium driven by Playwright, a guard on foreign hosts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from playwright.async_api import Browser, BrowserContext, Page, Route, WebSocketRoute, async_playwright, expect

from support import ALL_PLUGINS

#: The browser of Debian's ``chromium`` package (deploy/system-deps installs it); never a downloaded one.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
WEB_PLUGINS = (*ALL_PLUGINS, "messenger_web")
PASSWORD = "correct horse battery"
TIMEOUT_MS = 10_000
# the expectations wait as long as the actions do (Playwright's own default for them is 5 s): on a loaded
# two-core CI machine a search or a reconnect can take longer than that without anything being wrong
expect.set_options(timeout=TIMEOUT_MS)


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """A headless Chromium for one test."""
    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            await browser.close()


#: Run in every page before its own scripts: each refusal of the content security policy is reported to the
#: guard (an exposed binding, so the records survive reloads and navigations).
_CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", (event) => {
  window.cspViolation(`${event.effectiveDirective} ${event.blockedURI}`);
});
"""


@dataclass
class HostGuard:
    """Lets requests and WebSockets to the app's origin through; blocks and records every other one,
    and records every refusal of the content security policy."""

    origin: str
    blocked: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    def ours(self, url: str) -> bool:
        """Whether ``url`` is on the app's origin (a WebSocket's ws: scheme counts as the page's http:)."""
        parts = urlsplit(url)
        scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
        return f"{scheme}://{parts.netloc}" == self.origin

    def violated(self, what: str) -> None:
        """Called by the page's listener: ``"<directive> <blocked URI>"``."""
        self.violations.append(what)

    async def handle(self, route: Route) -> None:
        """Route handler for ``context.route("**/*", ...)``."""
        url = route.request.url
        if self.ours(url):
            await route.continue_()
        else:
            self.blocked.append(url)
            await route.abort()

    async def handle_socket(self, socket: WebSocketRoute) -> None:
        """Route handler for ``context.route_web_socket("**/*", ...)``: the app's own stream goes to it."""
        if self.ours(socket.url):
            socket.connect_to_server()
        else:
            self.blocked.append(socket.url)
            await socket.close(code=1008, reason="blocked by the test")

    async def watch(self, context: BrowserContext) -> None:
        """Guard every request, WebSocket and page of ``context``."""
        await context.expose_function("cspViolation", self.violated)
        await context.add_init_script(_CSP_LISTENER)
        await context.route("**/*", self.handle)
        await context.route_web_socket(lambda url: True, self.handle_socket)

    def assert_clean(self) -> None:
        """Nothing left for another host, and the content security policy refused nothing."""
        assert not self.blocked and not self.violations, (self.blocked, self.violations)


async def guarded_context(browser: Browser, url: str, guard: HostGuard, **context: Any) -> BrowserContext:
    """A new context (its own storage: another person) under the guard."""
    ctx = await browser.new_context(base_url=url, **context)
    ctx.set_default_timeout(TIMEOUT_MS)
    await guard.watch(ctx)
    return ctx


async def open_page(browser: Browser, url: str, guard: HostGuard, **context: Any) -> Page:
    """A new guarded context at the app's page."""
    ctx = await guarded_context(browser, url, guard, **context)
    page = await ctx.new_page()
    await page.goto("/")
    return page


async def register(page: Page, user_name: str, password: str = PASSWORD) -> None:
    """Register and log in through the form."""
    await page.get_by_label("User name").fill(user_name)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Register").click()
    await expect(page.get_by_role("button", name="Log out")).to_be_visible()


async def log_in(page: Page, user_name: str, password: str = PASSWORD) -> None:
    """Log in through the form."""
    await page.get_by_label("User name").fill(user_name)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("button", name="Log out")).to_be_visible()


async def create_chat(page: Page, name: str, private: bool = False) -> None:
    """New chat → name, Private → Create; the chat is open afterwards."""
    await page.get_by_role("button", name="New chat").click()
    await page.get_by_label("Chat name").fill(name)
    if private:
        await page.get_by_role("checkbox", name="Private").check()
    await page.get_by_role("button", name="Create").click()
    await expect(page.get_by_role("heading", name=name)).to_be_visible()


async def send(page: Page, text: str) -> None:
    """Type a message and press Enter (the keyboard path)."""
    box = page.get_by_role("textbox", name="Message", exact=True)
    await box.fill(text)
    await box.press("Enter")
    await expect(box).to_have_value("")


def message_log(page: Page) -> Any:
    """The open chat's messages (role log)."""
    return page.get_by_role("log")


def chat_button(page: Page, name: str) -> Any:
    """A chat's entry in the chat list."""
    return page.get_by_role("list", name="Chats").get_by_role("button", name=name)


#: settings that keep browser tests quick: a cheap password hash, no throttling in the way
FAST = {"AUTH_SCRYPT_N": "1024", "THROTTLE_RPS": "1000"}
