-------------------------------------------------------------------------------
-- Calculation, explanation, overrides, reconciliation, courses and alerts
-------------------------------------------------------------------------------
-- A calculation derives a session (what the fold stored, or the log), applies the status
-- rules of the library and stores one row per person, auditing every change
-- (docs/architecture.md, "Calculation").

-- Calculates one session now and returns the number of persons written (internal).
CREATE FUNCTION @extschema@._attendance_calculate_session(session_id bigint, cause text DEFAULT 'manual')
RETURNS integer
AS 'MODULE_PATHNAME', 'attendance_calculate_session'
LANGUAGE C VOLATILE STRICT SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.attendance_calculate(session_id bigint)
RETURNS SETOF @extschema@.meeting_attendances
LANGUAGE sql VOLATILE STRICT SET search_path = pg_catalog, pg_temp AS $$
    SELECT @extschema@._attendance_calculate_session($1, 'manual');
    SELECT * FROM @extschema@.meeting_attendances m WHERE m.session_id = $1
    ORDER BY m.user_id NULLS LAST, m.user_key;
$$;
COMMENT ON FUNCTION @extschema@.attendance_calculate(bigint) IS
  'Calculate one session now (provisionally before it ends) and return its attendance rows.';

-- What the scheduler runs: folds, then calculates every due session (attendance_sessions_due).
CREATE FUNCTION @extschema@.attendance_calculate(OUT processed integer, OUT failed integer)
RETURNS record
AS 'MODULE_PATHNAME', 'attendance_calculate_due'
LANGUAGE C VOLATILE SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION @extschema@.attendance_calculate() IS
  'Calculate every due session (what the background worker runs), attendance.calculation_batch_size sessions at a time; a batch that fails is retried one session at a time, each in its own subtransaction.';

CREATE FUNCTION @extschema@.attendance_calculate_sessions(session_ids bigint[], OUT processed integer, OUT failed integer)
RETURNS record
AS 'MODULE_PATHNAME', 'attendance_calculate_list'
LANGUAGE C VOLATILE SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION @extschema@.attendance_calculate_sessions(bigint[]) IS
  'Calculate these sessions now (e.g. a day''s classes), in batches like the scheduler; a failing session is recorded and the others are stored. 42704 if any is not scheduled.';

-- The trace behind a status. SECURITY DEFINER: attendance_reader runs it, and it derives
-- through the rule functions, which are the owner's only (20_rules.sql); it only reads
-- what attendance_reader may read anyway.
CREATE FUNCTION @extschema@.attendance_explain(session_id bigint, user_id bigint)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'attendance_explain'
LANGUAGE C STABLE STRICT SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
CREATE FUNCTION @extschema@.attendance_explain(session_id bigint, user_key text)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'attendance_explain'
LANGUAGE C STABLE STRICT SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

-- A manual status (e.g. excused), or with status NULL its removal; the session is
-- calculated again at once.
CREATE FUNCTION @extschema@.attendance_override(session_id bigint, user_id bigint, status text, reason text)
RETURNS @extschema@.meeting_attendances
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    result @extschema@.meeting_attendances;
    k text := attendance_override.user_id::text;
BEGIN
    IF attendance_override.session_id IS NULL OR attendance_override.user_id IS NULL THEN
        RAISE EXCEPTION 'attendance_override: session_id and user_id are required' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF coalesce(btrim(attendance_override.reason), '') = '' THEN
        RAISE EXCEPTION 'attendance_override: a reason is required' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM @extschema@.attendance_session_schedule s WHERE s.session_id = attendance_override.session_id) THEN
        RAISE EXCEPTION 'attendance_override: session % is not scheduled', attendance_override.session_id
            USING ERRCODE = 'undefined_object';
    END IF;
    IF attendance_override.status IS NULL THEN
        DELETE FROM @extschema@.attendance_overrides o
        WHERE o.session_id = attendance_override.session_id AND o.user_key = k;
    ELSE
        IF lower(attendance_override.status) !~ '^[a-z_]+$' THEN
            RAISE EXCEPTION 'attendance_override: status must be a lower-case word such as excused, not "%"', attendance_override.status
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        INSERT INTO @extschema@.attendance_overrides AS o (session_id, user_key, status, reason, actor)
        VALUES (attendance_override.session_id, k, lower(attendance_override.status), attendance_override.reason, session_user)
        ON CONFLICT ON CONSTRAINT attendance_overrides_pkey DO UPDATE
            SET status = excluded.status, reason = excluded.reason, actor = excluded.actor, created_at = now();
    END IF;
    PERFORM @extschema@._attendance_calculate_session(attendance_override.session_id,
              CASE WHEN attendance_override.status IS NULL THEN 'override removed' ELSE 'override' END);
    SELECT * INTO result FROM @extschema@.meeting_attendances m
    WHERE m.session_id = attendance_override.session_id AND m.user_key = k;
    RETURN result;
END;
$$;
COMMENT ON FUNCTION @extschema@.attendance_override(bigint, bigint, text, text) IS
  'Set (or with status NULL remove) a manual status such as excused; recalculation never overwrites it; audited.';

-- Derives again the persons with an open connection (reconciliation's rule closes
-- connections as time passes).
CREATE FUNCTION @extschema@.attendance_reconcile()
RETURNS jsonb
AS 'MODULE_PATHNAME', 'attendance_reconcile'
LANGUAGE C VOLATILE SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION @extschema@.attendance_reconcile() IS
  'Derive again every session with an open connection, so that connections whose leave never came are shown closed by the derivation''s rule.';

-------------------------------------------------------------------------------
-- Courses and low-attendance alerts (docs/sql.md, "Courses and low-attendance alerts")
-------------------------------------------------------------------------------
-- The report per person of a course's sessions that start between from_date and to_date
-- (both inclusive, dates in the caller's TimeZone). Only final results count.
CREATE FUNCTION @extschema@.attendance_course_report(course text, from_date date, to_date date)
RETURNS TABLE (user_id bigint, user_key text, participant_name text, role text,
               sessions_expected integer, present integer, late integer, partial integer,
               absent integer, excused integer, other integer, attended_minutes bigint,
               attendance_rate numeric(5,2))
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
DECLARE
    c text := attendance_course_report.course;
BEGIN
    IF c IS NULL OR from_date IS NULL OR to_date IS NULL THEN
        RAISE EXCEPTION 'attendance_course_report: no argument may be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF from_date > to_date THEN
        RAISE EXCEPTION 'attendance_course_report: from_date (%) is after to_date (%)', from_date, to_date
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM @extschema@.attendance_session_schedule s WHERE s.course = c) THEN
        RAISE EXCEPTION 'attendance_course_report: unknown course "%"', c
            USING ERRCODE = 'undefined_object',
                  HINT = 'A course is named by attendance_schedule_session(..., course => ...).';
    END IF;
    RETURN QUERY
    SELECT g.user_id, g.user_key, g.participant_name, g.role, t.sessions, t.present, t.late,
           t.partial, t.absent, t.excused, t.other, g.minutes, t.attendance_rate
    FROM (SELECT m.user_key,
                 (array_agg(m.user_id ORDER BY s.starts_at DESC) FILTER (WHERE m.user_id IS NOT NULL))[1] AS user_id,
                 (array_agg(m.participant_name ORDER BY s.starts_at DESC)
                    FILTER (WHERE m.participant_name IS NOT NULL))[1] AS participant_name,
                 (array_agg(m.role ORDER BY s.starts_at DESC))[1] AS role,
                 array_agg(m.attendance_status) AS statuses,
                 round(sum(coalesce(m.presence_ms, 0)) / 60000.0)::bigint AS minutes
          FROM @extschema@.attendance_session_schedule s
          JOIN @extschema@.meeting_attendances m ON m.session_id = s.session_id
          WHERE s.course = c AND m.is_calculated
            AND s.starts_at >= from_date::timestamptz AND s.starts_at < (to_date + 1)::timestamptz
          GROUP BY m.user_key) g,
         LATERAL @extschema@._attendance_tally(g.statuses) t
    ORDER BY g.user_id NULLS LAST, g.user_key;
END;
$$;
COMMENT ON FUNCTION @extschema@.attendance_course_report(text, date, date) IS
  'Per person of a course: sessions expected, counts per status, attended minutes and the attendance rate (excused sessions out of the denominator).';

-- Evaluates the alerts of every (course, person) the calculated sessions touch, in the
-- calculation's transaction (once per batch): raises and clears alerts and notifies each
-- change with ids only (docs/security.md, "Notifications"). `causes` are the sessions'
-- calculation causes (late webhook, override, scheduled, ...). Returns the changes.
CREATE FUNCTION @extschema@._attendance_evaluate_alerts(session_ids bigint[], causes text[])
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
