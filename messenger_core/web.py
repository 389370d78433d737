"""HTTP plumbing shared by every plugin: BaseHandler, request hooks, identity, the core routes."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import socket
import traceback
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import marshmallow
from tornado import httputil, iostream
from tornado.web import HTTPError, RequestHandler

from .errors import STATUS_CODES, ApiError, Unavailable, bad_parameters, database_unavailable, not_found
from .aio import gather
from .instruments import UNMATCHED
from .logs import REQUEST_ID, REQUEST_ID_HEADER, new_request_id

if TYPE_CHECKING:  # pragma: no cover
    from .app import MessengerApp
    from .runtime import Runtime

log = logging.getLogger("messenger.web")


@dataclass(frozen=True)
class Identity:
    """Who is calling: an account (32-hex id), the session that proved it and when that ends (epoch s)."""

    account_id: str
    session_id: str
    expires_at: float | None = None


@dataclass(frozen=True)
class RequestHook:
    """A "middleware": awaited as ``func(handler)`` in ``prepare()``, sorted by ``(order, name)``.

    Raise :class:`~messenger_core.errors.ApiError` to stop the request.
    """

    name: str
    order: int
    func: Callable[["BaseHandler"], Awaitable[None]]


def dumps(data: Any) -> bytes:
    """The one JSON encoding of every response body (compact, UTF-8, not ASCII-escaped)."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def parse_uuid(value: str | None) -> uuid.UUID | None:
    """A UUID from a path or query value, or None when it is not one."""
    if not value:
        return None
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError):
        return None


#: Largest request body the app reads (API.md, Conventions); past it: 413 payload-too-large.
MAX_BODY_BYTES = 1024 * 1024
#: After refusing a body, how long (seconds) and how much (bytes) of the rest is read and dropped
#: before the connection closes, so the client's kernel gets no reset before it read the answer.
LINGER_SECONDS = 2.0
LINGER_BYTES = 16 * MAX_BODY_BYTES
#: Headers every response carries, from the app or from its connection layer.
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff"}

#: Deepest nesting of arrays and objects a request body may have (API.md, Conventions).
MAX_JSON_DEPTH = 32


def json_depth_over(data: Any, limit: int) -> bool:
    """Whether ``data`` nests arrays/objects more than ``limit`` levels (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def load_json(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse a request body; ValueError when it is not JSON or nests deeper than ``max_depth``.

    A body with fewer brackets than the bound cannot pass it and is not walked; a body nested
    thousands of levels deep stops Python's parser with RecursionError, which is a ValueError here.
    """
    try:
        data = json.loads(raw)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    if raw.count(b"[") + raw.count(b"{") > max_depth and json_depth_over(data, max_depth):
        raise ValueError("JSON nested too deeply")
    return data


def _too_large(request_id: str) -> tuple[list[tuple[str, str]], bytes]:
    """Headers and body of the 413 answer."""
    body = dumps({"message": "payload-too-large"})
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))), ("Connection", "close"),
               (REQUEST_ID_HEADER, request_id)]
    return headers + list(SECURITY_HEADERS.items()), body


class _Refused:
    """What the application's ``log_request`` reads of a handler, for a request refused before it had one."""

    def __init__(self, request: httputil.HTTPServerRequest, route_label: str, request_id: str) -> None:
        self.request = request
        self.route_label = route_label
        self.request_id = request_id

    def get_status(self) -> int:
        """The refusal's status."""
        return 413


_LINGERING: set[asyncio.Future[None]] = set()  # the answers being written (a task needs a reference)


class BodyLimit(httputil.HTTPMessageDelegate):
    """Wraps the application's delegate of one request: a body over ``limit`` bytes is 413 JSON.

    Tornado's own ``max_body_size`` answers a bare ``400`` with no body.  Here a ``Content-Length``
    over the limit is refused as soon as the headers arrive (before any ``100 Continue``): the
    connection is detached, answered, half-closed, and what the client still sends is read and
    dropped for a moment (a lingering close, as nginx does), so that its kernel does not reset the
    connection before the client read the answer.  A chunked body is counted as it arrives and
    refused the same way once past the limit.

    With ``app``, a refusal is named and counted like any answer: ``X-Request-Id`` (a trusted proxy's,
    else a new one), ``messenger_http_requests`` and the access line, under the route the path
    matches (``unmatched`` for none); its duration runs from the refusal.
    """

    def __init__(self, inner: httputil.HTTPMessageDelegate, connection: Any, limit: int = MAX_BODY_BYTES,
                 app: Any = None) -> None:
        self.inner = inner
        self.connection = connection
        self.limit = limit
        self.app = app
        self.received = 0
        self.refused = False
        self.start_line: Any = None
        self.headers: httputil.HTTPHeaders | None = None

    def headers_received(self, start_line: Any, headers: httputil.HTTPHeaders) -> Awaitable[None] | None:
        self.start_line, self.headers = start_line, headers
        length = headers.get("Content-Length", "")
        if length.isdigit() and int(length) > self.limit and hasattr(self.connection, "detach"):
            self.refused = True
            request_id = self._refusal()
            task = asyncio.ensure_future(_answer_and_linger(self.connection.detach(), request_id))
            _LINGERING.add(task)
            task.add_done_callback(_LINGERING.discard)
            return None
        return self.inner.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        if self.refused:
            return None
        self.received += len(chunk)
        if self.received > self.limit:
            self.refused = True
            # answer on the stream itself; Tornado's read loop waits for this, then finds it closed
            return _answer_and_linger(self.connection.stream, self._refusal())
        return self.inner.data_received(chunk)

    def _refusal(self) -> str:
        """The refused request's id; counted and logged by the application as every answer is."""
        app, headers = self.app, self.headers
        if app is None or headers is None:
            return new_request_id()
        request = httputil.HTTPServerRequest(connection=self.connection, start_line=self.start_line,
                                             headers=headers)
        request_id = app.request_id_of(request)
        try:
            kwargs = getattr(app.find_handler(request), "handler_kwargs", None) or {}
            app.log_request(_Refused(request, kwargs.get("route_label", UNMATCHED), request_id))
        except Exception:  # pylint: disable=broad-exception-caught
            log.exception("counting a refused request failed")  # the client still gets its 413
        return request_id

    def finish(self) -> None:
        if not self.refused:
            self.inner.finish()

    def on_connection_close(self) -> None:
        if not self.refused:
            self.inner.on_connection_close()


async def _answer_and_linger(stream: iostream.IOStream, request_id: str) -> None:
    """Write the 413, stop writing, drop what the client still sends (bounded), then close."""
    try:
        pairs, body = _too_large(request_id)
        head = "HTTP/1.1 413 Payload Too Large\r\n" + "".join(f"{name}: {value}\r\n" for name, value in pairs)
        await stream.write(head.encode("latin1") + b"\r\n" + body)
        stream.socket.shutdown(socket.SHUT_WR)
        deadline = asyncio.get_running_loop().time() + LINGER_SECONDS
        dropped = 0
        while dropped < LINGER_BYTES:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            dropped += len(await asyncio.wait_for(stream.read_bytes(65536, partial=True), left))
    except (iostream.StreamClosedError, OSError, asyncio.TimeoutError):
        pass
    finally:
        stream.close()


SchemaArg = type[marshmallow.Schema] | marshmallow.Schema


@functools.cache
def _shared_schema(schema_class: type[marshmallow.Schema]) -> marshmallow.Schema:
    return schema_class()


def schema_instance(schema: SchemaArg) -> marshmallow.Schema:
    """The schema itself, or the one shared instance of a schema class."""
    return _shared_schema(schema) if isinstance(schema, type) else schema


class BaseHandler(RequestHandler):
    """Base of every handler: JSON in and out, one error shape, request hooks in ``prepare()``.

    Set ``public = True`` on handlers that need no session (ping, register, login, docs), and
    ``self_contained = True`` on those that answer without PostgreSQL, Redis or RabbitMQ (ping,
    docs, static files): the OpenAPI builder documents a 503 on every other operation.
    """

    public = False
    self_contained = False
    application: "MessengerApp"
    _identity_done = False
    _identity: Identity | None = None
    _identity_error: ApiError | None = None
    _counted = False
    _sticky: dict[str, str] = {}
    #: the route's pattern as metrics and access lines name it (set per route by the app)
    route_label = UNMATCHED
    #: this request's id: a trusted proxy's ``X-Request-Id``, else a new one
    request_id = ""
    # apispec's Tornado plugin looks up every HTTP method name, TRACE included.
    trace = RequestHandler._unimplemented_method  # pylint: disable=protected-access

    def initialize(self, **kwargs: Any) -> None:
        """Route kwargs become attributes; counts the request as in flight; names the request."""
        for key, value in kwargs.items():
            setattr(self, key, value)
        self._counted = True
        application = self.application
        application.runtime.inflight += 1
        self.request_id = application.request_id_of(self.request)
        # a valid id is a plain token (letters, digits, ._:-): set_header's checks have nothing to find
        self._sticky = {REQUEST_ID_HEADER: self.request_id}
        self._headers[REQUEST_ID_HEADER] = self.request_id  # pylint: disable=protected-access

    def set_default_headers(self) -> None:
        """Every response starts without the ``Server`` header naming Tornado and its version, and with
        the security headers (Tornado calls this from ``clear()``: first, and again before an error page).

        The values are constants checked once, so they go into the headers as they are instead of
        through ``set_header``'s per-value conversion: this runs on every response.
        """
        headers = self._headers  # pylint: disable=protected-access
        del headers["Server"]
        headers.update(SECURITY_HEADERS)

    @property
    def runtime(self) -> "Runtime":
        """The process's shared resources: config, db, cache, queue, plugin state."""
        return self.application.runtime

    def _uncount(self) -> None:
        if self._counted:
            self._counted = False
            self.application.runtime.inflight -= 1

    def on_finish(self) -> None:
        self._uncount()

    def on_connection_close(self) -> None:
        self._uncount()
        super().on_connection_close()

    async def prepare(self) -> None:
        """Run every plugin's request hook in order (throttle, then auth, then others)."""
        REQUEST_ID.set(self.request_id)  # this request's task: every line it logs names the request
        for hook in self.application.request_hooks:
            await hook.func(self)

    # ---- identity -----------------------------------------------------------------------------

    async def authenticate(self) -> Identity | None:
        """Who is calling (memoized per request); raises the 401 of bad credentials."""
        if not self._identity_done:
            self._identity_done = True
            try:
                self._identity = await self.application.plugins.first_result("messenger_authenticate", handler=self)
            except ApiError as exc:
                self._identity_error = exc
        if self._identity_error is not None:
            raise self._identity_error
        self.current_user = self._identity
        return self._identity

    async def identify_session(self, session_id: str | None) -> Identity | None:
        """The identity of a session id sent outside the header (a stream's auth frame); None: auth is off.

        Raises the 401 the same session would get in the header (``auth-failed`` for None).
        """
        return await self.application.plugins.first_result("messenger_session_identity", runtime=self.runtime,
                                                           session_id=session_id)

    def set_sticky_header(self, name: str, value: str) -> None:
        """A header kept on every response of this request, error responses included."""
        self._sticky[name] = value
        self.set_header(name, value)

    async def rate_limit(self, scope: str, key: str) -> None:
        """Count an attempt of ``scope`` (e.g. "login") for ``key``; 429 when a plugin says so."""
        await gather(self.application.plugins.hook.messenger_rate_limit(handler=self, scope=scope, key=key))

    async def attempt_succeeded(self, scope: str, key: str) -> None:
        """The attempt counted by :meth:`rate_limit` succeeded (a limiter of failures forgets it)."""
        await gather(self.application.plugins.hook.messenger_attempt_succeeded(handler=self, scope=scope, key=key))

    @property
    def identity(self) -> Identity | None:
        """The identity proven so far in this request (after the auth hook ran), or None."""
        return self._identity

    @property
    def client_ip(self) -> str:
        """The socket peer, or the forwarded client when the peer is a trusted proxy."""
        peer = self.request.remote_ip or ""
        if not self.application.trusted_proxy(peer):
            return peer
        real = self.request.headers.get("X-Real-IP", "").strip()
        if real:
            return real
        forwarded = [part.strip() for part in self.request.headers.get("X-Forwarded-For", "").split(",")]
        for hop in reversed([p for p in forwarded if p]):
            if not self.application.trusted_proxy(hop):
                return hop
        return peer

    # ---- input --------------------------------------------------------------------------------

    def load_body(self, schema: SchemaArg) -> dict[str, Any]:
        """The JSON object body validated by ``schema``; anything else is 400 bad-parameters.

        A body nested deeper than ``MAX_JSON_DEPTH`` levels is refused before the schema sees it.

        Pass the schema class: one instance per class is reused (building a marshmallow schema
        deep-copies its fields, a cost no request should pay).
        """
        try:
            data = load_json(self.request.body or b"")
        except (ValueError, UnicodeDecodeError) as exc:
            raise bad_parameters(f"body is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise bad_parameters("body is not a JSON object")
        try:
            return schema_instance(schema).load(data)
        except marshmallow.ValidationError as exc:
            raise bad_parameters(f"body: {exc.messages}") from None

    def load_query(self, schema: SchemaArg) -> dict[str, Any]:
        """Query arguments (last value of each) validated by ``schema`` (unknown ones ignored)."""
        raw = {key: self.get_query_argument(key) for key in self.request.query_arguments}
        try:
            return schema_instance(schema).load(raw, unknown=marshmallow.EXCLUDE)
        except marshmallow.ValidationError as exc:
            raise bad_parameters(f"query: {exc.messages}") from None

    # ---- output -------------------------------------------------------------------------------

    def write_json(self, data: Any, status: int = 200) -> None:
        """Finish with a JSON body (``data`` may be already-encoded bytes, e.g. from the cache)."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(data if isinstance(data, bytes) else dumps(data))

    def write_empty(self, status: int) -> None:
        """Finish with no body (201 register, 200 logout)."""
        self.set_status(status)
        self.finish()

    def compute_etag(self) -> str | None:
        """No ETag: Tornado would hash every GET body (a page of messages) for a header that paging
        clients, who follow ``next.iterator``, never send back."""
        return None

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Every error is ``{"message": code}``; a traceback goes to the log, never to the client."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        for name, value in self._sticky.items():
            self.set_header(name, value)
        if isinstance(exc, ApiError):
            self.set_status(exc.status_code)
            code = exc.code
            for name, value in exc.headers.items():
                self.set_header(name, value)
        elif isinstance(exc, Unavailable):
            self.set_status(503)
            code = exc.code
        elif status_code in STATUS_CODES:  # Tornado's own errors: a wrong method, a bad request, ...
            code = STATUS_CODES[status_code]
        else:
            self.set_status(500)
            code = "internal-error"
        self.set_header("Content-Type", "application/json")
        self.finish(dumps({"message": code}))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        """Expected outcomes are not errors; anything else is logged once, with its traceback.

        An :class:`ApiError`'s operator-only ``detail`` goes to the debug log; an outage was logged
        once by the data layer when it began.
        """
        if isinstance(value, ApiError):
            if value.detail and log.isEnabledFor(logging.DEBUG):
                log.debug("%s %s: %d %s: %s", self.request.method, self.request.uri, value.status_code,
                          value.code, value.detail)
            return
        if isinstance(value, (HTTPError, Unavailable)):
            return
        log.error("uncaught exception %s %s\n%s", self.request.method, self.request.uri,
                  "".join(traceback.format_exception(typ, value, tb)))


class NotFoundHandler(BaseHandler):
    """Every unknown path: 404 ``not-found`` (after the request hooks, so auth answers 401 first)."""

    async def prepare(self) -> None:
        await super().prepare()
        raise not_found()


class PingHandler(BaseHandler):
    """Liveness: answers as soon as the process serves."""

    public = True
    self_contained = True

    def get(self) -> None:
        """Liveness probe; touches nothing.
        ---
        summary: The process serves
        tags: [health]
        responses:
          200:
            description: Alive (empty body)
        """
        self.finish()


class PingDbHandler(BaseHandler):
    """Readiness: PostgreSQL answers ``SELECT 1``."""

    public = True

    async def get(self) -> None:
        """Database probe.
        ---
        summary: PostgreSQL answers
        tags: [health]
        responses:
          200:
            description: The database answers (empty body)
          503: DatabaseUnavailable
        """
        if not await self.runtime.db.ping():
            raise database_unavailable()
        self.finish()
