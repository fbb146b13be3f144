-- Rejected webhooks: each fails with a precise SQLSTATE and writes nothing.
\set VERBOSITY terse
\i test/sql/setup_456.psql
\set fx `cat test/fixtures/livekit/negatives.jsonl`
CREATE TEMP TABLE negatives AS
SELECT l->>'variant' AS variant, l->>'body' AS body, l->>'authorization' AS auth
FROM regexp_split_to_table(:'fx', E'\n') AS line, LATERAL (SELECT line::jsonb AS l) j WHERE line <> '';

-- against the real clock (every fixture token is long expired)
SELECT variant, regexp_replace(pg_temp.try_ingest(body, auth), 'now [0-9]+', 'now <clock>') FROM negatives ORDER BY variant;
-- in replay mode (expiry against the clock not checked): still every one rejected, the
-- expired one because it had expired a day before the webhook was sent
SET attendance.replay_mode = on;
SELECT variant, pg_temp.try_ingest(body, auth) FROM negatives ORDER BY variant;
SELECT attendance_fold() ->> 'events' AS folded_events;
-- (the live rows are the roster's expected attendees; none has a connection)
SELECT (SELECT count(*) FROM meeting_attendance_events) AS events, (SELECT count(*) FROM attendance_sessions) AS connections,
       (SELECT count(*) FROM meeting_attendances WHERE join_count > 0 OR jsonb_array_length(join_leave_cycles) > 0) AS live_rows_with_connections;
RESET attendance.replay_mode;

-- a body re-signed now with the stored key is accepted; a "Bearer " prefix is fine
SELECT n.variant, pg_temp.try_ingest(n.body, 'Bearer ' || attendance_sign_webhook(n.body, 'APIfixture'))
FROM negatives n WHERE variant = 'unsigned';
-- in replay mode a token valid now (re-signed) passes too, although the body is from 2025
SET attendance.replay_mode = on;
SELECT pg_temp.try_ingest(b, attendance_sign_webhook(b, 'APIfixture'))
FROM (SELECT replace(n.body, 'EV_jBraYDw5kFk2', 'EV_resigned_in_replay') AS b FROM negatives n WHERE variant = 'unsigned') v;
RESET attendance.replay_mode;
-- the same token replayed with another body is rejected
SELECT pg_temp.try_ingest(replace(n.body, 'user-7', 'user-8'), attendance_sign_webhook(n.body, 'APIfixture'))
FROM negatives n WHERE variant = 'unsigned';
-- a token signed with another key's secret but naming this key is rejected
SELECT attendance_add_webhook_key('APIother', 'another-secret-0123456789abcdef');
SELECT pg_temp.try_ingest(n.body, regexp_replace(attendance_sign_webhook(n.body, 'APIother'), '^[^.]*\.[^.]*',
         split_part(attendance_sign_webhook(n.body, 'APIfixture'), '.', 1) || '.' || split_part(attendance_sign_webhook(n.body, 'APIfixture'), '.', 2)))
FROM negatives n WHERE variant = 'unsigned';
-- hand-made tokens: alg none, malformed, garbage
SELECT pg_temp.try_ingest(n.body, t) FROM negatives n, (VALUES
   ('eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJpc3MiOiJBUElmaXh0dXJlIn0.'),
   ('eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJpc3MiOiJBUElmaXh0dXJlIn0.c2ln'),
   ('not-a-token'), ('a.b.c.d'), ('Bearer    ')) v(t)
WHERE variant = 'unsigned';

-- key rotation: two active keys both verify; a retired key does not
SELECT attendance_add_webhook_key('APIrotated', 'rotated-secret-0123456789abcdef');
SELECT api_key, active, length(secret_sha256) AS fingerprint_len FROM attendance_list_webhook_keys();
CREATE TEMP TABLE signed AS
SELECT n.body, attendance_sign_webhook(n.body, 'APIrotated') AS tok FROM negatives n WHERE variant = 'unsigned';
SELECT attendance_retire_webhook_key('APIrotated');
SELECT pg_temp.try_ingest(body, tok) FROM signed;
SELECT api_key, active FROM attendance_list_webhook_keys();

-- malformed bodies (signed, so they reach the parser): 22P02 not JSON, 22023 not a webhook
SELECT b AS body, pg_temp.try_ingest(b, attendance_sign_webhook(b, 'APIfixture')) FROM (VALUES
   ('not json'), ('{"event":'), ('[1,2]'), ('{}'), ('{"event":"participant_joined"}'),
   ('{"event":"participant_joined","id":"EV_x","createdAt":"1763130580"}'),
   ('{"event":"participant_joined","id":"EV_x","createdAt":"1763130580","room":{"name":"r"},"participant":{"identity":"u"}}'),
   ('{"event":"participant_left","id":"EV_x","createdAt":"abc","room":{"name":"r"}}'),
   ('{"event":42,"id":"EV_x","createdAt":"1"}'),
   ('{"event":"room_finished","id":"EV_x","createdAt":"-5","room":{"name":"r"}}'),
   ('{"event":"room_finished","id":"EV_x","createdAt":"253402300800","room":{"name":"r"}}'),
   ('{"event":"room_finished","id":"EV_x","createdAt":"99999999999999999999","room":{"name":"r"}}'),
   ('{"event":"track_published","id":"EV_\u0000","createdAt":"1763130580"}')) v(b);
-- limits: body size and nesting
SET attendance.max_body_bytes = 1024;
SELECT pg_temp.try_ingest(b, attendance_sign_webhook(b, 'APIfixture'))
FROM (SELECT '{"event":"track_published","id":"EV_big","createdAt":"1763130580","pad":"' || repeat('x', 2000) || '"}' AS b) v;
RESET attendance.max_body_bytes;
SELECT pg_temp.try_ingest(b, attendance_sign_webhook(b, 'APIfixture'))
FROM (SELECT '{"event":"track_published","id":"EV_deep","createdAt":"1763130580","x":' || repeat('[', 100) || repeat(']', 100) || '}' AS b) v;
SELECT pg_temp.try_ingest(NULL, 'x');
SELECT (SELECT count(*) FROM meeting_attendance_events) AS events_after_rejections;

-- development mode: unsigned accepted (with a WARNING) only when a superuser turns it on
SELECT pg_temp.try_ingest(body, NULL) FROM negatives WHERE variant = 'unsigned';
SET attendance.development_mode = on;
SELECT pg_temp.try_ingest(replace(body, 'EV_jBraYDw5kFk2', 'EV_devmode1'), NULL) FROM negatives WHERE variant = 'unsigned';
-- a signed webhook is still verified in development mode
SELECT variant, pg_temp.try_ingest(body, auth) FROM negatives WHERE variant = 'tampered';
RESET attendance.development_mode;
CREATE ROLE attendance_regress_user;
SET ROLE attendance_regress_user;
SET attendance.development_mode = on;
SET attendance.replay_mode = on;
RESET ROLE;
DROP ROLE attendance_regress_user;
SELECT event_id, result, api_key IS NULL AS unsigned FROM meeting_attendance_events ORDER BY id;
