"""The process's streams, indexed by chat, account and session, fed by the chats' events.

No stream has a queue of messages on the server: each holds, per carried chat, the position of the last
message it sent and the chat's events not yet acted on (ids and positions, in commit order), and reads what
follows from PostgreSQL when an event says there is more.  The streams of one process at the same position
of a chat share one read (:class:`~messenger_core.SharedReads`), whose frames are encoded once for all of
them (as whole WebSocket frames, :mod:`.wire`).  A read is shared only by streams that have seen the same
edits and deletes (its key names :attr:`Hub.changes`), so no stream takes a read begun before a change it
already acted on.

Live delivery, the common case, costs no stream any work of its own: a stream with nothing left to act on
in a chat (its own pump caught up) joins the chat's :class:`Feed`.  A post's event then starts one task
per chat (not one per stream): it reads what follows the members' position once and writes those frames to
every member, which moves each member's position on.  A member leaves the feed for its own pump as soon as
it has anything else to act on, in the order the events came: an edit or a delete of the chat, a restart by
a subscribe, a resync, a client that has not taken half its backlog bound (the pump then waits for it);
when it leaves, it is told the newest position announced, so the read the feed had under way is redone by
the stream itself.  After a resync
(the ``LISTEN`` connection was lost, so events may have been), each carried chat also reads the edits and
deletes it missed of the messages it had sent (:meth:`Hub.recovered`), from the change marker it knew.  A client that
reconnects anywhere resumes from its iterators.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from messenger_chats import api as chats
from messenger_core import SESSIONS_CHANNEL, ApiError, SharedReads, Unavailable, dumps

from .wire import text_frame

if TYPE_CHECKING:  # pragma: no cover
    from messenger_core import Runtime

log = logging.getLogger("messenger.events")

MAX_LATEST = 100_000
RETRY = 1.0  # seconds before a read that PostgreSQL's absence failed is tried again (as a stream's pump does)


@dataclass(frozen=True)
class Batch:
    """Messages of a chat after a position: ``(seq, whole WebSocket frame)`` each (:func:`.wire.text_frame`),
    and whether more may follow."""

    frames: list[tuple[int, bytes]]
    full: bool


@dataclass(frozen=True)
class Recovery:
    """The edits and deletes a stream missed, of messages up to a position: ``(change marker, encoded frame)``
    each, in change order; ``marker``: the chat's changes up to it are told or reflected in what follows."""

    frames: list[tuple[int, bytes]]
    marker: int
    full: bool


class Stream(Protocol):
    """What the hub needs of a stream (the WebSocket handler)."""

    account: str | None
    session: str | None

    def live(self, state: Any, frames: list[bytes], upto: int) -> bool:
        """The feed's delivery to a member at ``state`` (its :class:`~.handlers.Carried` in the chat): write
        ``frames`` (whole WebSocket frames) and move the position to ``upto``; False, nothing written: it
        cannot take them now (it is closing, or its client has not taken half its backlog bound) and leaves
        the feed."""

    def poke(self, chat: uuid.UUID, seq: int) -> None:
        """A chat it carries has messages up to ``seq``."""

    def changed(self, chat: uuid.UUID, kind: str, message_id: uuid.UUID, seq: int, marker: int | None) -> None:
        """A message (at ``seq``) of a chat it carries was edited or deleted (``kind``); ``marker``: the change's
        marker (None: an older sender's event without one)."""

    def resync(self) -> None:
        """Events may have been missed: tell the edits and deletes missed of the messages sent, read every
        carried chat again and check the session."""

    def send(self, frame: bytes) -> bool:
        """Queue a frame (the backlog bound applies)."""

    def fail(self, code: str) -> None:
        """Send an error frame and close with 4401."""

    def joined(self, chat: uuid.UUID, seq: int | None, marker: int | None) -> None:
        """The account joined ``chat`` (its last position and change marker at the join's commit): carry it from
        there."""

    def left(self, chat: uuid.UUID) -> Awaitable[None]:
        """A member of the account left ``chat``: stop carrying it if that was the account's last."""

    def going_away(self) -> None:
        """The server shuts down: close with 1001."""


@dataclass(eq=False)
class Feed:
    """The streams up to date in one chat, each with its state there; ``target``: the newest position a post
    event of the chat named; ``changes``: the chat's edit and delete events seen; ``task``: the delivery under
    way (at most one per chat)."""

    members: dict[Any, Any]
    target: int
    changes: int = 0
    task: "asyncio.Task[None] | None" = None


class Hub:  # pylint: disable=too-many-instance-attributes
    """Streams by chat, account and session; reads shared between them (``runtime.state["messenger_events"]``)."""

    def __init__(self, runtime: "Runtime", page: int) -> None:
        self.runtime = runtime
        self.page = page
        self.by_chat: dict[uuid.UUID, set[Stream]] = {}
        self.by_account: dict[str, set[Stream]] = {}
        self.by_session: dict[str, set[Stream]] = {}
        self.latest: dict[uuid.UUID, int] = {}  # newest position an event named, per chat
        self.feeds: dict[uuid.UUID, Feed] = {}  # the streams up to date, per chat
        self.changes = 0  # edit and delete events and resyncs seen, every chat: part of the key of every shared read
        self.reads: SharedReads[Batch] = SharedReads()
        self.singles: SharedReads[bytes | None] = SharedReads()
        self.recoveries: SharedReads[Recovery] = SharedReads()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.sent = 0  # message frames queued, all streams (a counter for metrics and the bench)
        self.cut = 0  # streams cut with 4408 for reading too slowly
        self.max_pending = 0  # most bytes ever waiting for one client (bounded by EVENTS_MAX_BACKLOG_BYTES + a frame)
        runtime.pubsub.subscribe(chats.CHANNEL, self._chat_event)
        runtime.pubsub.subscribe(SESSIONS_CHANNEL, self._session_ended)
        runtime.pubsub.on_resync(self._resync)
        runtime.on_drain(self._drain)

    # ---- the index -----------------------------------------------------------------------------

    def add(self, stream: Stream) -> None:
        """Index a stream by its account and session (once authenticated)."""
        if stream.account is not None:
            self.by_account.setdefault(stream.account, set()).add(stream)
        if stream.session is not None:
            self.by_session.setdefault(stream.session, set()).add(stream)

    def carry(self, stream: Stream, chat: uuid.UUID) -> None:
        """Deliver ``chat``'s events to ``stream``."""
        self.by_chat.setdefault(chat, set()).add(stream)

    def drop(self, stream: Stream, chat: uuid.UUID) -> None:
        """Stop delivering ``chat`` to ``stream``."""
        self.unfeed(stream, chat, tell=False)
        _discard(self.by_chat, chat, stream)

    def remove(self, stream: Stream, chats_carried: list[uuid.UUID]) -> None:
        """Forget a closed stream."""
        for chat in chats_carried:
            self.unfeed(stream, chat, tell=False)
            _discard(self.by_chat, chat, stream)
        if stream.account is not None:
            _discard(self.by_account, stream.account, stream)
        if stream.session is not None:
            _discard(self.by_session, stream.session, stream)

    @property
    def streams(self) -> set[Stream]:
        """Every stream that is carrying a chat or authenticated."""
        found: set[Stream] = set()
        for group in (*self.by_chat.values(), *self.by_account.values()):
            found |= group
        return found

    # ---- live delivery -------------------------------------------------------------------------

    def settle(self, stream: Stream, chat: uuid.UUID, state: Any) -> None:
        """``stream`` has nothing left to act on in ``chat`` (at ``state.position``): its live messages come
        from the chat's feed from now on."""
        feed = self.feeds.get(chat)
        if feed is None:
            feed = self.feeds[chat] = Feed({}, self.latest.get(chat, 0))
        if feed.target > state.position:  # an event it has not acted on: its pump reads it first
            stream.poke(chat, feed.target)
            return
        feed.members[stream] = state

    def unfeed(self, stream: Stream, chat: uuid.UUID, tell: bool = True) -> None:
        """``stream`` acts on ``chat``'s events itself again; ``tell``: poke it with the newest position
        announced, which the feed may not have brought it yet."""
        feed = self.feeds.get(chat)
        if feed is None:
            return
        state = feed.members.pop(stream, None)
        if tell and state is not None and feed.target > state.position:
            stream.poke(chat, feed.target)
        if not feed.members and feed.task is None:
            del self.feeds[chat]

    async def _deliver(self, chat: uuid.UUID, feed: Feed) -> None:
        """Bring every member of ``feed`` up to its target: one read per position, its frames written to all."""
        try:
            while self.feeds.get(chat) is feed and feed.members:
                target = feed.target
                start = min(state.position for state in feed.members.values())
                if start >= target:
                    return
                changes = feed.changes
                try:
                    batch = await self.read(chat, start)
                except (ApiError, Unavailable):
                    await asyncio.sleep(RETRY)  # PostgreSQL away: the members stay, the feed tries again for all
                    continue
                if self.feeds.get(chat) is not feed:
                    return  # resynced meanwhile: every stream reads again by itself
                if feed.changes != changes:
                    continue  # an edit or delete meanwhile: a member that joined since needs a read that shows it
                frames = [frame for at, frame in batch.frames if at <= target]
                done = not batch.full or len(frames) < len(batch.frames)  # everything up to the target is here
                upto = target if done else batch.frames[len(frames) - 1][0]
                for stream, state in list(feed.members.items()):
                    if state.position != start:
                        continue
                    if stream.live(state, frames, upto):
                        self.sent += len(frames)
                    else:
                        self.unfeed(stream, chat)
        except BaseException:
            for stream in list(feed.members):  # a failure of ours (or cancelled): each stream goes on by itself
                self.unfeed(stream, chat)
            raise
        finally:
            feed.task = None
            if not feed.members and self.feeds.get(chat) is feed:
                del self.feeds[chat]

    # ---- reads ---------------------------------------------------------------------------------

    async def read(self, chat: uuid.UUID, after: int) -> Batch:
        """Messages after ``after`` (up to ``EVENTS_PAGE``), shared by every stream reading the same since the
        same edits and deletes."""
        return await self.reads.read((chat, after, self.changes), lambda: self._load(chat, after))

    async def edited(self, chat: uuid.UUID, message_id: uuid.UUID) -> bytes | None:
        """The ``message_edited`` frame of a message as it is now (None: deleted meanwhile), read and encoded once
        for every stream asking since the same edits and deletes."""
        return await self.singles.read((chat, message_id, self.changes), lambda: self._load_edited(chat, message_id))

    async def recovered(self, chat: uuid.UUID, since: int, upto: int) -> Recovery:
        """What a stream that knows the chat's changes up to marker ``since`` and sent its messages up to ``upto``
        missed (after a resync), shared by every stream asking the same since the same edits and deletes."""
        return await self.recoveries.read((chat, since, upto, self.changes),
                                          lambda: self._load_recovery(chat, since, upto))

    async def _load_recovery(self, chat: uuid.UUID, since: int, upto: int) -> Recovery:
        found = await chats.changes_after(self.runtime.db, chat, since, upto, self.page)
        if found is None:
            return Recovery([], since, False)
        marker, rows = found
        chat_hex = chat.hex
        frames = [(changed, dumps({"type": "message_deleted", "chat_id": chat_hex, "message_id": message_id.hex})
                   if message is None else dumps({"type": "message_edited", "chat_id": chat_hex, "message": message}))
                  for changed, message_id, message in rows]
        full = len(rows) == self.page
        if full:  # maybe more: known up to the last one read
            marker = rows[-1][0]
        return Recovery(frames, marker, full)

    async def _load_edited(self, chat: uuid.UUID, message_id: uuid.UUID) -> bytes | None:
        found = await chats.message(self.runtime.db, chat, message_id)
        if found is None:
            return None
        return dumps({"type": "message_edited", "chat_id": chat.hex, "message": found[1]})

    async def _load(self, chat: uuid.UUID, after: int) -> Batch:
        rows = await chats.messages_after(self.runtime.db, chat, after, self.page)
        chat_hex = chat.hex
        frames = [(seq, text_frame(dumps({"type": "message", "chat_id": chat_hex, "message": message,
                                          "iterator": chats.iterator(chat, seq)}))) for seq, message in rows]
        return Batch(frames, len(rows) == self.page)

    # ---- events --------------------------------------------------------------------------------

    def _chat_event(self, payload: str) -> None:
        event = chats.parse_event(payload)
        if event is None:
            return
        try:
            chat = uuid.UUID(event["c"])
            kind = event["k"]
            if kind == "post":
                self._posted(chat, int(event["s"]))
            elif kind in ("edit", "delete"):
                self._changed(chat, kind, uuid.UUID(event["m"]), int(event["s"]), _marker(event))
            elif kind == "join" and isinstance(event.get("a"), str):
                seq, marker = event.get("s"), _marker(event)
                for stream in list(self.by_account.get(uuid.UUID(event["a"]).hex, ())):
                    stream.joined(chat, None if seq is None else int(seq), marker)
            elif kind == "leave" and isinstance(event.get("a"), str):
                for stream in list(self.by_account.get(uuid.UUID(event["a"]).hex, ())):
                    self._spawn(stream.left(chat))
        except (KeyError, TypeError, ValueError):
            log.warning("events: an event that is not one: %.200s", payload)

    def _posted(self, chat: uuid.UUID, seq: int) -> None:
        if seq > self.latest.get(chat, 0):
            if len(self.latest) >= MAX_LATEST:
                self.latest.clear()
            self.latest[chat] = seq
        feed = self.feeds.get(chat)
        members = feed.members if feed is not None else {}
        for stream in list(self.by_chat.get(chat, ())):
            if stream not in members:
                stream.poke(chat, seq)
        if feed is not None:
            feed.target = max(feed.target, seq)
            if feed.members and feed.task is None:
                feed.task = self._spawn(self._deliver(chat, feed))

    def _changed(self, chat: uuid.UUID, kind: str, message_id: uuid.UUID, seq: int, marker: int | None) -> None:
        # every stream of the chat takes it in order with the chat's posts; each decides when it gets there
        # (a message it has not sent yet will be read as it is now, with the change)
        self.changes += 1
        feed = self.feeds.get(chat)
        if feed is not None:
            feed.changes += 1
        for stream in list(self.by_chat.get(chat, ())):
            self.unfeed(stream, chat)  # the change is taken in order with the posts, by the stream's pump
            stream.changed(chat, kind, message_id, seq, marker)

    def _session_ended(self, payload: str) -> None:
        for stream in list(self.by_session.get(payload.strip().lower(), ())):
            stream.fail("invalid-session-id")

    def _resync(self) -> None:
        self.latest.clear()
        self.feeds.clear()  # every stream recovers and reads by itself; a delivery under way stops
        self.changes += 1  # no stream takes a read begun before the gap was known
        for stream in self.streams:
            stream.resync()

    def _drain(self) -> None:
        for stream in self.streams:
            stream.going_away()

    def _spawn(self, work: Awaitable[None]) -> "asyncio.Task[Any]":
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: "asyncio.Task[Any]") -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.warning("events: handling an event failed: %s", exc or type(exc).__name__)


def _marker(event: dict[str, Any]) -> int | None:
    """An event's change marker ("v"), None when its sender is older than the markers."""
    marker = event.get("v")
    return None if marker is None else int(marker)


def _discard(index: dict[Any, set[Stream]], key: Any, stream: Stream) -> None:
    group = index.get(key)
    if group is not None:
        group.discard(stream)
        if not group:
            del index[key]
