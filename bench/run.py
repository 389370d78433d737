"""``python -m bench.run``: the benchmark suite of issue 8 (see bench/README.md).

Phases, all on loopback, every server started and stopped here:

1. a fresh database ``bench_<id>``; ``messenger-api`` with the page cache off: accounts, chats and
   the SQL-built corpora, then W4 (paging cost vs chat length);
2. ``messenger-api`` with the page cache on (Redis), ``messenger-consumer`` and the plain Tornado
   hello-world (2 processes, SO_REUSEPORT): the floor, W1, W3 and W2 in interleaved rounds, then W5;
3. clean-up: servers stopped, database dropped, Redis keys and RabbitMQ queue/exchange deleted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from . import corpus, wrk
from .corpus import Account, Chat
from .fanout import FANOUT_PLUGINS, IdleStreams
from .measure import Settings, Variant, memory, run_rounds
from .report import Results, render
from .search import run_searches
from .stack import Process, Stack, free_port, http

WORKLOADS = ("W1", "W2", "W3", "W4", "W5")
BODY = {"message": "bench: a message of ordinary length, posted under load"}


class Bench:
    """One run of the suite."""

    def __init__(self, stack: Stack, settings: Settings, only: set[str], idle_streams: int = 0) -> None:
        self.stack = stack
        self.settings = settings
        self.only = only
        self.idle = IdleStreams(stack.port, idle_streams)
        self.idle_chat: tuple[str, str] | None = None  # (chat id, session) of the idle streams
        self.idle_notes: list[str] = []
        self.res = Results(settings)
        self.accounts: dict[str, Account] = {}
        self.sized: dict[int, Chat] = {}
        self.hot: Chat | None = None
        self.spread: list[Chat] = []

    def say(self, text: str) -> None:
        """Progress on stderr (the report goes to stdout)."""
        print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    # ---- phases -------------------------------------------------------------------------------

    def setup(self) -> None:
        """Accounts and chats through the API; corpora through SQL (page cache off while building)."""
        a = self.accounts["poster"] = corpus.register(self.stack, "bench-poster")
        sizes: set[int] = set()
        if "W3" in self.only:
            sizes.add(self.settings.w4_sizes[0])
        if "W4" in self.only:
            sizes.update(self.settings.w4_sizes)
        if "W5" in self.only:
            sizes.update(self.settings.w5_sizes)
        for epoch, size in enumerate(sorted(sizes)):
            chat = corpus.create_chat(self.stack, a, f"corpus {size}")
            self.say(f"building a chat of {size:,} messages")
            corpus.fill(self.stack, chat, size, epoch, a)
            self.sized[size] = chat
            self.res.builds[f"{size:,} messages"] = chat.build_seconds
        if sizes:
            self.res.builds["VACUUM ANALYZE + CHECKPOINT"] = corpus.analyze(self.stack)
        if "W5" in self.only:
            for size in self.settings.w5_sizes:  # a searcher that belongs to this corpus only
                searcher = self.accounts[f"search{size}"] = corpus.register(self.stack, f"bench-search-{size}")
                corpus.join(self.stack, searcher, self.sized[size].chat_id)
        if "W2" in self.only:
            self.hot = corpus.create_chat(self.stack, a, "hot chat")
            self.spread = [corpus.create_chat(self.stack, a, f"chat {i}") for i in range(100)]

    def w4(self, api: Process) -> None:
        """First page and a page deep inside, for each chat length, with the page cache off."""
        a = self.accounts["poster"]
        variants = []
        for size in self.settings.w4_sizes:
            chat = self.sized[size]
            base = f"/v1/chats/{chat.chat_id}/messages?limit=100"
            deep = f"{base}&from={chat.deep_iterator}"
            status, page = http("GET", self.stack.base_url + deep, None, a.headers)
            texts = [item["text"] for item in (page or {}).get("messages", [])]
            ok = status == 200 and len(texts) == min(100, size - chat.deep_seq) and (
                not texts or texts[0].startswith(f"message {chat.deep_seq + 1} "))
            self.res.checks[f"W4 deep page of {size:,}"] = (ok, f"status {status}, {len(texts)} messages")
            for kind, path in (("first", base), ("deep", deep)):
                variants.append(Variant(f"W4 {kind} {size}", self.stack.base_url, wrk.Load([path], headers=a.headers),
                                        [api], self.settings.w4_connections, database=self.stack.database))
        self.say(f"W4 on {', '.join(f'{size:,}' for size in self.settings.w4_sizes)} messages, "
                 f"{len(variants)} variants x {self.settings.runs} round(s)")
        rows = run_rounds(variants, self.settings)
        for size in self.settings.w4_sizes:
            self.res.w4[size] = (rows[f"W4 first {size}"], rows[f"W4 deep {size}"])
        self.res.memory["W4 (page cache off)"] = memory("W4 (page cache off)", api, None)

    def posting_variants(self, variants: list[Variant], remember: Callable[[str], None],
                         procs: list[Process]) -> dict[str, list[Chat]]:
        """Add the two W2 variants; returns the chats each one posts into."""
        if "W2" not in self.only or self.hot is None:
            return {}
        posting = {"W2 POST, one hot chat": [self.hot], "W2 POST, 100 chats": self.spread}
        headers = {**self.accounts["poster"].headers, "Content-Type": "application/json"}
        for name, chats in posting.items():
            paths = [f"/v1/chats/{chat.chat_id}/messages?user_id={chat.member_id}" for chat in chats]
            load = wrk.Load(paths, method="POST", headers=headers, body=BODY, collect_ids=True)
            variants.append(Variant(name, self.stack.base_url, load, procs, self.settings.connections, remember,
                                    self.stack.database))
        return posting

    def cached(self, api: Process, consumer: Process | None) -> None:
        """The floor, W1, W3 and W2 in interleaved rounds, then W5, with the page cache on."""
        a = self.accounts["poster"]
        url, procs = self.stack.base_url, [api]
        variants = []

        def remember(name: str) -> None:
            self.res.memory[name] = memory(name, api, consumer)
        if "W1" in self.only:
            hello_port = free_port()
            hello = self.stack.start_hello(hello_port)
            variants.append(Variant("hello-world floor", f"http://127.0.0.1:{hello_port}", wrk.Load(["/"]), [hello],
                                    self.settings.connections))
            variants.append(Variant("W1 GET /ping", url, wrk.Load(["/ping"]), procs, self.settings.connections,
                                    remember, self.stack.database))
        if "W3" in self.only:
            chat = self.sized[self.settings.w4_sizes[0]]
            path = f"/v1/chats/{chat.chat_id}/messages?limit=100"
            status, page = http("GET", url + path, None, a.headers)
            ok = status == 200 and len(page["messages"]) == 100 and page["messages"][0]["text"].startswith("message 1 ")
            self.res.checks["W3 page"] = (ok, f"status {status}")
            variants.append(Variant("W3 GET first page (cached)", url, wrk.Load([path], headers=a.headers), procs,
                                    self.settings.connections, remember, self.stack.database))
        posting = self.posting_variants(variants, remember, procs)
        if variants:
            self.say(f"{', '.join(v.name for v in variants)}: {self.settings.runs} round(s)")
            self.res.rows.update(run_rounds(variants, self.settings))
        for name, chats in posting.items():
            self.res.checks[name] = corpus.durable(self.stack, chats, self.res.rows[name].ids,
                                                   self.settings.connections * (self.settings.runs + 1))
        if "W5" in self.only and consumer is not None:
            for size in self.settings.w5_sizes:
                self.say(f"W5 search on {size:,} messages")
                self.res.searches[size] = run_searches(f"{size:,}", self.stack, self.accounts[f"search{size}"],
                                                       [api, consumer], self.settings.searches, self.settings.runs)
                remember(f"W5 on {size:,}")

    def open_idle(self, phase: str) -> None:
        """With ``--idle-streams N``: N streams of their own account, idle in a chat of their own."""
        if not self.idle.count:
            return
        if self.idle_chat is None:
            account = corpus.register(self.stack, "bench-idle")
            self.idle_chat = (corpus.create_chat(self.stack, account, "idle chat").chat_id, account.session)
        connected = self.idle.open(*self.idle_chat)
        self.say(f"{connected:,} of {self.idle.count:,} idle streams open ({phase})")
        self.idle_notes.append(f"{phase}: {connected:,} of {self.idle.count:,} open")

    def close_idle(self, phase: str) -> None:
        """Hang up the idle streams; note any that the server closed meanwhile."""
        errors = self.idle.close()
        if self.idle.count:
            self.idle_notes.append(f"{phase}: {len(errors)} closed early or failed")

    def run(self) -> Results:
        """Every selected phase; the stack is always cleaned up."""
        try:
            self.say(f"database {self.stack.database}")
            self.stack.create_database()
            api = self.stack.start_api("api-nocache", CHATS_CACHE_PAGES="0")
            self.setup()
            self.open_idle("W4")
            if "W4" in self.only:
                self.w4(api)
            self.close_idle("W4")
            self.stack.stop(api)
            if self.only & {"W1", "W2", "W3", "W5"}:
                api = self.stack.start_api("api")
                self.open_idle("W1-W3, W5")
                consumer = self.stack.start_consumer() if "W5" in self.only else None
                self.cached(api, consumer)
                self.close_idle("W1-W3, W5")
        finally:
            self.say("cleaning up")
            self.idle.close()
            self.stack.cleanup()
        return self.res


def setting(raw: str) -> tuple[str, str]:
    """``NAME=VALUE`` of ``--set`` as a pair (argparse reports anything else as a usage error)."""
    name, sep, value = raw.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {raw!r}")
    return name, value


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="small corpora, one short run per workload")
    parser.add_argument("--only", default=",".join(WORKLOADS), help="comma list of workloads (default: all)")
    parser.add_argument("--runs", type=int, help="measured runs per workload (median reported)")
    parser.add_argument("--seconds", type=float, help="length of each measured run")
    parser.add_argument("--connections", type=int, help="wrk connections (W1-W3)")
    parser.add_argument("--output", type=Path, help="also write the Markdown report to this file")
    parser.add_argument("--idle-streams", type=int, default=0, metavar="N",
                        help="install the stream plugin and keep N idle streams (GET /v1/events) open during "
                             "every workload")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="settings", type=setting,
                        help="a server setting for every start (repeatable), e.g. --set CHATS_POST_BATCH=1")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the suite; print the Markdown report."""
    args = parse(argv)
    only = {item.strip().upper() for item in args.only.split(",") if item.strip()}
    unknown = only - set(WORKLOADS)
    if unknown:
        print(f"unknown workload(s): {', '.join(sorted(unknown))}; choose from {', '.join(WORKLOADS)}",
              file=sys.stderr)
        return 2
    if not Path(wrk.WRK).exists():
        print("the bench needs wrk (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    settings = Settings.quick() if args.quick else Settings()
    overrides = {key: value for key, value in (("runs", args.runs), ("seconds", args.seconds),
                                               ("connections", args.connections)) if value}
    if overrides:
        settings = Settings(**{**settings.__dict__, **overrides})
    started = time.monotonic()
    log_dir = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    extra = dict(args.settings)
    if args.idle_streams:
        extra.setdefault("MESSENGER_APPS", FANOUT_PLUGINS)
    stack = Stack(log_dir, extra=extra)
    bench = Bench(stack, settings, only, args.idle_streams)
    bench.say(f"server logs in {log_dir}")
    results = bench.run()
    report = render(results, stack, {size: chat.deep_seq for size, chat in bench.sized.items()})
    if args.idle_streams:
        report += (f"\nIdle streams (`--idle-streams {args.idle_streams}`, plugins {extra['MESSENGER_APPS']}): "
                   + "; ".join(bench.idle_notes) + ".\n")
    report += f"\nTotal time of this run: {time.monotonic() - started:.0f} s.\n"
    print(report)
    if args.output:
        args.output.write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
