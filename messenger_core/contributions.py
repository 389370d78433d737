"""What the enabled plugins contribute, gathered once into one immutable record.

:func:`assemble` calls each registration hook once (routes, request hooks, tasks, migrations,
schemas, security schemes, OpenAPI components and responses) and returns :class:`Contributions`.  The API
process, ``messenger-consumer``, the OpenAPI builder and ``messenger-api migrate`` all read that one
record (``plugins.contributions(config)``), so they can never disagree about what is installed.

One duplicate check serves every kind: a route pattern, request hook, task, schema, security scheme
or component name claimed twice stops start-up with a message that names both claimants.  The
module imports none of the web layer: the route handlers' types are checked where the application
is built (:func:`messenger_core.app.make_app`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

from .db import Migrations, order_specs
from .errors import StartupError

if TYPE_CHECKING:  # pragma: no cover
    from .broker import Task
    from .plugins import PluginManager
    from .settings import Config
    from .web import RequestHook

T = TypeVar("T")

#: OpenAPI component kinds a plugin may contribute through ``messenger_openapi_components``.
COMPONENT_KINDS = ("parameters", "responses")


@dataclass(frozen=True)
class Contributions:
    """Everything the enabled plugins registered (read-only).

    ``routes`` and ``request_hooks`` keep their order (request hooks sorted by ``(order, name)``);
    the mappings are name -> item, sorted by name.  ``owners`` says which plugin claimed what, as
    ``{(kind, name): plugin}``.
    """

    routes: tuple[tuple[Any, ...], ...]
    request_hooks: "tuple[RequestHook, ...]"
    tasks: "Mapping[str, Task]"
    migrations: tuple[Migrations, ...]
    schemas: Mapping[str, Any]
    security_schemes: Mapping[str, Mapping[str, Any]]
    components: Mapping[str, Mapping[str, Mapping[str, Any]]]
    operation_responses: Mapping[str, str]
    owners: Mapping[tuple[str, str], str]


class _Claims:
    """The one duplicate check: each (kind, name) belongs to one plugin, once."""

    def __init__(self) -> None:
        self.owners: dict[tuple[str, str], str] = {}

    def claim(self, kind: str, name: str, plugin: str) -> None:
        """Record that ``plugin`` contributes ``kind`` ``name``; a second claim stops start-up."""
        first = self.owners.get((kind, name))
        if first == plugin:
            raise StartupError(f"{kind} {name!r} is claimed twice by {plugin!r}")
        if first is not None:
            raise StartupError(f"{kind} {name!r} is claimed by both {first!r} and {plugin!r}")
        self.owners[(kind, name)] = plugin


def _named(claims: _Claims, kind: str, results: Iterable[tuple[str, Mapping[str, T]]]) -> Mapping[str, T]:
    merged: dict[str, T] = {}
    for plugin, items in results:
        for name, item in items.items():
            claims.claim(kind, name, plugin)
            merged[name] = item
    return MappingProxyType(dict(sorted(merged.items())))


def assemble(plugins: "PluginManager", config: "Config") -> Contributions:
    """Call every registration hook of the enabled plugins (and the core's own) once.

    Fails with :class:`~messenger_core.errors.StartupError` on any duplicate.
    """
    claims = _Claims()
    routes: list[tuple[Any, ...]] = []
    for plugin, items in plugins.call_each("messenger_routes", config=config):
        for route in items:
            claims.claim("route", route[0], plugin)
            routes.append(tuple(route))

    hooks = []
    for plugin, items in plugins.call_each("messenger_request_hooks", config=config):
        for hook in items:
            claims.claim("request hook", hook.name, plugin)
            hooks.append(hook)

    tasks = []
    for plugin, items in plugins.call_each("messenger_task_handlers", config=config):
        for task in items:
            claims.claim("task", task.name, plugin)
            tasks.append(task)

    migrations = []
    for plugin, spec in plugins.call_each("messenger_migrations", config=config):
        claims.claim("migrations", spec.plugin, plugin)
        migrations.append(spec)
    order_specs(migrations)  # fail now on a missing dependency or a cycle

    components: dict[str, Mapping[str, Mapping[str, Any]]] = {}
    contributed = plugins.call_each("messenger_openapi_components", config=config)
    for kind in COMPONENT_KINDS:
        components[kind] = _named(claims, kind[:-1], [(plugin, found.get(kind, {})) for plugin, found in contributed])
    unknown = {kind for _, found in contributed for kind in found} - set(COMPONENT_KINDS)
    if unknown:
        raise StartupError(f"unknown OpenAPI component kind(s) {', '.join(sorted(unknown))}; "
                           f"use {', '.join(COMPONENT_KINDS)} (schemas come from messenger_schemas)")

    return Contributions(
        routes=tuple(routes),
        request_hooks=tuple(sorted(hooks, key=lambda h: (h.order, h.name))),
        tasks=MappingProxyType({task.name: task for task in tasks}),
        migrations=tuple(migrations),
        schemas=_named(claims, "schema", plugins.call_each("messenger_schemas", config=config)),
        security_schemes=_named(claims, "security scheme",
                                plugins.call_each("messenger_security_schemes", config=config)),
        components=MappingProxyType(components),
        operation_responses=_named(claims, "response to every operation",
                                   plugins.call_each("messenger_openapi_responses", config=config)),
        owners=MappingProxyType(dict(claims.owners)),
    )
