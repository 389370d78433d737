"""Install and uninstall: tests/example_plugin built as a real package, outside the source tree, in a fresh venv.

The venv sees the project's installed packages through a ``.pth`` file (so nothing is downloaded);
pip installs the core and the plugin into it from copies, with no index and no build isolation.
After ``pip install`` the plugin's route, migration, OpenAPI path and settings section are there
and its own tests pass with the kit; after ``pip uninstall`` they are gone, while its tables stay
(uninstalling never rolls a migration back) and ``migrate`` still works.
"""

from __future__ import annotations

from pathlib import Path

from example_helpers import copy_tree, make_venv, pip, run
from support import Client, kit_settings, sql, start_api


async def test_pip_install_adds_the_example_plugin_and_uninstall_removes_it(
        env: dict[str, str], database: str, tmp_path: Path) -> None:
    bin_dir = make_venv(tmp_path)
    kit = kit_settings()
    kit_env = {setting.env: str(getattr(kit, setting.attr)) for setting in type(kit).settings()}
    venv_env = {**env, **kit_env, "PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}
    pip(bin_dir, venv_env, "install", "--no-deps", str(copy_tree(tmp_path, "core")))
    assert "messenger_example" not in run([str(bin_dir / "messenger-api"), "plugins"], venv_env).stdout
    plugin = copy_tree(tmp_path, "example_plugin")
    pip(bin_dir, venv_env, "install", str(plugin))  # its one dependency, the core, is there already

    def api(*args: str) -> str:
        return run([str(bin_dir / "messenger-api"), *args], venv_env).stdout

    listed = {line.split()[0]: line.split() for line in api("plugins").splitlines()}
    assert listed["messenger_example"][1:3] == ["0.0.1", "enabled"]
    assert "`EXAMPLE_SLOW_MAX`" in api("settings")
    assert "/v1/example/echo:" in api("openapi")
    assert "messenger_example:0001_example" in api("migrate").splitlines()
    assert ("messenger_example", 1) in await sql(database, "SELECT plugin, version FROM schema_migrations")
    # the plugin's own tests, with the kit loaded from the core's pytest11 entry point
    result = run([str(bin_dir / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider"], venv_env, plugin,
                 check=False)
    assert result.returncode == 0 and "2 passed" in result.stdout, result.stdout + result.stderr

    proc, client = await start_api(venv_env, tmp_path / "api.log", bin_dir=bin_dir)
    try:
        resp = await client.post("/v1/example/echo", {"text": "installed"})
        assert resp.status == 200 and resp.json == {"text": "installed"}
        assert "/v1/example/echo" in (await client.get("/openapi.json")).json["paths"]
    finally:
        assert proc.stop() == 0

    pip(bin_dir, venv_env, "uninstall", "-y", "messenger-example")
    assert "messenger_example" not in api("plugins")
    assert "EXAMPLE_SLOW_MAX" not in api("settings")
    assert "/v1/example" not in api("openapi")
    assert api("migrate").strip() == "nothing to apply"  # the database stays consistent
    tables = {row[0] for row in await sql(database, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"example_runs", "example_starts"} <= tables  # uninstalling does not drop the plugin's tables
    assert ("messenger_example", 1) in await sql(database, "SELECT plugin, version FROM schema_migrations")
    await _serves_without_the_example(venv_env, bin_dir, tmp_path)


async def _serves_without_the_example(venv_env: dict[str, str], bin_dir: Path, tmp_path: Path) -> None:
    proc, client = await start_api(venv_env, tmp_path / "api2.log", bin_dir=bin_dir)
    try:
        resp = await Client(client.base_url).post("/v1/example/echo", {"text": "gone"})
        assert resp.status == 401 and resp.json == {"message": "auth-failed"}  # auth guards unknown paths
        assert "/v1/example/echo" not in (await client.get("/openapi.json")).json["paths"]
    finally:
        assert proc.stop() == 0
