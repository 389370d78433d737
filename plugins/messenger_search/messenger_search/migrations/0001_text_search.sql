-- Full-text search over chat messages.
--
-- The plugin owns a text-search configuration named messenger_search (a copy of the built-in
-- russian one: Snowball russian stemmer for Cyrillic words, english_stem for ASCII words) and a
-- GiST index on to_tsvector('messenger_search', text).  The query (messenger_search.query) uses
-- the very same expression, so the planner can use the index.  To change the stemming, set
-- SEARCH_TS_CONFIG: at start the plugin copies that configuration's mappings into
-- messenger_search and re-indexes (messenger_search.tsconfig); never edit this file.

-- migrate:up
DO $$
BEGIN
    CREATE TEXT SEARCH CONFIGURATION messenger_search (COPY = pg_catalog.russian);
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- already there (re-applied by hand): keep it and its mappings
END
$$;

CREATE INDEX IF NOT EXISTS messages_text_search_idx
    ON messages USING gist (to_tsvector('messenger_search', text));

-- migrate:down
DROP INDEX IF EXISTS messages_text_search_idx;
DROP TEXT SEARCH CONFIGURATION IF EXISTS messenger_search;
