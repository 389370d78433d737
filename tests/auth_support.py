"""Helpers of the auth tests: accounts, sessions and a probe of "is this request authenticated"."""

from __future__ import annotations

import hashlib
import re

from support import Client, Response

HEX32 = re.compile(r"^[0-9a-f]{32}$")
#: A path no plugin serves: 401 without a valid session, 404 not-found with one.
PROBE = "/v1/auth-probe/nothing-here"


def session_group(session_id: str) -> str:
    """The session's cache group (its Redis key without the prefix): named after a hash of the id, so a
    reader of Redis learns no session id."""
    return "auth:session:" + hashlib.sha256(session_id.encode("ascii")).hexdigest()[:32]


def bearer(session_id: str, token_type: str = "session_id") -> dict[str, str]:
    """The default session header."""
    return {"Authorization": f"{token_type} {session_id}"}


async def register(client: Client, user_name: str, password: str = "s3cret-pass") -> None:
    """Register an account, asserting the documented 201 with an empty body."""
    resp = await client.post("/v1/auth/register", {"user_name": user_name, "password": password})
    assert (resp.status, resp.body) == (201, b""), resp


async def login(client: Client, user_name: str, password: str = "s3cret-pass") -> str:
    """Log in, asserting 200 ``{"session_id": <hex32>}``; the session id."""
    resp = await client.post("/v1/auth/login", {"user_name": user_name, "password": password})
    assert resp.status == 200, resp
    assert set(resp.json) == {"session_id"} and HEX32.match(resp.json["session_id"]), resp.json
    return resp.json["session_id"]


async def new_session(client: Client, user_name: str, password: str = "s3cret-pass") -> str:
    """Register then log in."""
    await register(client, user_name, password)
    return await login(client, user_name, password)


async def probe(client: Client, headers: dict[str, str] | None = None) -> Response:
    """GET the probe path with ``headers``."""
    return await client.get(PROBE, headers=headers or {})


async def authenticated(client: Client, session_id: str) -> bool:
    """Whether the session passes auth (the probe then answers 404 not-found)."""
    resp = await probe(client, bearer(session_id))
    if resp.status == 404:
        assert resp.json == {"message": "not-found"}
        return True
    assert resp.status == 401, resp
    return False
