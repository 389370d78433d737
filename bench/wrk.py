"""The load generator: ``wrk`` (C, one thread, keep-alive connections) driven by a generated Lua script.

The script cycles through a list of request paths (one hot URL, or 100 chats), sends the session
header and an optional JSON body, and at the end prints one ``BENCH_JSON`` line: requests,
duration, latency percentiles, socket errors and, when asked, the count of each status and the
``message_id`` of every 201 answer (written to a file, to check afterwards that each is stored).
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WRK = shutil.which("wrk") or "/usr/bin/wrk"

LUA = r"""
local paths = {%(paths)s}
local method = %(method)s
local headers = {%(headers)s}
local body = %(body)s
local ids_path = %(ids_path)s
local requests_ = {}
local n = 0
local threads = {}
statuses = {}
ids = {}

function init(args)
  for i, path in ipairs(paths) do requests_[i] = wrk.format(method, path, headers, body) end
  n = math.random(#requests_) - 1
end

function setup(thread) table.insert(threads, thread) end

function request()
  n = n + 1
  return requests_[(n - 1) %% #requests_ + 1]
end

if ids_path then
  function response(status, hdrs, resp)
    statuses[status] = (statuses[status] or 0) + 1
    if status == 201 then ids[#ids + 1] = string.sub(resp, 16, 47) end
  end
end

function done(summary, latency, requests)
  local counts = {}
  if ids_path then
    local f = io.open(ids_path, "w")
    for _, thread in ipairs(threads) do
      for code, count in pairs(thread:get("statuses")) do counts[code] = (counts[code] or 0) + count end
      for _, id in ipairs(thread:get("ids")) do f:write(id, "\n") end
    end
    f:close()
  end
  local parts = {}
  for code, count in pairs(counts) do parts[#parts + 1] = string.format('"%%d":%%d', code, count) end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%%d,"duration_us":%%d,"p50_us":%%d,"p90_us":%%d,"p99_us":%%d,"max_us":%%d,' ..
    '"connect":%%d,"read":%%d,"write":%%d,"status":%%d,"timeout":%%d,"statuses":{%%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout,
    table.concat(parts, ",")))
end
"""


def _lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string literal is a valid Lua string literal for this ASCII text


@dataclass
class Load:
    """What to send: paths cycled round-robin from a random start, method, headers, body."""

    paths: Sequence[str]
    method: str = "GET"
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    collect_ids: bool = False


@dataclass
class Result:
    """One wrk run: counts, rate, latencies (ms), errors, generator CPU, and 201 ids when collected."""

    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    statuses: dict[int, int]
    wrk_cpu: float
    ids: list[str]

    @property
    def rps(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0


def run(base_url: str, load: Load, seconds: float, connections: int, timeout: float = 5.0) -> Result:
    """One wrk run of ``seconds`` with ``connections`` keep-alive connections on one thread."""
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        ids_path = Path(tmp) / "ids.txt"
        script = Path(tmp) / "load.lua"
        script.write_text(LUA % {
            "paths": ", ".join(_lua_string(path) for path in load.paths),
            "method": _lua_string(load.method),
            "headers": ", ".join(f"[{_lua_string(k)}] = {_lua_string(v)}" for k, v in load.headers.items()),
            "body": "nil" if load.body is None else _lua_string(json.dumps(load.body)),
            "ids_path": _lua_string(str(ids_path)) if load.collect_ids else "nil",
        })
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.run(
            [WRK, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", f"--timeout={timeout:g}s",
             "-s", str(script), base_url + load.paths[0]],
            capture_output=True, text=True, check=False, timeout=seconds + 60)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
        if proc.returncode != 0 or line is None:
            raise RuntimeError(f"wrk failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        data = json.loads(line.split(" ", 1)[1])
        ids = ids_path.read_text().split() if load.collect_ids else []
    statuses = {int(code): count for code, count in data["statuses"].items()}
    socket_errors = data["connect"] + data["read"] + data["write"] + data["timeout"]
    bad_status = sum(count for code, count in statuses.items() if code >= 300) if statuses else data["status"]
    return Result(
        requests=data["requests"], seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000, p90_ms=data["p90_us"] / 1000, p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000, errors=socket_errors + bad_status, statuses=statuses,
        wrk_cpu=(after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime), ids=ids)
