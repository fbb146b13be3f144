-- The log partitioned by event time (docs/architecture.md, "Partitions and retention"):
-- partitions created ahead, an event outside every partition kept and later moved into a
-- partition of its own, idempotency across partitions, retention only of partitions whose
-- sessions are final, a session whose oldest partition was retired (not recalculated, its
-- results kept, explain says so), a redelivery into a retired range, detaching.
\set VERBOSITY terse
SET attendance.partition_interval = '30min';
\i test/sql/setup_456.psql
SET client_min_messages = warning;  -- the NOTICE that no scheduler runs in this database
CREATE FUNCTION pg_temp.try(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || regexp_replace(SQLERRM, '\d{4}-\d\d-\d\d[ T][0-9:.+]+', '<time>', 'g');
END $$;
CREATE FUNCTION pg_temp.ingest(body text) RETURNS jsonb LANGUAGE sql AS $$
    SELECT attendance_ingest_webhook(body, attendance_sign_webhook(body, 'APIfixture'));
$$;

-- The log is a partitioned table with a default partition.
SELECT relkind FROM pg_class WHERE oid = 'meeting_attendance_events'::regclass;
-- A new installation has the default partition only: the partitions ahead come from the
-- scheduler's first `partitions` run (CREATE EXTENSION makes none, so that a restored
-- backup's partitions cannot collide with them: docs/operations.md, "Backups").
SELECT count(*) AS range_partitions FROM attendance_log_partitions WHERE state = 'attached';
SELECT job, status FROM attendance_run_job('partitions');
-- partitions ahead: the one holding now and attendance.partitions_ahead (2) after it
SELECT count(*) FILTER (WHERE range_start <= now() AND range_end > now()) AS holding_now,
       count(*) FILTER (WHERE range_start > now()) AS ahead,
       count(*) FILTER (WHERE range_end - range_start <> interval '30 minutes') AS other_lengths
FROM attendance_log_partitions WHERE state = 'attached';
SET attendance.partitions_ahead = 4;
SELECT job, status, processed >= 2 AS created FROM attendance_run_job('partitions');
SELECT count(*) FILTER (WHERE range_start > now()) >= 4 AS four_ahead
FROM attendance_log_partitions WHERE state = 'attached';
-- the run is recorded in the job-run history, and in the jobs' status
SELECT job, status, message ~ '^created \d+ partition' AS says_what FROM attendance_job_runs WHERE job = 'partitions' ORDER BY id;
SELECT job, last_status FROM attendance_job_status WHERE job = 'partitions';

-- The fixture's events (2025-11-14) lie outside every partition: stored in the default
-- partition, never refused; a redelivery there is a duplicate.
SET attendance.replay_mode = on;
\set fx `cat test/fixtures/livekit/session-456.jsonl`
SELECT r->>'result' AS result, count(*)
FROM regexp_split_to_table(:'fx', E'\n') WITH ORDINALITY AS t(line, n), LATERAL (SELECT line::jsonb AS l) j,
     LATERAL attendance_ingest_webhook(l->>'body', l->>'authorization') r
WHERE line <> '' GROUP BY 1 ORDER BY 1;
SELECT count(*) AS in_default FROM meeting_attendance_events_default;
-- session 789 in another room (a join 5 h 50 min early, which may still be open at its
-- start), whose event shares the 15:00 partition with 456's last ones; its reach (its window
-- widened by attendance.max_connection_age, 6 h, before the start) begins in that partition;
-- and an event of a room no session has (it never keeps a partition)
SELECT (attendance_schedule_session(789, 'session-789', '2025-11-14 21:00:00Z', '2025-11-14 22:00:00Z')).session_id;
SELECT r->>'result' AS result FROM pg_temp.ingest(
  '{"event":"participant_joined","id":"EV_789_join","createdAt":"1763133000","room":{"name":"session-789","sid":"RM_789"},'
  '"participant":{"sid":"PA_789_1","identity":"user-70","joinedAtMs":"1763133000000","name":"Seventy"}}') r;
SELECT r->>'result' AS result FROM pg_temp.ingest(
  '{"event":"participant_joined","id":"EV_nobody","createdAt":"1763131500","room":{"name":"lobby","sid":"RM_lobby"},'
  '"participant":{"sid":"PA_nobody","identity":"user-99","joinedAtMs":"1763131500000","name":"Nobody"}}') r;
SELECT attendance_fold() IS NOT NULL AS folded;
SELECT count(*) AS persons FROM attendance_calculate(456);
SELECT (attendance_override(456, 19, 'excused', 'doctor''s note')).attendance_status;
CREATE TEMP TABLE results_456 AS
SELECT user_key, presence_ms, attendance_percentage, attendance_status, status_rule FROM meeting_attendances WHERE session_id = 456;
CREATE TEMP TABLE ids_before AS SELECT id, event_id, event_timestamp FROM meeting_attendance_events;

-- Maintenance gives those rows partitions of their own (moved with their ids; nothing lost
-- or duplicated), and the calculated session does not look as if it got a late webhook.
-- (how many partitions ahead it created depends on the clock)
SELECT status, regexp_replace(message, '^created \d+ partition\(s\) ahead, ', '') AS message FROM attendance_run_job('partitions');
SELECT count(*) AS in_default FROM meeting_attendance_events_default;
SELECT partition_name, range_start, range_end FROM attendance_log_partitions WHERE range_end < '2026-01-01' ORDER BY range_start;
SELECT (SELECT count(*) FROM ids_before) AS before, (SELECT count(*) FROM meeting_attendance_events) AS after,
       (SELECT count(*) FROM (SELECT * FROM ids_before EXCEPT SELECT id, event_id, event_timestamp FROM meeting_attendance_events) x) AS missing;
UPDATE attendance_session_schedule SET needs_fold = true WHERE session_id = 456;
SELECT attendance_fold() IS NOT NULL AS folded;
SELECT session_id, needs_calculation, recalculation_cause FROM attendance_session_schedule WHERE session_id = 456;
-- the moved rows keep the transaction that logged them (logged_xid): the derivation finds
-- no event the calculation did not see, and the results stay calculated
SELECT count(*) AS events, count(*) FILTER (WHERE unseen) AS unseen FROM _attendance_session_events(ARRAY[456]::bigint[]);
SELECT count(*) AS persons, bool_and(is_calculated) AS still_calculated FROM meeting_attendances WHERE session_id = 456;
-- a redelivery now finds its event in its partition: duplicate, same row
SELECT r->>'result' AS result, r->>'reason' AS reason,
       (r->>'log_id')::bigint = (SELECT id FROM ids_before WHERE event_id = 'EV_jBraYDw5kFk2') AS same_row
FROM regexp_split_to_table(:'fx', E'\n') WITH ORDINALITY AS t(line, n), LATERAL (SELECT line::jsonb AS l) j,
     LATERAL attendance_ingest_webhook(l->>'body', l->>'authorization') r
WHERE n = 2;
SELECT count(*) AS stored FROM meeting_attendance_events WHERE event_id = 'EV_jBraYDw5kFk2';

-- Retention: everything older than 30 days. The 14:00 and 14:30 partitions hold only
-- events of session 456 (final) and of no session: retired. The 15:00 one also holds
-- an event of session 789, not calculated: kept, and the run says why.
SET attendance.event_retention = '30d';
-- a session whose webhooks have not come (not calculated) keeps every partition its reach
-- meets (_attendance_session_reach: 6 h before its start to 15 min after its end):
-- retiring them would make its webhooks "retired" when they come
SELECT (attendance_schedule_session(790, 'session-790', '2025-11-14 14:05:00Z', '2025-11-14 14:25:00Z')).session_id;
-- and so does one that starts four hours after them: a join that early, not logged yet,
-- would still count for it (until 0.5.2 only the hour before a session kept partitions)
SELECT (attendance_schedule_session(791, 'session-791', '2025-11-14 18:00:00Z', '2025-11-14 19:00:00Z')).session_id;
SELECT status, regexp_replace(message, '^created \d+ partition\(s\) ahead, ', '') AS message FROM attendance_run_job('partitions');
SELECT count(*) AS persons FROM attendance_calculate(790);
SELECT count(*) AS persons FROM attendance_calculate(791);
SELECT attendance_fold() IS NOT NULL AS folded;
-- (how many partitions ahead it created depends on the clock)
SELECT status, regexp_replace(message, '^created \d+ partition\(s\) ahead, ', '') AS message FROM attendance_run_job('partitions');
SELECT partition_name, range_start, state, estimated_events AS events FROM attendance_log_partitions
WHERE range_end < '2026-01-01' ORDER BY range_start;
SELECT partition_name, action, events, sessions FROM attendance_retired_events ORDER BY range_start;
SELECT session_id, events_retired_at IS NOT NULL AS events_retired FROM attendance_session_schedule ORDER BY 1;
-- results, overrides and audit rows are kept
SELECT (SELECT count(*) FROM (SELECT * FROM results_456 EXCEPT SELECT user_key, presence_ms, attendance_percentage,
        attendance_status, status_rule FROM meeting_attendances WHERE session_id = 456) x) AS changed_results,
       (SELECT count(*) FROM attendance_overrides WHERE session_id = 456) AS overrides,
       (SELECT count(*) FROM attendance_status_changes WHERE session_id = 456) AS audit_rows;

-- Session 456 after its oldest partitions were retired: a roster change flags it, but it
-- is not derived or calculated again (that would count only the events still logged); its
-- results stay and the schedule says why. Calculating it by hand is refused, clearly.
SELECT (attendance_expect(456, 50)).user_id;
SELECT attendance_fold() IS NOT NULL AS folded;
SELECT count(*) AS calculated FROM attendance_calculate();
SELECT session_id, needs_calculation, needs_fold, regexp_replace(last_error, '\d{4}-\d\d-\d\d[ T][0-9:.+]+', '<time>') AS last_error
FROM attendance_session_schedule WHERE session_id = 456;
SELECT pg_temp.try('SELECT attendance_calculate(456)');
SELECT (SELECT count(*) FROM (SELECT * FROM results_456 EXCEPT SELECT user_key, presence_ms, attendance_percentage,
        attendance_status, status_rule FROM meeting_attendances WHERE session_id = 456) x) AS changed_results,
       (SELECT count(*) FROM meeting_attendances WHERE session_id = 456) AS persons;
-- explain says that the events were retired, and when; a person all of whose events are
-- gone is explained by the stored result
SELECT e ? 'events_retired_at' AS says_when, e->>'events_retired' ~ '^events of this session were retired' AS says_retired,
       e->'stored'->>'status' AS stored_status
FROM attendance_explain(456, 40) e;
SELECT e ? 'events_retired_at' AS says_when, e->>'events_retired' ~ 'were retired' AS says_retired,
       e->'stored'->>'status' AS stored_status
FROM attendance_explain(456, 12) e;

-- A redelivery of an event of a retired range: acknowledged, not stored, and said so.
SELECT r->>'result' AS result, r->>'reason' ~ '^not stored: its time lies in a range of the log retired at' AS says_why,
       r->>'event_id' AS event_id
FROM regexp_split_to_table(:'fx', E'\n') WITH ORDINALITY AS t(line, n), LATERAL (SELECT line::jsonb AS l) j,
     LATERAL attendance_ingest_webhook(l->>'body', l->>'authorization') r
WHERE n = 2;
SELECT count(*) AS stored FROM meeting_attendance_events WHERE event_id = 'EV_jBraYDw5kFk2';

-- Once 789 is calculated, its partition goes too, detached for archiving this time: a
-- table of its own, outside the extension, with its rows.
SELECT count(*) AS persons FROM attendance_calculate(789);
SET attendance.retention_action = 'detach';
-- (how many partitions ahead it created depends on the clock)
SELECT status, regexp_replace(message, '^created \d+ partition\(s\) ahead, ', '') AS message FROM attendance_run_job('partitions');
SELECT partition_name, action, events, sessions FROM attendance_retired_events ORDER BY range_start;
SELECT c.relispartition, count(d.*) AS extension_member
FROM pg_class c LEFT JOIN pg_depend d ON d.objid = c.oid AND d.deptype = 'e'
WHERE c.relname = 'meeting_attendance_events_20251114_1500' GROUP BY 1;
SELECT count(*) AS archived_rows FROM meeting_attendance_events_20251114_1500;
SELECT count(*) AS logged FROM meeting_attendance_events WHERE event_timestamp < '2026-01-01';
DROP TABLE meeting_attendance_events_20251114_1500;

-- An event far ahead of every partition is stored (default partition), then moved.
SELECT r->>'result' AS result FROM pg_temp.ingest(
  '{"event":"participant_joined","id":"EV_future","createdAt":"2524608000","room":{"name":"session-999","sid":"RM_999"},'
  '"participant":{"sid":"PA_future","identity":"user-5","joinedAtMs":"2524608000000","name":"Future"}}') r;
SELECT count(*) AS in_default FROM meeting_attendance_events_default;
SELECT status FROM attendance_run_job('partitions');
SELECT count(*) AS in_default FROM meeting_attendance_events_default;
SELECT partition_name, range_start, range_end FROM attendance_log_partitions WHERE range_start >= '2050-01-01';
-- the log stays immutable in every partition
SELECT pg_temp.try($$UPDATE meeting_attendance_events SET reason = 'x' WHERE event_id = 'EV_future'$$);
RESET attendance.event_retention;
RESET attendance.retention_action;
RESET attendance.partitions_ahead;
RESET attendance.replay_mode;
