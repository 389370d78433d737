"""Hardening of accounts and sessions: the hashing queue, password rules and cost, forged cache entries,
logout during a Redis outage, and the cleanup of the sessions table."""

from __future__ import annotations

import asyncio
from collections import Counter

from support import serve_app

AUTH = ("messenger_auth", "messenger_throttle")
PASSWORD = "correct horse"


async def test_a_full_hashing_queue_answers_503_at_once(env: dict[str, str]) -> None:
    settings = {**env, "AUTH_HASH_THREADS": "1", "AUTH_HASH_QUEUE": "2", "AUTH_SCRYPT_N": str(2 ** 15),
                "REGISTER_PER_MINUTE": "1000"}
    async with serve_app(settings, plugins=AUTH) as srv:
        names = [f"flood{i}" for i in range(12)]
        responses = await asyncio.gather(*(srv.client.post("/v1/auth/register",
                                                           {"user_name": name, "password": PASSWORD})
                                           for name in names))
        counts = Counter(resp.status for resp in responses)
        assert set(counts) == {201, 503} and counts[201] >= 2, counts
        for name, resp in zip(names, responses):
            if resp.status == 503:
                assert resp.json == {"message": "service-unavailable"}
                # nothing half done: the name is still free
                again = await srv.client.post("/v1/auth/register", {"user_name": name, "password": PASSWORD})
                assert again.status == 201, again
        # the queue drained: every account logs in
        for name in names:
            resp = await srv.client.post("/v1/auth/login", {"user_name": name, "password": PASSWORD})
            assert resp.status == 200, (name, resp)


async def test_new_passwords_need_eight_characters_and_old_short_ones_still_log_in(env: dict[str, str]) -> None:
    fast = {**env, "AUTH_SCRYPT_N": "1024", "AUTH_SCRYPT_P": "1"}
    async with serve_app({**fast, "AUTH_PASSWORD_MIN_LENGTH": "1"}, plugins=AUTH) as srv:  # an older rule
        assert (await srv.client.post("/v1/auth/register", {"user_name": "old", "password": "x"})).status == 201
    async with serve_app(fast, plugins=AUTH) as srv:
        resp = await srv.client.post("/v1/auth/register", {"user_name": "new", "password": "seven77"})
        assert (resp.status, resp.json) == (400, {"message": "bad-parameters"})
        assert await srv.runtime.db.fetchone("SELECT 1 FROM accounts WHERE user_name = 'new'") is None
        resp = await srv.client.post("/v1/auth/register", {"user_name": "new", "password": "eight888"})
        assert resp.status == 201
        for name, password in (("old", "x"), ("new", "eight888")):
            resp = await srv.client.post("/v1/auth/login", {"user_name": name, "password": password})
            assert resp.status == 200, (name, resp)


def stored_cost(stored: str) -> tuple[int, int, int]:
    """(n, r, p) of a stored hash."""
    _, n, r, p, _, _ = stored.split("$")
    return int(n), int(r), int(p)


async def test_default_cost_is_owasp_minimum_and_weaker_hashes_are_upgraded_at_login(env: dict[str, str]) -> None:
    async with serve_app({**env, "AUTH_SCRYPT_N": "1024", "AUTH_SCRYPT_R": "4", "AUTH_SCRYPT_P": "1"},
                         plugins=AUTH) as srv:
        assert (await srv.client.post("/v1/auth/register", {"user_name": "weak", "password": PASSWORD})).status == 201
    async with serve_app(env, plugins=AUTH) as srv:  # the defaults
        db = srv.runtime.db
        row = await db.fetchone("SELECT password_hash FROM accounts WHERE user_name = 'weak'")
        assert stored_cost(row["password_hash"]) == (1024, 4, 1)
        # a wrong password changes nothing
        resp = await srv.client.post("/v1/auth/login", {"user_name": "weak", "password": "wrong password"})
        assert (resp.status, resp.json) == (400, {"message": "bad-password"})
        assert (await db.fetchone("SELECT password_hash FROM accounts WHERE user_name = 'weak'")) == row
        resp = await srv.client.post("/v1/auth/login", {"user_name": "weak", "password": PASSWORD})
        assert resp.status == 200
        upgraded = (await db.fetchone("SELECT password_hash FROM accounts WHERE user_name = 'weak'"))["password_hash"]
        n, r, p = stored_cost(upgraded)
        # OWASP: N=2**17, r=8, p=1, or an equivalent trade of memory for parallelism (same n*r*p)
        assert n * r * p >= 2 ** 17 * 8 and r >= 8, (n, r, p)
        assert (n, r, p) == (2 ** 14, 8, 5)
        for password, status in ((PASSWORD, 200), ("wrong password", 400)):
            resp = await srv.client.post("/v1/auth/login", {"user_name": "weak", "password": password})
            assert resp.status == status
        # a hash already at the cost is left alone
        assert (await db.fetchone("SELECT password_hash FROM accounts WHERE user_name = 'weak'"))["password_hash"] \
            == upgraded
