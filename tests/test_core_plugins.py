"""Plugin discovery: entry points, the MESSENGER_APPS allowlist, duplicates (pip install: test_core_packaging)."""

from __future__ import annotations

import inspect
import subprocess
from typing import Any

import pytest

from messenger_core import hookspecs
from messenger_core.app import make_app
from messenger_core.broker import Task
from messenger_core.errors import ConfigError, StartupError
from messenger_core.hookspecs import hookimpl
from messenger_core.openapi import build_spec
from messenger_core.plugins import PluginManager
from messenger_core.settings import load_core
from messenger_core.web import BaseHandler

from example_helpers import example_plugin
from support import BIN, base_env, load_plugins, serve_app


class _Handler(BaseHandler):
    """A route target."""


class RoutesA:
    """Claims /v1/same."""

    @hookimpl
    def messenger_routes(self, config: Any) -> list[tuple[str, type]]:  # pylint: disable=unused-argument
        """One route."""
        return [(r"/v1/same", _Handler)]


class RoutesB(RoutesA):
    """Claims /v1/same too."""


async def _noop(**_: Any) -> None:
    return None


class TaskA:
    """Declares task 'twin'."""

    @hookimpl
    def messenger_task_handlers(self, config: Any) -> list[Task]:  # pylint: disable=unused-argument
        """One task."""
        return [Task("twin", _noop, "x", "k", "q")]


class TaskB(TaskA):
    """Declares task 'twin' too."""


class Typo:
    """A hookimpl whose name matches no hookspec."""

    @hookimpl
    def messenger_route(self) -> None:
        """Misspelled."""


def _manager(env: dict[str, str], extra: dict[str, Any]) -> tuple[Any, PluginManager]:
    environ = {**env, "MESSENGER_DISABLE_PLUGIN_AUTOLOAD": "1"}
    core = load_core(environ)
    manager = PluginManager(core, extra)
    return manager.load_config(core, environ), manager


def test_duplicate_route_stops_startup(env: dict[str, str]) -> None:
    config, manager = _manager(env, {"a": RoutesA(), "b": RoutesB()})
    with pytest.raises(StartupError, match=r"route '/v1/same' is claimed by both 'a' and 'b'"):
        make_app(config, manager)


def test_duplicate_task_stops_startup(env: dict[str, str]) -> None:
    config, manager = _manager(env, {"a": TaskA(), "b": TaskB()})
    with pytest.raises(StartupError, match="task 'twin' is claimed by both 'a' and 'b'"):
        make_app(config, manager)


def test_misspelled_hook_stops_startup(env: dict[str, str]) -> None:
    with pytest.raises(StartupError, match="messenger_route"):
        _manager(env, {"typo": Typo()})


def test_unknown_app_in_allowlist_is_a_config_error(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="MESSENGER_APPS.*nope"):
        _manager({**env, "MESSENGER_APPS": "nope"}, load_plugins(("messenger_chats",)))


def test_every_hookspec_is_documented() -> None:
    specs = [obj for name, obj in vars(hookspecs).items() if name.startswith("messenger_")]
    assert len(specs) >= 10
    for spec in specs:
        assert spec.__doc__ and len(spec.__doc__.strip()) > 40, spec.__name__
        assert all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
                   for p in inspect.signature(spec).parameters.values()), spec.__name__


async def test_allowlist_removes_routes_and_spec_paths(env: dict[str, str]) -> None:
    example = example_plugin()
    async with serve_app(env, plugins=(), extra=example) as srv:
        assert (await srv.client.post("/v1/example/echo", {"text": "hi"})).json == {"text": "hi"}
        assert "/v1/example/echo" in build_spec(srv.app).to_dict()["paths"]
    async with serve_app({**env, "MESSENGER_APPS": "messenger_chats"}, plugins=("messenger_chats",),
                         extra=example) as srv:
        resp = await srv.client.post("/v1/example/echo", {"text": "hi"})
        assert resp.status == 404 and resp.json == {"message": "not-found"}
        assert "/v1/example/echo" not in build_spec(srv.app).to_dict()["paths"]


def _plugins_listing(env: dict[str, str]) -> str:
    result = subprocess.run([str(BIN / "messenger-api"), "plugins"], env={**env, "PATH": str(BIN)},
                            capture_output=True, text=True, timeout=30, check=True)
    return result.stdout


def test_plugins_command_lists_versions_and_state() -> None:
    env = base_env("unused", MESSENGER_APPS="messenger_chats")
    lines = {line.split()[0]: line.split() for line in _plugins_listing(env).splitlines()}
    assert lines["messenger_chats"][1:3] == ["0.1.0", "enabled"]
    assert lines["messenger_auth"][2] == "disabled"
