"""Plugin discovery: the ``messenger.plugins`` entry-point group, the allowlist and hook calls."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import pluggy

from . import builtin, hookspecs
from .aio import resolve
from .errors import ConfigError, StartupError
from .contributions import Contributions, assemble
from .settings import Config, CoreSettings, Section

log = logging.getLogger("messenger.plugins")

ENTRY_POINT_GROUP = "messenger.plugins"
CORE = "core"  # the name the core's own contributions are registered under


@dataclass(frozen=True)
class PluginInfo:
    """One discovered plugin: its entry-point name, distribution version and whether it is on."""

    name: str
    version: str
    source: str
    enabled: bool


class PluginManager:
    """Discovers plugins, registers the enabled ones and calls their hooks.

    ``extra`` registers plugin objects explicitly (tests do this with autoload switched off).
    ``core.apps`` (``MESSENGER_APPS``) is the allowlist: empty enables everything discovered.
    """

    def __init__(self, core: CoreSettings, extra: Mapping[str, Any] | None = None) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.pm.register(builtin, name=CORE)  # the core's own routes and components, always on
        self.infos: list[PluginInfo] = []
        self._assembled: tuple[Config, Contributions] | None = None
        found: dict[str, tuple[Any, str, str]] = {}
        if not core.disable_autoload:
            for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
                try:
                    obj = entry.load()
                except Exception as exc:  # an installed plugin that cannot import
                    raise StartupError(f"plugin {entry.name!r} failed to load: {exc}") from exc
                version = entry.dist.version if entry.dist else "?"
                found[entry.name] = (obj, version, entry.value)
        for name, obj in (extra or {}).items():
            found[name] = (obj, "local", getattr(obj, "__name__", repr(obj)))
        if CORE in found:
            raise StartupError(f"plugin name {CORE!r} is reserved for the core")
        allow = set(core.apps)
        unknown = allow - set(found)
        if unknown:
            raise ConfigError(f"bad setting MESSENGER_APPS: unknown plugin(s) {', '.join(sorted(unknown))};"
                              f" installed: {', '.join(sorted(found)) or 'none'}")
        for name in sorted(found):
            obj, version, source = found[name]
            enabled = not allow or name in allow
            self.infos.append(PluginInfo(name, version, source, enabled))
            if enabled:
                self.pm.register(obj, name=name)
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise StartupError(f"plugin hook error: {exc}") from exc

    @property
    def hook(self) -> Any:
        """pluggy's hook caller: ``plugins.hook.messenger_routes(config=config)``."""
        return self.pm.hook

    @property
    def enabled(self) -> list[str]:
        """Names of the registered (enabled) plugins."""
        return [info.name for info in self.infos if info.enabled]

    def call_each(self, hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call a hook on every enabled plugin; ``(plugin_name, result)`` for non-None results."""
        results = []
        caller = getattr(self.pm.hook, hook_name)
        for impl in caller.get_hookimpls():
            args = {key: kwargs[key] for key in impl.argnames}
            value = impl.function(**args)
            if value is not None:
                results.append((impl.plugin_name, value))
        return results

    def contributions(self, config: Config) -> Contributions:
        """What the enabled plugins contribute, assembled once (on the first call) for ``config``."""
        if self._assembled is None or self._assembled[0] is not config:
            self._assembled = (config, assemble(self, config))
        return self._assembled[1]

    async def first_result(self, hook_name: str, **kwargs: Any) -> Any:
        """Await each implementation of a hook in pluggy's call order; the first result that is not None.

        ``async def`` implementations are awaited one after the other, so (unlike a plain pluggy
        ``firstresult`` call, where a coroutine counts as a result) any of them may decline with None.
        """
        caller = getattr(self.pm.hook, hook_name)
        for impl in reversed(caller.get_hookimpls()):  # pluggy calls the last registered first
            value = await resolve(impl.function(**{key: kwargs[key] for key in impl.argnames}))
            if value is not None:
                return value
        return None

    def load_config(self, core: CoreSettings, environ: Mapping[str, str]) -> Config:
        """Build the full Config: the core section plus every enabled plugin's section."""
        config = Config(core)
        errors = []
        for plugin, section_cls in self.call_each("messenger_settings"):
            if not (isinstance(section_cls, type) and issubclass(section_cls, Section)):
                raise StartupError(f"plugin {plugin!r}: messenger_settings must return a Section class")
            try:
                config.add_section(section_cls.from_env(environ))
            except ConfigError as exc:
                errors.append(str(exc))
        if errors:
            raise ConfigError("; ".join(errors))
        return config
