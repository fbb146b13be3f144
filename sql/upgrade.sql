-- ALTER EXTENSION attendance UPDATE from 0.1.0 keeps every row, and the upgraded
-- functions give the same live rows and attendance as before.
\set VERBOSITY terse
SET client_min_messages = warning;
SET timezone = 'UTC';
DROP EXTENSION IF EXISTS attendance CASCADE;
CREATE EXTENSION attendance VERSION '0.1.0';
RESET client_min_messages;
SELECT extversion FROM pg_extension WHERE extname = 'attendance';
SELECT p.prosrc <> 'attendance_refresh_live' AS refresh_in_plpgsql FROM pg_proc p WHERE p.proname = '_attendance_refresh_live';
SELECT attendance_add_webhook_key('APIfixture', 'fixture-secret-0123456789abcdef0123');
SELECT (attendance_schedule_session(456, 'session-456', '2025-11-14 14:30:00Z', '2025-11-14 15:15:00Z')).session_id;
SELECT (attendance_expect(456, u, r)).user_id FROM (VALUES (7, 'teacher'), (12, 'student'), (19, 'student'), (23, 'student'), (31, 'student'), (40, 'student')) v(u, r);
SET attendance.replay_mode = on;
\set fixture test/fixtures/livekit/session-456.jsonl
\set ECHO none
\o /dev/null
\i test/sql/replay.psql
\o
\set ECHO all
RESET attendance.replay_mode;
SELECT count(*) AS persons FROM attendance_calculate(456);
CREATE TEMP TABLE live_before AS
SELECT session_id, user_key, first_join_time, last_leave_time, join_count, leave_count, join_leave_cycles,
       total_duration_minutes, attendance_status, attendance_percentage FROM meeting_attendances;
SELECT count(*) AS events_before FROM meeting_attendance_events \gset

ALTER EXTENSION attendance UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'attendance';
SELECT l.lanname, p.prosrc FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang WHERE p.proname = '_attendance_refresh_live';
SELECT count(*) = :events_before AS events_kept FROM meeting_attendance_events;
SELECT obj_description('attendance_calculate()'::regprocedure) LIKE '%calculation_batch_size%' AS comment_updated;
-- the key cache's invalidation triggers (per row, and for TRUNCATE), firing even under
-- session_replication_role = replica
SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'attendance_webhook_keys'::regclass AND NOT tgisinternal
ORDER BY tgname;
-- a key retired after the upgrade is refused at once in this session (its copy of the keys is dropped)
SELECT attendance_sign_webhook('{}', 'APIfixture') IS NOT NULL AS signs;
SELECT attendance_retire_webhook_key('APIfixture');
SELECT attendance_sign_webhook('{}', 'APIfixture');
-- retired_at at +/-infinity: never retired / always retired
UPDATE attendance_webhook_keys SET retired_at = 'infinity';
SELECT attendance_sign_webhook('{}', 'APIfixture') IS NOT NULL AS signs;
UPDATE attendance_webhook_keys SET retired_at = '-infinity';
SELECT attendance_sign_webhook('{}', 'APIfixture');
UPDATE attendance_webhook_keys SET retired_at = NULL;
SELECT attendance_sign_webhook('{}', 'APIfixture') IS NOT NULL AS signs;

-- moving the session rebuilds every live row through the upgraded function: wiped first,
-- they come back exactly as they were
UPDATE meeting_attendances SET first_join_time = NULL, last_leave_time = NULL, join_count = 0, leave_count = 0,
  join_leave_cycles = '[]';
SELECT (attendance_schedule_session(456, 'session-456', '2025-11-14 14:30:00Z', '2025-11-14 15:15:00Z')).recalculation_cause;
SELECT count(*) AS persons FROM attendance_calculate(456);
(SELECT session_id, user_key, first_join_time, last_leave_time, join_count, leave_count, join_leave_cycles,
        total_duration_minutes, attendance_status, attendance_percentage FROM meeting_attendances
 EXCEPT SELECT * FROM live_before)
UNION ALL
(SELECT * FROM live_before EXCEPT
 SELECT session_id, user_key, first_join_time, last_leave_time, join_count, leave_count, join_leave_cycles,
        total_duration_minutes, attendance_status, attendance_percentage FROM meeting_attendances);

-- the internal function stays closed to PUBLIC, and checks its arguments
SELECT has_function_privilege('public', '_attendance_refresh_live(bigint, text)', 'execute') AS public_can_run;
SELECT _attendance_refresh_live(456, NULL) IS NULL AS strict;
