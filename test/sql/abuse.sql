-- Hostile input: large, deep, wide, odd numbers and times. Each is either handled or
-- rejected with a clear SQLSTATE, never a crash, never a partial write.
\set VERBOSITY terse
\i test/sql/setup_456.psql
SET client_min_messages = warning;
CREATE TEMP TABLE bodies (name text, body text);
INSERT INTO bodies VALUES
  ('100k-element array', '{"event":"track_published","id":"EV_wide","createdAt":"1763131000","room":{"name":"session-456"},"x":[' || (SELECT string_agg('1', ',') FROM generate_series(1, 100000)) || ']}'),
  ('900 kB participant name', '{"event":"participant_joined","id":"EV_huge","createdAt":"1763131000","room":{"name":"session-456"},"participant":{"sid":"PA_huge","identity":"user-88","name":"' || repeat('ب', 450000) || '"}}'),
  ('2 MB body', '{"event":"track_published","id":"EV_2mb","createdAt":"1763131000","pad":"' || repeat('x', 2 * 1024 * 1024) || '"}'),
  ('10,000 levels deep', '{"event":"track_published","id":"EV_deep","createdAt":"1763131000","x":' || repeat('{"a":', 10000) || '1' || repeat('}', 10000) || '}'),
  ('year 9999 exactly', '{"event":"room_finished","id":"EV_y9999","createdAt":"253402300799","room":{"name":"nowhere"}}'),
  ('year 10000', '{"event":"room_finished","id":"EV_y10000","createdAt":"253402300800","room":{"name":"nowhere"}}'),
  ('before 1970', '{"event":"room_finished","id":"EV_1969","createdAt":"-1","room":{"name":"nowhere"}}'),
  ('joinedAtMs out of range', '{"event":"participant_joined","id":"EV_ms","createdAt":"1763131000","room":{"name":"session-456"},"participant":{"sid":"PA_ms","identity":"user-89","joinedAtMs":"9223372036854775807"}}'),
  ('number 1e400', '{"event":"track_published","id":"EV_1e400","createdAt":"1763131000","x":1e400}'),
  ('float createdAt', '{"event":"track_published","id":"EV_float","createdAt":1763131000.5}'),
  ('lone surrogate', '{"event":"track_published","id":"EV_sur","createdAt":"1763131000","x":"\ud800"}'),
  ('NUL escaped in a key', '{"event":"track_published","id":"EV_nulkey","createdAt":"1763131000","a\u0000b":1}'),
  ('duplicate keys', '{"event":"track_published","event":"participant_joined","id":"EV_dupkey","createdAt":"1763131000"}'),
  ('identity of 200,000 digits', '{"event":"participant_joined","id":"EV_longid","createdAt":"1763131000","room":{"name":"session-456"},"participant":{"sid":"PA_longid","identity":"user-' || repeat('1', 200000) || '"}}');
SELECT name, length(body) AS bytes,
       left(pg_temp.try_ingest(body, attendance_sign_webhook(body, 'APIfixture')), 110) AS outcome
FROM bodies ORDER BY name;
-- what was accepted is stored whole; nothing partial from the rejected ones
SELECT event_id, event_type, result, length(raw_webhook_data::text) > 100000 AS big, length(participant_name) AS name_chars,
       left(user_key, 12) AS user_key
FROM meeting_attendance_events ORDER BY event_id;
SELECT attendance_fold();
SELECT c.participant_sid, left(c.user_key, 12) AS user_key, m.user_id FROM attendance_sessions c
JOIN meeting_attendances m USING (session_id, user_key) ORDER BY participant_sid;
-- A log id sequence that hands out cached ids would let a session draw an id below the
-- fold's watermark later, without holding the sequence's lock when the fold looked: the
-- fold refuses it (55000) and writes nothing.
SELECT folds AS folds_before FROM attendance_fold_state \gset
ALTER SEQUENCE meeting_attendance_events_id_seq CACHE 20;
DO $$BEGIN PERFORM attendance_fold(); EXCEPTION WHEN OTHERS THEN RAISE WARNING '%: %', SQLSTATE, SQLERRM; END$$;
SELECT folds = :folds_before AS nothing_written FROM attendance_fold_state;
ALTER SEQUENCE meeting_attendance_events_id_seq CACHE 1;
SELECT attendance_fold() ->> 'complete' AS complete;
SELECT folds = :folds_before + 1 AS folded FROM attendance_fold_state;
