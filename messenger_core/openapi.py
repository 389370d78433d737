"""OpenAPI: the spec built by apispec from the enabled plugins' handlers and schemas.

Handlers document each operation in YAML after ``---`` in the method's docstring; named
schemas come from the ``messenger_schemas`` hook.  ``messenger-api openapi`` prints the YAML that
the committed ``swagger.yml`` must equal; the running app serves it at ``/openapi.json`` and a
Swagger UI page at ``/docs``.
"""

from __future__ import annotations

from typing import Any

import marshmallow
from apispec import APISpec, BasePlugin
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.yaml_utils import load_yaml_from_docstring
from apispec_webframeworks.tornado import TornadoPlugin
from tornado.web import URLSpec

from . import __version__
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


def build_spec(app: Any) -> APISpec:
    """The spec of ``app`` (a MessengerApp): its routes, schemas and security schemes."""
    security = SecurityPlugin()
    spec = APISpec(
        title="Messenger API",
        version=__version__,
        openapi_version="3.0.3",
        plugins=[TornadoPlugin(), MarshmallowPlugin(), security],
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


_DOCS_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Messenger API</title>
<link rel="stylesheet" href="https://unpkg.com/swagger-ui-dist@5/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="https://unpkg.com/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui"});</script>
</body></html>
"""


class DocsHandler(BaseHandler):
    """Swagger UI over /openapi.json."""

    public = True

    def get(self) -> None:
        """Interactive API documentation (HTML).
        ---
        summary: API documentation page
        tags: [docs]
        responses:
          200:
            description: An HTML page with Swagger UI
        """
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.finish(_DOCS_PAGE)


def docs_routes() -> list[tuple[Any, ...]]:
    """The core's documentation routes."""
    return [(r"/openapi.json", OpenApiHandler), (r"/docs", DocsHandler)]


def spec_json(app: Any) -> bytes:
    """The spec encoded once, for /openapi.json."""
    return dumps(build_spec(app).to_dict())
