"""Accounts, chats and message corpora: set up through the API, the bulk of the messages through SQL.

Chats and members are created through HTTP (so the cache holds the same facts a real client
leaves there); the messages of the big chats are written by one ``INSERT ... SELECT
generate_series`` each, with ``messages.seq`` = 1..N and ``chats.last_seq`` = N, exactly the
invariant the chats plugin keeps.  Every message reads ``message <seq> <word> <word>``; every
``RARE_EVERY``-th one also carries one of :data:`RARE_WORDS` (for the search workload).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

import psycopg

from .stack import Stack, http

RARE_WORDS = ("axolotl", "quokka", "narwhal", "pangolin", "capybara")
COMMON = "ARRAY['hello','world','lunch','meeting','tomorrow','report','coffee','deploy']"
OTHER = "ARRAY['alpha','beta','gamma','delta','later','today']"
RARE = "ARRAY[" + ",".join(f"'{word}'" for word in RARE_WORDS) + "]"

FILL = f"""
INSERT INTO messages (id, chat_id, seq, member_id, text, created_at)
SELECT gen_random_uuid(), %(chat)s, g, %(member)s,
       'message ' || g || ' ' || ({COMMON})[1 + g %% 8] || ' ' || ({OTHER})[1 + (g / 8) %% 6]
       || CASE WHEN g %% %(every)s::bigint = 7 THEN ' ' || ({RARE})[1 + (g / %(every)s::bigint) %% 5] ELSE '' END,
       timestamptz '2026-01-01 00:00:00+00' + %(epoch)s::int * interval '1 hour' + g * interval '1 millisecond'
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g
"""
SET_LAST = "UPDATE chats SET last_seq = %(last)s WHERE id = %(chat)s"
EXPECTED = """
SELECT m.id FROM messages AS m
WHERE m.chat_id IN (SELECT chat_id FROM chat_members WHERE account_id = %(account)s)
  AND m.text LIKE %(pattern)s
ORDER BY m.created_at DESC, m.id DESC
LIMIT %(limit)s
"""


@dataclass
class Account:
    """A registered account with a live session."""

    name: str
    account_id: str
    session: str

    @property
    def headers(self) -> dict[str, str]:
        """The session header."""
        return {"Authorization": f"session_id {self.session}"}


@dataclass
class Chat:
    """A chat, the poster's member id in it, its size and (for big chats) an iterator deep inside."""

    chat_id: str
    member_id: str
    size: int = 0
    deep_seq: int = 0
    deep_iterator: str = ""
    build_seconds: float = 0.0
    extra_members: dict[str, str] = field(default_factory=dict)


def register(stack: Stack, name: str) -> Account:
    """Register and log in; the account id is read back from the sessions' owner in PostgreSQL."""
    body = {"user_name": name, "password": "bench-password"}
    status, _ = http("POST", stack.base_url + "/v1/auth/register", body)
    if status != 201:
        raise RuntimeError(f"register {name}: {status}")
    status, data = http("POST", stack.base_url + "/v1/auth/login", body)
    if status != 200:
        raise RuntimeError(f"login {name}: {status}")
    with psycopg.connect(stack.conninfo()) as conn:
        row = conn.execute("SELECT account_id FROM sessions WHERE id = %s",
                           (uuid.UUID(data["session_id"]),)).fetchone()
    return Account(name, row[0].hex, data["session_id"])


def create_chat(stack: Stack, owner: Account, name: str) -> Chat:
    """A chat created and joined by ``owner``."""
    status, data = http("POST", stack.base_url + "/v1/chats", {"chat_name": name}, owner.headers)
    if status != 201:
        raise RuntimeError(f"create chat: {status} {data}")
    return Chat(data["chat_id"], join(stack, owner, data["chat_id"]))


def join(stack: Stack, account: Account, chat_id: str) -> str:
    """A new member of the chat for ``account``; its id."""
    status, data = http("POST", f"{stack.base_url}/v1/chats/{chat_id}/users", {"user_name": account.name},
                        account.headers)
    if status != 201:
        raise RuntimeError(f"join chat: {status} {data}")
    return data["user_id"]


def rare_every(size: int) -> int:
    """Plant a rare word every so many messages: 20 hits per word up to 20k messages, 50 beyond."""
    return max(10, size // 100) if size <= 20_000 else max(10, size // 250)


def fill(stack: Stack, chat: Chat, size: int, epoch: int, reader: Account) -> None:
    """Give ``chat`` messages 1..size by SQL, and obtain an iterator at 90 % of it through the API.

    The iterator is the API's own: message ``deep_seq`` is written first, alone, and the first
    page (``limit=1``) returns the iterator after it; then the rest is written around it.  The
    server must not cache pages while this runs (``CHATS_CACHE_PAGES=0``).
    """
    started = time.monotonic()
    deep = max(1, size * 9 // 10)
    params = {"chat": uuid.UUID(chat.chat_id), "member": uuid.UUID(chat.member_id), "every": rare_every(size),
              "epoch": epoch}
    with psycopg.connect(stack.conninfo(), autocommit=True) as conn:
        conn.execute(FILL, {**params, "first": deep, "last": deep})
        conn.execute(SET_LAST, {"chat": params["chat"], "last": deep})
        status, page = http("GET", f"{stack.base_url}/v1/chats/{chat.chat_id}/messages?limit=1", None,
                            reader.headers)
        if status != 200 or not page["messages"] or not page["messages"][0]["text"].startswith(f"message {deep} "):
            raise RuntimeError(f"could not obtain the deep iterator: {status} {page}")
        with conn.transaction():
            conn.execute(FILL, {**params, "first": 1, "last": deep - 1})
            conn.execute(FILL, {**params, "first": deep + 1, "last": size})
            conn.execute(SET_LAST, {"chat": params["chat"], "last": size})
    chat.size, chat.deep_seq, chat.deep_iterator = size, deep, page["next"]["iterator"]
    chat.build_seconds = time.monotonic() - started


def analyze(stack: Stack) -> float:
    """VACUUM ANALYZE the tables (what autovacuum would do after a bulk load), then CHECKPOINT; seconds taken.

    The checkpoint writes out what the bulk load left in shared buffers now, instead of in the middle
    of the measured rounds, where it would land on whichever workload runs then (and make the next
    change of every page write a full page image to the WAL): the measured state is the steady one.
    """
    started = time.monotonic()
    with psycopg.connect(stack.conninfo(), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE messages")
        conn.execute("VACUUM ANALYZE chats")
        conn.execute("VACUUM ANALYZE chat_members")
        conn.execute("CHECKPOINT")
    return time.monotonic() - started


def expected_results(stack: Stack, account: Account, word: str, limit: int = 100) -> list[str]:
    """The ids a search for ``word`` by ``account`` must return, newest first (by plain LIKE, not FTS)."""
    with psycopg.connect(stack.conninfo()) as conn:
        rows = conn.execute(EXPECTED, {"account": uuid.UUID(account.account_id), "pattern": f"% {word}%",
                                       "limit": limit}).fetchall()
    return [row[0].hex for row in rows]


def durable(stack: Stack, chats: list[Chat], ids: list[str], in_flight: int) -> tuple[bool, str]:
    """Every accepted (201) message is stored, each chat's positions have no hole, and nothing else is.

    "Nothing else" allows ``in_flight`` more: wrk stops at its deadline without reading the answers
    to the requests still on the wire (one per connection and run), which the server still stores.
    """
    chat_ids = [uuid.UUID(chat.chat_id) for chat in chats]
    with psycopg.connect(stack.conninfo()) as conn:
        found = conn.execute("SELECT count(*) FROM messages WHERE id = ANY(%s)",
                             ([uuid.UUID(item) for item in ids],)).fetchone()[0]
        total, holes = conn.execute(
            "SELECT coalesce(sum(n), 0), count(*) FILTER (WHERE n <> last_seq OR top <> last_seq) FROM ("
            " SELECT c.id, c.last_seq, count(m.id) AS n, coalesce(max(m.seq), 0) AS top"
            " FROM chats c LEFT JOIN messages m ON m.chat_id = c.id WHERE c.id = ANY(%s)"
            " GROUP BY c.id, c.last_seq) AS per_chat", (chat_ids,)).fetchone()
    unique = len(set(ids))
    unanswered = total - len(ids)
    ok = found == unique == len(ids) and holes == 0 and 0 <= unanswered <= in_flight
    return ok, (f"{len(ids)} accepted, {found} of them stored; {unanswered} more stored whose answer wrk "
                f"did not wait for (at most {in_flight} in flight); {holes} chat(s) with holes")
