"""Settings of the chats plugin (``config.chats``)."""

from __future__ import annotations

from messenger_core import Section, Setting, boolean, integer


class ChatsSettings(Section):
    """Message page caching, group commit of posts and invites in the chats plugin."""

    name = "chats"
    cache_pages = Setting("CHATS_CACHE_PAGES", boolean, True,
                          "Cache message pages (CACHE_TYPE backend); off: every read goes to PostgreSQL")
    page_ttl = Setting("CHATS_PAGE_TTL", integer(1), 300,
                       "Lifetime (s) of a cached full page; it never changes (an edit or a delete gives "
                       "its chat a new version, and the page's key names the version)")
    tail_page_ttl = Setting("CHATS_TAIL_PAGE_TTL", integer(1), 30,
                            "Lifetime (s) of a cached last (not full) page; bounds staleness when an "
                            "invalidation was lost while Redis was unreachable")
    page_bytes = Setting("PAGE_MAX_BYTES", integer(1024), 1024 * 1024,
                         "Most bytes of a page's body: a page stops before its next message would pass it "
                         "(with next.iterator after its last message; it always holds one message)")
    page_max_bytes = Setting("CHATS_PAGE_CACHE_MAX_BYTES", integer(0), 1024 * 1024,
                             "Larger pages are not cached (1000 long messages make a page of many MB)")
    fact_ttl = Setting("CHATS_FACT_TTL", integer(1), 3600,
                       "Lifetime (s) of cached membership facts (chat exists, member belongs to chat at "
                       "the chat's version) and of the cached versions")
    invite_ttl = Setting("CHAT_INVITE_TTL", integer(1), 7 * 24 * 3600,
                         "Lifetime (s) of an invite to a private chat (usable any number of times until then)")
    post_batch = Setting("CHATS_POST_BATCH", integer(1, 1000), 64,
                         "Most posts one insert carries: posts arriving while the previous insert runs are "
                         "committed together (1: off, every post its own insert, run concurrently)")
