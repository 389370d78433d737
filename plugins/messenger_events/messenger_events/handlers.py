"""``GET /v1/events``: the WebSocket stream of chat messages (API.md, "Real-time delivery").

Per stream the server keeps, for each carried chat, the position of the last message sent and the chat's
events it has not acted on yet, in commit order: "read up to position s" (consecutive ones merged into
one) and "message m at position s was edited / deleted".  A pump task takes them in that order, one chat
at a time: it reads the messages up to s (shared with every stream of the process at the same position,
see :mod:`.hub`) and sends them, and sends an edit (the message as it is now) or a delete only for a
message at or before its position; a later message is read as it is, change included.  So each chat's
messages go out in order, exactly once, and its edits and deletes in order with them.  Once a chat has nothing
pending, the stream joins the chat's feed (:class:`.hub.Feed`), which writes the chat's new messages to it
without waking its pump; any other event of the chat hands it back to the pump first.

Events missed while the process's ``LISTEN`` connection was down are made good at the resync: each carried
chat first tells, in the chat's change order, an edit or a delete of every message it had sent that changed
after the last change marker it knew (one indexed read, :func:`messenger_chats.api.changes_after`), then reads
the messages that follow as they are now; a change event that arrives later for a change already told (or
reflected in a message read after it) is passed over by its marker, so nothing is told twice.
Frames waiting for the client are counted: past ``EVENTS_MAX_BACKLOG_BYTES`` the stream is cut with 4408,
so one slow client never makes the server's memory grow; the edits and deletes a stream has still to act
on count 128 bytes each against the same bound.  While a backlog is replayed the
pump waits for the client to take half of it before reading more.

A chat the account joins is carried from the join's own position (its event names the chat's last
position at the join's commit), at once; its messages wait until ``chat_joined`` (the chat's summary, as
``GET /v1/chats`` lists it) was sent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from collections.abc import Awaitable
from typing import Any

from tornado.websocket import WebSocketClosedError, WebSocketHandler

from messenger_chats import api as chats
from messenger_core import ApiError, BaseHandler, Identity, Unavailable, bad_parameters, dumps, parse_uuid

from .errors import GOING_AWAY, TOO_MANY, TOO_SLOW, UNAUTHORIZED, error_frame
from .hub import Hub
from .state import hub_of, stream_closed, stream_opened
from .wire import text_frame, write_frame

log = logging.getLogger("messenger.events")

READY = b'{"type":"ready"}'
CHANGE_BYTES = 128  # what one pending edit or delete counts for against EVENTS_MAX_BACKLOG_BYTES

#: A pending event of a chat: ``("read", upto, None, None)`` (None: no bound, a backlog), ``("edit" | "delete", seq,
#: message_id, marker)`` (the change's marker, None from an older sender) or ``("recover", None, None, None)``
#: (after a resync: the changes missed of the messages sent).
Pending = tuple[str, int | None, uuid.UUID | None, int | None]


@dataclass(slots=True)
class Carried:  # pylint: disable=too-many-instance-attributes
    """A chat the stream carries: the position sent so far and the events to act on, in order.

    ``generation`` moves on at each restart and resync (a read begun before is read again); ``held``:
    ``chat_joined`` is not sent yet; ``rejoined``: a join event came while a leave was being checked;
    ``changes``: edits and deletes among ``pending`` (a list, not a deque: it is nearly always empty, and an
    empty list is a tenth of an empty deque, per chat of every stream).  ``known``: a change marker (the chat's
    version at each edit or delete, growing in their commit order) such that every change up to it is told to
    the client or reflected in the messages it was and will be sent; a change event at or below it is passed
    over, and a recovery after a gap reads the changes after it.
    """

    position: int
    known: int
    generation: int = 0
    pending: list[Pending] = field(default_factory=list)
    held: bool = False
    rejoined: bool = False
    changes: int = 0

    def read_upto(self, upto: int | None) -> None:
        """Messages up to ``upto`` (None: all) are to be read: merged into a read already last in line."""
        if self.pending and self.pending[-1][0] == "read":
            last = self.pending[-1][1]
            self.pending[-1] = ("read", None if last is None or upto is None else max(last, upto), None, None)
        else:
            self.pending.append(("read", upto, None, None))

    def recover(self) -> None:
        """Events may have been missed: first (before the events still pending, which it makes good too) tell
        the changes after ``known`` of the messages sent, then read everything that follows.

        A read or a recovery under way is done again (its snapshot may predate the gap); a recovery not done
        yet covers this gap too, so there is one per chat however often the connection flaps.
        """
        self.generation += 1
        if not self.pending or self.pending[0][0] != "recover":
            self.pending.insert(0, ("recover", None, None, None))
        self.read_upto(None)


class EventsHandler(BaseHandler, WebSocketHandler):  # pylint: disable=abstract-method,too-many-instance-attributes
    """``/v1/events``: the stream (a WebSocket); plain GET without the upgrade is 400."""

    public = True  # the upgrade is always accepted: a browser cannot read a 401 there; auth happens on the stream
    self_contained = True  # the upgrade needs nothing but the process; the stream's errors are frames
    hub: Hub
    account: str | None = None
    session: str | None = None
    authed = False
    awaiting_auth = False
    closing = False
    counted_stream = False

    def __init__(self, application: Any, request: Any, **kwargs: Any) -> None:
        super().__init__(application, request, **kwargs)
        self.carried: dict[uuid.UUID, Carried] = {}
        self.dirty: dict[uuid.UUID, None] = {}  # chats to read, in order
        self.waiting_for: list[tuple[set[uuid.UUID], list[str]]] = []  # subscribes not yet "subscribed"
        self.pending_bytes = 0
        self.pending_changes = 0  # edits and deletes waiting in the carried chats' ``pending``
        self.settings_ = self.runtime.config.events
        self._wakeup = asyncio.Event()
        self._drained: asyncio.Future[None] | None = None
        self._pump_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._timers: list[asyncio.TimerHandle] = []
        self._tokens = 2.0 * self.settings_.frames_per_second
        self._refilled = time.monotonic()

    # ---- tornado's side ------------------------------------------------------------------------

    @property
    def ping_interval(self) -> float | None:
        return self.settings_.ping_interval or None

    @property
    def max_message_size(self) -> int:
        return self.settings_.max_frame_bytes

    def get_compression_options(self) -> dict[str, Any] | None:
        return None  # never compressed: message frames are encoded once for every stream (.wire)

    def check_origin(self, origin: str) -> bool:
        return True  # a page of another origin can do nothing without a session id, sent in a frame

    async def get(self, *args: Any, **kwargs: Any) -> None:
        """Open the stream (a WebSocket upgrade).
        ---
        summary: The real-time stream (WebSocket)
        description: >
          Upgrade to a WebSocket; every frame is a JSON object with a `type`. Auth on: send the session in the
          `Authorization` header of the upgrade, or as a first frame `{"type": "auth", "session_id": "<hex32>"}`
          within EVENTS_AUTH_TIMEOUT seconds; a missing, bad, expired or logged-out session (also later, in
          any worker) gets `{"type": "error", "message": "<401 code>"}` and close code 4401. Then the server
          sends `{"type": "ready"}` and carries every chat of the account (auth off: the chats subscribed).
          Client `{"type": "subscribe", "chats": {"<chat_id>": "<iterator>" | null}}` replays every message
          after each iterator (null: only new ones), then `{"type": "subscribed", "chats": [...]}`. Server
          frames: `{"type": "message", "chat_id", "message", "iterator"}` (resume with the last iterator of
          each chat and miss nothing), `{"type": "message_edited", "chat_id", "message"}` and `{"type":
          "message_deleted", "chat_id", "message_id"}` in order with the chat's messages, `{"type":
          "chat_joined", "chat": <summary as GET /v1/chats lists it>}` (then the chat's messages from the
          join on), `error` (with
          `chat-not-found`, `bad-cursor`, `bad-parameters` or `database-unavailable` the stream goes on). While
          PostgreSQL is away the stream stays open and delivers once it is back, edits and deletes it missed
          included. Close codes: 1001 the server
          shuts down (reconnect), 1009 a client frame over EVENTS_MAX_FRAME_BYTES, 1013 PostgreSQL or Redis is
          away while the stream opens (after the 503 code's error frame; reconnect later), 4401 unauthorized,
          4408 the client read too slowly (its backlog passed EVENTS_MAX_BACKLOG_BYTES), 4429 more than
          EVENTS_FRAMES_PER_SECOND client frames a second.
        tags: [events]
        responses:
          101:
            description: Switching protocols (the stream is open; auth happens on it)
          400:
            description: bad-parameters (a plain GET without the WebSocket upgrade)
            content:
              application/json:
                schema: Error
        """
        if self.request.headers.get("Upgrade", "").lower() != "websocket" or "upgrade" not in [
                part.strip().lower() for part in self.request.headers.get("Connection", "").split(",")]:
            raise bad_parameters()
        await super().get(*args, **kwargs)

    async def open(self, *args: str, **kwargs: str) -> None:  # pylint: disable=unused-argument
        """The upgrade is done: authenticate (header, or wait for the auth frame), then "ready"."""
        self._uncount()  # a stream is not a request in flight: shutdown closes it instead of waiting
        self.counted_stream = True
        stream_opened(self.runtime)
        self.hub = hub_of(self.runtime)
        known, identity = await self._identified(self.authenticate())  # None: no header session, or auth off
        if not known:
            return
        if identity is None:
            try:
                identity = await self.identify_session(None)  # None: auth is off; a 401: it is on
            except Unavailable as exc:
                self._give_up(exc)
                return
            except ApiError as exc:
                if exc.status_code != 401:
                    self._give_up(exc)
                    return
                self.awaiting_auth = True  # the first frame must be {"type": "auth", ...}
                self._later(self.settings_.auth_timeout, self.fail, "auth-failed")
                return
        await self._start(identity)

    async def on_message(self, message: str | bytes) -> None:
        if self.closing:
            return
        if not self._allow_frame():
            self._write(error_frame("request-limit-exceeded").encode())
            self._close(TOO_MANY, "too many frames")
            return
        try:
            frame = json.loads(message)
        except (ValueError, UnicodeDecodeError):
            frame = None
        kind = frame.get("type") if isinstance(frame, dict) else None
        if self.awaiting_auth:
            if kind != "auth" or frame is None:
                self.fail("auth-failed")
                return
            self.awaiting_auth = False
            self._cancel_timers()
            known, identity = await self._identified(self.identify_session(frame.get("session_id")))
            if known:
                await self._start(identity)
        elif not self.authed:
            return  # still opening
        elif kind == "subscribe" and frame is not None:
            await self._subscribe(frame.get("chats"))
        else:
            self.send(error_frame("bad-parameters").encode())

    def on_close(self) -> None:
        self.closing = True
        self._cancel_timers()
        if self._pump_task is not None:
            self._pump_task.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self.counted_stream:
            self.counted_stream = False
            stream_closed(self.runtime)
            self.hub.remove(self, list(self.carried))
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    # ---- starting ------------------------------------------------------------------------------

    async def _start(self, identity: Identity | None) -> None:
        try:
            if identity is not None:
                self.account, self.session = identity.account_id, identity.session_id
                self.hub.add(self)  # before reading the chats: a join meanwhile is not missed
                if identity.expires_at is not None:
                    self._later(identity.expires_at - time.time(), self.fail, "session-id-expired")
                mine = await chats.chats_of_account(self.runtime.db, identity.account_id)
                for chat, (seq, marker) in (await chats.heads(self.runtime.db, mine)).items():
                    if chat not in self.carried:  # joined meanwhile: carried from the join already
                        self._carry(chat, seq, marker)
        except (ApiError, Unavailable) as exc:
            self._give_up(exc)
            return
        if self.closing:
            return
        self.authed = True
        self._write(READY)
        self._pump_task = asyncio.ensure_future(self._pump())

    def _carry(self, chat: uuid.UUID, position: int, marker: int, backlog: bool = False) -> Carried:
        """Carry ``chat`` from ``position``, its changes known up to ``marker`` (read with the position, or the
        join's); a restart when carried already (its markers stay); ``backlog``: read what follows."""
        state = self.carried.get(chat)
        if state is None:
            state = self.carried[chat] = Carried(position, marker)
            self.hub.carry(self, chat)
        else:
            self.hub.unfeed(self, chat, tell=False)  # restarted: from the new position, by the pump
            state.position, state.generation = position, state.generation + 1
        if backlog or self.hub.latest.get(chat, 0) > position:
            state.read_upto(None)
        self._mark(chat)  # nothing to read: the pump just hands it to the chat's feed
        return state

    def _mark(self, chat: uuid.UUID) -> None:
        self.dirty[chat] = None
        self._wakeup.set()

    # ---- subscribe -----------------------------------------------------------------------------

    async def _subscribe(self, named: Any) -> None:
        if not isinstance(named, dict):
            self.send(error_frame("bad-parameters").encode())
            return
        ids: dict[str, uuid.UUID] = {}
        for text in named:
            chat = parse_uuid(text) if len(text) == 32 else None
            if chat is None:
                self.send(error_frame("chat-not-found", chat_id=text).encode())
            else:
                ids[text] = chat
        try:
            heads = await chats.heads(self.runtime.db, list(ids.values())) if ids else {}
            mine = None if self.account is None else set(await chats.chats_of_account(self.runtime.db, self.account))
        except (ApiError, Unavailable) as exc:
            for text in ids:
                self.send(error_frame(exc.code, chat_id=text).encode())
            return
        started: list[uuid.UUID] = []
        for text, chat in ids.items():
            head = heads.get(chat)
            if head is None or (mine is not None and chat not in mine):
                self.send(error_frame("chat-not-found", chat_id=text).encode())
                continue
            last, marker = head
            position = self._position(named[text], chat, last)
            if position < 0 or position > last:
                self.send(error_frame("bad-cursor", chat_id=text).encode())
                continue
            self._carry(chat, position, marker, backlog=True)
            started.append(chat)
        self.waiting_for.append((set(started), [chat.hex for chat in started]))
        self._wakeup.set()

    @staticmethod
    def _position(given: Any, chat: uuid.UUID, last: int) -> int:
        """Where a subscribe starts: the iterator's position, the chat's end for null, -1 when bad."""
        if given is None:
            return last
        if not isinstance(given, str):
            return -1
        try:
            return chats.position(given, chat)
        except ApiError:
            return -1

    def _caught_up(self, chat: uuid.UUID | None) -> None:
        """``chat``'s backlog is sent: answer "subscribed" to every subscribe whose chats are all sent."""
        while self.waiting_for:
            waiting, ordered = self.waiting_for[0]
            if chat is not None:
                waiting.discard(chat)
            if waiting:
                return
            self.waiting_for.pop(0)
            self.send(json.dumps({"type": "subscribed", "chats": ordered}).encode())

    # ---- delivery ------------------------------------------------------------------------------

    async def _pump(self) -> None:
        """Act on the carried chats' pending events, one chat and one event at a time (each chat in order)."""
        while not self.closing:
            if not self.dirty:
                self._caught_up(None)  # a subscribe that named no valid chat
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            chat = next(iter(self.dirty))
            del self.dirty[chat]
            state = self.carried.get(chat)
            if state is None:
                self._caught_up(chat)
                continue
            if state.held:
                continue  # chat_joined first: marked again once it is sent
            try:
                more = await self._step(chat, state)
            except (ApiError, Unavailable):
                await asyncio.sleep(1.0)  # PostgreSQL away: try again (the stream stays open)
                if self.carried.get(chat) is state:
                    self._mark(chat)
                continue
            if self.closing:
                return
            if more:
                self._mark(chat)
            elif self.carried.get(chat) is state:
                self._caught_up(chat)
                if not state.pending and not state.held and not self.closing:
                    self.hub.settle(self, chat, state)  # up to date: its live messages come from the feed
            if self.pending_bytes > self.settings_.max_backlog_bytes // 2:
                await self._until_drained()

    async def _step(self, chat: uuid.UUID, state: Carried) -> bool:
        """Act on the chat's first pending event (nothing pending: nothing to do); whether more remain."""
        if not state.pending:
            return False
        kind, seq, message_id, marker = state.pending[0]
        if kind == "recover":
            return await self._recover(chat, state)
        if kind != "read":
            state.pending.pop(0)
            state.changes -= 1
            self.pending_changes -= 1
            if seq is not None and message_id is not None:
                await self._change(chat, state, kind, seq, message_id, marker)
            return bool(state.pending)
        start, generation = state.position, state.generation
        batch = await self.hub.read(chat, start)
        if self.closing or self.carried.get(chat) is not state:
            return False  # closed, or dropped while reading
        if state.generation != generation:
            return True  # restarted while reading: from the new position
        frames = batch.frames if seq is None else [(at, frame) for at, frame in batch.frames if at <= seq]
        for _, frame in frames:
            if not self.send_frame(frame):
                return False
        self.hub.sent += len(frames)
        if frames:
            state.position = frames[-1][0]
        if not batch.full or len(frames) < len(batch.frames):  # everything up to the bound is sent
            if seq is not None:
                state.position = max(state.position, seq)
            if state.pending and state.pending[0] == (kind, seq, message_id, marker):
                state.pending.pop(0)
                if seq is None:
                    self._caught_up(chat)  # the backlog a subscribe asked for
        return bool(state.pending)

    async def _change(self, chat: uuid.UUID, state: Carried, kind: str, seq: int, message_id: uuid.UUID,
                      marker: int | None) -> None:
        """Tell an edit (the message as it is now) or a delete of a message sent (at or before the position; a
        later one is read as it is now), unless a recovery told it already."""
        if marker is not None:
            if marker <= state.known:
                return  # a recovery told it, or what was and will be sent reflects it
            state.known = marker  # taken in order: every change before it is told or reflected
        if seq > state.position:
            return
        if kind == "delete":
            self.send(dumps({"type": "message_deleted", "chat_id": chat.hex, "message_id": message_id.hex}))
            return
        frame = await self.hub.edited(chat, message_id)  # None: deleted meanwhile, its event follows
        if frame is not None and self.carried.get(chat) is state and seq <= state.position:
            self.send(frame)

    async def _recover(self, chat: uuid.UUID, state: Carried) -> bool:
        """After a resync: tell the edits and deletes of messages sent before the gap that the stream missed,
        in the chat's change order (the messages after them are read as they are now)."""
        generation = state.generation
        recovery = await self.hub.recovered(chat, state.known, state.position)
        if self.closing or self.carried.get(chat) is not state:
            return False
        if state.generation != generation:
            return True  # resynced or restarted while reading: read again
        for _, frame in recovery.frames:
            if not self.send(frame):
                return False
        state.known = max(state.known, recovery.marker)
        if not recovery.full:  # else more after the last one read: the entry stays first
            state.pending.pop(0)
        return bool(state.pending)

    async def _until_drained(self) -> None:
        """Wait until the client took what was sent (a backlog is not read faster than it is taken)."""
        self._drained = asyncio.get_running_loop().create_future()
        await self._drained

    def send(self, payload: bytes) -> bool:
        """Queue a frame (its JSON); past the backlog bound the stream is cut with 4408 (False)."""
        return self.send_frame(text_frame(payload))

    def send_frame(self, frame: bytes) -> bool:
        """Queue a whole WebSocket frame (:func:`.wire.text_frame`); past the backlog bound the stream is cut
        with 4408 (False)."""
        if self.closing:
            return False
        if not self._write_frame(frame):
            return False
        if self.pending_bytes > self.settings_.max_backlog_bytes:
            self.hub.cut += 1
            self._close(TOO_SLOW, "too slow")
            return False
        return True

    def _write(self, payload: bytes) -> bool:
        return self._write_frame(text_frame(payload))

    def _write_frame(self, frame: bytes) -> bool:
        try:
            written = write_frame(self, frame)
        except WebSocketClosedError:
            self.closing = True
            return False
        if written.done():
            return True  # the socket took it at once: nothing waits for the client
        size = len(frame)
        self.pending_bytes += size
        self.hub.max_pending = max(self.hub.max_pending, self.pending_bytes)
        written.add_done_callback(lambda _: self._written(size))
        return True

    def _written(self, size: int) -> None:
        self.pending_bytes -= size
        if self._drained is not None and not self._drained.done() and self.pending_bytes == 0:
            self._drained.set_result(None)

    # ---- what the hub tells -------------------------------------------------------------------

    def live(self, state: Carried, frames: list[bytes], upto: int) -> bool:
        """The chat's feed brings new messages (see :meth:`.hub.Hub.settle`): write them, unless the client has
        not taken half its backlog bound (then False: the pump takes over and waits for it)."""
        if self.closing or self.pending_bytes > self.settings_.max_backlog_bytes // 2:
            return False
        for frame in frames:
            if not self.send_frame(frame):
                return True  # cut (4408) or closed: nothing more to do for it
        state.position = upto
        return True

    def poke(self, chat: uuid.UUID, seq: int) -> None:
        """A carried chat has messages up to ``seq``: read them after what is pending."""
        state = self.carried.get(chat)
        if state is not None and seq > state.position:
            state.read_upto(seq)
            self._mark(chat)

    def changed(self, chat: uuid.UUID, kind: str, message_id: uuid.UUID, seq: int, marker: int | None) -> None:
        """A message of a carried chat was edited or deleted: act on it after what is pending."""
        state = self.carried.get(chat)
        if state is None:
            return
        if self.pending_bytes + (self.pending_changes + 1) * CHANGE_BYTES > self.settings_.max_backlog_bytes:
            self.hub.cut += 1
            self._close(TOO_SLOW, "too slow")
            return
        state.pending.append((kind, seq, message_id, marker))
        state.changes += 1
        self.pending_changes += 1
        self._mark(chat)

    def resync(self) -> None:
        """Events may have been missed: tell the edits and deletes missed of the messages sent, read every
        carried chat again, check the session again."""
        for chat, state in self.carried.items():
            state.recover()
            self._mark(chat)
        if self.session is not None:
            asyncio.ensure_future(self._recheck())

    async def _recheck(self) -> None:
        try:
            await self.identify_session(self.session)
        except ApiError as exc:
            if exc.status_code == 401:
                self.fail(exc.code)
        except Unavailable:
            pass  # cannot be checked now; a logout still closes the stream by its event

    def joined(self, chat: uuid.UUID, seq: int | None, marker: int | None) -> None:
        """The account joined ``chat`` (in any worker) when its last position was ``seq`` and its change marker
        ``marker``: carry it from there at once (so nothing committed after the join's 201 is missed), and say
        ``chat_joined`` first."""
        state = self.carried.get(chat)
        if state is not None:
            state.rejoined = True
            return
        if self.closing:
            return
        if seq is None or marker is None:  # an event without the join's position (an older sender): as it is now
            self._spawn(self._join_now(chat))
            return
        state = self._carry(chat, seq, marker)
        if self.authed:  # before "ready" the chat is one of those the stream starts with: no chat_joined
            state.held = True
            self._spawn(self._announce(chat, state))

    async def _join_now(self, chat: uuid.UUID) -> None:
        head = (await chats.heads(self.runtime.db, [chat])).get(chat)
        if head is not None and chat not in self.carried and not self.closing:
            self.joined(chat, *head)

    async def _announce(self, chat: uuid.UUID, state: Carried) -> None:
        """Send ``chat_joined`` with the chat's summary, then let its messages go."""
        while True:
            try:
                summary = await chats.chat_summary(self.runtime.db, str(self.account), chat)
                break
            except (ApiError, Unavailable):
                await asyncio.sleep(1.0)  # PostgreSQL away: the chat's messages wait for it
        if self.closing or self.carried.get(chat) is not state:
            return
        if summary is None:  # left again meanwhile
            self._drop(chat)
            return
        self.send(b'{"type":"chat_joined","chat":' + summary + b"}")
        state.held = False
        self._mark(chat)

    async def left(self, chat: uuid.UUID) -> None:
        """A member of the account left ``chat``: stop carrying it once the account has none there."""
        state = self.carried.get(chat)
        if state is None or self.account is None:
            return
        state.rejoined = False
        if await chats.account_in_chat(self.runtime.db, chat, self.account):
            return
        if self.carried.get(chat) is state and not state.rejoined:
            self._drop(chat)

    def _drop(self, chat: uuid.UUID) -> None:
        state = self.carried.pop(chat, None)
        if state is not None:
            self.pending_changes -= state.changes
        self.dirty.pop(chat, None)
        self.hub.drop(self, chat)
        self._caught_up(chat)

    def fail(self, code: str) -> None:
        """``{"type": "error", "message": code}`` and close 4401."""
        if self.closing:
            return
        self._write(error_frame(code).encode())
        self._close(UNAUTHORIZED, code)

    def going_away(self) -> None:
        """The server shuts down: close with 1001 (the client reconnects elsewhere with its iterators)."""
        self._close(GOING_AWAY, "server shutting down")

    # ---- helpers -------------------------------------------------------------------------------

    async def _identified(self, lookup: Awaitable[Identity | None]) -> tuple[bool, Identity | None]:
        """Await a session lookup: ``(True, identity)``, or ``(False, None)`` once a refusal (4401) or an
        outage (1013) has been sent and the stream is closing."""
        try:
            return True, await lookup
        except ApiError as exc:
            if exc.status_code == 401:
                self.fail(exc.code)
            else:
                self._give_up(exc)
        except Unavailable as exc:
            self._give_up(exc)
        return False, None

    def _give_up(self, exc: ApiError | Unavailable) -> None:
        """PostgreSQL (or another dependency) is away while starting: say so and close (1013: try again)."""
        self._write(error_frame(exc.code).encode())
        self._close(1013, exc.code)

    def _close(self, code: int, reason: str) -> None:
        if self.closing:
            return
        self.closing = True
        self._wakeup.set()
        self.close(code, reason)

    def _allow_frame(self) -> bool:
        rate = self.settings_.frames_per_second
        now = time.monotonic()
        self._tokens = min(2.0 * rate, self._tokens + (now - self._refilled) * rate)
        self._refilled = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def _spawn(self, work: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: "asyncio.Task[None]") -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.warning("events: a stream's task failed: %s", exc or type(exc).__name__)

    def _later(self, delay: float, func: Any, *args: Any) -> None:
        self._timers.append(asyncio.get_running_loop().call_later(max(0.0, delay), func, *args))

    def _cancel_timers(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()


default_handlers = [
    (r"/v1/events", EventsHandler),
]
