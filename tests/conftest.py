"""Fixtures: a fresh database per test, settings for it, and a real in-process server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from example_helpers import installed_example
from support import AppServer, base_env, create_database, drop_database, serve_app


@pytest.fixture
def database() -> Iterator[str]:
    """A new, empty PostgreSQL database for this test (dropped afterwards)."""
    name = create_database()
    yield name
    drop_database(name)


@pytest.fixture
def env(database: str) -> dict[str, str]:
    """Settings pointing a server at this test's database, key prefix and queue names."""
    return base_env(database)


@pytest.fixture
async def server(env: dict[str, str]) -> AsyncIterator[AppServer]:
    """The app with every plugin, auth on, memory cache, embedded worker, on an unused port."""
    async with serve_app(env) as app_server:
        yield app_server


@pytest.fixture(scope="session")
def example_installed() -> Iterator[None]:
    """The example plugin (tests/example_plugin) pip-installed into the venv for subprocess servers."""
    with installed_example():
        yield
