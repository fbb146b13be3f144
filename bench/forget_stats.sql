-- The cost of refreshing the statistics when a person is forgotten (docs/performance.md,
-- "Forgetting a person"): attendance_forget_person samples again every table it changed
-- (ANALYZE, in its own transaction), and the whole log when the log as a whole has
-- statistics. A year of sessions (:sessions of them, 60 events each: 30 persons joining
-- and leaving; 15,000 persons, each in about 1 session of 500), filled in bulk like
-- bench/partitions.py, with the results, connections and roster of each session.
-- Run in a scratch database: psql -X -d scratch -v sessions=16667 -f bench/forget_stats.sql
-- (16,667 sessions = 10^6 logged events; -v sessions=1667 for 10^5).
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS attendance CASCADE;
CREATE EXTENSION attendance;
-- 30-day partitions over 2025 (as the upgrade to 0.4.0 makes them), then the rows
SELECT count(*) AS partitions FROM (
  SELECT _attendance_log_add_partition(g.range_start, g.range_end)
  FROM generate_series(timestamptz '2025-01-01 00:00Z', '2025-12-31 00:00Z', interval '30 days') t,
       LATERAL _attendance_log_gap(t) g
  WHERE NOT EXISTS (SELECT 1 FROM _attendance_log_partitions() p WHERE t >= p.range_start AND t < p.range_end)) x;
BEGIN;
INSERT INTO attendance_session_schedule (session_id, room_name, starts_at, ends_at, calculated_at,
    needs_calculation, needs_fold, recalculation_cause)
SELECT s, 'session-' || s, t, t + interval '50 minutes', t + interval '1 hour', false, false, NULL
FROM generate_series(1, :sessions) s,
     LATERAL (SELECT timestamptz '2025-01-01 00:00Z' + make_interval(secs => s * (360.0 * 86400 / :sessions))) x(t);
-- person p of session s: user id (s % 500) * 30 + p
INSERT INTO meeting_attendance_events (event_id, event_type, event_timestamp, session_id, room_name, room_sid,
    participant_sid, participant_identity, user_id, user_key, participant_name, role, participant_kind, joined_at,
    result, api_key, raw_webhook_data, disconnect_reason, duration_minutes)
SELECT 'EV_b' || s.session_id || '_' || e, CASE WHEN e % 2 = 0 THEN 'participant_joined' ELSE 'participant_left' END,
       at, s.session_id, s.room_name, 'RM_' || s.session_id, 'PA_' || s.session_id || '_' || (e / 2),
       'user-' || u, u, u::text, 'Person ' || u, 'student', 'STANDARD', s.starts_at + make_interval(secs => e / 2 * 10),
       'recorded', 'APIbench',
       jsonb_build_object('event', CASE WHEN e % 2 = 0 THEN 'participant_joined' ELSE 'participant_left' END,
                          'id', 'EV_b' || s.session_id || '_' || e, 'createdAt', extract(epoch FROM at)::bigint::text,
                          'room', jsonb_build_object('sid', 'RM_' || s.session_id, 'name', s.room_name,
                                                     'turnPassword', '[redacted]', 'emptyTimeout', 300),
                          'participant', jsonb_build_object('sid', 'PA_' || s.session_id || '_' || (e / 2),
                                                            'identity', 'user-' || u, 'name', 'Person ' || u,
                                                            'state', 'ACTIVE', 'kind', 'STANDARD',
                                                            'metadata', '{"email":"person' || u || '@school.example"}')),
       CASE WHEN e % 2 = 1 THEN 'CLIENT_INITIATED' END, CASE WHEN e % 2 = 1 THEN 45 END
FROM attendance_session_schedule s, generate_series(0, 59) e,
     LATERAL (SELECT (s.session_id % 500) * 30 + e / 2 AS u,
                     s.starts_at + make_interval(secs => e / 2 * 10 + (e % 2) * 2700) AS at) y;
INSERT INTO attendance_sessions (session_id, participant_sid, user_key, join_time, join_source, leave_time,
    end_reason, leave_is_synthetic, join_event_id, leave_event_id)
SELECT s.session_id, 'PA_' || s.session_id || '_' || p, ((s.session_id % 500) * 30 + p)::text,
       s.starts_at + make_interval(secs => p * 10), 'joined', s.starts_at + make_interval(secs => p * 10 + 2700),
       'left', false, 'EV_b' || s.session_id || '_' || (2 * p), 'EV_b' || s.session_id || '_' || (2 * p + 1)
FROM attendance_session_schedule s, generate_series(0, 29) p;
INSERT INTO meeting_attendances (session_id, user_key, user_id, participant_identity, participant_name, role,
    first_join_time, last_leave_time, join_count, leave_count, presence_ms, attendance_percentage, attendance_status,
    status_rule, total_duration_minutes, session_duration_minutes, policy_name, is_calculated, attendance_calculated_at)
SELECT s.session_id, u::text, u, 'user-' || u, 'Person ' || u, 'student', s.starts_at, s.starts_at + interval '45 minutes',
       1, 1, 2700000, 90.00, 'present', 'present', 45, 50, 'default', true, s.calculated_at
FROM attendance_session_schedule s, generate_series(0, 29) p, LATERAL (SELECT (s.session_id % 500) * 30 + p AS u) y;
INSERT INTO attendance_roster (session_id, user_id, role)
SELECT s.session_id, (s.session_id % 500) * 30 + p, 'student' FROM attendance_session_schedule s, generate_series(0, 29) p;
UPDATE attendance_fold_state SET safe_id = (SELECT max(id) FROM meeting_attendance_events);
COMMIT;
VACUUM ANALYZE;
SELECT (SELECT count(*) FROM meeting_attendance_events) AS events,
       (SELECT count(*) FROM attendance_log_partitions WHERE state = 'attached') AS partitions,
       (SELECT count(*) FROM meeting_attendances) AS results,
       pg_size_pretty((SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('meeting_attendance_events'))) AS log_size;

-- The same function without the statistics' refresh, to compare: its body up to the
-- ANALYZEs and from the audit row on.
SELECT regexp_replace(replace(pg_get_functiondef('attendance_forget_person'::regproc), 'attendance_forget_person',
                              'bench_forget_without_statistics'),
                      '    -- The planner''s statistics.*?(    INSERT INTO)', '\1') \gexec

-- 1. The log as a whole has no statistics (autovacuum never analyzes a partitioned table;
-- VACUUM ANALYZE above did): the call analyzes the partitions that held the person's rows
-- and the derived tables. Three persons each way.
DELETE FROM pg_statistic WHERE starelid = 'meeting_attendance_events'::regclass AND stainherit;
\timing on
SELECT log_rows, connection_rows, attendance_rows, roster_rows FROM attendance_forget_person(7);
SELECT log_rows FROM bench_forget_without_statistics(8);
SELECT log_rows FROM attendance_forget_person(9);
SELECT log_rows FROM bench_forget_without_statistics(10);
SELECT log_rows FROM attendance_forget_person(11);
SELECT log_rows FROM bench_forget_without_statistics(12);
-- the ANALYZEs one by one: the partitions of one person's rows, then the derived tables
\timing off
SELECT string_agg(DISTINCT tableoid::regclass::text, ' ') AS partitions_of_user_13
FROM meeting_attendance_events WHERE user_id = 13 \gset
\timing on
SELECT format('ANALYZE %s', p) FROM unnest(string_to_array(:'partitions_of_user_13', ' ')) p \gexec
ANALYZE attendance_sessions;
ANALYZE meeting_attendances;
ANALYZE attendance_roster;

-- 2. The log as a whole has statistics (someone ran ANALYZE on it): the call analyzes the
-- whole log again, every partition included.
ANALYZE meeting_attendance_events;
SELECT log_rows FROM attendance_forget_person(14);
SELECT log_rows FROM bench_forget_without_statistics(15);
SELECT log_rows FROM attendance_forget_person(16);
SELECT log_rows FROM bench_forget_without_statistics(17);
SELECT log_rows FROM attendance_forget_person(18);
SELECT log_rows FROM bench_forget_without_statistics(19);
\timing off
DROP FUNCTION bench_forget_without_statistics(bigint);
