-- The worked example of the fixture README reproduced exactly; late webhooks, overrides,
-- reconciliation, policies, explain, and recalculation from scratch.
\set VERBOSITY terse
\i test/sql/setup_456.psql
SET attendance.replay_mode = on;
\set fixture test/fixtures/livekit/session-456.jsonl
\set ECHO none
\i test/sql/replay.psql
\set ECHO all
SET client_min_messages = warning;  -- the NOTICE that no scheduler runs in this database

-- The README's table: presence in ms, percentage, status
SELECT user_id, role, presence_ms, attendance_percentage, attendance_status, status_rule, total_duration_minutes,
       session_duration_minutes, is_calculated, policy_name
FROM attendance_calculate(456);
SELECT count(*) AS recorder_rows FROM meeting_attendances WHERE user_key = 'egress-rec';
SELECT session_id, calculated_at IS NOT NULL AS calculated, needs_calculation FROM attendance_session_schedule;

-- explain: the trace behind user 12's status
SELECT e->>'rule' AS rule, e->>'percentage' AS pct, e->>'presence_seconds' AS seconds, e->'window'->>'effective_end_source' AS open_closed_at,
       jsonb_array_length(e->'connections') AS connections, e->'policy'->>'name' AS policy
FROM attendance_explain(456, 12) e;
SELECT c->>'sid' AS sid, c->>'open' AS open, c->>'end_source' AS end_source, c->>'clipped_ms' AS clipped_ms
FROM attendance_explain(456, 12) e, jsonb_array_elements(e->'connections') c ORDER BY 1;
SELECT attendance_explain(456, 999);

-- calculating again changes nothing and audits nothing
SELECT count(*) AS rows FROM attendance_calculate(456);
SELECT count(*) AS audit_rows FROM attendance_status_changes;

-- reconciliation is a rule of the derivation: user 12's lost leave is closed at room_finished
-- (synthetic, labelled) already; attendance_reconcile() finds no connection left open
SELECT attendance_reconcile();
SELECT participant_sid, leave_time, end_reason, leave_is_synthetic, disconnect_reason FROM attendance_sessions
WHERE participant_sid = 'PA_abc123ahmed2';
SELECT user_id, attendance_percentage, attendance_status FROM meeting_attendances WHERE user_id = 12;

-- the lost leave arrives late (15:14:58): it replaces the synthetic leave, flags the session,
-- and the due calculation amends user 12 with exactly one audit row
RESET attendance.replay_mode;
SELECT r->>'result' AS result FROM attendance_ingest_webhook(
  '{"event":"participant_left","id":"EV_lostleave12","createdAt":"1763133298","room":{"name":"session-456","sid":"RM_9riR8rKUGCas"},'
  '"participant":{"sid":"PA_abc123ahmed2","identity":"user-12","joinedAtMs":"1763131471000","name":"أحمد محمد","disconnectReason":"CLIENT_INITIATED"}}',
  attendance_sign_webhook(
  '{"event":"participant_left","id":"EV_lostleave12","createdAt":"1763133298","room":{"name":"session-456","sid":"RM_9riR8rKUGCas"},'
  '"participant":{"sid":"PA_abc123ahmed2","identity":"user-12","joinedAtMs":"1763131471000","name":"أحمد محمد","disconnectReason":"CLIENT_INITIATED"}}',
  'APIfixture')) r;
-- the fold (the worker's, every attendance.fold_interval) sees it: a late webhook
SELECT attendance_fold();
SELECT participant_sid, leave_time, end_reason, leave_is_synthetic FROM attendance_sessions WHERE participant_sid = 'PA_abc123ahmed2';
SELECT needs_calculation, recalculation_cause FROM attendance_session_schedule WHERE session_id = 456;
SELECT user_id, is_calculated FROM meeting_attendances WHERE user_id = 12;
SELECT * FROM attendance_calculate();
SELECT user_id, presence_ms, attendance_percentage, attendance_status, is_calculated FROM meeting_attendances WHERE user_id = 12;
SELECT session_id, user_key, old_status, new_status, old_percentage, new_percentage, cause FROM attendance_status_changes ORDER BY id;

-- the correct leave time (15:14:58) was 1829 s - 2 s: 2562.7 s of 2700 s
SELECT (e->>'presence_seconds') AS seconds, e->>'percentage' AS pct FROM attendance_explain(456, 12) e;

-- an override (excused) with reason and actor, audited, and never overwritten
SELECT user_id, attendance_status, status_rule FROM attendance_override(456, 19, 'Excused', 'doctor''s note');
SELECT user_id, attendance_status, status_rule, attendance_percentage FROM attendance_calculate(456) WHERE user_id = 19;
SELECT user_key, status, reason, actor = session_user AS actor_recorded FROM attendance_overrides;
SELECT user_key, old_status, new_status, cause FROM attendance_status_changes WHERE user_key = '19';
SELECT attendance_override(456, 19, 'excused', '  ');
SELECT attendance_override(456, 19, 'ex cused!', 'x');
-- an override for a person with no row yet (not on the roster, never joined) makes the
-- row and is audited
SELECT user_key, attendance_status, status_rule FROM attendance_override(456, 77, 'excused', 'joined by phone');
SELECT user_key, old_status, new_status, cause FROM attendance_status_changes WHERE user_key = '77';
SELECT attendance_override(456, 77, NULL, 'entered by mistake') IS NULL AS row_gone;
SELECT user_key, old_status, new_status, cause FROM attendance_status_changes WHERE user_key = '77' ORDER BY id;

-- editing a policy's per-role numbers after calculation flags its sessions
INSERT INTO attendance_policy_roles (policy_name, role, late_after) VALUES ('default', 'teacher', '20 minutes');
SELECT needs_calculation, recalculation_cause FROM attendance_session_schedule WHERE session_id = 456;
DELETE FROM attendance_policy_roles WHERE policy_name = 'default';
SELECT * FROM attendance_calculate();
SELECT needs_calculation, recalculation_cause FROM attendance_session_schedule WHERE session_id = 456;

-- a named policy with role-specific numbers (students need 70% to be more than partial);
-- moving the session to it recalculates and audits the change
INSERT INTO attendance_policies (name, late_after, description) VALUES ('strict', '10 minutes', 'late after 10 min');
INSERT INTO attendance_policy_roles (policy_name, role, partial_below) VALUES ('strict', 'student', 70);
SELECT (attendance_schedule_session(456, 'session-456', '2025-11-14 14:30:00Z', '2025-11-14 15:15:00Z', 'strict')).policy_name;
SELECT recalculation_cause FROM attendance_session_schedule WHERE session_id = 456;
SELECT * FROM attendance_calculate();
SELECT user_id, attendance_status, attendance_percentage, policy_name FROM meeting_attendances ORDER BY user_id;
SELECT user_key, old_status, new_status, cause FROM attendance_status_changes WHERE cause = 'policy change' ORDER BY user_key;
SELECT attendance_schedule_session(456, 'session-456', '2025-11-14 14:30:00Z', '2025-11-14 15:15:00Z', 'nope');
SELECT attendance_schedule_session(457, 'session-457', '2025-11-14 15:00:00Z', '2025-11-14 14:00:00Z');
SELECT attendance_calculate(123456);

-- the per-session report an application reads
SELECT user_id, enter_time, leave_time, minutes, status, percentage, override_reason FROM attendance_session_report
WHERE session_id = 456 ORDER BY user_id;

-- recalculating from scratch (a new instance fed the logged events) gives the same answer
CREATE TEMP TABLE log_copy AS SELECT id, raw_webhook_data::text AS body FROM meeting_attendance_events;
CREATE TEMP TABLE incremental AS SELECT user_key, attendance_status, attendance_percentage, presence_ms FROM meeting_attendances;
\i test/sql/setup_456.psql
SET client_min_messages = error;
SET attendance.development_mode = on;
INSERT INTO attendance_policies (name, late_after) VALUES ('strict', '10 minutes');
INSERT INTO attendance_policy_roles (policy_name, role, partial_below) VALUES ('strict', 'student', 70);
SELECT (attendance_schedule_session(456, 'session-456', '2025-11-14 14:30:00Z', '2025-11-14 15:15:00Z', 'strict')).policy_name;
SELECT count(*) FILTER (WHERE pg_temp.try_ingest(body, NULL) LIKE 'ok:%') AS replayed FROM (SELECT * FROM log_copy ORDER BY id) l;
SELECT user_id FROM attendance_override(456, 19, 'excused', 'doctor''s note');
RESET attendance.development_mode;
SELECT count(*) FROM attendance_calculate(456);
SELECT 'only incremental' AS side, * FROM (SELECT * FROM incremental EXCEPT
  SELECT user_key, attendance_status, attendance_percentage, presence_ms FROM meeting_attendances) a
UNION ALL
SELECT 'only from scratch', * FROM (SELECT user_key, attendance_status, attendance_percentage, presence_ms FROM meeting_attendances
  EXCEPT SELECT * FROM incremental) b;
