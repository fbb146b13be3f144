-- Webhooks logged between installing a new package and ALTER EXTENSION UPDATE, late for
-- sessions calculated under 0.3.0, flag those sessions once the update is done, and none
-- is lost (the suspected 0.3.0 -> 0.4.0 late-webhook problem; docs/decisions.md,
-- "Versions and upgrades").
-- The database is at 0.3.0: the first version and the upgrades to 0.3.0, run with this
-- library, as the packaged upgrade runs them. 0.3.0's library is not installed, so the
-- calculation it made is written as it wrote it: the snapshot it read the log with and the
-- results it stored.
\set VERBOSITY terse
SET client_min_messages = warning;
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';
DROP EXTENSION IF EXISTS attendance CASCADE;
CREATE EXTENSION attendance VERSION '0.1.0';
ALTER EXTENSION attendance UPDATE TO '0.3.0';
RESET client_min_messages;
SELECT extversion FROM pg_extension WHERE extname = 'attendance';
SELECT attendance_add_webhook_key('APIlate', 'late-secret-0123456789abcdef0123');
CREATE FUNCTION pg_temp.hook(kind text, id text, at timestamptz, room text, sid text, person int,
                             joined timestamptz) RETURNS text LANGUAGE sql AS $$
    SELECT attendance_ingest_webhook(b, attendance_sign_webhook(b, 'APIlate'))->>'result'
    FROM (SELECT json_build_object('event', kind, 'id', id, 'createdAt', extract(epoch FROM at)::bigint::text,
                                   'room', json_build_object('name', room, 'sid', 'RM_' || room),
                                   'participant', json_build_object('sid', sid, 'identity', 'user-' || person,
                                       'joinedAtMs', (extract(epoch FROM joined) * 1000)::bigint::text))::text) x(b);
$$;
-- Two classes, 09:00 to 10:00, in rooms of their own; class 801 expects persons 1, 2 and 3.
SELECT (attendance_schedule_session(801, 'room-801', '2025-11-20 09:00Z', '2025-11-20 10:00Z')).session_id;
SELECT (attendance_schedule_session(802, 'room-802', '2025-11-20 09:00Z', '2025-11-20 10:00Z')).session_id;
SELECT (attendance_expect(801, u)).user_id FROM (VALUES (1), (2), (3)) v(u);
-- What came in time: person 1 the whole class, person 2 from 09:05 (the leave has not come),
-- person 5 in class 802 from 09:00 to 09:50. Folded, then calculated under 0.3.0.
SELECT pg_temp.hook('participant_joined', 'EV_l1j', '2025-11-20 09:00Z', 'room-801', 'PA_l1', 1, '2025-11-20 09:00Z');
SELECT pg_temp.hook('participant_left', 'EV_l1l', '2025-11-20 10:00Z', 'room-801', 'PA_l1', 1, '2025-11-20 09:00Z');
SELECT pg_temp.hook('participant_joined', 'EV_l2j', '2025-11-20 09:05Z', 'room-801', 'PA_l2', 2, '2025-11-20 09:05Z');
SELECT pg_temp.hook('participant_joined', 'EV_l5j', '2025-11-20 09:00Z', 'room-802', 'PA_l5', 5, '2025-11-20 09:00Z');
SELECT pg_temp.hook('participant_left', 'EV_l5l', '2025-11-20 09:50Z', 'room-802', 'PA_l5', 5, '2025-11-20 09:00Z');
SELECT (attendance_fold()->>'sessions')::int AS folded_sessions;
UPDATE attendance_session_schedule
SET calculated_at = now(), calculated_snapshot = pg_current_snapshot(), needs_calculation = false,
    recalculation_cause = NULL, needs_fold = false, room_finished_at = NULL;
UPDATE meeting_attendances m
SET is_calculated = true, attendance_calculated_at = now(), policy_name = 'default', status_rule = r.status,
    attendance_status = r.status, attendance_percentage = r.pct, presence_ms = r.ms,
    total_duration_minutes = r.ms / 60000, session_duration_minutes = 60
FROM (VALUES (801, '1', 'present', 100.00, 3600000), (801, '2', 'present', 91.67, 3300000),
             (801, '3', 'absent', 0.00, 0), (802, '5', 'present', 83.33, 3000000)) r(session_id, user_key, status, pct, ms)
WHERE m.session_id = r.session_id AND m.user_key = r.user_key;
SELECT session_id, user_key, attendance_status, is_calculated FROM meeting_attendances ORDER BY 1, 2;
SELECT max(id) AS seen_by_the_calculations FROM meeting_attendance_events \gset

-- The new package is installed (this library); until ALTER EXTENSION UPDATE its scheduler
-- idles, and webhooks are logged, each in its own transaction: person 2's leave at 09:20,
-- person 3 (who never came in time) from 09:10 to 09:55, person 6 in class 802 from 09:30 to
-- 09:45, and a redelivery of an event logged before.
SELECT pg_temp.hook('participant_left', 'EV_l2l', '2025-11-20 09:20Z', 'room-801', 'PA_l2', 2, '2025-11-20 09:05Z');
SELECT pg_temp.hook('participant_joined', 'EV_l3j', '2025-11-20 09:10Z', 'room-801', 'PA_l3', 3, '2025-11-20 09:10Z');
SELECT pg_temp.hook('participant_left', 'EV_l3l', '2025-11-20 09:55Z', 'room-801', 'PA_l3', 3, '2025-11-20 09:10Z');
SELECT pg_temp.hook('participant_joined', 'EV_l6j', '2025-11-20 09:30Z', 'room-802', 'PA_l6', 6, '2025-11-20 09:30Z');
SELECT pg_temp.hook('participant_left', 'EV_l6l', '2025-11-20 09:45Z', 'room-802', 'PA_l6', 6, '2025-11-20 09:30Z');
SELECT pg_temp.hook('participant_left', 'EV_l5l', '2025-11-20 09:50Z', 'room-802', 'PA_l5', 5, '2025-11-20 09:00Z');
SELECT count(*) AS events_before_the_update FROM meeting_attendance_events \gset

SET client_min_messages = warning;
ALTER EXTENSION attendance UPDATE;
RESET client_min_messages;
SELECT extversion = (SELECT default_version FROM pg_available_extensions WHERE name = 'attendance') AS current
FROM pg_extension WHERE extname = 'attendance';
-- The update derived nothing: the fold the 0.2.0 -> 0.3.0 and 0.3.0 -> 0.4.0 scripts call
-- does nothing while an extension script runs. The late webhooks are above the fold's
-- watermark, and the 0.4.1 -> 0.5.0 script flagged every calculated session for the rules
-- of 0.5.0. (Before the fold did nothing there, the 0.3.0 -> 0.4.0 script's fold had
-- flagged both sessions for their late webhooks already: docs/decisions.md.)
SELECT (SELECT safe_id FROM attendance_fold_state) = :seen_by_the_calculations AS watermark_before_the_late_webhooks;
SELECT session_id, needs_calculation, recalculation_cause, needs_fold FROM attendance_session_schedule ORDER BY 1;
-- Nothing is lost: every event is logged once, and those logged after the calculations are
-- the ones their snapshot did not see (logged_xid, kept through the move into partitions).
SELECT count(*) = :events_before_the_update AS all_logged, count(DISTINCT event_id) = count(*) AS once
FROM meeting_attendance_events;
SELECT e.event_id, s.session_id, _attendance_unseen_by(e.logged_xid, s.calculated_snapshot) AS unseen
FROM meeting_attendance_events e
JOIN attendance_session_schedule s ON s.room_name = e.room_name
ORDER BY e.id;

-- The scheduler's next run folds (it runs attendance_fold() first, within a minute of the
-- update; test/e2e/test_worker.py): each late webhook flags its calculated session.
SELECT f->>'sessions' AS sessions, f->>'flagged' AS flagged, f->>'complete' AS complete
FROM attendance_fold() f;
SELECT session_id, needs_calculation, recalculation_cause FROM attendance_session_schedule ORDER BY 1;
SELECT (SELECT safe_id FROM attendance_fold_state) >= max(id) AS all_folded FROM meeting_attendance_events;
-- Recalculating counts every late webhook, and the audit says why each result changed.
SELECT session_id, user_key, attendance_status, attendance_percentage
FROM attendance_calculate(801) UNION ALL SELECT session_id, user_key, attendance_status, attendance_percentage
FROM attendance_calculate(802) ORDER BY 1, 2;
SELECT session_id, user_key, old_status, new_status, cause FROM attendance_status_changes ORDER BY session_id, user_key;
SELECT session_id, needs_calculation FROM attendance_session_schedule ORDER BY 1;
