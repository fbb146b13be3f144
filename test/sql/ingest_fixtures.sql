-- The real-format fixture session-456 replayed through SQL.
\set fixture test/fixtures/livekit/session-456.jsonl
\i test/sql/fixture_state.psql
