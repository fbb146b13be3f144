-- The scheduler's SQL side: run history, jobs run on demand, retention, status, views.
\set VERBOSITY terse
\i test/sql/setup_456.psql
SET client_min_messages = warning;

-- due and overdue sessions: 456 ended long ago and was never calculated
SELECT session_id, due_at < now() AS due, recalculation_cause FROM attendance_sessions_due;
SELECT session_id FROM attendance_sessions_overdue;

-- jobs run on demand are recorded like the scheduler's
SELECT job, status, processed, failed, message FROM attendance_run_job('calculate');
SELECT count(*) AS still_due FROM attendance_sessions_due;
SELECT job, status, processed, failed FROM attendance_run_job('reconcile');
SELECT attendance_run_job('vacuum');

-- retention: old runs are deleted in batches, recent and running ones kept
INSERT INTO attendance_job_runs (job, status, started_at, finished_at)
SELECT 'calculate', 'succeeded', now() - interval '40 days', now() - interval '40 days' FROM generate_series(1, 2500);
INSERT INTO attendance_job_runs (job, status, started_at) VALUES ('calculate', 'running', now() - interval '40 days');
SELECT job, status, processed, message FROM attendance_run_job('cleanup');
SELECT status, count(*) FROM attendance_job_runs GROUP BY status ORDER BY status;
DELETE FROM attendance_job_runs WHERE status = 'running';

-- status: the library is preloaded in the test cluster; the keys are stable
SELECT (s->>'preloaded')::boolean AS preloaded, s ? 'running' AS has_running, s ? 'next_due' AS has_next_due,
       jsonb_array_length(s->'last_runs') AS last_runs
FROM attendance_worker_status() s;
SELECT job, last_status, last_processed IS NOT NULL AS has_last FROM attendance_job_status ORDER BY job;

-- a roster change after calculation makes the session due again
SELECT (attendance_expect(456, 50)).user_id;
SELECT session_id, recalculation_cause FROM attendance_sessions_due;
SELECT user_id, attendance_status FROM attendance_calculate(456) WHERE user_id = 50;
SELECT attendance_expect(456, 51, 'guest');

-- a cancel (here a statement timeout) stops the whole run instead of being recorded as
-- the session's failure
CREATE FUNCTION pg_temp.slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(5); RETURN NEW; END $$;
CREATE TRIGGER slow BEFORE UPDATE ON meeting_attendances FOR EACH ROW EXECUTE FUNCTION pg_temp.slow();
SELECT (attendance_expect(456, 52)).user_id;
SET statement_timeout = '300ms';
SELECT * FROM attendance_calculate();
RESET statement_timeout;
SELECT session_id, failed_attempts, last_error FROM attendance_session_schedule;
DROP TRIGGER slow ON meeting_attendances;
