-- The same fixture with ", " separators (other bytes, other hashes, same meaning): the same state.
\set VERBOSITY terse
\i test/sql/setup_456.psql
SET attendance.replay_mode = on;
\set fixture test/fixtures/livekit/session-456.spaced.jsonl
\i test/sql/replay.psql

-- 15 requests, 14 distinct events logged, the duplicate not logged twice
SELECT count(*) AS logged, count(DISTINCT event_id) AS distinct_ids FROM meeting_attendance_events;
SELECT id, event_type, result, session_id, participant_sid, participant_identity, user_key, role, participant_kind,
       event_timestamp, joined_at, api_key, reason
FROM meeting_attendance_events ORDER BY id;

-- connections: the recorder has none, the aborted one never counts, user 12's second stays open
SELECT participant_sid, session_id, user_key, user_id, join_time, join_source, leave_time, end_reason,
       disconnect_reason, leave_is_synthetic
FROM attendance_sessions ORDER BY participant_sid;

-- live rows (not calculated yet)
SELECT session_id, user_key, user_id, participant_name, role, first_join_time, last_leave_time, join_count,
       leave_count, jsonb_array_length(join_leave_cycles) AS cycles, total_duration_minutes, is_calculated
FROM meeting_attendances ORDER BY user_id;

-- Arabic names round-trip byte-exact through the log, the connection and the live row
SELECT DISTINCT e.participant_name = 'أحمد محمد' AS log_ok, c.participant_name = 'أحمد محمد' AS conn_ok,
       m.participant_name = 'أحمد محمد' AS live_ok,
       e.raw_webhook_data->'participant'->>'name' = 'أحمد محمد' AS raw_ok
FROM meeting_attendance_events e JOIN attendance_sessions c USING (participant_sid)
JOIN meeting_attendances m ON m.session_id = c.session_id AND m.user_key = c.user_key
WHERE e.participant_sid = 'PA_abc123ahmed1';

-- room_finished is stored on the session
SELECT session_id, room_finished_at FROM attendance_session_schedule;

-- replaying the whole file again changes nothing: every request is a duplicate
\i test/sql/replay.psql
SELECT count(*) AS logged_after_second_replay FROM meeting_attendance_events;

-- the log is immutable
UPDATE meeting_attendance_events SET result = 'ignored' WHERE id = 2;
