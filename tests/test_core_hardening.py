"""Hardening of the core's HTTP layer: bad input, oversized bodies, response headers, health probes."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from example_helpers import example_plugin
from messenger_core.web import MAX_JSON_DEPTH, load_json
from support import AppServer, serve_app


@pytest.fixture
async def bare(env: dict[str, str]) -> Any:
    """The core plus the example plugin only (no auth, so the error shapes show directly)."""
    async with serve_app(env, plugins=(), extra=example_plugin()) as srv:
        yield srv


def nested(depth: int) -> bytes:
    """A JSON object ``depth`` levels deep: {"a": {"a": ... {} ...}}."""
    return b'{"a":' * (depth - 1) + b"{}" + b"}" * (depth - 1)


def test_depth_bound_counts_levels() -> None:
    assert load_json(nested(MAX_JSON_DEPTH)) is not None
    assert load_json(b'[' * MAX_JSON_DEPTH + b']' * MAX_JSON_DEPTH) is not None
    for raw in (nested(MAX_JSON_DEPTH + 1), b'[' * (MAX_JSON_DEPTH + 1) + b']' * (MAX_JSON_DEPTH + 1),
                b'{"a": [' + b'[' * MAX_JSON_DEPTH + b']' * MAX_JSON_DEPTH + b']}'):
        with pytest.raises(ValueError):
            load_json(raw)
    # brackets inside strings are text, not depth
    assert load_json(b'{"text": "' + b"[" * 1000 + b'"}') == {"text": "[" * 1000}


@pytest.mark.parametrize("raw", [b"[" * 5000 + b"]" * 5000, b'{"a":' * 5000 + b"1" + b"}" * 5000,
                                 b"[" * 100_000])
async def test_deeply_nested_json_is_400_and_logs_nothing(bare: AppServer, raw: bytes,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    resp = await bare.client.request("POST", "/v1/example/echo", raw=raw)
    assert resp.status == 400, resp
    assert resp.json == {"message": "bad-parameters"}
    assert resp.headers["Content-Type"].startswith("application/json")
    assert not [r for r in caplog.records if r.levelno > logging.WARNING], caplog.text
    resp = await bare.client.post("/v1/example/echo", {"text": "still fine"})
    assert (resp.status, resp.json) == (200, {"text": "still fine"})


async def test_deep_json_on_register_is_400(server: AppServer, caplog: pytest.LogCaptureFixture) -> None:
    raw = b'{"user_name": "deep", "password": ' + b"[" * 3000 + b"]" * 3000 + b"}"
    resp = await server.client.request("POST", "/v1/auth/register", raw=raw)
    assert (resp.status, resp.json) == (400, {"message": "bad-parameters"})
    assert not [r for r in caplog.records if r.levelno > logging.WARNING], caplog.text
