-- 0.5.0's fixes around rooms: forgetting a person twice after new webhooks named them again,
-- the erasure's sessions for a room the room pattern does not name, and scheduling inside a
-- retired range of the log.
\set VERBOSITY terse
SET client_min_messages = warning;
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';
DROP EXTENSION IF EXISTS attendance CASCADE;
CREATE EXTENSION attendance;
RESET client_min_messages;
SELECT attendance_add_webhook_key('APIfixture', 'fixture-secret-0123456789abcdef0123') IS NOT NULL AS key;
-- a teacher's own room: its name names no session
SELECT (attendance_schedule_session(900, 'teacher-room', '2025-11-14 10:00Z', '2025-11-14 11:00Z')).session_id;
CREATE FUNCTION pg_temp.hook(ev text, id text, at timestamptz, sid text, who text, joined timestamptz) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE b text;
BEGIN
    b := format('{"event":"%s","id":"%s","createdAt":"%s","room":{"name":"teacher-room","sid":"RM_t"},'
                '"participant":{"sid":"%s","identity":"%s","name":"Person %s","joinedAtMs":"%s"}}',
                ev, id, extract(epoch FROM at)::bigint, sid, who, who, (extract(epoch FROM joined) * 1000)::bigint);
    RETURN attendance_ingest_webhook(b, attendance_sign_webhook(b, 'APIfixture')) ->> 'result';
END $$;
SELECT pg_temp.hook('participant_joined', 'EV_f1', '2025-11-14 10:05Z', 'PA_f1', 'user-77', '2025-11-14 10:05Z');
SELECT attendance_fold() ->> 'complete' AS folded;
SELECT (attendance_forget_person(77)).sessions AS first_erasure_sessions;
-- the same person comes back in the same session (a new connection, same identity)
SELECT pg_temp.hook('participant_joined', 'EV_f2', '2025-11-14 10:30Z', 'PA_f2', 'user-77', '2025-11-14 10:30Z');
SELECT attendance_fold() ->> 'complete' AS folded;
SELECT count(*) AS rows_before_second_forget FROM meeting_attendances WHERE session_id = 900;
SELECT (attendance_forget_person(77)).sessions AS erasure_sessions;
SELECT attendance_fold() ->> 'complete' AS folded;
-- one person, one row, under the pseudonym, with both connections
SELECT count(*) AS rows, bool_and(user_id < 0) AS pseudonymous, max(join_count) AS joins
FROM meeting_attendances WHERE session_id = 900;
SELECT count(*) AS erasures, bool_and(NOT (sessions && ARRAY[NULL]::bigint[]) AND array_position(sessions, NULL) IS NULL) AS no_null_sessions
FROM attendance_erasures;
-- scheduling inside a retired range of the log is refused, whichever way the window gets there
INSERT INTO attendance_retired_events (partition_name, range_start, range_end, action, events, sessions)
VALUES ('meeting_attendance_events_20240101_0000', '2024-01-01Z', '2024-01-31Z', 'dropped', 10, '{}');
SELECT attendance_schedule_session(901, 'room-901', '2024-01-10 10:00Z', '2024-01-10 11:00Z');
SELECT (attendance_schedule_session(902, 'room-902', '2024-02-10 10:00Z', '2024-02-10 11:00Z')).session_id;
SELECT attendance_schedule_session(902, 'room-902', '2024-01-30 23:30Z', '2024-01-31 00:30Z');
SELECT session_id, starts_at FROM attendance_session_schedule WHERE session_id IN (901, 902) ORDER BY 1;
-- a session whose window does not move (a new policy or course) passes
UPDATE attendance_retired_events SET range_end = '2024-03-01Z';
SELECT (attendance_schedule_session(902, 'room-902', '2024-02-10 10:00Z', '2024-02-10 11:00Z', 'default', 'math')).course;

-- The SQL rules read settings with a fallback for a session that has not loaded the library
-- yet; each fallback is the setting's own default (a second copy of the value, checked here
-- so that the two cannot drift apart).
SELECT DISTINCT m[1] AS setting, m[2] AS fallback,
       CASE WHEN g.unit IS NULL THEN m[2] = g.boot_val
            ELSE m[2]::interval = (g.boot_val || ' ' || g.unit)::interval END AS same_as_default
FROM pg_proc p
JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
                AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'attendance'),
     LATERAL regexp_matches(p.prosrc, '(?:_attendance_setting_interval|current_setting)\(''(attendance\.[a-z_]+)'',\s*(?:true\),\s*)?''([^'']*)''', 'g') m
JOIN pg_settings g ON g.name = m[1]
ORDER BY 1, 2;
DROP EXTENSION attendance CASCADE;
