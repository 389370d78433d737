"""Every hook the core calls.  Start reading here.

A plugin is a module (or object) registered under the entry-point group ``messenger.plugins``
whose functions are marked ``@hookimpl`` and named like the specs below.  Hooks are always
called with keyword arguments.  A hookimpl may be ``async def``: the core awaits whatever comes
back awaitable (:func:`messenger_core.plugins.gather`).

A spec's body is only its docstring, so its arguments are unused there by design (each ``def``
says so to pylint).

Hooks that *register* things return data; the core assembles it and fails at start-up, with a
clear message, on a duplicate route, task name or settings section.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    from tornado.routing import _RuleList

    from .runtime import Runtime
    from .db import Migrations
    from .settings import Config, Section
    from .broker import Task
    from .web import BaseHandler, Identity, RequestHook

PROJECT = "messenger"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def messenger_settings() -> "type[Section]":
    """Declare the plugin's settings section.

    Returns a :class:`~messenger_core.settings.Section` subclass (not an instance); the core reads
    it from the environment once and exposes it as ``config.<section.name>``.
    """


@hookspec
def messenger_routes(config: "Config") -> "_RuleList":  # pylint: disable=unused-argument
    """Contribute HTTP routes.

    Returns a list of ``(pattern, HandlerClass)`` or ``(pattern, HandlerClass, kwargs)`` tuples,
    conventionally the plugin's ``handlers.default_handlers``.  Handlers derive from
    :class:`~messenger_core.web.BaseHandler` and document their operations in YAML after ``---`` in
    each method's docstring (that feeds the OpenAPI spec).  A pattern claimed twice stops start-up.
    """


@hookspec
def messenger_schemas(config: "Config") -> "dict[str, Any]":  # pylint: disable=unused-argument
    """Contribute named marshmallow schemas to the OpenAPI components.

    Returns ``{"Name": SchemaClass}``; docstrings refer to them by that name.
    """


@hookspec
def messenger_security_schemes(config: "Config") -> "dict[str, dict[str, Any]]":  # pylint: disable=unused-argument
    """Declare OpenAPI security schemes, ``{"name": scheme_dict}``.

    Every operation of a handler that is not ``public`` then lists these schemes as required.
    """


@hookspec
def messenger_openapi_components(config: "Config") -> "dict[str, dict[str, Any]]":  # pylint: disable=unused-argument
    """Contribute reusable OpenAPI components that operations refer to in one line.

    Returns ``{"parameters": {"Name": parameter}, "responses": {"Name": response}}`` (either key may
    be left out).  A handler's docstring then says ``parameters: [ChatId]`` for a parameter and
    ``404: ChatNotFound`` for a response.  The core contributes the shared error responses
    (``BadParameters``, ``DatabaseUnavailable``, ``ServiceUnavailable``, ``Unauthorized``,
    ``TooManyRequests``, ``PayloadTooLarge``).  A name claimed twice stops start-up.
    """


@hookspec
def messenger_openapi_responses(config: "Config") -> "dict[str, str]":  # pylint: disable=unused-argument
    """Responses every operation may answer because this plugin is enabled, ``{"<status>": "Component"}``.

    For a plugin whose request hook can answer any request, e.g. the throttle's
    ``{"429": "TooManyRequests"}``.  The OpenAPI builder adds each to every operation that does not
    document that status itself.  A status claimed by two plugins stops start-up.
    """


@hookspec
def messenger_request_hooks(config: "Config") -> "list[RequestHook]":  # pylint: disable=unused-argument
    """Contribute request hooks ("middlewares") run in ``BaseHandler.prepare()``.

    Returns :class:`~messenger_core.web.RequestHook` objects.  All hooks of all plugins run sorted
    by ``(order, name)`` before the handler method; a hook stops the request by raising
    :class:`~messenger_core.errors.ApiError`.  Conventional orders: throttle 100, auth 200.
    """


@hookspec
def messenger_authenticate(handler: "BaseHandler") -> "Identity | None":  # pylint: disable=unused-argument
    """Resolve who is calling, from the request's credentials.

    Return an :class:`~messenger_core.Identity`, ``None`` when this implementation does not
    recognise the request's credentials (or authentication is switched off), or raise
    ``ApiError(401, ...)`` for bad ones.  The core awaits each implementation in turn (``async
    def`` ones included, in pluggy's call order: the last registered first, ``tryfirst`` ones
    before) and takes the first result that is not None; the rest are not called.

    When it runs: at most once per request, on the first ``await handler.authenticate()``, which
    memoizes the identity (or the 401) for the rest of the request.  Request hooks run in
    ``(order, name)`` order before the handler: the throttle (order 100) is first and calls
    ``authenticate()`` itself, to count a request by its account (by client IP when there is no
    valid session), so that is where authentication runs; the auth hook (order 200) and the
    handler then get the memoized result, and the auth hook turns a missing session into 401.
    Without the throttle, authentication runs in the auth hook.  Handlers and hooks never call this
    hook directly.
    """


@hookspec
def messenger_session_identity(  # pylint: disable=unused-argument
        runtime: "Runtime", session_id: "str | None") -> "Identity | None":
    """Resolve a bare session id that did not come in a request header (a WebSocket's first frame).

    Return the :class:`~messenger_core.web.Identity` (its ``expires_at`` set), ``None`` when
    authentication is switched off, or raise ``ApiError(401, code)`` with the code a request with
    that session in its header would get: ``auth-failed`` for ``None`` or a value that is not a UUID,
    ``invalid-session-id``, ``session-id-expired``.  So ``session_id=None`` also asks "is auth on?".
    Called like :func:`messenger_authenticate`: each implementation in turn, the first result that
    is not None wins.
    A plugin that ends sessions early (logout) announces it with ``pg_notify`` on
    :data:`~messenger_core.pubsub.SESSIONS_CHANNEL`, payload the session's 32-hex id (other payloads
    on that channel, such as ``messenger_auth``'s ``epoch:<n>``, name no session).
    """


@hookspec
def messenger_rate_limit(handler: "BaseHandler", scope: str, key: str) -> None:  # pylint: disable=unused-argument
    """Count one attempt of a sensitive action and refuse it when over its limit.

    Called by ``await handler.rate_limit(scope, key)`` (for example the login handler with scope
    ``"login"`` and the user name as key).  An implementation raises
    ``ApiError(429, "request-limit-exceeded", {"Retry-After": ...})``; with no implementation
    installed nothing is limited.  The attempt is counted before the action runs (concurrent
    attempts cannot pass the limit together); see :func:`messenger_attempt_succeeded`.
    """


@hookspec
def messenger_attempt_succeeded(handler: BaseHandler, scope: str, key: str) -> None:  # pylint: disable=unused-argument
    """An attempt counted by :func:`messenger_rate_limit` in this request succeeded.

    Called by ``await handler.attempt_succeeded(scope, key)`` (the login handler after a correct
    password): a limiter that counts failures only takes the attempt back.
    """


@hookspec
def messenger_migrations(config: "Config") -> "Migrations":  # pylint: disable=unused-argument
    """Declare the plugin's database migrations.

    Returns :class:`~messenger_core.db.Migrations`: the plugin's name, the package holding its
    numbered ``NNNN_name.sql`` files (each with ``-- migrate:up`` and ``-- migrate:down`` parts)
    and the plugins whose migrations must run first.
    """


@hookspec
def messenger_task_handlers(config: "Config") -> "list[Task]":  # pylint: disable=unused-argument
    """Contribute kinds of queued work.

    Returns a list of :class:`~messenger_core.broker.Task`: a name, the coroutine function that
    runs one task, awaited as ``handler(payload=dict, runtime=Runtime, attempt=int)`` in
    ``messenger-consumer`` (RabbitMQ) or in the API's embedded worker, the exchange, routing key
    and queue it travels by, ``max_attempts`` and an optional ``on_give_up``.  A task name claimed
    twice stops start-up.
    """


@hookspec
def messenger_startup(runtime: "Runtime") -> None:  # pylint: disable=unused-argument
    """Open the plugin's resources; called once per process after the core's pools exist.

    ``runtime`` is the process's :class:`~messenger_core.Runtime` (API worker or consumer);
    keep plugin state in ``runtime.state["<plugin>"]``.  Must not fail because Redis or RabbitMQ
    is down: degrade and retry later instead.
    """


@hookspec
def messenger_shutdown(runtime: "Runtime") -> None:  # pylint: disable=unused-argument
    """Release what ``messenger_startup`` opened; called once per process before pools close."""
