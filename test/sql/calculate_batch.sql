-- Due sessions are calculated in batches (attendance.calculation_batch_size): one query
-- per table for the whole batch. A batch gives exactly what one session at a time gives,
-- and a failing session in a batch still never stops the others.
\set VERBOSITY terse
\i test/sql/setup_456.psql
SET client_min_messages = warning;
DELETE FROM attendance_session_schedule;
INSERT INTO attendance_policies (name, absent_below, partial_below, late_after, late_max, merge_gap)
VALUES ('strict', 20, 80, '5 minutes', 90, '2 minutes');
INSERT INTO attendance_policy_roles (policy_name, role, partial_below) VALUES ('strict', 'teacher', 95);

-- 30 past sessions of an hour; 8 users with six attendance patterns (reconnects, a lost
-- leave, an aborted connection, late, partial, never came); rosters with a teacher, an
-- observer and absentees; every fourth session under the 'strict' policy.
SELECT count(*) AS scheduled FROM (
  SELECT attendance_schedule_session(s, 'class-' || s, t, t + interval '1 hour',
                                     CASE WHEN s % 4 = 0 THEN 'strict' ELSE 'default' END)
  FROM generate_series(1, 30) s, LATERAL (SELECT timestamptz '2025-11-10 08:00Z' + s * interval '1 hour' AS t) x) q;
SELECT count(*) AS roster FROM (
  SELECT attendance_expect(s, u, CASE u WHEN 1 THEN 'teacher' WHEN 8 THEN 'observer' ELSE 'student' END)
  FROM generate_series(1, 30) s, generate_series(1, 8) u
  WHERE u = 1 OR (u = 8 AND s % 2 = 0) OR s % 3 = 0) q;

CREATE TEMP TABLE hooks AS
WITH c AS (  -- one row per connection: (session, user, connection, kind, join min, leave min)
  SELECT s, u, k, kind, j, l
  FROM generate_series(1, 30) s, generate_series(1, 8) u,
       LATERAL (SELECT (s * 7 + u * 3) % 6 AS p) p,
       LATERAL (VALUES
         (0, 1, 'left',    ((s + u) % 5)::numeric, 55::numeric),
         (1, 1, 'left',    20, 58),
         (2, 1, 'left',    5, 15),
         (2, 2, 'left',    30, 40.5),
         (3, 1, 'lost',    10, NULL),
         (5, 1, 'aborted', 2, 2),
         (5, 2, 'left',    3, 50)) v(pattern, k, kind, j, l)
  WHERE v.pattern = p.p
), t AS (
  SELECT c.*, extract(epoch FROM timestamptz '2025-11-10 08:00Z' + s * interval '1 hour') * 1000 AS t0 FROM c
), e AS (
  SELECT s, u, k, 'participant_joined' AS ev, t0 + j * 60000 AS at_ms, t0 + j * 60000 AS joined_ms FROM t
  UNION ALL
  SELECT s, u, k, CASE kind WHEN 'aborted' THEN 'participant_connection_aborted' ELSE 'participant_left' END,
         t0 + l * 60000, t0 + j * 60000 FROM t WHERE kind <> 'lost'
)
SELECT format('{"event":"%s","id":"EV_%s_%s_%s_%s","createdAt":"%s","room":{"name":"class-%s","sid":"RM_%s"},'
              '"participant":{"sid":"PA_%s_%s_%s","identity":"user-%s","name":"User %s","joinedAtMs":"%s"}}',
              ev, s, u, k, left(ev, 14), (at_ms / 1000)::bigint, s, s, s, u, k, u, u, joined_ms::bigint) AS body,
       at_ms
FROM e;
SELECT outcome, count(*) FROM (
  SELECT pg_temp.try_ingest(body, attendance_sign_webhook(body, 'APIfixture')) AS outcome
  FROM (SELECT * FROM hooks ORDER BY at_ms, body) h) o
GROUP BY 1 ORDER BY 1;
SELECT attendance_fold() ->> 'sessions' AS sessions_derived;
SELECT attendance_status FROM attendance_override(6, 3, 'excused', 'doctor''s note');

-- 1. one session at a time (session 6 was just calculated by its override)
SET attendance.calculation_batch_size = 1;
SELECT * FROM attendance_calculate();
CREATE TEMP TABLE one_by_one AS
SELECT session_id, user_key, user_id, role, attendance_status, status_rule, attendance_percentage,
       presence_ms, total_duration_minutes, session_duration_minutes, policy_name, is_calculated
FROM meeting_attendances;
SELECT attendance_status, count(*) FROM one_by_one GROUP BY 1 ORDER BY 1;
SELECT policy_name, role, attendance_status, count(*) FROM one_by_one
WHERE role = 'teacher' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;

-- 2. the same sessions again in batches of 7 (30 = 4 x 7 + 2): identical rows, and no
-- status change is audited because nothing changed
UPDATE attendance_session_schedule SET needs_calculation = true, recalculation_cause = 'batch test';
SELECT count(*) AS audit_before FROM attendance_status_changes \gset
SET attendance.calculation_batch_size = 7;
SELECT * FROM attendance_calculate();
(SELECT session_id, user_key, user_id, role, attendance_status, status_rule, attendance_percentage,
        presence_ms, total_duration_minutes, session_duration_minutes, policy_name, is_calculated
 FROM meeting_attendances EXCEPT SELECT * FROM one_by_one)
UNION ALL
(SELECT * FROM one_by_one EXCEPT
 SELECT session_id, user_key, user_id, role, attendance_status, status_rule, attendance_percentage,
        presence_ms, total_duration_minutes, session_duration_minutes, policy_name, is_calculated
 FROM meeting_attendances);
SELECT count(*) - :audit_before AS audited FROM attendance_status_changes;
SELECT count(*) AS still_due FROM attendance_session_schedule WHERE needs_calculation;

-- 3. a change in one session of a batch is audited with that session's own cause
DELETE FROM attendance_overrides WHERE session_id = 6;
UPDATE attendance_session_schedule SET needs_calculation = true,
  recalculation_cause = CASE session_id WHEN 6 THEN 'override removed' ELSE 'batch test' END;
SELECT * FROM attendance_calculate();
SELECT session_id, user_key, old_status, new_status, cause FROM attendance_status_changes
ORDER BY id DESC LIMIT 1;

-- 4. a failing session in a batch: the batch is rolled back and retried one session at
-- a time, so only that session fails, with its error recorded for the retry
CREATE FUNCTION pg_temp.fail_17() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN IF NEW.session_id = 17 THEN RAISE EXCEPTION 'boom in session 17'; END IF; RETURN NEW; END $$;
CREATE TRIGGER fail_17 BEFORE UPDATE ON meeting_attendances FOR EACH ROW EXECUTE FUNCTION pg_temp.fail_17();
UPDATE attendance_session_schedule SET needs_calculation = true, recalculation_cause = 'batch test',
  calculated_at = NULL;
SELECT * FROM attendance_calculate();
SELECT session_id, needs_calculation, calculated_at IS NOT NULL AS calculated, failed_attempts, last_error,
       next_attempt_at > now() AS backs_off
FROM attendance_session_schedule WHERE failed_attempts > 0 OR needs_calculation ORDER BY session_id;
SELECT count(*) AS calculated FROM attendance_session_schedule WHERE calculated_at IS NOT NULL;
DROP TRIGGER fail_17 ON meeting_attendances;

-- 5. chosen sessions now, batched the same way; duplicates count once; bad input is
-- refused as a whole before anything is calculated
SELECT * FROM attendance_calculate_sessions(ARRAY[17, 2, 3, 3]);
SELECT session_id, failed_attempts, last_error FROM attendance_session_schedule WHERE session_id = 17;
SELECT max(attendance_calculated_at) AS calculated_at FROM meeting_attendances \gset
SELECT * FROM attendance_calculate_sessions(ARRAY[4, 998, 999]);
SELECT count(*) AS recalculated FROM meeting_attendances WHERE attendance_calculated_at > :'calculated_at';
SELECT * FROM attendance_calculate_sessions(ARRAY[4, NULL]);
SELECT * FROM attendance_calculate_sessions(NULL);
SELECT * FROM attendance_calculate_sessions(ARRAY[[1, 2], [3, 4]]);
SELECT * FROM attendance_calculate_sessions('{}');

-- 6. a webhook matched by the room pattern only (its session was scheduled under another
-- room name) still flags the calculated session for recalculation
SELECT (attendance_schedule_session(40, 'math-40', '2025-11-12 08:00Z', '2025-11-12 09:00Z')).session_id;
SELECT count(*) AS persons FROM attendance_calculate(40);
SELECT needs_calculation, recalculation_cause FROM attendance_session_schedule WHERE session_id = 40;
\set late '{"event":"participant_joined","id":"EV_late40","createdAt":"1762935000","room":{"name":"session-40"},"participant":{"sid":"PA_late40","identity":"user-3","joinedAtMs":"1762935000000"}}'
SELECT pg_temp.try_ingest(:'late', attendance_sign_webhook(:'late', 'APIfixture')) AS outcome;
SELECT attendance_fold() ->> 'flagged' AS flagged;
SELECT needs_calculation, recalculation_cause FROM attendance_session_schedule WHERE session_id = 40;
SELECT user_key, role, attendance_status FROM attendance_calculate(40);

-- the setting's bounds
SET attendance.calculation_batch_size = 0;
SET attendance.calculation_batch_size = 10001;
RESET attendance.calculation_batch_size;
SHOW attendance.calculation_batch_size;
