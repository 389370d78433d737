"""Command line: ``messenger-api [serve|migrate|openapi|plugins|settings]`` and ``messenger-consumer``."""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence

from . import __version__, metrics
from .aio import event_loop_factory, loop_name
from .app import make_app
from .runtime import Runtime
from .broker import Consumer
from .db import migrate_down, migrate_up
from .errors import ConfigError, StartupError
from .logs import setup_logging
from .openapi import to_yaml
from .plugins import PluginManager
from .server import serve
from .settings import Config, Section, load_core

log = logging.getLogger("messenger.cli")


def boot(environ: Mapping[str, str] | None = None) -> tuple[Config, PluginManager]:
    """Read the core settings, discover plugins, read their settings."""
    environ = os.environ if environ is None else environ
    core = load_core(environ)
    setup_logging(core.log_level, core.log_format)
    # SIGUSR1 prints every thread's stack to stderr: what a process that will not stop is doing
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    plugins = PluginManager(core)
    return plugins.load_config(core, environ), plugins


def _fail(prog: str, exc: Exception) -> int:
    print(f"{prog}: error: {exc}", file=sys.stderr)
    return 2


def settings_table(config: Config) -> str:
    """Markdown table of every setting: variable, default, help (section by section)."""
    sections: list[Section] = [config.core, *config.sections.values()]
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for section in sections:
        for setting in type(section).settings():
            default = setting.default
            if isinstance(default, tuple):
                default = ",".join(str(item) for item in default)
            shown = f"`{default}`" if default != "" else "*(empty)*"
            lines.append(f"| `{setting.env}` | {shown} | {setting.help} |")
    return "\n".join(lines)


def _migrate(config: Config, plugins: PluginManager, down: str | None) -> int:
    specs = plugins.contributions(config).migrations
    if down is None:
        done = asyncio.run(migrate_up(config, specs))
        print("\n".join(done) if done else "nothing to apply")
        return 0
    plugin, _, version = down.partition(":")
    try:
        to_version = int(version) if version else 0
    except ValueError:
        raise StartupError(f"--down takes PLUGIN[:VERSION], not {down!r}") from None
    done = asyncio.run(migrate_down(config, specs, plugin, to_version))
    print("\n".join(done) if done else "nothing to roll back")
    return 0


def api_main(argv: Sequence[str] | None = None) -> int:
    """``messenger-api``: serve (default), or one of the maintenance commands."""
    parser = argparse.ArgumentParser(prog="messenger-api", description="Messenger API server")
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="serve HTTP with WORKERS processes (the default)")
    mig = sub.add_parser("migrate", help="apply the enabled plugins' pending migrations")
    mig.add_argument("--down", metavar="PLUGIN[:VERSION]",
                     help="roll back PLUGIN's migrations newer than VERSION (default: all of them)")
    sub.add_parser("openapi", help="print the OpenAPI spec (YAML) that swagger.yml must equal")
    sub.add_parser("plugins", help="list discovered plugins, their versions and whether enabled")
    sub.add_parser("settings", help="print every setting as a Markdown table")
    args = parser.parse_args(argv)
    try:
        config, plugins = boot()
        if args.command in (None, "serve"):
            return serve(config, plugins)
        if args.command == "migrate":
            return _migrate(config, plugins, args.down)
        if args.command == "openapi":
            sys.stdout.write(to_yaml(make_app(config, plugins)))
        elif args.command == "plugins":
            for info in plugins.infos:
                state = "enabled" if info.enabled else "disabled"
                print(f"{info.name:<20} {info.version:<10} {state:<9} {info.source}")
        elif args.command == "settings":
            print(settings_table(config))
        return 0
    except (ConfigError, StartupError) as exc:
        return _fail("messenger-api", exc)


def consumer_main(argv: Sequence[str] | None = None) -> int:
    """``messenger-consumer``: run queued tasks from RabbitMQ until SIGTERM."""
    parser = argparse.ArgumentParser(prog="messenger-consumer",
                                     description="Runs the plugins' queued tasks from RabbitMQ")
    parser.parse_args(argv)
    try:
        config, plugins = boot()
        if not config.rmq_url:
            raise ConfigError("bad setting RMQ_URL='': the consumer needs RabbitMQ "
                              "(without it the API runs tasks on its embedded worker)")
        loop = event_loop_factory(config.event_loop)()
        asyncio.set_event_loop(loop)
        log.info("messenger-consumer (pid %d) on the %s loop", os.getpid(), loop_name(loop))
        if config.metrics_port:
            try:
                metrics.serve_in_thread(config.host, config.metrics_port, config.metrics_allow)
            except OSError as exc:
                raise StartupError(f"METRICS_PORT={config.metrics_port}: {exc}") from None
            log.info("metrics on port %d", config.metrics_port)
        runtime = Runtime(config, plugins, role="consumer")
        consumer = Consumer(runtime, loop, config.rmq_url, config.consumer_prefetch)  # handles SIGTERM from now
        loop.run_until_complete(runtime.start())
        try:
            consumer.run()
        finally:
            loop.run_until_complete(runtime.stop())
            loop.close()
        return 0
    except (ConfigError, StartupError) as exc:
        return _fail("messenger-consumer", exc)
