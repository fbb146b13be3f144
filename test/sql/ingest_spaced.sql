-- The same fixture with ", " separators (other bytes, other hashes, same meaning): the same state.
\set fixture test/fixtures/livekit/session-456.spaced.jsonl
\i test/sql/fixture_state.psql
