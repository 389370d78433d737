"""``python -m bench.profiled``: ``messenger-api`` with every worker under cProfile (for the benches only).

Each worker (each child of the supervisor, or the single process) gets a ``cProfile.Profile`` that SIGUSR2
turns on and off again (so a bench profiles only the phase it measures) and, on its clean stop (SIGTERM),
writes ``worker-<pid>.prof`` into ``$BENCH_PROFILE_DIR``.  The server itself is
unchanged: this wraps :func:`messenger_core.server.run_worker` before the CLI starts, so nothing of the
profiling reaches production code.  Read the files with :func:`summary` (or ``python -m pstats``).
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import signal
import sys
import time
from pathlib import Path
from typing import Any

from messenger_core import server
from messenger_core.cli import api_main


def _profiled(run: Any) -> Any:
    def run_worker(*args: Any, **kwargs: Any) -> None:
        profile = cProfile.Profile(time.process_time)  # CPU time: what the worker spends, not its waits
        on = [False]

        def toggle(_signum: int, _frame: Any) -> None:
            if on[0]:
                profile.disable()
            else:
                profile.enable()
            on[0] = not on[0]
        signal.signal(signal.SIGUSR2, toggle)
        try:
            run(*args, **kwargs)
        finally:
            profile.disable()
            profile.dump_stats(str(Path(os.environ["BENCH_PROFILE_DIR"]) / f"worker-{os.getpid()}.prof"))
    return run_worker


def summary(directory: Path, lines: int = 30) -> str:
    """The workers' profiles merged: the top functions by own time, then by cumulative time."""
    files = sorted(str(path) for path in directory.glob("worker-*.prof"))
    if not files:
        return f"(no profile in {directory})"
    out = io.StringIO()
    stats = pstats.Stats(*files, stream=out)
    stats.sort_stats("tottime").print_stats(lines)
    stats.sort_stats("cumulative").print_stats(lines)
    return out.getvalue()


if __name__ == "__main__":
    server.run_worker = _profiled(server.run_worker)
    sys.exit(api_main())
