"""OpenAPI: the spec built by apispec from the enabled plugins' handlers and schemas.

Handlers document each operation in YAML after ``---`` in the method's docstring; named
schemas come from the ``messenger_schemas`` hook.  ``messenger-api openapi`` prints the YAML that
the committed ``swagger.yml`` must equal; the running app serves it at ``/openapi.json`` and a
Swagger UI page at ``/docs``.
"""

from __future__ import annotations

import functools
import importlib.resources
from typing import Any

import marshmallow
from apispec import APISpec, BasePlugin
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.yaml_utils import load_yaml_from_docstring
from apispec_webframeworks.tornado import TornadoPlugin
from tornado.web import URLSpec

from . import __version__
from .errors import not_found
from .web import BaseHandler, dumps

HTTP_METHODS = ("get", "post", "put", "patch", "delete")


class ErrorSchema(marshmallow.Schema):
    """The one error body."""

    message = marshmallow.fields.String(required=True, metadata={"description": "Error code"})


class SecurityPlugin(BasePlugin):
    """Lists the security schemes on every operation of a non-public handler and documents its 401.

    It works inside ``spec.path`` because apispec deep-copies the operations it is given: editing
    them after the call changes nothing in the spec.
    """

    def __init__(self) -> None:
        super().__init__()
        self.schemes: list[str] = []

    def operation_helper(self, path: str | None = None, operations: dict[str, Any] | None = None,
                         **kwargs: Any) -> None:
        """Add ``security`` and a 401 response to the operations of a handler that is not public."""
        handler = getattr(kwargs.get("urlspec"), "handler_class", None)
        if not self.schemes or not operations or handler is None or getattr(handler, "public", False):
            return
        for method, operation in operations.items():
            if method not in HTTP_METHODS or not isinstance(operation, dict):
                continue
            operation.setdefault("security", [{name: []} for name in self.schemes])
            operation.setdefault("responses", {}).setdefault("401", "Unauthorized")


class ErrorResponsesPlugin(BasePlugin):
    """Documents the errors an operation can answer whatever its handler says, from one place.

    413 ``PayloadTooLarge`` on every operation with a request body; 503 ``DatabaseUnavailable`` on
    every operation whose handler is not ``self_contained`` (it needs PostgreSQL, or Redis or
    RabbitMQ: a handler that knows better documents its own 503); and what the enabled plugins
    contribute through ``messenger_openapi_responses`` (the throttle's 429) on every operation.  A
    status the operation documents itself is left as it is.
    """

    def __init__(self) -> None:
        super().__init__()
        self.everywhere: dict[str, str] = {}

    def operation_helper(self, path: str | None = None, operations: dict[str, Any] | None = None,
                         **kwargs: Any) -> None:
        """Add the shared error responses an operation does not document itself."""
        handler = getattr(kwargs.get("urlspec"), "handler_class", None)
        if not operations or handler is None:
            return
        for method, operation in operations.items():
            if method not in HTTP_METHODS or not isinstance(operation, dict):
                continue
            responses = operation.setdefault("responses", {})
            wanted = dict(self.everywhere)
            if "requestBody" in operation:
                wanted["413"] = "PayloadTooLarge"
            if not getattr(handler, "self_contained", False):
                wanted["503"] = "DatabaseUnavailable"
            documented = {str(status) for status in responses}
            for status, component in wanted.items():
                if status not in documented:
                    responses[status] = component
            operation["responses"] = dict(sorted(responses.items(), key=lambda item: str(item[0])))


def build_spec(app: Any) -> APISpec:
    """The spec of ``app`` (a MessengerApp): its routes, schemas and security schemes."""
    security = SecurityPlugin()
    errors = ErrorResponsesPlugin()
    spec = APISpec(
        title="Messenger API",
        version=__version__,
        openapi_version="3.0.3",
        plugins=[TornadoPlugin(), MarshmallowPlugin(), security, errors],
        info={"description": "Chats, members, messages with cursor paging, asynchronous full-text "
                             "search. Every error body is {\"message\": \"<code>\"}."},
    )
    contributed = app.runtime.contributions
    for name, schema in contributed.schemas.items():
        spec.components.schema(name, schema=schema)
    for name, parameter in contributed.components["parameters"].items():
        spec.components.parameter(name, parameter.get("in", "path"), dict(parameter))
    for name, response in contributed.components["responses"].items():
        spec.components.response(name, dict(response))
    for name, scheme in contributed.security_schemes.items():
        spec.components.security_scheme(name, dict(scheme))
    security.schemes = sorted(contributed.security_schemes)
    errors.everywhere = dict(contributed.operation_responses)
    for route in sorted(app.routes, key=lambda r: r[0]):
        pattern, handler = route[0], route[1]
        if not any(load_yaml_from_docstring(getattr(handler, m).__doc__ or "") for m in HTTP_METHODS):
            continue
        spec.path(urlspec=URLSpec(pattern, handler))
    return spec


def to_yaml(app: Any) -> str:
    """The YAML form (what ``swagger.yml`` holds)."""
    return build_spec(app).to_yaml()


class OpenApiHandler(BaseHandler):
    """The spec as JSON."""

    public = True
    self_contained = True

    def get(self) -> None:
        """OpenAPI document of this server (only the enabled plugins).
        ---
        summary: OpenAPI document
        tags: [docs]
        responses:
          200:
            description: The OpenAPI 3 document
        """
        self.write_json(self.application.openapi_json())


#: Swagger UI's files, from the swagger-ui-py package (no CDN: /docs works with no internet access)
DOCS_ASSETS = {
    "swagger-ui.css": "text/css; charset=UTF-8",
    "swagger-ui-bundle.js": "application/javascript; charset=UTF-8",
    "favicon-32x32.png": "image/png",
}
#: the page may load and run only what this server sends; Swagger UI draws its icons from data: URIs
DOCS_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
_DOCS_INIT = b"""window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui", deepLinking: true, validatorUrl: null});
});
"""
_DOCS_PAGE = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Messenger API</title>
<link rel="icon" type="image/png" href="/docs/favicon-32x32.png">
<link rel="stylesheet" href="/docs/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script>
</body></html>
"""


@functools.cache
def docs_asset(name: str) -> bytes:
    """One of Swagger UI's files as the installed swagger-ui-py package ships it (read once)."""
    return importlib.resources.files("swagger_ui").joinpath("static", name).read_bytes()


class DocsHandler(BaseHandler):
    """Swagger UI over /openapi.json, from files this server serves itself."""

    public = True
    self_contained = True

    def get(self) -> None:
        """Interactive API documentation (HTML).
        ---
        summary: API documentation page
        tags: [docs]
        responses:
          200:
            description: An HTML page with Swagger UI; its assets come from this server (strict CSP)
        """
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.set_header("Content-Security-Policy", DOCS_CSP)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.finish(_DOCS_PAGE)


class DocsAssetHandler(BaseHandler):
    """The scripts, style sheet and icon of the documentation page."""

    public = True
    self_contained = True

    def get(self, asset: str) -> None:
        """A file of the documentation page.
        ---
        summary: Swagger UI asset (script, style sheet, icon)
        tags: [docs]
        parameters:
          - {name: asset, in: path, required: true, schema: {type: string}}
        responses:
          200:
            description: The file
          404:
            description: not-found
        """
        if asset == "init.js":
            body, content_type = _DOCS_INIT, DOCS_ASSETS["swagger-ui-bundle.js"]
        elif asset in DOCS_ASSETS:
            body, content_type = docs_asset(asset), DOCS_ASSETS[asset]
        else:
            raise not_found()
        self.set_header("Content-Type", content_type)
        self.set_header("Cache-Control", "public, max-age=3600")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.finish(body)


def docs_routes() -> list[tuple[Any, ...]]:
    """The core's documentation routes."""
    return [(r"/openapi.json", OpenApiHandler), (r"/docs", DocsHandler),
            (r"/docs/(?P<asset>[A-Za-z0-9._-]+)", DocsAssetHandler)]


def spec_json(app: Any) -> bytes:
    """The spec encoded once, for /openapi.json."""
    return dumps(build_spec(app).to_dict())
