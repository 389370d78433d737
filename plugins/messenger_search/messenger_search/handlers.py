"""HTTP endpoints of the search plugin: start a task, poll its status, page through its results."""

from __future__ import annotations

import math
import re
import uuid

from messenger_chats import api as chats_api
from messenger_core import BaseHandler, ServiceUnavailable, dumps, parse_uuid, request_limit_exceeded

from .errors import bad_cursor, task_failed, task_not_complete, task_not_found, user_not_found
from .schemas import SearchRequestSchema, SearchResultsQuerySchema
from .state import SearchState, state_of
from .store import FAILED, SUCCESS, TaskInfo
from .tasks import TASK_NAME, owner_of

_POSITION = re.compile(r"^[0-9]{1,9}$")


class SearchBase(BaseHandler):
    """Shared by the search handlers: the plugin state and the caller's identity."""

    @property
    def search(self) -> SearchState:
        """This process's search state (store and settings)."""
        return state_of(self.runtime)

    async def caller(self) -> str | None:
        """``account:<id>`` with a session; with auth off ``member:<id>`` from ``?user_id``, else None."""
        identity = await self.authenticate()
        if identity is not None:
            return owner_of({"account_id": identity.account_id})
        raw = self.get_query_argument("user_id", None)
        if raw is None:
            return None
        member = parse_uuid(raw)
        return owner_of({"member_id": member.hex if member else "?"})

    async def owned_task(self, task_id: str) -> tuple[str, TaskInfo]:
        """The task when the caller may see it; else 404 task-not-found (also for a foreign task)."""
        parsed = parse_uuid(task_id)
        caller = await self.caller()
        if parsed is None:
            raise task_not_found()
        info = await self.search.store.get(parsed.hex)
        if info is None or (caller is not None and caller != info.owner):
            raise task_not_found()
        return parsed.hex, info


class SearchHandler(SearchBase):
    """``POST /v1/chats/search``: queue a full-text search over the caller's chats."""

    async def post(self) -> None:
        """Start a search task.
        ---
        summary: Start an asynchronous full-text search over the caller's chats
        description: >
          The task is stored (WAITING) and queued; 201 comes only after the queue accepted it.
          One account (with auth disabled: one client address) may have at most SEARCH_MAX_PENDING
          tasks outstanding (WAITING or IN_PROCESS); past it 429. A task keeps at most
          SEARCH_MAX_RESULTS results and no more than fit in SEARCH_MAX_BYTES of a results page.
          Plain words must all match (stemmed, Russian and English), "quoted phrases" match in
          order, -word excludes. With a session the search covers the account's chats; with auth
          disabled it covers the chats of the member (or of its account) given by user_id.
        tags: [search]
        parameters:
          - in: query
            name: user_id
            schema: {type: string}
            description: The searching chat member; required (and only used) when auth is disabled
        requestBody:
          required: true
          content:
            application/json:
              schema: SearchRequest
        responses:
          201:
            description: Task accepted
            content:
              application/json:
                schema: SearchTaskCreated
          400:
            description: bad-parameters (message missing, not a string, shorter than 4 or longer than 1024)
            content:
              application/json:
                schema: Error
          404:
            description: user-not-found (auth disabled and user_id missing, not a UUID or unknown)
            content:
              application/json:
                schema: Error
          429:
            description: request-limit-exceeded (SEARCH_MAX_PENDING tasks of this account, or client
              address, are still outstanding; Retry-After says when to try again), or over the client's
              request limit
            content:
              application/json:
                schema: Error
          503:
            description: service-unavailable (Redis or RabbitMQ unreachable) or database-unavailable
            content:
              application/json:
                schema: Error
        """
        identity = await self.authenticate()
        if identity is not None:
            body = self.load_body(SearchRequestSchema)
            who = {"account_id": identity.account_id}
        else:
            member = parse_uuid(self.get_query_argument("user_id", None))
            if member is None:
                raise user_not_found()
            body = self.load_body(SearchRequestSchema)
            if await chats_api.member_scope(self.runtime.db, member) is None:
                raise user_not_found()
            who = {"member_id": member.hex}
        store = self.search.store
        settings = self.search.settings
        task_id = uuid.uuid4().hex
        # one account (auth off: one client address, as the throttle counts it) may not queue without end
        quota = f"account:{identity.account_id}" if identity is not None else f"client:{self.client_ip}"
        if not await store.create(task_id, owner_of(who), quota, settings.max_pending):
            raise request_limit_exceeded(str(max(1, math.ceil(settings.timeout))))
        try:
            await self.runtime.queue.publish(TASK_NAME, {"task_id": task_id, "query": body["message"], **who})
        except ServiceUnavailable:
            try:
                await store.discard(task_id)
            except ServiceUnavailable:
                pass  # the store is down too; the unqueued record expires on its own
            raise
        self.write_json({"task_id": task_id}, 201)


class SearchStatusHandler(SearchBase):
    """``GET /v1/chats/search/status/{task_id}``."""

    async def get(self, task_id: str) -> None:
        """Status of a search task.
        ---
        summary: Status of a search task
        tags: [search]
        parameters:
          - TaskId
          - in: query
            name: user_id
            schema: {type: string}
            description: With auth disabled, optional; when given it must be the member that started the task
        responses:
          200:
            description: WAITING, IN_PROCESS, SUCCESS or FAILED
            content:
              application/json:
                schema: SearchTaskStatus
          404: TaskNotFound
          503: ServiceUnavailable
        """
        _, info = await self.owned_task(task_id)
        self.write_json({"status": info.status})


class SearchResultsHandler(SearchBase):
    """``GET /v1/chats/search/{task_id}/messages``: results, newest first, acknowledged by paging."""

    async def get(self, task_id: str) -> None:
        """A page of a finished task's results.
        ---
        summary: Results of a search task, newest first
        description: >
          Without `from` the page starts at the first result not yet acknowledged. Asking with
          `from=<next.iterator>` deletes every result before it (they count as received) and
          returns the page after it; asking again with the same `from` returns the same page.
          An iterator before the acknowledged results or past the end is 400 bad-cursor. Results
          expire SEARCH_TASK_TTL seconds after the task finished.
        tags: [search]
        parameters:
          - TaskId
          - in: query
            name: limit
            required: true
            schema: {type: integer, minimum: 1, maximum: 1000}
          - in: query
            name: from
            schema: {type: string}
            description: next.iterator of the previous page
          - in: query
            name: user_id
            schema: {type: string}
            description: With auth disabled, optional; when given it must be the member that started the task
        responses:
          200:
            description: A page of results
            content:
              application/json:
                schema: SearchResultsPage
          400:
            description: bad-parameters (limit), bad-cursor, task-not-complete (WAITING or IN_PROCESS), task-failed
            content:
              application/json:
                schema: Error
          404: TaskNotFound
          503: ServiceUnavailable
        """
        if parse_uuid(task_id) is None:
            raise task_not_found()
        query = self.load_query(SearchResultsQuerySchema)
        key, info = await self.owned_task(task_id)
        if info.status == FAILED:
            raise task_failed()
        if info.status != SUCCESS:
            raise task_not_complete()
        start = None
        if query["start"] is not None:
            if not _POSITION.match(query["start"]):
                raise bad_cursor()
            start = int(query["start"])
        page = await self.search.store.page(key, start, query["limit"])
        self.write_json(b'{"messages":[' + b",".join(page.items) + b'],"next":'
                        + dumps({"iterator": str(page.next)}) + b"}")


default_handlers = [
    (r"/v1/chats/search", SearchHandler),
    (r"/v1/chats/search/status/(?P<task_id>[^/]+)", SearchStatusHandler),
    (r"/v1/chats/search/(?P<task_id>[^/]+)/messages", SearchResultsHandler),
]
