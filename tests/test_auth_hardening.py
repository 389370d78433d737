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
