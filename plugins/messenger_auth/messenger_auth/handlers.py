"""HTTP handlers of ``messenger_auth``: register, login, logout."""

from __future__ import annotations

from concurrent.futures import Executor, ThreadPoolExecutor
from typing import TYPE_CHECKING

from messenger_core import ApiError, BaseHandler

from . import accounts, sessions
from .passwords import ScryptCost, hash_password_async, verify_password_async
from .schemas import CredentialsSchema

if TYPE_CHECKING:  # pragma: no cover
    from messenger_core import Runtime

    from .settings import AuthSettings

STATE_KEY = "messenger_auth"


def hashing_executor(runtime: "Runtime") -> Executor:
    """The process's password-hashing threads (``AUTH_HASH_THREADS``), created on first use."""
    executor = runtime.state.get(STATE_KEY)
    if executor is None:
        executor = ThreadPoolExecutor(runtime.config.auth.hash_threads, thread_name_prefix="auth-hash")
        runtime.state[STATE_KEY] = executor
    return executor


class AuthHandler(BaseHandler):
    """Common ground of the auth endpoints."""

    @property
    def settings_auth(self) -> "AuthSettings":
        """This plugin's settings section."""
        return self.runtime.config.auth


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
              schema: AuthCredentials
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
        body = self.load_body(CredentialsSchema)
        user_name, password = body["user_name"], body["password"]
        db = self.runtime.db
        if await accounts.exists(db, user_name):
            raise ApiError(400, "user-already-exists")
        settings = self.settings_auth
        cost = ScryptCost(settings.scrypt_n, settings.scrypt_r, settings.scrypt_p)
        password_hash = await hash_password_async(hashing_executor(self.runtime), password, cost)
        if await accounts.create(db, user_name, password_hash) is None:
            raise ApiError(400, "user-already-exists")
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
        await self.rate_limit("login", user_name)
        account = await accounts.find(self.runtime.db, user_name)
        if account is None:
            raise ApiError(400, "user-not-found")
        if not await verify_password_async(hashing_executor(self.runtime), password, account.password_hash):
            raise ApiError(400, "bad-password")
        session_id = await sessions.create(self.runtime, account.account_id, self.settings_auth.token_lifetime)
        self.write_json({"session_id": session_id})


class LogoutHandler(AuthHandler):
    """End the calling session."""

    async def post(self) -> None:
        """Log out: the session stops working at once, in every worker process.
        ---
        summary: Log out
        description: >
          Ends the session named in the Authorization header (other sessions of the account stay
          valid). With AUTH_DISABLED every endpoint is open: without the header there is nothing to
          end and the answer is 200; a session that is sent is still checked and ended.
        tags: [auth]
        responses:
          200:
            description: Session ended (empty body)
          401: Unauthorized
          503: DatabaseUnavailable
        """
        identity = self.identity or await sessions.identify(self, self.settings_auth)
        if identity is None:
            if self.settings_auth.disabled:
                self.write_empty(200)  # an open API: no session given, none to end
                return
            raise ApiError(401, "auth-failed")
        await sessions.end(self.runtime, identity.session_id)
        self.write_empty(200)


default_handlers = [
    (r"/v1/auth/register", RegisterHandler),
    (r"/v1/auth/login", LoginHandler),
    (r"/v1/auth/logout", LogoutHandler),
]
