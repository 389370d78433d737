"""Settings of ``messenger_search`` (section ``search``: ``config.search.<attr>``)."""

from __future__ import annotations

from messenger_core import Section, Setting, integer, number, string


class SearchSettings(Section):
    """Where search tasks travel, how the query stems words, and how long tasks run and live."""

    name = "search"
    exchange = Setting("SEARCH_EXCHANGE", string, "search_tasks_exchange",
                       "Durable RabbitMQ exchange search tasks are published to")
    routing_key = Setting("SEARCH_ROUTING_KEY", string, "search_tasks", "Routing key of search tasks")
    queue = Setting("SEARCH_QUEUE", string, "search_tasks_queue",
                    "Durable RabbitMQ queue messenger-consumer takes search tasks from")
    ts_config = Setting("SEARCH_TS_CONFIG", string, "pg_catalog.russian",
                        "Text-search configuration whose dictionaries the plugin's own 'messenger_search' "
                        "configuration copies at start (re-indexing when they differ); the default stems "
                        "Russian and English words")
    max_results = Setting("SEARCH_MAX_RESULTS", integer(1, 10000), 100, "Most results one search task keeps")
    max_bytes = Setting("SEARCH_MAX_BYTES", integer(1024), 1024 * 1024,
                        "Most bytes of one task's results (as JSON): the newest results up to it are kept "
                        "(always at least one), so no results page passes it")
    max_pending = Setting("SEARCH_MAX_PENDING", integer(1, 10000), 10,
                          "Outstanding (WAITING or IN_PROCESS) tasks one account, or without a session one "
                          "client address, may have; past it 429 request-limit-exceeded")
    timeout = Setting("SEARCH_TIMEOUT", number(0.1), 5.0,
                      "Seconds a search task may query; it then ends SUCCESS with what it found")
    task_ttl = Setting("SEARCH_TASK_TTL", integer(1), 300,
                       "Seconds a finished task and its results are kept")
    max_attempts = Setting("SEARCH_MAX_ATTEMPTS", integer(1, 100), 3,
                           "Runs of one task (crashes included) before it is marked FAILED")
