-- Courses, the course report and low-attendance alerts (docs/sql.md): sessions grouped by
-- a course key; the report's counts and rate (excused sessions out of the denominator);
-- alerts raised when a calculation makes a person cross below the threshold, not repeated,
-- cleared on recovery (also by the recalculation after a late webhook), raised again on
-- a new crossing; every calculation path evaluates them.
\set VERBOSITY terse
\i test/sql/setup_456.psql
SET client_min_messages = warning;
-- a course of six daily sessions; alerts below 60 % over a person's last 2 sessions
INSERT INTO attendance_policies (name, alert_below, alert_sessions, alert_min_sessions)
VALUES ('course-policy', 60, 2, 2);
SELECT s, (attendance_schedule_session(s, 'alg-' || s, t, t + interval '1 hour', 'course-policy', 'algebra')).course
FROM generate_series(1, 6) s, LATERAL (SELECT timestamptz '2025-11-01 08:00Z' + s * interval '1 day' AS t) x;
-- an ungrouped session: existing calls keep working and give no course
SELECT (attendance_schedule_session(50, 'other-50', '2025-11-02 10:00Z', '2025-11-02 11:00Z')).course IS NULL AS ungrouped;
SELECT count(*) AS roster FROM (SELECT attendance_expect(s, u) FROM generate_series(1, 6) s, generate_series(1, 3) u) q;
SELECT (attendance_expect(1, 4)).user_id;
-- joins and leaves of a person in a session, minutes after its start, signed and logged
CREATE FUNCTION pg_temp.attend(s int, u int, j int, l int) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    t0 bigint := extract(epoch FROM timestamptz '2025-11-01 08:00Z' + s * interval '1 day')::bigint;
    b text;
    out text := '';
BEGIN
    FOREACH b IN ARRAY ARRAY[
        format('{"event":"participant_joined","id":"EV_%s_%s_j","createdAt":"%s","room":{"name":"alg-%s","sid":"RM_%s"},'
               '"participant":{"sid":"PA_%s_%s","identity":"user-%s","name":"User %s","joinedAtMs":"%s"}}',
               s, u, t0 + j * 60, s, s, s, u, u, u, (t0 + j * 60) * 1000),
        format('{"event":"participant_left","id":"EV_%s_%s_l","createdAt":"%s","room":{"name":"alg-%s","sid":"RM_%s"},'
               '"participant":{"sid":"PA_%s_%s","identity":"user-%s","name":"User %s","joinedAtMs":"%s"}}',
               s, u, t0 + l * 60, s, s, s, u, u, u, (t0 + j * 60) * 1000)]
    LOOP
        out := out || (attendance_ingest_webhook(b, attendance_sign_webhook(b, 'APIfixture')) ->> 'result') || ' ';
    END LOOP;
    RETURN btrim(out);
END $$;
-- user 1 always present; user 3 present, excused in session 2; user 2 misses sessions 1-3,
-- attends 4 and 5 and (by a webhook that arrives late) 6; user 4 is excused in the only
-- session he was expected in
SELECT s, u, pg_temp.attend(s, u, 0, 60) AS logged
FROM generate_series(1, 6) s, generate_series(1, 3) u
WHERE u = 1 OR (u = 3 AND s <> 2) OR (u = 2 AND s IN (4, 5))
ORDER BY s, u;
CREATE VIEW alerts AS
SELECT id, course, user_key, rate, threshold, sessions_counted, raised_session_id, raised_cause,
       cleared_at IS NOT NULL AS cleared, cleared_rate, cleared_session_id, cleared_cause
FROM attendance_alerts ORDER BY id;

-- 1. one session counted: below the threshold, but fewer than alert_min_sessions
SELECT count(*) AS persons FROM attendance_calculate(1);
SELECT * FROM alerts;
-- 2. the override path (an excuse recalculates session 2), then the crossing: user 2 at 0 %
SELECT attendance_status FROM attendance_override(2, 3, 'excused', 'doctor''s note');
SELECT * FROM alerts;
SELECT course, user_id, user_key, participant_name, rate, threshold, sessions_counted, raised_session_id, raised_cause
FROM attendance_low_attendance;
-- 3. still below, in one batch of two sessions: not repeated
SELECT * FROM attendance_calculate_sessions(ARRAY[4, 3]);
SELECT * FROM alerts;
-- 4. recovered (sessions 4 and 5 attended: 100 %): cleared, and the view is empty
SELECT count(*) AS persons FROM attendance_calculate(5);
SELECT * FROM alerts;
SELECT count(*) AS open_alerts FROM attendance_low_attendance;
-- 5. crossing again (session 6: absent, 50 %): a new alert
SELECT count(*) AS persons FROM attendance_calculate(6);
SELECT * FROM alerts;
-- 6. the late webhook: user 2 was in session 6 after all. The scheduler's path (fold,
-- then every due session) recalculates it and clears the alert, saying so
SELECT pg_temp.attend(6, 2, 0, 60) AS late_webhook;
SELECT * FROM attendance_calculate();
SELECT * FROM alerts;
SELECT session_id, user_key, old_status, new_status, cause FROM attendance_status_changes
WHERE session_id = 6 ORDER BY id;
-- the same numbers again: nothing changes, nothing is raised or cleared
SELECT count(*) AS persons FROM attendance_calculate(6);
SELECT count(*) AS alerts FROM attendance_alerts;

-- The report: counts, minutes, the rate with excused sessions out of the denominator,
-- and NULL for user 4, whose only session is excused
SELECT attendance_status FROM attendance_override(1, 4, 'excused', 'moved in late');
SELECT * FROM attendance_course_report('algebra', '2025-11-01', '2025-11-30');
-- the dates are inclusive and filter by the sessions' start
SELECT user_key, sessions_expected, absent, attendance_rate
FROM attendance_course_report('algebra', '2025-11-03', '2025-11-04') ORDER BY user_key;
SELECT count(*) AS none FROM attendance_course_report('algebra', '2026-01-01', '2026-01-31');
-- the same rule as the alerts: one function
SELECT * FROM _attendance_tally(ARRAY['present', 'late', 'partial', 'absent', 'excused', 'sick']);
SELECT attendance_rate FROM _attendance_tally(ARRAY['excused']);
SELECT attendance_rate FROM _attendance_tally('{}');

-- Alerts off (alert_below NULL): a crossing raises nothing (the policy change flags the
-- course's sessions for recalculation)
UPDATE attendance_policies SET alert_below = NULL WHERE name = 'course-policy';
SELECT count(*) AS flagged FROM attendance_session_schedule WHERE course = 'algebra' AND needs_calculation;
SELECT attendance_status FROM attendance_override(6, 2, 'absent', 'left the camera on');
SELECT count(*) AS alerts, count(*) FILTER (WHERE cleared_at IS NULL) AS open FROM attendance_alerts;

-- Bad input: clear errors with SQLSTATEs
\set VERBOSITY sqlstate
SELECT * FROM attendance_course_report('geometry', '2025-11-01', '2025-11-30');
SELECT * FROM attendance_course_report('algebra', '2025-11-30', '2025-11-01');
SELECT * FROM attendance_course_report(NULL, '2025-11-01', '2025-11-30');
SELECT * FROM attendance_course_report('algebra', NULL, '2025-11-30');
SELECT attendance_schedule_session(7, 'alg-7', '2025-11-08 08:00Z', '2025-11-08 09:00Z', 'default', '');
INSERT INTO attendance_policies (name, alert_sessions, alert_min_sessions) VALUES ('bad', 2, 3);
\set VERBOSITY terse
SELECT * FROM attendance_course_report('geometry', '2025-11-01', '2025-11-30');
SELECT * FROM attendance_course_report('algebra', '2025-11-30', '2025-11-01');
SELECT * FROM attendance_course_report(NULL, '2025-11-01', '2025-11-30');
-- rescheduling without a course ungroups the session (the call says what the row is)
SELECT (attendance_schedule_session(50, 'other-50', '2025-11-02 10:00Z', '2025-11-02 11:00Z', 'default', 'history')).course;
SELECT (attendance_schedule_session(50, 'other-50', '2025-11-02 10:00Z', '2025-11-02 11:00Z')).course IS NULL AS ungrouped;

-- Privileges: the reader reads the report, the alerts and the view; only the owner
-- schedules and evaluates
CREATE ROLE att_course_reader LOGIN IN ROLE attendance_reader;
CREATE ROLE att_course_ingest LOGIN IN ROLE attendance_ingest;
SET ROLE att_course_reader;
SELECT count(*) AS report_rows FROM attendance_course_report('algebra', '2025-11-01', '2025-11-30');
SELECT count(*) AS alerts FROM attendance_alerts;
SELECT count(*) AS open FROM attendance_low_attendance;
SELECT attendance_schedule_session(8, 'alg-8', '2025-11-09 08:00Z', '2025-11-09 09:00Z', 'default', 'algebra');
SELECT _attendance_evaluate_alerts(ARRAY[1]::bigint[], ARRAY['manual']);
DELETE FROM attendance_alerts;
RESET ROLE;
SET ROLE att_course_ingest;
SELECT count(*) FROM attendance_course_report('algebra', '2025-11-01', '2025-11-30');
SELECT count(*) FROM attendance_low_attendance;
RESET ROLE;
DROP ROLE att_course_reader, att_course_ingest;
-- Forgetting a person (docs/security.md) re-keys their alerts to the pseudonym: the rates
-- and times stay, the user id and key go
SELECT alert_rows AS alerts_rekeyed FROM attendance_forget_person(2);
SELECT count(*) AS alerts_naming_user_2 FROM attendance_alerts WHERE user_key = '2' OR user_id = 2;
SELECT count(*) AS alerts_under_the_pseudonym FROM attendance_alerts WHERE user_id < 0 AND user_key = user_id::text;
DROP VIEW alerts;
