"""A plugin written the way an outside author would: public names of ``messenger_core`` only, tested with the kit.

The plugin ("notes") lives in this module: a settings section, a migration, a request hook, two
routes and a task.  The kit's fixtures serve it for real (in process, on an unused port, against a
fresh database); the task runs on the embedded queue and the test reads its effect in the database.
"""

from __future__ import annotations

import ast
import uuid
from importlib import metadata
from pathlib import Path
from typing import Any

import marshmallow
import pytest
from marshmallow import fields, validate

import messenger_core
from messenger_core import (ApiError, BaseHandler, Config, Migrations, RequestHook, Runtime, Section, Setting, Task,
                            hookimpl, integer, string)
from messenger_core.testing import AppServer, Client, assert_error, poll, serve_app, sql

MIGRATION = """
-- migrate:up
CREATE TABLE kit_notes (
    id      serial PRIMARY KEY,
    text    text NOT NULL,
    shouted text
);

-- migrate:down
DROP TABLE kit_notes;
"""


class NotesSettings(Section):
    """The notes plugin's settings."""

    name = "notes"
    key = Setting("NOTES_KEY", string, "", "Value of X-Notes-Key that may write notes")
    max_length = Setting("NOTES_MAX_LENGTH", integer(1, 1000), 100, "Longest note, in characters")


class NoteSchema(marshmallow.Schema):
    """A note as posted."""

    text = fields.String(required=True, validate=validate.Length(min=1))


class NotesHandler(BaseHandler):
    """Write a note; a task then stores it shouted."""

    public = True

    async def post(self) -> None:
        """Write a note.
        ---
        summary: Write a note
        requestBody:
          content:
            application/json:
              schema: Note
        responses:
          201:
            description: The note's id
          400:
            description: bad-parameters
        """
        body = self.load_body(NoteSchema)
        if len(body["text"]) > self.runtime.config.notes.max_length:
            raise ApiError(400, "bad-parameters")
        row = await self.runtime.db.fetchone("INSERT INTO kit_notes (text) VALUES (%s) RETURNING id", (body["text"],))
        assert row is not None
        await self.runtime.queue.publish("kit-shout", {"id": row["id"]})
        self.write_json({"id": row["id"]}, 201)


class NoteHandler(BaseHandler):
    """Read one note."""

    public = True

    async def get(self, note_id: str) -> None:
        """Read a note.
        ---
        summary: Read a note
        responses:
          200:
            description: The note and, once the task ran, its shouted form
          404:
            description: note-not-found
        """
        row = await self.runtime.db.fetchone("SELECT text, shouted FROM kit_notes WHERE id = %s", (int(note_id),))
        if row is None:
            raise ApiError(404, "note-not-found")
        self.write_json(row)


async def require_key(handler: BaseHandler) -> None:
    """Request hook: writes need the configured X-Notes-Key; every response says the hook ran."""
    handler.set_sticky_header("X-Notes-Hook", "ran")
    key = handler.request.headers.get("X-Notes-Key")
    if handler.request.method == "POST" and key != handler.runtime.config.notes.key:
        raise ApiError(403, "notes-locked")


async def shout(payload: dict[str, Any], runtime: Runtime, attempt: int) -> None:  # pylint: disable=unused-argument
    """Task: store the note in capitals."""
    await runtime.db.execute("UPDATE kit_notes SET shouted = upper(text) WHERE id = %s", (payload["id"],))


class NotesPlugin:
    """The plugin object: each hook it implements, taking only the arguments it uses."""

    def __init__(self, migrations_package: str) -> None:
        self.migrations_package = migrations_package

    @hookimpl
    def messenger_settings(self) -> type[Section]:
        """The notes section."""
        return NotesSettings

    @hookimpl
    def messenger_migrations(self) -> Migrations:
        """The kit_notes table."""
        return Migrations("notes", self.migrations_package)

    @hookimpl
    def messenger_routes(self) -> list[tuple[str, type]]:
        """Two routes."""
        return [(r"/v1/notes", NotesHandler), (r"/v1/notes/(?P<note_id>[0-9]+)", NoteHandler)]

    @hookimpl
    def messenger_schemas(self) -> dict[str, type]:
        """The schema the docstrings name."""
        return {"Note": NoteSchema}

    @hookimpl
    def messenger_request_hooks(self) -> list[RequestHook]:
        """The key check, before any handler."""
        return [RequestHook("notes-key", 50, require_key)]

    @hookimpl
    def messenger_task_handlers(self, config: Config) -> list[Task]:
        """One task kind; the queue names matter only with RabbitMQ (here tasks run embedded)."""
        prefix = config.cache_prefix.strip(":")
        return [Task("kit-shout", shout, f"{prefix}-notes-x", f"{prefix}-notes", f"{prefix}-notes-q")]


@pytest.fixture
def messenger_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The notes plugin, its migrations package written to a directory of this test's."""
    package = f"kit_notes_{uuid.uuid4().hex[:8]}"
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / package / "0001_notes.sql").write_text(MIGRATION)
    monkeypatch.syspath_prepend(str(tmp_path))
    return {"notes": NotesPlugin(package)}


@pytest.fixture
def messenger_env(messenger_env: dict[str, str]) -> dict[str, str]:
    """The kit's settings plus the notes section's."""
    return {**messenger_env, "NOTES_KEY": "open-sesame", "NOTES_MAX_LENGTH": "12"}


async def _notes(database: str) -> list[tuple[Any, ...]]:
    return await sql(database, "SELECT id, text, shouted FROM kit_notes ORDER BY id")


async def test_a_plugin_of_public_names_serves_validates_queues_and_migrates(
        messenger_app: AppServer, messenger_client: Client, messenger_database: str) -> None:
    writer = messenger_client.with_headers(X_Notes_Key="open-sesame")
    # the request hook refuses a write without the key; validation refuses bad bodies; nothing is stored
    resp = await messenger_client.post("/v1/notes", {"text": "hello"})
    assert_error(resp, 403, "notes-locked")
    assert resp.headers["X-Notes-Hook"] == "ran"
    assert_error(await writer.post("/v1/notes", {"text": "x" * 13}), 400, "bad-parameters")  # NOTES_MAX_LENGTH
    assert_error(await writer.post("/v1/notes", {"txt": "hello"}), 400, "bad-parameters")
    assert_error(await writer.request("POST", "/v1/notes", raw=b"{not json"), 400, "bad-parameters")
    assert await _notes(messenger_database) == []

    resp = await writer.post("/v1/notes", {"text": "hello"})
    assert resp.status == 201, resp
    note_id = resp.json["id"]
    assert resp.headers["X-Notes-Hook"] == "ran"

    async def shouted() -> list[tuple[Any, ...]]:  # the task ran on the embedded queue
        rows = await _notes(messenger_database)
        return rows if rows and rows[0][2] is not None else []
    assert await poll(shouted) == [(note_id, "hello", "HELLO")]
    resp = await messenger_client.get(f"/v1/notes/{note_id}")
    assert resp.status == 200 and resp.json == {"text": "hello", "shouted": "HELLO"}
    assert_error(await messenger_client.get("/v1/notes/999999"), 404, "note-not-found")

    # the migration is recorded, the section is read, the spec documents both routes
    assert await sql(messenger_database, "SELECT plugin, version, name FROM schema_migrations") == [
        ("notes", 1, "notes")]
    assert messenger_app.app.config.notes.max_length == 12
    spec = (await messenger_client.get("/openapi.json")).json
    assert {"/v1/notes", "/v1/notes/{note_id}"} <= set(spec["paths"])
    assert "Note" in spec["components"]["schemas"]


async def test_a_bad_value_in_the_plugins_section_stops_startup(
        messenger_env: dict[str, str], messenger_plugins: dict[str, Any]) -> None:
    with pytest.raises(Exception, match=r"NOTES_MAX_LENGTH='0': must be at least 1"):
        async with serve_app({**messenger_env, "NOTES_MAX_LENGTH": "0"}, extra=messenger_plugins):
            pass  # pragma: no cover


def test_this_module_imports_only_the_public_surface() -> None:
    tree = ast.parse(Path(__file__).read_text(encoding="utf-8"))
    imported = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("messenger_core"):
            imported.append((node.module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            imported += [(alias.name, []) for alias in node.names if alias.name.startswith("messenger_core")]
    modules = {module for module, _ in imported}
    assert modules == {"messenger_core", "messenger_core.testing"}, modules
    for module, names in imported:
        if module == "messenger_core":
            assert set(names) <= set(messenger_core.__all__), set(names) - set(messenger_core.__all__)


def test_the_kit_is_registered_as_a_pytest_plugin(pytestconfig: pytest.Config) -> None:
    entry = metadata.entry_points(group="pytest11", name="messenger")
    assert [point.value for point in entry] == ["messenger_core.testing"]
    assert pytestconfig.pluginmanager.has_plugin("messenger_core.testing")
