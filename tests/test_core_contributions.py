"""Contributions assembled once: one record, one duplicate check, one identity path."""

from __future__ import annotations

from typing import Any

import pytest

from messenger_core import BaseHandler, Identity, hookimpl
from messenger_core.app import make_app
from messenger_core.errors import StartupError
from messenger_core.openapi import build_spec
from messenger_core.plugins import PluginManager
from messenger_core.settings import load_core

from support import serve_app


class _Handler(BaseHandler):
    """A route target."""

    def get(self) -> None:
        """Who is calling.
        ---
        summary: Who is calling
        parameters: [Shout]
        responses:
          200:
            description: The caller
          400: BadParameters
        """
        self.write_json({"ok": True})


class Counting:
    """Counts how often each registration hook is called."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    @hookimpl
    def messenger_routes(self) -> list[tuple[str, type]]:
        """One route."""
        self._count("routes")
        return [(r"/v1/counting", _Handler)]

    @hookimpl
    def messenger_openapi_components(self) -> dict[str, Any]:
        """One parameter component."""
        self._count("components")
        return {"parameters": {"Shout": {"in": "query", "name": "shout", "schema": {"type": "boolean"}}}}


class ClaimsPing:
    """Claims the core's /ping."""

    @hookimpl
    def messenger_routes(self) -> list[tuple[str, type]]:
        """The core's route."""
        return [(r"/ping", _Handler)]


class ClaimsResponse:
    """Claims the core's shared response name."""

    @hookimpl
    def messenger_openapi_components(self) -> dict[str, Any]:
        """A response named like the core's."""
        return {"responses": {"DatabaseUnavailable": {"description": "mine"}}}


class BadKind:
    """Contributes a component kind the core does not know."""

    @hookimpl
    def messenger_openapi_components(self) -> dict[str, Any]:
        """Schemas belong to messenger_schemas."""
        return {"schemas": {"X": {}}}


def _manager(env: dict[str, str], extra: dict[str, Any]) -> tuple[Any, PluginManager]:
    environ = {**env, "MESSENGER_DISABLE_PLUGIN_AUTOLOAD": "1"}
    core = load_core(environ)
    manager = PluginManager(core, extra)
    return manager.load_config(core, environ), manager


def test_every_registration_hook_is_called_once_for_app_spec_and_migrations(env: dict[str, str]) -> None:
    counting = Counting()
    config, manager = _manager(env, {"counting": counting})
    app = make_app(config, manager)
    spec = build_spec(app).to_dict()
    assert manager.contributions(config) is app.runtime.contributions  # the CLI's migrate reads the same
    assert counting.calls == {"routes": 1, "components": 1}
    operation = spec["paths"]["/v1/counting"]["get"]
    assert operation["parameters"] == [{"$ref": "#/components/parameters/Shout"}]
    assert operation["responses"]["400"] == {"$ref": "#/components/responses/BadParameters"}
    assert spec["components"]["parameters"]["Shout"]["name"] == "shout"


def test_the_record_is_immutable(env: dict[str, str]) -> None:
    config, manager = _manager(env, {"counting": Counting()})
    record = manager.contributions(config)
    with pytest.raises(TypeError):
        record.tasks["x"] = None  # type: ignore[index]
    with pytest.raises(AttributeError):
        record.routes = ()  # type: ignore[misc]
    assert record.owners[("route", "/v1/counting")] == "counting"
    assert record.owners[("route", "/ping")] == "core"


@pytest.mark.parametrize(("plugin", "message"), [
    (ClaimsPing(), r"route '/ping' is claimed by both 'core' and 'x'"),
    (ClaimsResponse(), r"response 'DatabaseUnavailable' is claimed by both 'core' and 'x'"),
    (BadKind(), r"unknown OpenAPI component kind\(s\) schemas"),
])
def test_one_duplicate_check_for_every_kind(env: dict[str, str], plugin: Any, message: str) -> None:
    config, manager = _manager(env, {"x": plugin})
    with pytest.raises(StartupError, match=message):
        manager.contributions(config)


def test_core_is_a_reserved_plugin_name(env: dict[str, str]) -> None:
    with pytest.raises(StartupError, match="reserved"):
        _manager(env, {"core": Counting()})


class Declines:
    """An async authenticator that does not recognise the request."""

    @hookimpl
    async def messenger_authenticate(self, handler: BaseHandler) -> Identity | None:
        """Only requests with X-Other."""
        if handler.request.headers.get("X-Other"):
            return Identity(account_id="0" * 32, session_id="other")
        return None


class Recognises:
    """An async authenticator registered before ``Declines`` (so pluggy calls it second)."""

    @hookimpl
    async def messenger_authenticate(self, handler: BaseHandler) -> Identity | None:
        """Requests with X-Mine."""
        if handler.request.headers.get("X-Mine"):
            return Identity(account_id="1" * 32, session_id="mine")
        return None


class WhoAmI(BaseHandler):
    """Answers with the identity ``authenticate()`` found."""

    public = True

    async def get(self) -> None:
        """Not documented (no OpenAPI block)."""
        identity = await self.authenticate()
        again = await self.authenticate()  # memoized: the same object
        assert identity is again
        self.write_json({"session": None if identity is None else identity.session_id})


class WhoAmIRoute:
    """Serves WhoAmI."""

    @hookimpl
    def messenger_routes(self) -> list[tuple[str, type]]:
        """One route."""
        return [(r"/v1/whoami", WhoAmI)]


async def test_each_async_authenticator_is_awaited_until_one_answers(env: dict[str, str]) -> None:
    extra = {"a_recognises": Recognises(), "b_declines": Declines(), "c_route": WhoAmIRoute()}
    async with serve_app(env, plugins=(), extra=extra) as srv:
        # Declines is called first (registered last) and returns None: Recognises still decides
        assert (await srv.client.get("/v1/whoami", headers={"X-Mine": "1"})).json == {"session": "mine"}
        assert (await srv.client.get("/v1/whoami", headers={"X-Other": "1"})).json == {"session": "other"}
        assert (await srv.client.get("/v1/whoami")).json == {"session": None}
