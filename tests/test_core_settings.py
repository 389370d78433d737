"""Settings: typed, defaulted, and a bad value stops start-up with one line naming the variable."""

from __future__ import annotations

import subprocess

import pytest

from messenger_core.errors import ConfigError
from messenger_core.settings import Config, load_core
from support import BIN


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "messenger-api"), *args], env={"PATH": str(BIN), **env},
                          capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.parametrize("name,value", [("PORT", "eighty"), ("PORT", "70000"), ("WORKERS", "-1"),
                                        ("CACHE_TYPE", "mongo"), ("AUTH_TOKEN_LIFETIME", "soon"),
                                        ("TRUSTED_PROXIES", "not-an-ip"), ("LOG_LEVEL", "loud")])
def test_bad_setting_stops_startup_naming_it(name: str, value: str) -> None:
    result = _run({name: value}, "plugins")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert name in lines[0] and "error" in lines[0]


def test_defaults_and_types() -> None:
    core = load_core({})
    assert core.port == 8080 and isinstance(core.port, int)
    assert core.cache_type == "memory"
    assert core.apps == ()
    core = load_core({"PORT": "9000", "MESSENGER_APPS": "messenger_chats, messenger_auth", "ACCESS_LOG": "off"})
    assert core.port == 9000
    assert core.apps == ("messenger_chats", "messenger_auth")
    assert core.access_log is False


def test_several_postgres_hosts_target_the_primary() -> None:
    config = Config(load_core({"POSTGRES_HOSTS": "db1:5433,db2", "POSTGRES_PWD": "p'w"}))
    info = config.postgres_conninfo
    assert "host='db1,db2'" in info and "port='5433,5432'" in info
    assert "target_session_attrs='read-write'" in info
    assert "password='p\\'w'" in info
    single = Config(load_core({})).postgres_conninfo
    assert "target_session_attrs" not in single


def test_every_bad_value_is_reported_together() -> None:
    with pytest.raises(ConfigError) as err:
        load_core({"PORT": "x", "POOL_SIZE": "0"})
    assert "PORT" in str(err.value) and "POOL_SIZE" in str(err.value)


def test_settings_command_prints_the_table() -> None:
    result = _run({}, "settings")
    assert result.returncode == 0
    assert "| `POSTGRES_HOSTS` |" in result.stdout
    assert "| `MESSENGER_APPS` |" in result.stdout
