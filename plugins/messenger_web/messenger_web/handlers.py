"""HTTP handlers of ``messenger_web``: the app's page at ``/`` and its assets.

Every asset is read from the package once per process.  The assets are served under
``/web/<build>/<name>``, where ``<build>`` is a digest of all of them, so a URL always names the
same bytes and may be cached for a year; a page of an older build asking for a replaced file gets
404.  The route lists the shipped names exactly, so with auth on every other ``/web/...`` path still
answers 401 like any unknown path.  Both handlers are public: the page is what a person without a
session opens to log in.
"""

from __future__ import annotations

import functools
import hashlib
import html
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

from messenger_core import BaseHandler

from .errors import asset_not_found

#: The content types of the shipped files, by extension.
CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".woff2": "font/woff2",
}
PAGE = "index.html"
_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")


@dataclass(frozen=True)
class Build:
    """The shipped files: the page template, the assets by name and the digest naming them all."""

    page: str
    assets: dict[str, bytes]
    digest: str

    @property
    def pattern(self) -> str:
        """The asset route: this build's names and nothing else."""
        names = "|".join(re.escape(name) for name in sorted(self.assets))
        return rf"/web/([0-9a-f]{{16}})/({names})"


@functools.cache
def load_build() -> Build:
    """Read ``static/`` once: the page and every asset whose extension has a content type."""
    folder = resources.files(__package__) / "static"
    page = ""
    assets: dict[str, bytes] = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name == PAGE:
            page = entry.read_text(encoding="utf-8")
        elif any(entry.name.endswith(ext) for ext in CONTENT_TYPES):
            assets[entry.name] = entry.read_bytes()
    digest = hashlib.sha256()
    for name, data in sorted(assets.items()):
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return Build(page, assets, digest.hexdigest()[:16])


def content_security_policy(host: str) -> str:
    """Only this origin: scripts, styles, images, fonts, fetches and the event stream's WebSocket."""
    sockets = f" ws://{host} wss://{host}" if _HOST.match(host) else ""
    return ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
            f"connect-src 'self'{sockets}; manifest-src 'self'; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'")


class WebHandler(BaseHandler):
    """Common ground of the web client's handlers: public, with the browser security headers."""

    public = True
    self_contained = True

    def security_headers(self) -> None:
        """A strict CSP, no MIME sniffing, no referrer (an invite link is in the URL fragment)."""
        self.set_header("Content-Security-Policy", content_security_policy(self.request.host or ""))
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")
        self.set_header("Cross-Origin-Opener-Policy", "same-origin")


class PageHandler(WebHandler):
    """The chat app's HTML page."""

    def get(self) -> None:
        """The browser chat client (HTML); it uses only this API.
        ---
        summary: Web chat client
        description: >
          An HTML page whose scripts (ES modules served under /web/) log in, list the account's chats,
          read, post, edit, delete, search and receive messages live over GET /v1/events, all through
          the documented endpoints. Installed with the messenger-web plugin.
        tags: [web]
        responses:
          200:
            description: The page (text/html); revalidated on every visit
        """
        build = load_build()
        config: Any = self.application.config
        auth = getattr(config, "auth", None)
        values = {
            "build": build.digest,
            "auth_header": getattr(auth, "header_name", "Authorization"),
            "auth_token": getattr(auth, "token_type", "session_id"),
            "long_poll_wait": str(config.web.long_poll_wait),
        }
        page = build.page
        for key, value in values.items():
            page = page.replace("{{" + key + "}}", html.escape(value, quote=True))
        self.security_headers()
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.finish(page)


class AssetHandler(WebHandler):
    """One file of the client (module, stylesheet, icon), cached for as long as its build lives."""

    def get(self, build: str, name: str) -> None:
        """A static asset of the web client.
        ---
        summary: Web client asset
        tags: [web]
        parameters:
          - {name: build, in: path, required: true, schema: {type: string},
             description: The digest of the client's files the page was served with}
          - {name: name, in: path, required: true, schema: {type: string}, description: The file name}
        responses:
          200:
            description: The file, with Cache-Control max-age WEB_ASSET_MAX_AGE and immutable
          404:
            description: not-found (a build that this server does not ship)
            content:
              application/json:
                schema: Error
        """
        current = load_build()
        if build != current.digest:
            raise asset_not_found()
        ext = name[name.rfind("."):]
        self.security_headers()
        self.set_header("Content-Type", CONTENT_TYPES[ext])
        max_age = self.application.config.web.asset_max_age
        self.set_header("Cache-Control", f"public, max-age={max_age}, immutable")
        self.finish(current.assets[name])


def default_handlers() -> list[tuple[Any, ...]]:
    """The page at ``/`` and the current build's assets."""
    return [(r"/", PageHandler), (load_build().pattern, AssetHandler)]
