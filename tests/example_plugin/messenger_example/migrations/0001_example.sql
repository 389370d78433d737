-- migrate:up
CREATE TABLE example_runs (
    id      text PRIMARY KEY,
    attempt integer NOT NULL,
    pid     integer NOT NULL,
    done_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE example_starts (
    id  text PRIMARY KEY,
    pid integer NOT NULL
);

-- migrate:down
DROP TABLE example_starts;
DROP TABLE example_runs;
