-- Delivery order does not matter; unknown rooms are logged, never lost; snake_case bodies.
\set VERBOSITY terse
\i test/sql/setup_456.psql
SET attendance.replay_mode = on;
\set fx `cat test/fixtures/livekit/session-456.jsonl`
CREATE TEMP TABLE fixture AS
SELECT n, l->>'body' AS body, l->>'authorization' AS auth, (l->>'body')::jsonb AS b
FROM regexp_split_to_table(:'fx', E'\n') WITH ORDINALITY AS t(line, n), LATERAL (SELECT line::jsonb AS l) j
WHERE line <> '';
CREATE TEMP TABLE state_in_order AS SELECT 1;

-- 1. the fixture in order, then a snapshot of the connections and live rows
SELECT count(*) FILTER (WHERE pg_temp.try_ingest(body, auth) LIKE 'ok:%') AS accepted FROM (SELECT * FROM fixture ORDER BY n) f;
SELECT attendance_fold() ->> 'events' AS folded;
CREATE TEMP TABLE conn_in_order AS
SELECT participant_sid, session_id, user_key, join_time, leave_time, end_reason FROM attendance_sessions;
CREATE TEMP TABLE live_in_order AS
SELECT session_id, user_key, first_join_time, last_leave_time, join_count, leave_count, total_duration_minutes FROM meeting_attendances;

-- 2. again from scratch, every leave delivered BEFORE its join (newest first)
\i test/sql/setup_456.psql
SET attendance.replay_mode = on;
SELECT count(*) FILTER (WHERE pg_temp.try_ingest(body, auth) LIKE 'ok:%') AS accepted FROM (SELECT * FROM fixture ORDER BY n DESC) f;
SELECT attendance_fold() ->> 'events' AS folded;
SELECT participant_sid, join_source FROM attendance_sessions ORDER BY participant_sid;
-- identical end state (both differences empty)
(SELECT participant_sid, session_id, user_key, join_time, leave_time, end_reason FROM attendance_sessions
 EXCEPT SELECT * FROM conn_in_order)
UNION ALL
(SELECT * FROM conn_in_order
 EXCEPT SELECT participant_sid, session_id, user_key, join_time, leave_time, end_reason FROM attendance_sessions);
(SELECT session_id, user_key, first_join_time, last_leave_time, join_count, leave_count, total_duration_minutes FROM meeting_attendances
 EXCEPT SELECT * FROM live_in_order)
UNION ALL
(SELECT * FROM live_in_order
 EXCEPT SELECT session_id, user_key, first_join_time, last_leave_time, join_count, leave_count, total_duration_minutes FROM meeting_attendances);

-- 3. a lost join: the leave alone rebuilds the connection from its joinedAtMs
\i test/sql/setup_456.psql
SET attendance.replay_mode = on;
SELECT pg_temp.try_ingest(body, auth) FROM fixture WHERE b->>'id' = 'EV_893soV6z89A3';
SELECT attendance_fold() ->> 'events' AS folded;
SELECT participant_sid, user_key, join_time, join_source, leave_time, end_reason FROM attendance_sessions;

-- 4. an unknown room is logged as unmatched and attached once the session is scheduled
SET attendance.development_mode = on;
SET client_min_messages = error;
SELECT attendance_ingest_webhook(
  '{"event":"participant_joined","id":"EV_unk1","createdAt":"1763200000","room":{"name":"physics-lab","sid":"RM_p"},' ||
  '"participant":{"sid":"PA_unk1","identity":"user-77","joinedAtMs":"1763200000500","name":"Zaid"}}') ->> 'result';
RESET client_min_messages;
SELECT event_id, session_id, room_name, reason FROM meeting_attendance_events WHERE event_id = 'EV_unk1';
SELECT attendance_fold() ->> 'events' AS folded;
SELECT event_id, problem FROM attendance_unmatched_events WHERE event_id = 'EV_unk1';
SELECT participant_sid, session_id, user_key FROM attendance_sessions WHERE participant_sid = 'PA_unk1';
SELECT count(*) AS live_rows_for_unknown_room FROM meeting_attendances WHERE user_key = '77';
SELECT (attendance_schedule_session(900, 'physics-lab', '2025-11-15 09:45:00Z', '2025-11-15 10:30:00Z')).session_id;
SELECT attendance_fold() ->> 'sessions' AS sessions_derived;
SELECT count(*) AS still_unmatched FROM attendance_unmatched_events WHERE event_id = 'EV_unk1';
SELECT participant_sid, session_id FROM attendance_sessions WHERE participant_sid = 'PA_unk1';
SELECT session_id, user_key, participant_name, first_join_time, join_count FROM meeting_attendances WHERE user_key = '77';

-- 5. the manual curl test of the application the extension replaces: snake_case field names, numbers instead of strings
SET client_min_messages = error;
SELECT attendance_ingest_webhook(
  '{"event": "participant_joined", "id": "EV_snake1", "created_at": 1763131000,' ||
  ' "room": {"name": "session-456"}, "participant": {"sid": "PA_snake1", "identity": "456_ahmed",' ||
  ' "joined_at": 1763131000, "kind": 0, "state": 2}}') - 'log_id';
RESET client_min_messages;
SELECT attendance_fold() ->> 'events' AS folded;
SELECT c.participant_sid, c.user_key, m.user_id, c.join_time FROM attendance_sessions c
JOIN meeting_attendances m USING (session_id, user_key) WHERE participant_sid = 'PA_snake1';

-- 6. the hand-written curl test (snake_case, no createdAt, unsigned): refused outside
-- development mode; in development mode logged as a development event timed by joined_at
\set curl `cat test/fixtures/development/curl-participant-joined.json`
RESET attendance.development_mode;
SELECT pg_temp.try_ingest(:'curl', NULL) AS outcome;
SET attendance.development_mode = on;
SET client_min_messages = error;
SELECT attendance_ingest_webhook(:'curl') - 'log_id' AS answer;
RESET client_min_messages;
SELECT event_id, event_timestamp, joined_at, development_event, reason FROM meeting_attendance_events
WHERE event_id = 'EV_manual_curl_1';
SELECT count(*) AS ordinary_events_marked FROM meeting_attendance_events WHERE development_event AND event_id <> 'EV_manual_curl_1';
RESET attendance.development_mode;

-- 7. the stored body is exactly what jsonb makes of the bytes, except that the value of
-- each secret-bearing field (here room.turnPassword) is "[redacted]" (docs/security.md);
-- the log builds it from the parser's document, or from the text when a number has a
-- fraction or an exponent
CREATE TEMP TABLE shapes (name text, body text);
INSERT INTO shapes VALUES
  ('every type', '{"event":"participant_joined","id":"EV_shape1","createdAt":"1763131000","room":{"name":"session-456","tags":[],"meta":{}},"participant":{"sid":"PA_shape1","identity":"user-61","name":"Ünïcödé ✓ أحمد","joinedAtMs":1763131000000,"big":18446744073709551615,"neg":-9223372036854775808,"ok":true,"no":false,"none":null,"list":[1,[2,[3,{"x":"y"}]],"\"quoted\"\n"]}}'),
  ('duplicate keys, last wins', '{"event":"participant_joined","id":"EV_shape2","createdAt":"1763131000","room":{"name":"session-456"},"participant":{"sid":"PA_shape2","identity":"user-62","name":"first","name":"second"}}'),
  ('fractions and exponents', '{"event":"participant_joined","id":"EV_shape3","createdAt":"1763131000","room":{"name":"session-456"},"participant":{"sid":"PA_shape3","identity":"user-63","score":1.50,"e":1e2,"tiny":-0.000001}}'),
  ('a secret', '{"event":"participant_joined","id":"EV_shape4","createdAt":"1763131000","room":{"name":"session-456","turnPassword":"pw-1"},"participant":{"sid":"PA_shape4","identity":"user-64"}}'),
  ('a secret and a fraction', '{"event":"participant_joined","id":"EV_shape5","createdAt":"1763131000","room":{"name":"session-456","turnPassword":"pw-2"},"participant":{"sid":"PA_shape5","identity":"user-65","score":2.50}}');
SELECT name, pg_temp.try_ingest(body, attendance_sign_webhook(body, 'APIfixture')) AS outcome FROM shapes ORDER BY name;
SELECT s.name, e.raw_webhook_data = r.expected AS same_value, e.raw_webhook_data::text = r.expected::text AS same_text,
       s.body::jsonb #> '{room,turnPassword}' IS NOT NULL AS had_secret
FROM shapes s JOIN meeting_attendance_events e ON e.event_id = s.body::jsonb->>'id',
     LATERAL (SELECT CASE WHEN s.body::jsonb #> '{room,turnPassword}' IS NULL THEN s.body::jsonb
                          ELSE jsonb_set(s.body::jsonb, '{room,turnPassword}', '"[redacted]"') END AS expected) r
ORDER BY s.name;
