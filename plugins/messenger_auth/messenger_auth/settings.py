"""Settings of ``messenger_auth``: ``config.auth.<attr>``, read from the environment once."""

from __future__ import annotations

from messenger_core import Section, Setting, boolean, integer


def header_word(raw: str) -> str:
    """A non-empty single word (an HTTP header name or an auth scheme word)."""
    if not raw or any(ch.isspace() for ch in raw) or ":" in raw:
        raise ValueError("expected one word without spaces or ':'")
    return raw


def power_of_two(raw: str) -> int:
    """A power of two between 2 and 2**24 (scrypt's N)."""
    value = integer(2, 2 ** 24)(raw)
    if value & (value - 1):
        raise ValueError("must be a power of 2")
    return value


class AuthSettings(Section):
    """Accounts and sessions: the header, the token word, the lifetime, the scrypt cost, the table's cleanup."""

    name = "auth"
    disabled = Setting("AUTH_DISABLED", boolean, False,
                       "Switch authentication off: every endpoint is open, no header needed")
    header_name = Setting("AUTH_HEADER", header_word, "Authorization",
                          "Request header that carries the session")
    token_type = Setting("AUTH_TOKEN_TYPE", header_word, "session_id",
                         "Word before the session id in that header: '<type> <hex32>'")
    token_lifetime = Setting("AUTH_TOKEN_LIFETIME", integer(1), 3600,
                             "Seconds a session lives after login (not extended by use)")
    scrypt_n = Setting("AUTH_SCRYPT_N", power_of_two, 2 ** 14,
                       "scrypt CPU/memory cost (N, a power of 2) for new password hashes; the default N, r, p "
                       "is an OWASP minimum: go lower only in tests")
    scrypt_r = Setting("AUTH_SCRYPT_R", integer(1, 64), 8, "scrypt block size for new password hashes")
    scrypt_p = Setting("AUTH_SCRYPT_P", integer(1, 16), 5,
                       "scrypt parallelism for new password hashes (a weaker stored hash is redone at login)")
    password_min_length = Setting("AUTH_PASSWORD_MIN_LENGTH", integer(1, 1024), 8,
                                  "Fewest characters of a new password (login still accepts older, shorter ones)")
    hash_threads = Setting("AUTH_HASH_THREADS", integer(1, 64), 2,
                           "Threads per process that hash passwords (bounds CPU and memory under load)")
    hash_queue = Setting("AUTH_HASH_QUEUE", integer(1, 10_000), 32,
                         "Password hashes waiting or running at once per process; past it register and "
                         "login answer 503 service-unavailable at once")
    cleanup_interval = Setting("AUTH_SESSIONS_CLEANUP_INTERVAL", integer(0, 86_400), 300,
                               "Seconds between two cleanups of the sessions table by each API process "
                               "(logged-out rows, and rows expired AUTH_SESSIONS_KEEP_EXPIRED ago); 0: never")
    cleanup_batch = Setting("AUTH_SESSIONS_CLEANUP_BATCH", integer(1, 100_000), 1000,
                            "Most rows one DELETE of the cleanup removes (one short transaction per batch)")
    keep_expired = Setting("AUTH_SESSIONS_KEEP_EXPIRED", integer(0), 86_400,
                           "Seconds an expired session's row is kept, so that it still answers "
                           "session-id-expired rather than invalid-session-id")
