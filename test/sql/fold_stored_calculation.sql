-- A calculation reads what the fold stored when nothing of the session's rooms is unfolded
-- (docs/architecture.md, "Calculation"), and the log otherwise; both give the same rows
-- (attendance.verify_calculation checks it in every suite of the test command). Which one
-- was read is shown here by altering a stored connection by hand, which nothing but this
-- test ever does.
\set VERBOSITY terse
\set fx `cat test/fixtures/livekit/session-456.jsonl`
SET client_min_messages = warning;
SET timezone = 'UTC';
SET attendance.verify_calculation = off;
CREATE EXTENSION attendance;
SELECT attendance_add_webhook_key('APIfixture', 'fixture-secret-0123456789abcdef0123') IS NULL AS key_added;
SELECT (attendance_schedule_session(456, 'session-456', '2025-11-14 14:30:00Z', '2025-11-14 15:15:00Z')).session_id;
SELECT count(*) AS expected FROM (VALUES (7, 'teacher'), (12, 'student'), (19, 'student'), (23, 'student'),
                                         (31, 'student'), (40, 'student')) v(u, r),
       LATERAL attendance_expect(456, u, r);
SET attendance.replay_mode = on;
SELECT count(*) AS delivered
FROM regexp_split_to_table(:'fx', E'\n') AS t(line), LATERAL (SELECT line::jsonb AS l) j,
     LATERAL attendance_ingest_webhook(l->>'body', l->>'authorization') r
WHERE line <> '';
RESET attendance.replay_mode;
SELECT attendance_fold() ->> 'sessions' AS folded;
-- the fold wrote each person's role and the room's room_finished
SELECT user_key, role, derived_role FROM meeting_attendances ORDER BY user_key;
SELECT room_finished_at FROM attendance_session_schedule;

-- 1. From the store: sara (19) was connected 14:50-15:05, 15 minutes
SELECT user_key, attendance_status, attendance_percentage, total_duration_minutes
FROM attendance_calculate(456) ORDER BY user_key;
-- her stored connection made to begin ten minutes earlier: the calculation follows it
UPDATE attendance_sessions SET join_time = join_time - interval '10 minutes' WHERE user_key = '19';
SELECT user_key, attendance_status, attendance_percentage, total_duration_minutes
FROM attendance_calculate(456) WHERE user_key = '19';
-- and the check against the log says what differs
SET attendance.verify_calculation = on;
SELECT user_key FROM attendance_calculate(456) WHERE user_key = '19';
SET attendance.verify_calculation = off;

-- 2. From the log: an event of the room not folded yet makes the calculation read the log
SELECT r->>'result' AS result
FROM (SELECT '{"event":"participant_joined","id":"EV_fromstore1","createdAt":"1763132000","room":{"name":"session-456"},'
             '"participant":{"sid":"PA_fromstore1","identity":"user-31","joinedAtMs":"1763132000000"}}'::text AS b) x,
     LATERAL attendance_ingest_webhook(x.b, attendance_sign_webhook(x.b, 'APIfixture')) r;
SELECT user_key, attendance_status, attendance_percentage, total_duration_minutes
FROM attendance_calculate(456) WHERE user_key IN ('19', '31') ORDER BY user_key;
-- (the calculation stored the connections it derived from the log: the change by hand is gone)
SELECT participant_sid, join_time FROM attendance_sessions WHERE user_key = '19';

-- 3. A session marked for the fold (a roster change) is read from the log as well
UPDATE attendance_sessions SET join_time = join_time - interval '10 minutes' WHERE user_key = '19';
SELECT (attendance_expect(456, 50)).user_id;
SELECT user_key, attendance_status, total_duration_minutes
FROM attendance_calculate(456) WHERE user_key IN ('19', '50') ORDER BY user_key;
SELECT attendance_fold() IS NOT NULL AS folded;
SET attendance.verify_calculation = on;
SELECT count(*) AS rows FROM attendance_calculate(456);
DROP EXTENSION attendance CASCADE;
