"""Settings: every knob of the service, read from the environment once, typed, with a default and help.

The core declares :class:`CoreSettings`; each plugin declares its own :class:`Section` subclass and
returns it from the ``messenger_settings`` hook, so ``config.auth.token_lifetime`` is typed and
documented in the same place as ``config.port``.  ``messenger-api settings`` prints the full table.
A bad value stops start-up with :class:`~messenger_core.errors.ConfigError` naming the variable.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

from .errors import ConfigError

Parser = Callable[[str], Any]


class Setting:
    """One environment variable: name, parser, default (already typed) and a one-line help."""

    def __init__(self, env: str, parse: Parser, default: Any, help_text: str) -> None:
        self.env = env
        self.parse = parse
        self.default = default
        self.help = help_text
        self.attr = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.attr = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        raise AttributeError(f"setting {self.attr} was not loaded")  # pragma: no cover


class Section:
    """A group of settings; subclasses declare :class:`Setting` class attributes and a ``name``."""

    name: ClassVar[str] = ""

    @classmethod
    def settings(cls) -> list[Setting]:
        """The declared settings, in declaration order."""
        found: dict[str, Setting] = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                if isinstance(value, Setting):
                    found[attr] = value
        return list(found.values())

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> "Section":
        """Parse every setting of this section; collect all bad values into one ConfigError."""
        obj = cls.__new__(cls)
        errors = []
        for setting in cls.settings():
            raw = environ.get(setting.env)
            if raw is None:
                value = setting.default
            else:
                try:
                    value = setting.parse(raw.strip())
                except (ValueError, TypeError) as exc:
                    errors.append(f"{setting.env}={raw!r}: {exc}")
                    continue
            obj.__dict__[setting.attr] = value
        if errors:
            raise ConfigError("bad setting " + "; ".join(errors))
        return obj


# ---- parsers ---------------------------------------------------------------------------------

def string(raw: str) -> str:
    """Any text."""
    return raw


def boolean(raw: str) -> bool:
    """1/true/yes/on or 0/false/no/off/empty, case-insensitive."""
    low = raw.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true/false, 1/0, yes/no or on/off")


def integer(low: int | None = None, high: int | None = None) -> Parser:
    """A whole number within [low, high]."""
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError("expected a whole number") from None
        if low is not None and value < low:
            raise ValueError(f"must be at least {low}")
        if high is not None and value > high:
            raise ValueError(f"must be at most {high}")
        return value
    return parse


def number(low: float | None = None, high: float | None = None) -> Parser:
    """A decimal number, at least ``low`` and at most ``high``."""
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError("expected a number") from None
        if low is not None and value < low:
            raise ValueError(f"must be at least {low}")
        if high is not None and value > high:
            raise ValueError(f"must be at most {high}")
        return value
    return parse


def choice(*values: str) -> Parser:
    """One of a fixed set of words, case-insensitive."""
    def parse(raw: str) -> str:
        low = raw.lower()
        if low not in values:
            raise ValueError("expected one of " + ", ".join(values))
        return low
    return parse


def csv_list(raw: str) -> tuple[str, ...]:
    """A comma-separated list; blanks dropped."""
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def networks(raw: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """A comma-separated list of IP addresses or CIDR networks."""
    return tuple(ipaddress.ip_network(part, strict=False) for part in csv_list(raw))


def secret(raw: str) -> str:
    """Empty, or a key of at least 32 characters (``openssl rand -hex 32`` makes one)."""
    if raw and len(raw) < 32:
        raise ValueError("needs at least 32 characters (openssl rand -hex 32), or empty")
    return raw


def log_level(raw: str) -> str:
    """A logging level name."""
    return choice("debug", "info", "warning", "error", "critical")(raw).upper()


# ---- the core's own section --------------------------------------------------------------------

class CoreSettings(Section):
    """Settings of the core: serving, PostgreSQL, cache, task queue, plugins, logging."""

    name = "core"
    host = Setting("HOST", string, "0.0.0.0", "Address the HTTP server listens on")
    port = Setting("PORT", integer(1, 65535), 8080, "HTTP port")
    workers = Setting("WORKERS", integer(0, 256), 0, "Worker processes; 0 means one per CPU")
    event_loop = Setting("EVENT_LOOP", choice("uvloop", "asyncio"), "uvloop",
                         "Event loop of messenger-api and messenger-consumer: uvloop (libuv: a held long-poll's "
                         "answer costs a fifth less CPU) or asyncio (the standard library's)")
    shutdown_timeout = Setting("SHUTDOWN_TIMEOUT", number(0), 10.0,
                               "Seconds to finish requests in flight after SIGTERM")
    postgres_hosts = Setting("POSTGRES_HOSTS", csv_list, ("127.0.0.1",),
                             "PostgreSQL host[:port] list; several hosts target the writable primary")
    postgres_port = Setting("POSTGRES_PORT", integer(1, 65535), 5432,
                            "Port for hosts given without one")
    postgres_user = Setting("POSTGRES_USER", string, "postgres", "PostgreSQL role")
    postgres_pwd = Setting("POSTGRES_PWD", string, "", "PostgreSQL password (empty: none / trust)")
    postgres_db = Setting("POSTGRES_DB", string, "messenger",
                          "Database name; created at start when missing and the role may")
    pool_size = Setting("POOL_SIZE", integer(1, 1000), 10,
                        "Max pooled PostgreSQL connections per process (each db Lane, such as the one "
                        "posting messages, holds one more)")
    db_timeout = Setting("DB_TIMEOUT", number(0.1), 2.0,
                         "Seconds to wait for a connection or a query before answering 503")
    redis_url = Setting("REDIS_URL", string, "redis://127.0.0.1:6379/0",
                        "Redis for the shared cache, search results and throttle counters")
    redis_pool_size = Setting("REDIS_POOL_SIZE", integer(1, 10000), 50,
                              "Max Redis connections per process, shared by cache, search, throttle (then calls wait)")
    cache_type = Setting("CACHE_TYPE", choice("memory", "redis"), "memory",
                         "Cache backend: memory (per process) or redis (shared)")
    cache_prefix = Setting("CACHE_PREFIX", string, "messenger:",
                           "Prefix of every key this service writes to Redis")
    cache_secret = Setting("CACHE_SECRET", secret, "",
                           "Key (32+ characters, the same in every process of the service) of the HMAC that binds "
                           "each cached session and membership fact to its row, so an entry written into Redis "
                           "by anyone else is refused; empty: a random key per start, with a warning when "
                           "CACHE_TYPE=redis (other processes then cannot use this one's entries)")
    cache_max_items = Setting("CACHE_MAX_ITEMS", integer(1), 50000,
                              "Size bound of the memory cache (entries, least recently used go)")
    cache_ttl = Setting("CACHE_TTL", integer(1), 300, "Default lifetime of a cache entry, seconds")
    near_cache_max_items = Setting("NEAR_CACHE_MAX_ITEMS", integer(0), 10000,
                                   "With CACHE_TYPE=redis: most hot entries (sessions) each process also holds, "
                                   "coherent through Redis pub/sub (takes one pooled connection); 0: off")
    near_cache_ttl = Setting("NEAR_CACHE_TTL", integer(1), 60,
                             "Most seconds an entry stays in that per-process copy")
    rmq_url = Setting("RMQ_URL", string, "",
                      "RabbitMQ AMQP URL; empty runs tasks on an embedded in-process worker")
    embedded_workers = Setting("EMBEDDED_WORKERS", integer(1, 64), 2,
                               "Concurrent tasks of the embedded worker (when RMQ_URL is empty)")
    consumer_prefetch = Setting("CONSUMER_PREFETCH", integer(1, 1000), 4,
                                "Tasks one messenger-consumer holds (unacknowledged) and runs at once")
    apps = Setting("MESSENGER_APPS", csv_list, (),
                   "Enabled plugins (comma list of entry-point names); empty means all installed")
    disable_autoload = Setting("MESSENGER_DISABLE_PLUGIN_AUTOLOAD", boolean, False,
                               "Do not load installed plugins from entry points (tests)")
    trusted_proxies = Setting("TRUSTED_PROXIES", networks, (),
                              "Peers (IPs or CIDRs) whose X-Real-IP / X-Forwarded-For are believed")
    log_level = Setting("LOG_LEVEL", log_level, "INFO", "Logging level")
    log_format = Setting("LOG_FORMAT", choice("text", "json"), "text",
                         "Log lines as text, or one JSON object a line (time, level, logger, message, request_id)")
    access_log = Setting("ACCESS_LOG", boolean, True, "One log line per request")
    metrics_allow = Setting("METRICS_ALLOW", networks, networks("127.0.0.0/8,::1"),
                            "Clients (IPs or CIDRs) that may read /metrics; others get 404")
    metrics_dir = Setting("METRICS_DIR", string, "",
                          "Directory where the workers of one messenger-api keep their metrics (emptied at start); "
                          "empty: a new temporary one")
    metrics_port = Setting("METRICS_PORT", integer(0, 65535), 0,
                           "messenger-consumer: serve /metrics on this port (0: off)")
    health_timeout = Setting("HEALTH_TIMEOUT", number(0.05, 2.0), 0.5,
                             "Seconds /health waits for each dependency before calling it down "
                             "(at most 2: a PostgreSQL probe gives up after 2 s)")


class Config:
    """Every setting of the running service: the core's plus one section per enabled plugin.

    ``config.port`` reads the core section; ``config.auth.header_name`` reads the plugin section
    named ``auth``.
    """

    def __init__(self, core: CoreSettings, sections: Iterable[Section] = ()) -> None:
        self.core = core
        self.sections: dict[str, Section] = {}
        for section in sections:
            self.add_section(section)

    def add_section(self, section: Section) -> None:
        """Attach a plugin's parsed section under its name."""
        if section.name in self.sections or section.name == "core":
            raise ConfigError(f"settings section {section.name!r} declared twice")
        self.sections[section.name] = section

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("core", "sections"):
            raise AttributeError(name)
        if name in self.sections:
            return self.sections[name]
        return getattr(self.core, name)

    @property
    def postgres_conninfo(self) -> str:
        """libpq connection string; several hosts target the writable primary."""
        hosts, ports = [], []
        for item in self.core.postgres_hosts:
            host, _, port = item.rpartition(":") if item.count(":") == 1 else (item, "", "")
            hosts.append(host)
            ports.append(port or str(self.core.postgres_port))
        parts = {
            "host": ",".join(hosts),
            "port": ",".join(ports),
            "user": self.core.postgres_user,
            "dbname": self.core.postgres_db,
            "connect_timeout": str(max(1, round(self.core.db_timeout))),
            "application_name": "messenger",
        }
        if self.core.postgres_pwd:
            parts["password"] = self.core.postgres_pwd
        if len(hosts) > 1:
            parts["target_session_attrs"] = "read-write"
        return " ".join(f"{key}={_quote(value)}" for key, value in parts.items())


def _quote(value: str) -> str:
    """Quote a libpq conninfo value."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def load_core(environ: Mapping[str, str] | None = None) -> CoreSettings:
    """Read the core section from ``environ`` (default: the process environment)."""
    return CoreSettings.from_env(os.environ if environ is None else environ)  # type: ignore[return-value]
