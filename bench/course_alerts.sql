-- The cost of courses and low-attendance alerts (docs/performance.md, "Courses and
-- alerts"): 500 past sessions in 20 courses of 25, 30 students each (15,000 results, 24,000
-- logged webhooks: every student attends some sessions and misses others), calculated
-- in one call of attendance_calculate_sessions (batches of attendance.calculation_batch_size)
-- with the sessions grouped into courses (alerts evaluated once per batch) and ungrouped
-- (nothing to evaluate); then the evaluation alone, the course report and a session.
-- Run in a scratch database: psql -X -d scratch -f bench/course_alerts.sql
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS attendance CASCADE;
CREATE EXTENSION attendance;
SELECT attendance_add_webhook_key('APIbench', 'bench-secret-0123456789abcdef0123');
SELECT count(*) AS scheduled FROM (
  SELECT attendance_schedule_session(s, 'bench-' || s, t, t + interval '1 hour', 'default',
                                     'course-' || (s % 20))
  FROM generate_series(1, 500) s,
       LATERAL (SELECT timestamptz '2025-09-01 08:00Z' + (s / 20) * interval '1 day' + (s % 20) * interval '1 hour' AS t) x) q;
SELECT count(*) AS roster FROM (SELECT attendance_expect(s, u) FROM generate_series(1, 500) s, generate_series(1, 30) u) q;
-- a student misses a session when (s * 7 + u * 13) % 10 < u % 5 (0-40 % absence)
SELECT count(*) AS webhooks FROM (
  SELECT attendance_ingest_webhook(b, attendance_sign_webhook(b, 'APIbench'))
  FROM (SELECT json_build_object('event', ev, 'id', format('EV_%s_%s_%s', s, u, ev), 'createdAt', (t0 + m * 60)::text,
               'room', json_build_object('name', 'bench-' || s),
               'participant', json_build_object('sid', format('PA_%s_%s', s, u), 'identity', 'user-' || u,
                                                'name', 'Student ' || u, 'joinedAtMs', ((t0 + 1 * 60) * 1000)::text))::text AS b
        FROM generate_series(1, 500) s, generate_series(1, 30) u,
             LATERAL (SELECT extract(epoch FROM timestamptz '2025-09-01 08:00Z' + (s / 20) * interval '1 day'
                                     + (s % 20) * interval '1 hour')::bigint AS t0) x,
             (VALUES ('participant_joined', 1), ('participant_left', 58)) v(ev, m)
        WHERE (s * 7 + u * 13) % 10 >= u % 5) q) w;
SELECT attendance_fold() IS NOT NULL AS folded;
VACUUM ANALYZE;
\timing on
-- 1. first calculation, grouped into courses: results and alerts
SELECT * FROM attendance_calculate_sessions(ARRAY(SELECT generate_series(1, 500)::bigint));
SELECT count(*) AS alerts FROM attendance_alerts;
-- 2. recalculation, grouped (nothing changes: the evaluation finds no crossing)
SELECT * FROM attendance_calculate_sessions(ARRAY(SELECT generate_series(1, 500)::bigint));
-- 3. the evaluation alone, for all 500 sessions at once
SELECT _attendance_evaluate_alerts(ARRAY(SELECT generate_series(1, 500)::bigint), array_fill('bench'::text, ARRAY[500]));
-- 4. a course's report (25 sessions x 30 persons) and a session's rows
SELECT count(*) FROM attendance_course_report('course-7', '2025-09-01', '2025-12-31');
SELECT count(*) FROM attendance_session_report WHERE session_id = 7;
\timing off
-- 5. the same recalculation, ungrouped (no course: nothing to evaluate)
UPDATE attendance_session_schedule SET course = NULL;
\timing on
SELECT * FROM attendance_calculate_sessions(ARRAY(SELECT generate_series(1, 500)::bigint));
SELECT * FROM attendance_calculate_sessions(ARRAY(SELECT generate_series(1, 500)::bigint));
\timing off
DROP EXTENSION attendance CASCADE;
