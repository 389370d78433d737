"""Auth plugin over HTTP: every row of the API.md auth table, each 401 code, sessions, hashes."""

from __future__ import annotations

import json

import pytest

from auth_support import HEX32, PROBE, authenticated, bearer, login, new_session, probe, register
from support import AppServer, assert_error, poll, serve_app

AUTH_ONLY = ("messenger_auth",)


@pytest.fixture
async def auth_server(env: dict[str, str]) -> AppServer:
    """The app with only the auth plugin (memory cache, one process)."""
    async with serve_app(env, plugins=AUTH_ONLY) as srv:
        yield srv


async def test_register_login_logout_happy_path(auth_server: AppServer) -> None:
    client = auth_server.client
    resp = await client.post("/v1/auth/register", {"user_name": "vasya", "password": "pupkin-1"})
    assert (resp.status, resp.body) == (201, b"")
    resp = await client.post("/v1/auth/login", {"user_name": "vasya", "password": "pupkin-1"})
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    assert list(resp.json) == ["session_id"] and HEX32.match(resp.json["session_id"])
    session_id = resp.json["session_id"]
    assert await authenticated(client, session_id)
    resp = await client.post("/v1/auth/logout", headers=bearer(session_id))
    assert (resp.status, resp.body) == (200, b"")
    # the ended session is refused everywhere, logout included
    assert_error(await probe(client, bearer(session_id)), 401, "invalid-session-id")
    assert_error(await client.post("/v1/auth/logout", headers=bearer(session_id)), 401, "invalid-session-id")


BAD_BODIES = [
    None,
    b"not json",
    b"[1, 2]",
    b'"vasya"',
    {},
    {"user_name": "vasya"},
    {"password": "secret"},
    {"user_name": "", "password": "secret"},
    {"user_name": "v" * 256, "password": "secret"},
    {"user_name": "vasya", "password": ""},
    {"user_name": "vasya", "password": "p" * 1025},
    {"user_name": 42, "password": "secret"},
    {"user_name": "vasya", "password": None},
    {"user_name": "vas\u0000ya", "password": "secret"},
    b'{"user_name": "\\ud800", "password": "secret"}',
    b'{"user_name": "vasya", "password": "\\udfff"}',
    {"user_name": "vasya", "password": "secret", "extra": 1},
]


@pytest.mark.parametrize("path", ["/v1/auth/register", "/v1/auth/login"])
async def test_bad_bodies_are_400_and_change_nothing(auth_server: AppServer, path: str) -> None:
    client = auth_server.client
    await register(client, "vasya", "secret-1")
    for body in BAD_BODIES:
        raw = body if isinstance(body, bytes) else (b"" if body is None else json.dumps(body).encode())
        assert_error(await client.request("POST", path, raw=raw), 400, "bad-parameters")
    rows = await auth_server.runtime.db.fetchall("SELECT user_name FROM accounts")
    assert rows == [{"user_name": "vasya"}]
    assert await auth_server.runtime.db.fetchall("SELECT id FROM sessions") == []
    await login(client, "vasya", "secret-1")


async def test_limits_are_inclusive(auth_server: AppServer) -> None:
    client = auth_server.client
    name, password = "ю" * 255, "п" * 1024
    await register(client, name, password)
    await login(client, name, password)
    await register(client, "x", "y" * 8)  # AUTH_PASSWORD_MIN_LENGTH
    await login(client, "x", "y" * 8)


async def test_duplicate_user_name_keeps_the_first_account(auth_server: AppServer) -> None:
    client = auth_server.client
    await register(client, "vasya", "first-pw")
    resp = await client.post("/v1/auth/register", {"user_name": "vasya", "password": "second-pw"})
    assert_error(resp, 400, "user-already-exists")
    assert_error(await client.post("/v1/auth/login", {"user_name": "vasya", "password": "second-pw"}),
                 400, "bad-password")
    await login(client, "vasya", "first-pw")
    # names are exact: another case is another account
    await register(client, "Vasya", "second-pw")
    count = await auth_server.runtime.db.fetchone("SELECT count(*) AS n FROM accounts")
    assert count == {"n": 2}


async def test_login_errors(auth_server: AppServer) -> None:
    client = auth_server.client
    await register(client, "vasya", "secret-1")
    assert_error(await client.post("/v1/auth/login", {"user_name": "petya", "password": "secret-1"}),
                 400, "user-not-found")
    assert_error(await client.post("/v1/auth/login", {"user_name": "vasya", "password": "Secret-1"}),
                 400, "bad-password")
    assert await auth_server.runtime.db.fetchall("SELECT id FROM sessions") == []


async def test_each_401_code(auth_server: AppServer) -> None:
    client = auth_server.client
    session_id = await new_session(client, "vasya")
    cases = {
        "no header": {},
        "empty": {"Authorization": ""},
        "type only": {"Authorization": "session_id"},
        "id only": {"Authorization": session_id},
        "other type": {"Authorization": f"Bearer {session_id}"},
        "three words": {"Authorization": f"session_id {session_id} x"},
        "not a uuid": {"Authorization": "session_id not-a-uuid"},
        "short hex": {"Authorization": f"session_id {session_id[:-1]}"},
    }
    for name, headers in cases.items():
        for path in (PROBE, "/v1/auth/logout"):
            resp = await client.request("POST" if path.endswith("logout") else "GET", path, headers=headers)
            assert resp.status == 401, name
            assert resp.json == {"message": "auth-failed"}, name
    unknown = "0123456789abcdef0123456789abcdef"
    assert_error(await probe(client, bearer(unknown)), 401, "invalid-session-id")
    # the token word is matched case-insensitively (an HTTP auth scheme) and a dashed UUID is a UUID
    assert (await probe(client, {"Authorization": f"SESSION_ID {session_id}"})).status == 404
    dashed = f"{session_id[:8]}-{session_id[8:12]}-{session_id[12:16]}-{session_id[16:20]}-{session_id[20:]}"
    assert (await probe(client, bearer(dashed))).status == 404
    assert await authenticated(client, session_id)


async def test_public_paths_need_no_session_and_the_rest_does(auth_server: AppServer) -> None:
    client = auth_server.client
    for path in ("/ping", "/ping_db", "/openapi.json", "/docs"):
        assert (await client.get(path)).status == 200, path
    for method, path in (("GET", "/"), ("GET", PROBE), ("POST", "/v1/chats"), ("DELETE", "/v1/auth/logout")):
        assert_error(await client.request(method, path), 401, "auth-failed")
    session_id = await new_session(client, "vasya")
    assert_error(await client.get("/v1/chats", headers=bearer(session_id)), 404, "not-found")
    # a public path with a wrong method is 405 without a session; a private one only with it
    assert_error(await client.get("/v1/auth/login"), 405, "method-not-allowed")
    assert_error(await client.get("/v1/auth/logout", headers=bearer(session_id)), 405, "method-not-allowed")


async def test_two_logins_are_independent_sessions(auth_server: AppServer) -> None:
    client = auth_server.client
    first = await new_session(client, "vasya")
    second = await login(client, "vasya")
    assert first != second
    assert await authenticated(client, first) and await authenticated(client, second)
    assert (await client.post("/v1/auth/logout", headers=bearer(first))).status == 200
    assert_error(await probe(client, bearer(first)), 401, "invalid-session-id")
    assert await authenticated(client, second)
    rows = await auth_server.runtime.db.fetchall(
        "SELECT id, account_id, logged_out_at IS NOT NULL AS ended FROM sessions ORDER BY created_at")
    assert [(row["id"].hex, row["ended"]) for row in rows] == [(first, True), (second, False)]
    assert rows[0]["account_id"] == rows[1]["account_id"]


async def test_password_hashes(auth_server: AppServer) -> None:
    client = auth_server.client
    password = "the same password"
    await register(client, "vasya", password)
    await register(client, "petya", password)
    rows = await auth_server.runtime.db.fetchall("SELECT user_name, password_hash FROM accounts ORDER BY user_name")
    hashes = [row["password_hash"] for row in rows]
    assert hashes[0] != hashes[1]
    for stored in hashes:
        assert password not in stored
        scheme, n, r, p, salt, key = stored.split("$")
        assert (scheme, int(n), int(r), int(p)) == ("scrypt", 2 ** 14, 8, 5)
        assert len(salt) >= 24 and len(key) >= 44
    assert hashes[0].split("$")[4] != hashes[1].split("$")[4]  # different salts


async def test_raised_scrypt_cost_keeps_old_hashes_valid(env: dict[str, str]) -> None:
    weak = {"AUTH_SCRYPT_N": "1024", "AUTH_SCRYPT_R": "4", "AUTH_SCRYPT_P": "1"}
    async with serve_app({**env, **weak}, plugins=AUTH_ONLY) as srv:
        await register(srv.client, "old", "password")
    async with serve_app(env, plugins=AUTH_ONLY) as srv:
        await register(srv.client, "new", "password")
        rows = await srv.runtime.db.fetchall("SELECT user_name, password_hash FROM accounts ORDER BY user_name")
        assert [row["password_hash"].split("$")[1:4] for row in rows] == [["16384", "8", "5"], ["1024", "4", "1"]]
        await login(srv.client, "old", "password")
        await login(srv.client, "new", "password")


async def test_expiry_with_a_short_lifetime(env: dict[str, str]) -> None:
    async with serve_app({**env, "AUTH_TOKEN_LIFETIME": "1"}, plugins=AUTH_ONLY) as srv:
        client = srv.client
        session_id = await new_session(client, "vasya")
        row = await srv.runtime.db.fetchone(
            "SELECT extract(epoch FROM expires_at - created_at) AS lifetime FROM sessions")
        assert float(row["lifetime"]) == 1.0
        assert await authenticated(client, session_id)

        async def expired() -> bool:  # polling uses the session all the time: use does not extend it
            resp = await probe(client, bearer(session_id))
            return resp.status == 401 and resp.json == {"message": "session-id-expired"}
        await poll(expired, timeout=5)
        assert_error(await client.post("/v1/auth/logout", headers=bearer(session_id)), 401, "session-id-expired")
        # a fresh login works again
        assert await authenticated(client, await login(client, "vasya"))


async def test_lifetime_changes_never_extend_a_session(env: dict[str, str]) -> None:
    async with serve_app({**env, "AUTH_TOKEN_LIFETIME": "1"}, plugins=AUTH_ONLY) as srv:
        short = await new_session(srv.client, "vasya")
    async with serve_app(env, plugins=AUTH_ONLY) as srv:  # back to the default hour
        long = await login(srv.client, "vasya")

        async def short_expired() -> bool:
            return (await probe(srv.client, bearer(short))).status == 401
        await poll(short_expired, timeout=5)
        assert_error(await probe(srv.client, bearer(short)), 401, "session-id-expired")
        assert await authenticated(srv.client, long)
    async with serve_app({**env, "AUTH_TOKEN_LIFETIME": "1"}, plugins=AUTH_ONLY) as srv:
        # a lowered lifetime also ends sessions issued under the longer one, a second after their login
        async def long_expired() -> bool:
            return (await probe(srv.client, bearer(long))).status == 401
        await poll(long_expired, timeout=5)
        assert_error(await probe(srv.client, bearer(long)), 401, "session-id-expired")


async def test_custom_header_and_token_type(env: dict[str, str]) -> None:
    settings = {**env, "AUTH_HEADER": "X-Session", "AUTH_TOKEN_TYPE": "token"}
    async with serve_app(settings, plugins=AUTH_ONLY) as srv:
        client = srv.client
        session_id = await new_session(client, "vasya")
        assert (await probe(client, {"X-Session": f"token {session_id}"})).status == 404
        assert_error(await probe(client, bearer(session_id)), 401, "auth-failed")
        assert_error(await probe(client, {"X-Session": f"session_id {session_id}"}), 401, "auth-failed")
        spec = (await client.get("/openapi.json")).json
        assert spec["components"]["securitySchemes"]["session"]["name"] == "X-Session"


async def test_openapi_documents_the_auth_endpoints(auth_server: AppServer) -> None:
    spec = (await auth_server.client.get("/openapi.json")).json
    paths = spec["paths"]
    assert set(paths["/v1/auth/register"]["post"]["responses"]) == {"201", "400", "413", "503"}
    assert set(paths["/v1/auth/login"]["post"]["responses"]) == {"200", "400", "413", "429", "503"}
    assert "401" in paths["/v1/auth/logout"]["post"]["responses"]
    assert spec["components"]["securitySchemes"] == {"session": {
        "type": "apiKey", "in": "header", "name": "Authorization",
        "description": "`session_id <session_id>` with a session_id from POST /v1/auth/login"}}
    assert {"AuthCredentials", "AuthSession"} <= set(spec["components"]["schemas"])
    assert "password" not in json.dumps(spec["components"]["schemas"]["AuthSession"])
    # the core lists the session scheme on every non-public operation, and only there
    assert paths["/v1/auth/logout"]["post"]["security"] == [{"session": []}]
    for path in ("/v1/auth/register", "/v1/auth/login", "/ping", "/ping_db", "/openapi.json", "/docs"):
        for operation in paths[path].values():
            assert "security" not in operation, path


async def test_openapi_marks_chat_operations(env: dict[str, str]) -> None:
    async with serve_app(env, plugins=("messenger_auth", "messenger_chats")) as srv:
        paths = (await srv.client.get("/openapi.json")).json["paths"]
        chat_ops = [op for path, item in paths.items() if path.startswith("/v1/chats") for op in item.values()]
        assert chat_ops
        for operation in chat_ops:
            assert operation["security"] == [{"session": []}]
            assert "401" in operation["responses"]


async def test_auth_disabled_opens_everything(env: dict[str, str]) -> None:
    async with serve_app({**env, "AUTH_DISABLED": "1"}, plugins=AUTH_ONLY) as srv:
        client = srv.client
        assert_error(await probe(client), 404, "not-found")
        assert_error(await probe(client, {"Authorization": "garbage"}), 404, "not-found")
        spec = (await client.get("/openapi.json")).json
        assert "securitySchemes" not in spec.get("components", {})
        # accounts still work; logout is open too, and a session that is sent is ended
        session_id = await new_session(client, "vasya")
        resp = await client.post("/v1/auth/logout")
        assert resp.status == 200 and resp.body == b""
        assert (await client.post("/v1/auth/logout", headers=bearer(session_id))).status == 200
        assert_error(await client.post("/v1/auth/logout", headers=bearer(session_id)), 401, "invalid-session-id")


async def test_with_every_plugin_login_attempts_are_limited_before_the_password_check(env: dict[str, str]) -> None:
    async with serve_app({**env, "LOGIN_ATTEMPTS_PER_MINUTE": "3"}) as srv:
        client = srv.client
        await register(client, "vasya", "right-pw")
        session_id = await login(client, "vasya", "right-pw")
        assert await authenticated(client, session_id)
        statuses = []
        for _ in range(4):
            resp = await client.post("/v1/auth/login", {"user_name": "vasya", "password": "wrong"})
            statuses.append(resp.status)
        assert statuses[0] == 400 and statuses[-1] == 429, statuses
        # refused before the password is checked: the right one is refused too, nothing was written
        resp = await client.post("/v1/auth/login", {"user_name": "vasya", "password": "right-pw"})
        assert_error(resp, 429, "request-limit-exceeded")
        assert "Retry-After" in resp.headers
        count = await srv.runtime.db.fetchone("SELECT count(*) AS n FROM sessions")
        assert count == {"n": 1}
        assert await authenticated(client, session_id)
