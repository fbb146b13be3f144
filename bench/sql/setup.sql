-- The benchmark's own objects: the pre-generated webhooks every variant reads the same
-- way, and the floor (the cheapest thing that persists or computes the same data).
-- psql variables: api_key, secret.
CREATE EXTENSION attendance;
SELECT attendance_add_webhook_key(:'api_key', :'secret', 'benchmark');

CREATE SCHEMA bench;
-- Webhooks in delivery order. Every ingestion client takes the next one from bench.seq,
-- so N clients share one stream and no webhook is taken twice.
CREATE TABLE bench.hooks (
    id          bigint PRIMARY KEY,
    event_id    text NOT NULL,
    session_id  bigint NOT NULL,
    body        text NOT NULL,
    tok         text NOT NULL
);
CREATE SEQUENCE bench.seq;
CREATE TABLE bench.hooks_c (LIKE bench.hooks INCLUDING ALL);  -- the calculation workload
CREATE TABLE bench.sessions (session_id bigint PRIMARY KEY, room_name text, starts_at timestamptz, ends_at timestamptz);
CREATE TABLE bench.roster (session_id bigint, user_id bigint, role text);

-- The floor: a single-row INSERT of the body into a table with a unique event id,
-- and (for calculation) a table for one set-based statement's sums.
CREATE SCHEMA bench_floor;
CREATE TABLE bench_floor.events (
    event_id    text PRIMARY KEY,
    body        text NOT NULL
);
CREATE TABLE bench_floor.results (
    session_id  bigint NOT NULL,
    user_key    text NOT NULL,
    presence_ms bigint NOT NULL,
    PRIMARY KEY (session_id, user_key)
);

-- The live-row lag (bench.py live_lag): each event the first time the poller sees its
-- connection row, with both commit times.
CREATE TABLE bench.lag (
    id           bigint PRIMARY KEY,
    event_type   text NOT NULL,
    event_commit timestamptz,
    received_at  timestamptz NOT NULL,
    live_commit  timestamptz,
    derived_at   timestamptz NOT NULL,
    seen_at      timestamptz NOT NULL
);
