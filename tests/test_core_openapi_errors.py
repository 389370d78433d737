"""Every operation of the generated OpenAPI documents the 413, 429 and 503 it can answer: 413 wherever a
body is read, 429 on everything while the throttle plugin is enabled (it contributes that, not the core),
503 on everything that needs PostgreSQL, Redis or RabbitMQ."""

from __future__ import annotations

import subprocess
from typing import Any

import yaml

from support import BIN, REPO_PLUGINS

METHODS = ("get", "post", "put", "patch", "delete")
#: Operations answered by the process alone (no PostgreSQL, Redis or RabbitMQ): no 503 for them.
SELF_CONTAINED = {"/ping", "/metrics", "/openapi.json", "/docs", "/docs/{asset}", "/v1/events", "/",
                  "/web/{build}/{name}"}


def generated_spec(plugins: tuple[str, ...]) -> dict[str, Any]:
    """What ``messenger-api openapi`` prints with these plugins enabled."""
    env = {"PATH": str(BIN), "MESSENGER_APPS": ",".join(plugins)}
    out = subprocess.run([str(BIN / "messenger-api"), "openapi"], capture_output=True, text=True, timeout=60,
                         check=True, env=env).stdout
    return yaml.safe_load(out)


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, item in spec["paths"].items()
            for method, op in item.items() if method in METHODS]


def responses(op: dict[str, Any]) -> dict[str, Any]:
    return {str(status): response for status, response in op["responses"].items()}


def test_every_operation_documents_its_413_429_and_503() -> None:
    spec = generated_spec(REPO_PLUGINS)
    ops = operations(spec)
    assert len(ops) > 20
    assert {path for path, _, _ in ops} >= SELF_CONTAINED - {"/", "/web/{build}/{name}"} | {"/v1/chats/search"}
    shared = spec["components"]["responses"]
    for name in ("TooManyRequests", "PayloadTooLarge", "DatabaseUnavailable", "ServiceUnavailable"):
        assert shared[name]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    missing = []
    for path, method, op in ops:
        found = responses(op)
        wanted = {"429"}
        if "requestBody" in op:
            wanted.add("413")
        if path not in SELF_CONTAINED:
            wanted.add("503")
        missing += [f"{method.upper()} {path}: {status}" for status in sorted(wanted - set(found))]
        if "413" in found and "requestBody" in op:
            assert found["413"] == {"$ref": "#/components/responses/PayloadTooLarge"}, (path, method)
    assert not missing, missing
    chats = responses(spec["paths"]["/v1/chats"]["post"])
    assert chats["429"] == {"$ref": "#/components/responses/TooManyRequests"}
    assert chats["503"] == {"$ref": "#/components/responses/DatabaseUnavailable"}
    assert "503" not in responses(spec["paths"]["/ping"]["get"])


def test_429_comes_from_the_throttle_plugin() -> None:
    spec = generated_spec(tuple(name for name in REPO_PLUGINS if name != "messenger_throttle"))
    for path, method, op in operations(spec):
        if (path, method) not in {("/v1/auth/login", "post"), ("/v1/chats/search", "post")}:  # their own 429s
            assert "429" not in responses(op), (path, method)
    assert "503" in responses(spec["paths"]["/v1/chats"]["post"])
