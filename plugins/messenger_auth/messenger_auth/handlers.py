"""HTTP handlers of ``messenger_auth``: register, login, logout."""

from __future__ import annotations

from typing import TYPE_CHECKING

from messenger_core import BaseHandler, bad_parameters, service_unavailable

from . import accounts, sessions
from .errors import auth_failed, bad_password, user_already_exists, user_not_found
from .passwords import Hasher, HashingBusy, ScryptCost, needs_upgrade
from .schemas import CredentialsSchema, RegisterSchema
from .state import state_of

if TYPE_CHECKING:  # pragma: no cover
    from .settings import AuthSettings


class AuthHandler(BaseHandler):
    """Common ground of the auth endpoints."""

    @property
    def settings_auth(self) -> "AuthSettings":
        """This plugin's settings section."""
        return self.runtime.config.auth

    @property
    def hasher(self) -> Hasher:
        """The process's password hasher (``AUTH_HASH_THREADS``, ``AUTH_HASH_QUEUE``)."""
        return state_of(self.runtime).hasher

    @property
    def cost(self) -> ScryptCost:
        """The scrypt cost of new hashes."""
        settings = self.settings_auth
        return ScryptCost(settings.scrypt_n, settings.scrypt_r, settings.scrypt_p)


class RegisterHandler(AuthHandler):
    """Create an account."""

    public = True

    async def post(self) -> None:
        """Register a new account.
        ---
        summary: Register an account
        tags: [auth]
        requestBody:
          required: true
          content:
            application/json:
              schema: AuthRegistration
        responses:
          201:
            description: Account created (empty body)
          400:
            description: bad-parameters or user-already-exists
            content:
              application/json:
                schema: Error
          503: DatabaseUnavailable
        """
        body = self.load_body(RegisterSchema)
        user_name, password = body["user_name"], body["password"]
        if len(password) < self.settings_auth.password_min_length:
            raise bad_parameters()
        await self.rate_limit("register", "")
        db = self.runtime.db
        if await accounts.exists(db, user_name):
            raise user_already_exists()
        try:
            password_hash = await self.hasher.hash(password, self.cost)
        except HashingBusy:
            raise service_unavailable() from None
        if await accounts.create(db, user_name, password_hash) is None:
            raise user_already_exists()
        self.write_empty(201)


class LoginHandler(AuthHandler):
    """Start a session."""

    public = True

    async def post(self) -> None:
        """Log in: a new, independent session for the account.
        ---
        summary: Log in
        description: >
          Each login starts a new session that lives AUTH_TOKEN_LIFETIME seconds (default 3600),
          whatever the use; other sessions of the account are unaffected. Attempts are rate limited
          per user name when the throttle plugin is enabled.
        tags: [auth]
        requestBody:
          required: true
          content:
            application/json:
              schema: AuthCredentials
        responses:
          200:
            description: The new session
            content:
              application/json:
                schema: AuthSession
          400:
            description: bad-parameters, user-not-found or bad-password
            content:
              application/json:
                schema: Error
          429:
            description: request-limit-exceeded (too many attempts for this user name), with Retry-After
            content:
              application/json:
                schema: Error
          503: DatabaseUnavailable
        """
        body = self.load_body(CredentialsSchema)
        user_name, password = body["user_name"], body["password"]
        await self.rate_limit("login", user_name)  # counted as a failure until it succeeds
        account = await accounts.find(self.runtime.db, user_name)
        if account is None:
            raise user_not_found()
        try:
            verified = await self.hasher.verify(password, account.password_hash)
        except HashingBusy:
            await self.attempt_succeeded("login", user_name)  # no verdict: not a failure
            raise service_unavailable() from None
        if not verified:
            raise bad_password()
        await self.attempt_succeeded("login", user_name)
        if needs_upgrade(account.password_hash, self.cost):
            await self._upgrade(account, password)
        session_id = await sessions.create(self.runtime, account.account_id, self.settings_auth.token_lifetime)
        self.write_json({"session_id": session_id})

    async def _upgrade(self, account: accounts.Account, password: str) -> None:
        """Replace a hash weaker than the configured cost (when the hashing queue has room; else next time)."""
        try:
            stronger = await self.hasher.hash(password, self.cost)
        except HashingBusy:
            return
        await accounts.replace_hash(self.runtime.db, account, stronger)


class LogoutHandler(AuthHandler):
    """End the calling session."""

    #: read a sent session even with AUTH_DISABLED (``messenger_authenticate``): logout still ends it
    ends_session = True

    async def post(self) -> None:
        """Log out: the session stops working at once, in every worker process.
        ---
        summary: Log out
        description: >
          Ends the session named in the Authorization header (other sessions of the account stay
          valid). A 200 means the session is ended in every worker process, also when the shared cache
          (Redis) cannot be reached. When the database cannot be reached the answer is 503
          database-unavailable and the session stays valid everywhere: log out again later. With
          AUTH_DISABLED every endpoint is open: without the header there is nothing to end and the answer
          is 200; a session that is sent is still checked and ended.
        tags: [auth]
        responses:
          200:
            description: Session ended (empty body)
          401: Unauthorized
          503: DatabaseUnavailable
        """
        identity = await self.authenticate()
        if identity is None:
            if self.settings_auth.disabled:
                self.write_empty(200)  # an open API: no session given, none to end
                return
            raise auth_failed()
        await sessions.end(self.runtime, identity.session_id)
        self.write_empty(200)


default_handlers = [
    (r"/v1/auth/register", RegisterHandler),
    (r"/v1/auth/login", LoginHandler),
    (r"/v1/auth/logout", LogoutHandler),
]
