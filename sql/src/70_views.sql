-------------------------------------------------------------------------------
-- Views and reports for applications and operators (docs/sql.md, "Views";
-- docs/operations.md)
-------------------------------------------------------------------------------

-- The per-session report an application reads after NOTIFY attendance_calculated (the
-- application the extension replaces synced this per student).
CREATE VIEW @extschema@.attendance_session_report AS
SELECT m.session_id, s.room_name, s.starts_at, s.ends_at, m.user_id, m.user_key, m.participant_name, m.role,
       m.first_join_time AS enter_time, m.last_leave_time AS leave_time,
       m.total_duration_minutes AS minutes, m.attendance_status AS status, m.attendance_percentage AS percentage,
       m.status_rule, m.policy_name, m.is_calculated, m.attendance_calculated_at AS calculated_at,
       o.reason AS override_reason
FROM @extschema@.meeting_attendances m
LEFT JOIN @extschema@.attendance_session_schedule s ON s.session_id = m.session_id
LEFT JOIN @extschema@.attendance_overrides o ON o.session_id = m.session_id AND o.user_key = m.user_key;

-- The latest 1,000 webhooks, newest first, with the session each one counts for now
-- (matched when deriving: the earliest session claiming it) and the connection duration
-- for leaves.
CREATE VIEW @extschema@.attendance_recent_events AS
SELECT e.id, e.received_at, e.event_timestamp, e.event_type, e.result,
       @extschema@._attendance_event_claimed_by(e.room_name, e.event_timestamp, e.joined_at, e.session_id,
                                                e.event_type, e.participant_sid) AS session_id,
       e.room_name, e.user_id, e.user_key, e.participant_name, e.participant_sid, e.joined_at,
       CASE WHEN e.event_type = 'participant_left' AND e.joined_at IS NOT NULL
            THEN e.event_timestamp - e.joined_at END AS connection_duration,
       e.reason, e.event_id
FROM (SELECT * FROM @extschema@.meeting_attendance_events ORDER BY id DESC LIMIT 1000) e
ORDER BY e.id DESC;

-- Webhook activity per event type and result in the last N minutes.
CREATE FUNCTION @extschema@.attendance_webhook_activity(minutes integer DEFAULT 60)
RETURNS TABLE (event_type text, result text, webhooks bigint, first_received timestamptz, last_received timestamptz)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
BEGIN
    -- (PL/pgSQL: Citus plans no SQL-language function that reads a distributed table)
    RETURN QUERY
        SELECT e.event_type, e.result, count(*), min(e.received_at), max(e.received_at)
        FROM @extschema@.meeting_attendance_events e
        WHERE e.created_at >= now() - make_interval(mins => $1)
        GROUP BY e.event_type, e.result ORDER BY 3 DESC, 1, 2;
END;
$$;

-- Who is in a meeting right now: connections joined and not (yet) left.
CREATE VIEW @extschema@.attendance_in_meeting_now AS
SELECT c.session_id, s.room_name, m.user_id, c.user_key, m.participant_name, c.participant_sid, c.join_time,
       now() - c.join_time AS in_meeting_for
FROM @extschema@.attendance_sessions c
LEFT JOIN @extschema@.attendance_session_schedule s ON s.session_id = c.session_id
LEFT JOIN @extschema@.meeting_attendances m ON m.session_id = c.session_id AND m.user_key = c.user_key
WHERE c.leave_time IS NULL AND c.join_time IS NOT NULL AND c.end_reason IS NULL
ORDER BY c.join_time;

-- Recorded events no session claims, until one does (`problem`: an unknown room, or a
-- room whose sessions' windows the event's connection meets none of), and participants
-- without a user id.
CREATE VIEW @extschema@.attendance_unmatched_events AS
WITH e AS MATERIALIZED (  -- the log read by itself (docs/architecture.md, "The log's readers")
    SELECT e.id, e.received_at, e.event_type, e.room_name, e.participant_identity, e.participant_sid,
           e.event_id, e.event_timestamp, e.joined_at, e.session_id, e.user_id
    FROM @extschema@.meeting_attendance_events e WHERE e.result = 'recorded')
SELECT e.id, e.received_at, e.event_type, e.room_name, e.participant_identity, e.participant_sid,
       CASE WHEN m.session_id IS NOT NULL THEN 'no user id for identity'
            WHEN NOT @extschema@._attendance_room_known(e.room_name, e.session_id) THEN 'unknown room'
            ELSE 'outside every session window' END AS problem,
       e.event_id
FROM e
CROSS JOIN LATERAL (SELECT @extschema@._attendance_event_claimed_by(e.room_name, e.event_timestamp, e.joined_at,
                                                                    e.session_id, e.event_type, e.participant_sid)
                    AS session_id) m
WHERE m.session_id IS NULL OR (e.participant_sid IS NOT NULL AND e.user_id IS NULL)
ORDER BY e.id DESC;

-- The rooms of every session and how each is linked (20_rules.sql, _attendance_session_rooms).
CREATE VIEW @extschema@.attendance_session_room_links AS
SELECT s.session_id, r.room_name, r.link
FROM @extschema@.attendance_session_schedule s,
     LATERAL @extschema@._attendance_room_links(s.session_id) r;

-- Due: a flagged session is due calculation_delay after its end, and not before its next
-- attempt after a failure. The one home of the due rule: the scheduler,
-- attendance_calculate() and attendancectl read this.
CREATE VIEW @extschema@.attendance_sessions_due AS
SELECT s.session_id, s.room_name, s.starts_at, s.ends_at,
       greatest(s.ends_at + @extschema@._attendance_calculation_delay(),
                coalesce(s.next_attempt_at, '-infinity')) AS due_at,
       s.recalculation_cause, s.failed_attempts, s.last_error, s.calculated_at
FROM @extschema@.attendance_session_schedule s
WHERE s.needs_calculation;
CREATE VIEW @extschema@.attendance_sessions_overdue AS
SELECT d.*, now() - d.due_at AS overdue_by
FROM @extschema@.attendance_sessions_due d
WHERE d.due_at < now() - interval '1 minute';

-- The scheduler's jobs: the last run of each, failures in the last day.
CREATE VIEW @extschema@.attendance_job_status AS
SELECT j.job, last.status AS last_status, last.started_at AS last_started, last.finished_at AS last_finished,
       last.processed AS last_processed, last.failed AS last_failed, last.message AS last_message,
       (SELECT count(*) FROM @extschema@.attendance_job_runs f
         WHERE f.job = j.job AND (f.status = 'failed' OR f.failed > 0) AND f.started_at > now() - interval '1 day')
         AS failures_last_day
FROM (VALUES ('calculate'), ('reconcile'), ('partitions'), ('cleanup')) j(job)
LEFT JOIN LATERAL (SELECT * FROM @extschema@.attendance_job_runs r WHERE r.job = j.job ORDER BY r.id DESC LIMIT 1) last
  ON true;

-- The partitions of the log, the default one, and the retired ranges.
CREATE VIEW @extschema@.attendance_log_partitions AS
SELECT c.relname::text AS partition_name, p.range_start, p.range_end, 'attached'::text AS state,
       nullif(c.reltuples, -1)::bigint AS estimated_events, pg_total_relation_size(p.partition) AS bytes, NULL::timestamptz AS retired_at
FROM @extschema@._attendance_log_partitions() p JOIN pg_catalog.pg_class c ON c.oid = p.partition
UNION ALL
SELECT 'meeting_attendance_events_default', NULL, NULL, 'default',
       (SELECT count(*) FROM @extschema@.meeting_attendance_events_default),
       pg_total_relation_size('@extschema@.meeting_attendance_events_default'), NULL
UNION ALL
SELECT r.partition_name, r.range_start, r.range_end, r.action, r.events, NULL, r.retired_at
FROM @extschema@.attendance_retired_events r
ORDER BY 2 NULLS LAST;

-- Open alerts: one row per person below the threshold in a course.
CREATE VIEW @extschema@.attendance_low_attendance AS
SELECT a.id AS alert_id, a.course, a.user_id, a.user_key, n.participant_name, a.rate, a.threshold,
       a.sessions_counted, a.policy_name, a.raised_at, a.raised_session_id, a.raised_cause
FROM @extschema@.attendance_alerts a
LEFT JOIN LATERAL (
    SELECT m.participant_name FROM @extschema@.meeting_attendances m
    JOIN @extschema@.attendance_session_schedule s ON s.session_id = m.session_id
    WHERE s.course = a.course AND m.user_key = a.user_key AND m.participant_name IS NOT NULL
    ORDER BY s.starts_at DESC LIMIT 1) n ON true
WHERE a.cleared_at IS NULL
ORDER BY a.course, a.rate, a.user_key;

-- The audited changes made by the recalculation of the sessions an upgrade flagged
-- (attendance_upgrade_review).
CREATE VIEW @extschema@.attendance_upgrade_changes AS
SELECT r.version, c.*
FROM @extschema@.attendance_upgrade_review r
JOIN @extschema@.attendance_status_changes c ON c.session_id = r.session_id AND c.cause = 'rules of ' || r.version;
