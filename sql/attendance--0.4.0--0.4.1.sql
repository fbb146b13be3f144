-- attendance 0.4.0 -> 0.4.1: abuse, privacy and operations (issue 21).
\echo Use "ALTER EXTENSION attendance UPDATE TO '0.4.1'" to load this file. \quit

-------------------------------------------------------------------------------
-- Notifications (issue 21)
-------------------------------------------------------------------------------
-- Any role that can connect may LISTEN on any channel (and NOTIFY on it): PostgreSQL has
-- no privilege for channels. So a payload carries ids only, which mean nothing without
-- SELECT on the tables: attendance_calculated the session id (as before),
-- attendance_low_attendance {"alert_id": ..., "session_id": ...} (until 0.4.0 it named the
-- person, the course and the rate). A listener reads the details through attendance_reader
-- (docs/security.md, "Notifications").

-- Evaluates the alerts of every (course, person) the calculated sessions touch, in the
-- calculation's transaction (called once per batch by the calculation, src/pg/calculate.cpp):
-- raises and clears alerts and notifies each change. `causes` are the sessions'
-- calculation causes (late webhook, override, scheduled, ...). Returns the changes.
CREATE OR REPLACE FUNCTION @extschema@._attendance_evaluate_alerts(session_ids bigint[], causes text[])
RETURNS integer LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    WITH batch AS (
        SELECT s.session_id, s.course, s.starts_at, c.cause
        FROM unnest($1, $2) AS c(session_id, cause)
        JOIN @extschema@.attendance_session_schedule s ON s.session_id = c.session_id
        WHERE s.course IS NOT NULL),
    latest AS (  -- per course: the batch's latest session (the one that crossed)
        SELECT DISTINCT ON (b.course) b.course, b.session_id, b.cause
        FROM batch b ORDER BY b.course, b.starts_at DESC, b.session_id DESC),
    policy AS (  -- per course: the policy of its latest session
        SELECT DISTINCT ON (s.course) s.course, p.name, p.alert_below, p.alert_sessions, p.alert_min_sessions
        FROM @extschema@.attendance_session_schedule s
        JOIN @extschema@.attendance_policies p ON p.name = s.policy_name
        WHERE s.course IN (SELECT l.course FROM latest l)
        ORDER BY s.course, s.starts_at DESC, s.session_id DESC),
    pairs AS (  -- the persons of the batch's sessions, and those with an open alert
        SELECT b.course, m.user_key FROM batch b
        JOIN @extschema@.meeting_attendances m ON m.session_id = b.session_id
        UNION
        SELECT a.course, a.user_key FROM @extschema@.attendance_alerts a
        WHERE a.cleared_at IS NULL AND a.course IN (SELECT l.course FROM latest l)),
    eval AS MATERIALIZED (
        SELECT pr.course, pr.user_key, r.user_id, po.name AS policy_name, po.alert_below,
               t.attendance_rate AS rate, t.counted,
               coalesce(po.alert_below IS NOT NULL AND t.attendance_rate IS NOT NULL
                        AND t.counted >= po.alert_min_sessions AND t.attendance_rate < po.alert_below,
                        false) AS below,
               l.session_id, l.cause
        FROM pairs pr
        JOIN policy po ON po.course = pr.course
        JOIN latest l ON l.course = pr.course
        CROSS JOIN LATERAL (
            SELECT array_agg(x.status) AS statuses, max(x.user_id) AS user_id
            FROM (SELECT m.attendance_status AS status, m.user_id
                  FROM @extschema@.attendance_session_schedule s
                  JOIN @extschema@.meeting_attendances m ON m.session_id = s.session_id
                  WHERE s.course = pr.course AND m.user_key = pr.user_key AND m.is_calculated
                  ORDER BY s.starts_at DESC, s.session_id DESC
                  LIMIT po.alert_sessions) x) r
        CROSS JOIN LATERAL @extschema@._attendance_tally(r.statuses) t),
    cleared AS (
        UPDATE @extschema@.attendance_alerts a
        SET cleared_at = now(), cleared_rate = e.rate, cleared_session_id = e.session_id,
            cleared_cause = e.cause
        FROM eval e
        WHERE a.course = e.course AND a.user_key = e.user_key AND a.cleared_at IS NULL AND NOT e.below
        RETURNING a.id, a.cleared_session_id AS session_id),
    raised AS (
        INSERT INTO @extschema@.attendance_alerts (course, user_key, user_id, policy_name, threshold, rate,
            sessions_counted, raised_session_id, raised_cause)
        SELECT e.course, e.user_key, e.user_id, e.policy_name, e.alert_below, e.rate, e.counted,
               e.session_id, e.cause
        FROM eval e
        WHERE e.below AND NOT EXISTS (
            SELECT 1 FROM @extschema@.attendance_alerts a
            WHERE a.course = e.course AND a.user_key = e.user_key AND a.cleared_at IS NULL)
        -- a concurrent calculation of the same course that raised it first: nothing to do
        ON CONFLICT (course, user_key) WHERE cleared_at IS NULL DO NOTHING
        RETURNING id, raised_session_id AS session_id)
    -- one notification per change, its payload built here: ids only (docs/sql.md)
    SELECT count(*)::integer
    FROM (SELECT * FROM cleared UNION ALL SELECT * FROM raised ORDER BY id) x
    CROSS JOIN LATERAL (SELECT pg_notify('attendance_low_attendance', json_build_object(
        'alert_id', x.id, 'session_id', x.session_id)::text)) n;
$$;

