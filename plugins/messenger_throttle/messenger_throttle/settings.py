"""Settings of ``messenger_throttle``: ``config.throttle.<attr>``, read from the environment once."""

from __future__ import annotations

from messenger_core import Section, Setting, boolean, choice, integer


class ThrottleSettings(Section):
    """Per-client request limits (in the app or left to nginx), failed-login and registration limits."""

    name = "throttle"
    rps = Setting("THROTTLE_RPS", integer(1, 1_000_000), 100,
                  "Requests per client (session account, else client IP) in any sliding 1-second window")
    backend = Setting("THROTTLE_BACKEND", choice("", "memory", "redis"), "",
                      "Where the counters live: memory (per process) or redis (shared); empty follows CACHE_TYPE")
    nginx_throttling = Setting("NGINX_THROTTLING", boolean, False,
                               "Leave the per-client request limit to nginx (deploy/nginx): no in-app limiter")
    login_attempts_per_minute = Setting("LOGIN_ATTEMPTS_PER_MINUTE", integer(1, 1_000_000), 10,
                                        "Failed logins for one user name from one client in one calendar minute "
                                        "(then 429 for that name from that client until the minute ends)")
    login_failures_per_ip = Setting("LOGIN_FAILURES_PER_IP", integer(1, 1_000_000), 100,
                                    "Failed logins from one client over all user names in one calendar minute "
                                    "(then every login from that client is 429 until the minute ends)")
    register_per_minute = Setting("REGISTER_PER_MINUTE", integer(1, 1_000_000), 20,
                                  "Registrations per client in one calendar minute (each costs a password hash)")
