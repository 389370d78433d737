"""Migrations: numbered SQL per plugin, applied once even by concurrent starters, and rolled back."""

from __future__ import annotations

import asyncio
import subprocess
import uuid

import psycopg
import pytest

from messenger_core.db import Migrations, migrate_down, migrate_up, order_specs
from messenger_core.errors import StartupError
from messenger_core.settings import Config, load_core

from example_helpers import example_plugin
from support import BIN, base_env, conninfo, drop_database

EXAMPLE = Migrations("messenger_example", "messenger_example.migrations")


def _config(database: str) -> Config:
    return Config(load_core(base_env(database)))


def _tables(database: str) -> set[str]:
    with psycopg.connect(conninfo(database)) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {row[0] for row in rows}


async def test_concurrent_starters_apply_each_migration_once(database: str) -> None:
    example_plugin()  # importable
    config = _config(database)
    results = await asyncio.gather(*(migrate_up(config, [EXAMPLE]) for _ in range(4)))
    applied = [name for result in results for name in result]
    assert applied == ["messenger_example:0001_example"]
    assert {"example_runs", "example_starts", "schema_migrations"} <= _tables(database)
    assert await migrate_up(config, [EXAMPLE]) == []  # a restart re-runs them safely


async def test_down_then_up_again(database: str) -> None:
    example_plugin()
    config = _config(database)
    await migrate_up(config, [EXAMPLE])
    assert await migrate_down(config, [EXAMPLE], "messenger_example") == ["messenger_example:0001_example"]
    assert "example_runs" not in _tables(database)
    assert await migrate_down(config, [EXAMPLE], "messenger_example") == []
    assert await migrate_up(config, [EXAMPLE]) == ["messenger_example:0001_example"]


async def test_missing_database_is_created() -> None:
    example_plugin()
    name = f"mt_created_{uuid.uuid4().hex[:8]}"
    try:
        assert await migrate_up(_config(name), [EXAMPLE]) == ["messenger_example:0001_example"]
        assert "example_runs" in _tables(name)
    finally:
        drop_database(name)


def test_dependency_order_and_errors() -> None:
    chats = Migrations("chats", "x")
    search = Migrations("search", "y", after=("chats",))
    assert [s.plugin for s in order_specs([search, chats])] == ["chats", "search"]
    with pytest.raises(StartupError, match="needs migrations of 'chats'"):
        order_specs([search])
    with pytest.raises(StartupError, match="cycle"):
        order_specs([Migrations("a", "x", after=("b",)), Migrations("b", "y", after=("a",))])


def test_cli_migrate_and_roll_back_a_plugin(database: str) -> None:
    env = {**base_env(database), "PATH": str(BIN)}

    def run(*args: str) -> str:
        return subprocess.run([str(BIN / "messenger-api"), "migrate", *args], env=env, capture_output=True,
                              text=True, timeout=60, check=True).stdout
    out = run()
    assert "messenger_chats:0001" in out
    assert run().strip() == "nothing to apply"
    refused = subprocess.run([str(BIN / "messenger-api"), "migrate", "--down", "messenger_chats"], env=env,
                             capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 2 and "depends on messenger_chats" in refused.stderr
    assert "messenger_search" in run("--down", "messenger_search")
    assert "messenger_chats:0001" in run("--down", "messenger_chats")
    assert "messages" not in _tables(database)
    assert "messenger_chats:0001" in run()
