"""``/docs`` in a real headless Chromium (Debian's), with every request to anything but the app blocked.

Swagger UI must come whole from the app (the swagger-ui-py package's files), under a content
security policy that lets the page load nothing else, and list every operation of every enabled
plugin.  The screenshot is left in the test's temporary directory (its path is printed).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from support import REPO_PLUGINS, serve_app

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="Debian's chromium is missing: `make system-deps` installs it")


async def listed_operations(page: Any) -> set[tuple[str, str | None]]:
    """(METHOD, path) of every operation Swagger UI drew."""
    listed = set()
    for block in await page.locator(".opblock").all():
        method = (await block.locator(".opblock-summary-method").inner_text()).strip()
        path = await block.locator(".opblock-summary-path").get_attribute("data-path")
        listed.add((method.upper(), path))
    return listed


async def test_docs_render_every_operation_offline(env: dict[str, str], tmp_path: Path) -> None:
    async_api = pytest.importorskip("playwright.async_api")
    async with serve_app(env, REPO_PLUGINS) as srv:  # every plugin, the web client too
        spec = (await srv.client.get("/openapi.json")).json
        operations = {(method.upper(), path) for path, item in spec["paths"].items() for method in item}
        for path in ("/v1/auth/login", "/v1/chats", "/v1/chats/search", "/health", "/metrics", "/ping_db",
                     "/v1/events", "/", "/web/{build}/{name}"):
            assert path in spec["paths"], path

        blocked: list[str] = []
        console: list[str] = []
        async with async_api.async_playwright() as driver:
            browser = await driver.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            try:
                context = await browser.new_context(service_workers="block")

                async def only_the_app(route: async_api.Route) -> None:
                    url = route.request.url
                    if url.startswith(srv.url + "/"):
                        await route.continue_()
                    else:
                        blocked.append(url)
                        await route.abort()
                await context.route("**/*", only_the_app)
                page = await context.new_page()
                page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
                page.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
                response = await page.goto(srv.url + "/docs")
                assert response is not None and response.status == 200
                csp = response.headers["content-security-policy"]
                assert "default-src 'none'" in csp and "script-src 'self'" in csp and "unsafe" not in csp
                blocks = page.locator(".opblock")
                await blocks.first.wait_for(timeout=15000)
                await page.wait_for_function(f"document.querySelectorAll('.opblock').length >= {len(operations)}",
                                             timeout=15000)
                listed = await listed_operations(page)
                shot = tmp_path / "docs.png"
                await page.screenshot(path=str(shot), full_page=True)
                print(f"screenshot of /docs: {shot}")
            finally:
                await browser.close()
        assert listed == operations
        assert not blocked, blocked
        assert not [line for line in console if "Content Security Policy" in line or "pageerror" in line], console
