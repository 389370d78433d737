"""Fixtures: a fresh database per test, settings for it, and a real in-process server.

They build on the testing kit's fixtures (``messenger_core.testing``, loaded by the conftest.py at the
top of the repository).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from chats_support import chats_server
from example_helpers import example_venv
import web_support
from support import REDIS_URL, AppServer, base_env, serve_app

# the example plugin's own tests run in the plugin's virtual environment (test_core_packaging.py)
collect_ignore = ["example_plugin"]


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--web-screenshot PATH``: where the web client's browser test saves the README's screenshot."""
    parser.addoption("--web-screenshot", default=None, metavar="PATH",
                     help="save the web client's screenshot (README) to PATH (`make screenshot`)")


@pytest.fixture
def web_screenshot(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """Where the browser test writes its screenshot: --web-screenshot, else a temporary file."""
    chosen = request.config.getoption("--web-screenshot")
    return Path(chosen).resolve() if chosen else tmp_path / "web-client.png"


@pytest.fixture
def database(messenger_database: str) -> str:
    """A new, empty PostgreSQL database for this test (the kit's, dropped afterwards)."""
    return messenger_database


@pytest.fixture
def env(database: str) -> dict[str, str]:
    """Settings pointing a server at this test's database, key prefix and queue names."""
    return base_env(database)


@pytest.fixture
async def redis_keys(env: dict[str, str]) -> AsyncIterator[aioredis.Redis]:
    """A Redis client for inspecting this test's keys (all removed afterwards)."""
    client = aioredis.Redis.from_url(REDIS_URL)
    yield client
    keys = [key async for key in client.scan_iter(match=env["CACHE_PREFIX"] + "*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
async def server(env: dict[str, str]) -> AsyncIterator[AppServer]:
    """The app with every plugin, auth on, memory cache, embedded worker, on an unused port."""
    async with serve_app(env) as app_server:
        yield app_server


@pytest.fixture
async def chats(env: dict[str, str]) -> AsyncIterator[AppServer]:
    """The app with only the chats plugin (auth off, as the course's black-box tests run it)."""
    async with chats_server(env) as srv:
        yield srv


@pytest.fixture(scope="session")
def example_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin dir of a fresh venv with the example plugin pip-installed, for subprocess servers."""
    return example_venv(tmp_path_factory.mktemp("example-venv"))


@pytest.fixture
async def web(env: dict[str, str]) -> AsyncIterator[AppServer]:
    """Every plugin, the web client included, auth on (the browser tests' server)."""
    async with serve_app({**env, **web_support.FAST}, plugins=web_support.WEB_PLUGINS) as srv:
        yield srv


@pytest.fixture
async def browser() -> AsyncIterator["web_support.Browser"]:
    """Debian's headless Chromium, driven by Playwright."""
    async with web_support.chromium() as instance:
        yield instance
