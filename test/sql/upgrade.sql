-- ALTER EXTENSION attendance UPDATE from 0.1.0 through every version to the current version keeps every logged
-- event, override and audit row, derives the connections and live rows from the log, and
-- recalculating reproduces the results 0.2.0 stored.
-- Only the current library is installed, and 0.3.0's ingestion writes columns the old
-- schema lacks; so the state 0.2.0 left is written here as 0.2.0 wrote it: the log rows
-- from the fixture's bodies, and the results of the fixture README's table.
\set VERBOSITY terse
SET client_min_messages = warning;
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';
DROP EXTENSION IF EXISTS attendance CASCADE;
CREATE EXTENSION attendance VERSION '0.1.0';
ALTER EXTENSION attendance UPDATE TO '0.2.0';
RESET client_min_messages;
SELECT extversion FROM pg_extension WHERE extname = 'attendance';
SELECT attendance_add_webhook_key('APIfixture', 'fixture-secret-0123456789abcdef0123');
INSERT INTO attendance_session_schedule (session_id, room_name, starts_at, ends_at, room_finished_at, calculated_at, needs_calculation)
VALUES (456, 'session-456', '2025-11-14 14:30:00Z', '2025-11-14 15:15:00Z', '2025-11-14 15:15:40Z', now(), false);
INSERT INTO attendance_roster (session_id, user_id, role)
VALUES (456, 7, 'teacher'), (456, 12, 'student'), (456, 19, 'student'), (456, 23, 'student'), (456, 31, 'student'), (456, 40, 'student');

\set fx `cat test/fixtures/livekit/session-456.jsonl`
INSERT INTO meeting_attendance_events (event_id, event_type, event_timestamp, session_id, room_name, room_sid,
    participant_sid, participant_identity, user_id, user_key, participant_name, role, participant_kind, joined_at,
    result, reason, api_key, raw_webhook_data)
SELECT DISTINCT ON (b->>'id') b->>'id', b->>'event', to_timestamp((b->>'createdAt')::bigint), 456, b#>>'{room,name}',
       b#>>'{room,sid}', b#>>'{participant,sid}', b#>>'{participant,identity}',
       substring(b#>>'{participant,identity}' FROM '^user-([0-9]+)$')::bigint,
       coalesce(substring(b#>>'{participant,identity}' FROM '^user-([0-9]+)$'), b#>>'{participant,identity}'),
       b#>>'{participant,name}', r.role, coalesce(b#>>'{participant,kind}', CASE WHEN b ? 'participant' THEN 'STANDARD' END),
       to_timestamp((b#>>'{participant,joinedAtMs}')::bigint / 1000.0),
       CASE WHEN b->>'event' = 'room_started' OR b#>>'{participant,kind}' = 'EGRESS' THEN 'ignored' ELSE 'recorded' END,
       NULL, 'APIfixture', b
FROM regexp_split_to_table(:'fx', E'\n') WITH ORDINALITY AS t(line, n),
     LATERAL (SELECT (line::jsonb->>'body')::jsonb AS b) j
LEFT JOIN attendance_roster r ON r.session_id = 456
     AND r.user_id = substring(b#>>'{participant,identity}' FROM '^user-([0-9]+)$')::bigint
WHERE line <> '' ORDER BY b->>'id', n;
-- the results 0.2.0 stored (the fixture README's table), an override and its audit row
INSERT INTO meeting_attendances (session_id, user_key, user_id, role, presence_ms, attendance_percentage,
    attendance_status, status_rule, total_duration_minutes, session_duration_minutes, policy_name, is_calculated,
    attendance_calculated_at)
VALUES (456, '7', 7, 'teacher', 2700000, 100.00, 'present', 'present', 45, 45, 'default', true, now()),
       (456, '12', 12, 'student', 2564700, 94.99, 'present', 'present', 43, 45, 'default', true, now()),
       (456, '19', 19, 'student', 900000, 33.33, 'excused', 'override', 15, 45, 'default', true, now()),
       (456, '23', 23, 'student', 0, 0.00, 'absent', 'no_presence', 0, 45, 'default', true, now()),
       (456, '31', 31, 'student', 0, 0.00, 'absent', 'no_presence', 0, 45, 'default', true, now()),
       (456, '40', 40, 'student', 1670000, 61.85, 'late', 'late', 28, 45, 'default', true, now());
INSERT INTO attendance_overrides (session_id, user_key, status, reason) VALUES (456, '19', 'excused', 'doctor''s note');
INSERT INTO attendance_status_changes (session_id, user_key, old_status, new_status, old_percentage, new_percentage, cause)
VALUES (456, '19', 'partial', 'excused', 33.33, 33.33, 'override');
CREATE TEMP TABLE results_0_2_0 AS
SELECT session_id, user_key, user_id, role, presence_ms, attendance_percentage, attendance_status, status_rule,
       total_duration_minutes FROM meeting_attendances;
SELECT count(*) AS events_before FROM meeting_attendance_events \gset
CREATE TEMP TABLE log_0_2_0 AS SELECT * FROM meeting_attendance_events;

ALTER EXTENSION attendance UPDATE;
SELECT extversion = (SELECT default_version FROM pg_available_extensions WHERE name = 'attendance') AS current
FROM pg_extension WHERE extname = 'attendance';
-- every logged event, override and audit row is kept
SELECT count(*) = :events_before AS events_kept FROM meeting_attendance_events;
SELECT user_key, status, reason FROM attendance_overrides;
SELECT user_key, old_status, new_status, cause FROM attendance_status_changes ORDER BY id;
-- the secrets the old rows' bodies held (room.turnPassword) are redacted; nothing else changed
SELECT count(*) AS rows, count(*) FILTER (WHERE e.raw_webhook_data #>> '{room,turnPassword}' = '[redacted]') AS redacted,
       count(*) FILTER (WHERE e.raw_webhook_data::text LIKE '%qSzKooWjtOLLXdWuBVT4vNrYlioPMhEYNnn7Ql64Zic%') AS secrets_left,
       count(*) FILTER (WHERE e.raw_webhook_data = jsonb_set(f.b, '{room,turnPassword}', '"[redacted]"')) AS stored_as_the_rule_says,
       (SELECT count(*) FROM attendance_privacy_salt) AS salts
FROM meeting_attendance_events e
JOIN (SELECT DISTINCT (line::jsonb->>'body')::jsonb AS b FROM regexp_split_to_table(:'fx', E'\n') AS t(line)
      WHERE line <> '') f ON f.b->>'id' = e.event_id;
-- 0.4.0 partitions the log by event time: every row moved, with its id, none twice,
-- nothing left in the default partition, nothing depends on the old table any more
SELECT relkind FROM pg_class WHERE oid = 'meeting_attendance_events'::regclass;
-- (the bodies as the privacy section's redaction left them)
SELECT (SELECT count(*) FROM (SELECT id, event_id, event_type, event_timestamp, _attendance_redact_secrets(raw_webhook_data) FROM log_0_2_0
        EXCEPT SELECT id, event_id, event_type, event_timestamp, raw_webhook_data FROM meeting_attendance_events) x) AS missing,
       (SELECT count(*) - count(DISTINCT id) FROM meeting_attendance_events) AS duplicated,
       (SELECT count(*) FROM meeting_attendance_events_default) AS in_default;
SELECT partition_name, range_start, range_end, (SELECT count(*) FROM meeting_attendance_events e
        WHERE e.event_timestamp >= p.range_start AND e.event_timestamp < p.range_end) AS events
FROM attendance_log_partitions p WHERE state = 'attached' AND range_end < '2026-01-01' ORDER BY range_start;
SELECT count(*) AS old_tables FROM pg_class WHERE relname = 'meeting_attendance_events_unpartitioned';
-- the immutability trigger, the reader's privilege and the id sequence came along
SELECT tgname FROM pg_trigger WHERE tgrelid = 'meeting_attendance_events'::regclass AND NOT tgisinternal;
SELECT has_table_privilege('attendance_reader', 'meeting_attendance_events', 'SELECT') AS reader_reads;
SELECT pg_get_serial_sequence('meeting_attendance_events', 'id') IS NOT NULL AS owned_sequence,
       nextval(pg_get_serial_sequence('meeting_attendance_events', 'id')) > (SELECT max(id) FROM log_0_2_0) AS sequence_ahead;
-- pg_dump keeps the rows (docs/operations.md, "Backups"): every table and sequence of the
-- extension is marked as configuration but the fold's progress, and the partitions the
-- upgrade made are tables of the log, not members of the extension
SELECT c.relname AS not_dumped FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'attendance') AND d.deptype = 'e'
  AND d.classid = 'pg_class'::regclass AND c.relkind IN ('r', 'S')
  AND c.oid <> ALL ((SELECT extconfig FROM pg_extension WHERE extname = 'attendance')::oid[]) ORDER BY 1;
SELECT count(*) AS partitions, count(d.objid) AS in_the_extension
FROM _attendance_log_partitions() p LEFT JOIN pg_depend d ON d.objid = p.partition AND d.deptype = 'e';
-- what the derivation reads of old rows was filled from their bodies; duration_minutes is the replaced application's column
SELECT event_id, disconnect_reason, duration_minutes FROM meeting_attendance_events
WHERE event_type IN ('participant_left', 'participant_connection_aborted') ORDER BY event_timestamp, event_id;
-- the update derived nothing (the fold the 0.2.0 -> 0.3.0 and 0.3.0 -> 0.4.0 scripts call
-- does nothing while an extension script runs): every session waits for the fold, and the
-- log lies above its watermark
SELECT session_id, needs_fold FROM attendance_session_schedule;
SELECT count(*) AS connections, (SELECT safe_id FROM attendance_fold_state) AS watermark FROM attendance_sessions;
-- the scheduler's next run folds first (test/e2e/test_worker.py): it derives the
-- connections from the log
SELECT f->>'sessions' AS sessions, f->>'failed' AS failed FROM attendance_fold() f;
SELECT participant_sid, user_key, join_source, end_reason, leave_is_synthetic FROM attendance_sessions ORDER BY participant_sid;
SELECT (state).safe_id >= (SELECT max(id) FROM meeting_attendance_events) AS log_folded
FROM (SELECT s AS state FROM attendance_fold_state s) f;
-- recalculating reproduces 0.2.0's results exactly, and so audits nothing
SELECT count(*) AS persons FROM attendance_calculate(456);
(SELECT session_id, user_key, user_id, role, presence_ms, attendance_percentage, attendance_status, status_rule,
        total_duration_minutes FROM meeting_attendances EXCEPT SELECT * FROM results_0_2_0)
UNION ALL
(SELECT * FROM results_0_2_0 EXCEPT
 SELECT session_id, user_key, user_id, role, presence_ms, attendance_percentage, attendance_status, status_rule,
        total_duration_minutes FROM meeting_attendances);
SELECT count(*) AS audit_rows FROM attendance_status_changes;
-- 0.4.0: the existing session stays ungrouped, the default policy has the alert defaults,
-- and attendance_schedule_session's new signature is owner-only like the old one
SELECT session_id, course FROM attendance_session_schedule;
SELECT alert_below, alert_sessions, alert_min_sessions FROM attendance_policies WHERE name = 'default';
SELECT p.oid::regprocedure AS schedule_function, has_function_privilege('public', p.oid, 'execute') AS public_can_run
FROM pg_proc p WHERE p.proname = 'attendance_schedule_session';
SELECT count(*) AS alerts FROM attendance_alerts;
-- 0.2.0's live-row function is gone; its symbol only refuses
SELECT count(*) AS refresh_functions FROM pg_proc WHERE proname = '_attendance_refresh_live';
-- the new internal functions are closed to PUBLIC
SELECT p.proname, has_function_privilege('public', p.oid, 'execute') AS public_can_run
FROM pg_proc p WHERE p.proname IN ('_attendance_flag', '_attendance_session_events', 'attendance_fold') ORDER BY 1;
-- 0.4.1: nothing is executable by PUBLIC, every function granted to another role pins its
-- search_path, the inlined rules are the owner's only, and the reader reaches them through
-- functions that run as the owner
\i test/sql/grants.psql
SELECT p.proname, p.prosecdef AS runs_as_owner, has_function_privilege('attendance_reader', p.oid, 'EXECUTE') AS reader_runs
FROM pg_proc p WHERE p.proname IN ('_attendance_match', '_attendance_session_events', '_attendance_unseen_by',
                                   '_attendance_event_session', 'attendance_explain', '_attendance_calculation_delay')
ORDER BY 1, 2;
SELECT attendance_explain(456, 12)->>'status' AS explained_as_before;
-- the maintenance's lock (0.4.1) is the log's oid
SELECT _attendance_log_lock_key() = 'meeting_attendance_events'::regclass::oid::bigint AS lock_key;
SELECT (attendance_maintain_log()->>'skipped')::boolean AS skipped;
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
-- 0.4.1, the receiver (issue 21): the key names (never the secrets) and the write probe,
-- executable by the ingest role and by no one else; a retired key's name is not listed
SELECT p.proname, has_function_privilege('public', p.oid, 'execute') AS public_can_run,
       has_function_privilege('attendance_ingest', p.oid, 'execute') AS ingest_can_run,
       p.prosecdef AS security_definer, p.proconfig
FROM pg_proc p WHERE p.proname IN ('attendance_webhook_key_names', 'attendance_write_probe') ORDER BY 1;
SELECT attendance_add_webhook_key('APIsecond', 'second-secret-0123456789abcdef');
SELECT attendance_retire_webhook_key('APIsecond', now() + interval '1 hour');
SELECT * FROM attendance_webhook_key_names();
SELECT attendance_retire_webhook_key('APIsecond');
SELECT * FROM attendance_webhook_key_names();
SELECT attendance_write_probe();
-- 0.5.0 listed the sessions calculated under the old rules and flagged them; the
-- recalculation above audited no change (the fixture's class has its own room)
SELECT session_id, version FROM attendance_upgrade_review ORDER BY session_id;
SELECT count(*) AS changes_under_new_rules FROM attendance_upgrade_changes;
SELECT needs_calculation FROM attendance_session_schedule WHERE session_id = 456;
