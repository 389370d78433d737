"""The example plugin's own tests, as a plugin author writes them: the kit's fixtures, the installed plugin."""

from __future__ import annotations

import pytest

from messenger_core.testing import AppServer, Client, assert_error, sql


@pytest.fixture
def messenger_plugins() -> tuple[str, ...]:
    """Serve the installed plugin, by its entry-point name."""
    return ("messenger_example",)


async def test_echo_answers_and_refuses_bad_bodies(messenger_client: Client) -> None:
    resp = await messenger_client.post("/v1/example/echo", {"text": "hi"})
    assert resp.status == 200 and resp.json == {"text": "hi"}
    assert_error(await messenger_client.post("/v1/example/echo", {"text": ""}), 400, "bad-parameters")


async def test_the_migration_ran_and_the_section_was_read(messenger_app: AppServer, messenger_database: str) -> None:
    assert await sql(messenger_database, "SELECT plugin, version FROM schema_migrations") == [("messenger_example", 1)]
    assert messenger_app.app.config.example.slow_max == 30.0
