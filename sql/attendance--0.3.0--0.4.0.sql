-- attendance 0.3.0 -> 0.4.0: a log that stays fast for years (partitions and retention),
-- high availability, and reports beyond one class (courses, alerts, exports, privacy).
\echo Use "ALTER EXTENSION attendance UPDATE TO '0.4.0'" to load this file. \quit

-------------------------------------------------------------------------------
-- Partitions and retention (docs/architecture.md)
-------------------------------------------------------------------------------
-- (issue 14: nothing yet)

-------------------------------------------------------------------------------
-- High availability
-------------------------------------------------------------------------------
-- (issue 15: nothing yet)

-------------------------------------------------------------------------------
-- Courses, low-attendance alerts and exports
-------------------------------------------------------------------------------
-- A course groups scheduled sessions (a class that meets every week). Existing sessions
-- stay ungrouped (NULL).
ALTER TABLE @extschema@.attendance_session_schedule
    ADD COLUMN course text CHECK (course <> '' AND length(course) <= 200);
COMMENT ON COLUMN @extschema@.attendance_session_schedule.course IS
  'The course (group of sessions) this session belongs to; NULL = ungrouped (docs/sql.md).';
CREATE INDEX attendance_session_schedule_course_idx
    ON @extschema@.attendance_session_schedule (course, starts_at) WHERE course IS NOT NULL;

-- The alert numbers of a policy (docs/configuration.md): a person whose attendance rate
-- over their last alert_sessions sessions of a course is below alert_below is alerted, once
-- at least alert_min_sessions of them count. On by default; alert_below NULL turns them off.
ALTER TABLE @extschema@.attendance_policies
    ADD COLUMN alert_below numeric(5,2) DEFAULT 75 CHECK (alert_below BETWEEN 0 AND 100),
    ADD COLUMN alert_sessions integer NOT NULL DEFAULT 10 CHECK (alert_sessions BETWEEN 1 AND 1000),
    ADD COLUMN alert_min_sessions integer NOT NULL DEFAULT 3 CHECK (alert_min_sessions >= 1);
ALTER TABLE @extschema@.attendance_policies
    ADD CONSTRAINT attendance_policies_alert_min_check CHECK (alert_min_sessions <= alert_sessions);
COMMENT ON COLUMN @extschema@.attendance_policies.alert_below IS
  'Low-attendance alert threshold in percent (rate below it over the last alert_sessions sessions of a course); NULL = no alerts.';

-- The one home of the attendance rate: the statuses of a person's final results in some
-- sessions, counted. present and late attend; excused sessions are out of the
-- denominator; every other status (partial, absent, any other override) is missed.
-- rate = attended / (sessions - excused) * 100, rounded to 0.01; NULL when every session
-- is excused (or there is none): no rate, and never an alert.
CREATE FUNCTION @extschema@._attendance_tally(statuses text[])
RETURNS TABLE (sessions integer, present integer, late integer, partial integer, absent integer,
               excused integer, other integer, counted integer, attendance_rate numeric(5,2))
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT t.sessions, t.present, t.late, t.partial, t.absent, t.excused,
           t.sessions - t.present - t.late - t.partial - t.absent - t.excused,
           t.sessions - t.excused,
           CASE WHEN t.sessions > t.excused
                THEN round(100.0 * (t.present + t.late) / (t.sessions - t.excused), 2) END
    FROM (SELECT count(*)::int AS sessions,
                 count(*) FILTER (WHERE s = 'present')::int AS present,
                 count(*) FILTER (WHERE s = 'late')::int AS late,
                 count(*) FILTER (WHERE s = 'partial')::int AS partial,
                 count(*) FILTER (WHERE s = 'absent')::int AS absent,
                 count(*) FILTER (WHERE s = 'excused')::int AS excused
          FROM unnest(coalesce($1, '{}'::text[])) s) t;
$$;

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

-- Low-attendance alerts: one row per crossing. An alert is open (cleared_at NULL) while the
-- person stays below the threshold; at most one open alert per course and person.
CREATE TABLE @extschema@.attendance_alerts (
    id                  bigserial PRIMARY KEY,
    course              text NOT NULL,
    user_key            text NOT NULL,
    user_id             bigint,
    policy_name         text,
    threshold           numeric(5,2) NOT NULL,
    rate                numeric(5,2) NOT NULL,
    sessions_counted    integer NOT NULL,
    raised_at           timestamptz NOT NULL DEFAULT now(),
    raised_session_id   bigint NOT NULL,
    raised_cause        text NOT NULL,
    cleared_at          timestamptz,
    cleared_rate        numeric(5,2),
    cleared_session_id  bigint,
    cleared_cause       text,
    actor               text NOT NULL DEFAULT session_user
);
CREATE UNIQUE INDEX attendance_alerts_open_idx ON @extschema@.attendance_alerts (course, user_key)
    WHERE cleared_at IS NULL;
COMMENT ON TABLE @extschema@.attendance_alerts IS
  'Low-attendance alerts: raised when a calculation makes a person''s rate in a course cross below the policy''s alert_below, cleared when one makes it recover (docs/sql.md).';

-- Evaluates the alerts of every (course, person) the calculated sessions touch, in the
-- calculation's transaction (called once per batch by the calculation, src/pg/calculate.cpp):
-- raises and clears alerts and notifies each change. `causes` are the sessions'
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
        RETURNING a.id, 'cleared' AS state, a.course, a.user_id, a.user_key, a.cleared_rate AS rate,
                  a.threshold, a.sessions_counted, a.cleared_session_id AS session_id, a.cleared_cause AS cause),
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
        RETURNING id, 'raised' AS state, course, user_id, user_key, rate, threshold, sessions_counted,
                  raised_session_id AS session_id, raised_cause AS cause)
    -- one notification per change, its payload built here (docs/sql.md)
    SELECT count(*)::integer
    FROM (SELECT * FROM cleared UNION ALL SELECT * FROM raised ORDER BY id) x
    CROSS JOIN LATERAL (SELECT pg_notify('attendance_low_attendance', json_build_object(
        'state', x.state, 'alert_id', x.id, 'course', x.course, 'user_id', x.user_id,
        'user_key', x.user_key, 'rate', x.rate, 'threshold', x.threshold,
        'sessions_counted', x.sessions_counted, 'session_id', x.session_id, 'cause', x.cause)::text)) n;
$$;

-- Open alerts, for operators: one row per person below the threshold in a course.
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

-- attendance_schedule_session gains the course (a new signature: dropped and created,
-- owner-only as before). Calls without it schedule an ungrouped session.
DROP FUNCTION @extschema@.attendance_schedule_session(bigint, text, timestamptz, timestamptz, text);
CREATE FUNCTION @extschema@.attendance_schedule_session(
    session_id bigint, room_name text, starts_at timestamptz, ends_at timestamptz, policy text DEFAULT 'default',
    course text DEFAULT NULL)
RETURNS @extschema@.attendance_session_schedule
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    result @extschema@.attendance_session_schedule;
    old_room text;
BEGIN
    IF attendance_schedule_session.session_id IS NULL OR attendance_schedule_session.room_name IS NULL
       OR attendance_schedule_session.starts_at IS NULL OR attendance_schedule_session.ends_at IS NULL
       OR attendance_schedule_session.policy IS NULL THEN
        RAISE EXCEPTION 'attendance_schedule_session: no argument may be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF attendance_schedule_session.ends_at <= attendance_schedule_session.starts_at THEN
        RAISE EXCEPTION 'attendance_schedule_session: ends_at (%) must be after starts_at (%)',
            attendance_schedule_session.ends_at, attendance_schedule_session.starts_at
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF attendance_schedule_session.course = '' OR length(attendance_schedule_session.course) > 200 THEN
        RAISE EXCEPTION 'attendance_schedule_session: a course is a non-empty name of at most 200 characters (NULL = none)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM @extschema@.attendance_policies p WHERE p.name = attendance_schedule_session.policy) THEN
        RAISE EXCEPTION 'attendance_schedule_session: unknown policy "%"', attendance_schedule_session.policy
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Policies are rows of attendance_policies.';
    END IF;
    SELECT s.room_name INTO old_room FROM @extschema@.attendance_session_schedule s
    WHERE s.session_id = attendance_schedule_session.session_id FOR UPDATE;
    INSERT INTO @extschema@.attendance_session_schedule AS s
        (session_id, room_name, starts_at, ends_at, policy_name, course)
    VALUES (attendance_schedule_session.session_id, attendance_schedule_session.room_name,
            attendance_schedule_session.starts_at, attendance_schedule_session.ends_at,
            attendance_schedule_session.policy, attendance_schedule_session.course)
    ON CONFLICT ON CONSTRAINT attendance_session_schedule_pkey DO UPDATE SET
        room_name = excluded.room_name, starts_at = excluded.starts_at, ends_at = excluded.ends_at,
        policy_name = excluded.policy_name, course = excluded.course, needs_calculation = true,
        recalculation_cause = CASE WHEN s.calculated_at IS NULL THEN s.recalculation_cause
                                   WHEN s.policy_name <> excluded.policy_name THEN 'policy change'
                                   WHEN s.course IS DISTINCT FROM excluded.course THEN 'course change'
                                   ELSE 'session moved' END,
        updated_at = now()
    RETURNING * INTO result;
    -- Matching is done when deriving: every session of the old and the new room is
    -- derived again, so the events logged before this call count as if it came first.
    UPDATE @extschema@.attendance_session_schedule s SET needs_fold = true
    WHERE (s.room_name IN (result.room_name, old_room) OR s.session_id = result.session_id) AND NOT s.needs_fold;
    PERFORM @extschema@._attendance_wake_worker();
    RETURN result;
END;
$$;

REVOKE ALL ON FUNCTION @extschema@.attendance_schedule_session(bigint, text, timestamptz, timestamptz, text, text),
    @extschema@._attendance_tally(text[]), @extschema@.attendance_course_report(text, date, date),
    @extschema@._attendance_evaluate_alerts(bigint[], text[])
  FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._attendance_tally(text[]),
    @extschema@.attendance_course_report(text, date, date)
  TO attendance_reader;
GRANT SELECT ON @extschema@.attendance_alerts, @extschema@.attendance_low_attendance TO attendance_reader;

-------------------------------------------------------------------------------
-- Privacy: secrets in stored bodies, forgetting a person
-------------------------------------------------------------------------------
-- Secrets in stored bodies (docs/security.md): ingestion stores a body whose
-- secret-bearing fields (room.turnPassword, ingress stream keys, egress upload
-- credentials, ...) are replaced by "[redacted]"; the signature is verified over the
-- received bytes first. This function is the same redaction for a stored body; the
-- rows logged before 0.4.0 pass through it once, here.
CREATE FUNCTION @extschema@._attendance_redact_secrets(body jsonb)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'attendance_redact_secrets'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
REVOKE ALL ON FUNCTION @extschema@._attendance_redact_secrets(jsonb) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@._attendance_redact_secrets(jsonb) IS
  'The body with the value of every secret-bearing field LiveKit sends replaced by "[redacted]" (what ingestion stores).';

-- The log is immutable; this upgrade's redaction is, with attendance_forget_person, one of
-- its two sanctioned changes. session_replication_role = replica (superuser only; the
-- upgrade runs as one) keeps the immutability trigger from firing, on whatever partitions
-- the table has, for this statement only.
DO $$
DECLARE
    previous text := pg_catalog.current_setting('session_replication_role');
BEGIN
    PERFORM pg_catalog.set_config('session_replication_role', 'replica', true);
    UPDATE @extschema@.meeting_attendance_events e
    SET raw_webhook_data = @extschema@._attendance_redact_secrets(e.raw_webhook_data)
    WHERE @extschema@._attendance_redact_secrets(e.raw_webhook_data) OPERATOR(pg_catalog.<>) e.raw_webhook_data;
    PERFORM pg_catalog.set_config('session_replication_role', previous, true);
END;
$$;

-- Forgetting a person (docs/security.md, "Forgetting a person"). The pseudonym of a user
-- id is a negative bigint taken from SHA-256(salt || user id), where the salt is a
-- per-installation secret (32 random bytes) readable by the owner only: without it, a
-- pseudonym cannot be reversed by trying every user id.
CREATE TABLE @extschema@.attendance_privacy_salt (
    only_row   boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    salt       bytea NOT NULL CHECK (length(salt) >= 32),
    created_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON @extschema@.attendance_privacy_salt FROM PUBLIC;
INSERT INTO @extschema@.attendance_privacy_salt (salt)
SELECT pg_catalog.decode(pg_catalog.replace(pg_catalog.gen_random_uuid()::text || pg_catalog.gen_random_uuid()::text
                                            || pg_catalog.gen_random_uuid()::text, '-', ''), 'hex');
COMMENT ON TABLE @extschema@.attendance_privacy_salt IS
  'The per-installation secret salt of the pseudonyms attendance_forget_person gives. Owner-only.';

-- The audit of every erasure: the pseudonym, never the erased user id.
CREATE TABLE @extschema@.attendance_erasures (
    id               bigserial PRIMARY KEY,
    pseudonym        bigint NOT NULL UNIQUE CHECK (pseudonym < 0),
    erased_at        timestamptz NOT NULL DEFAULT now(),
    actor            text NOT NULL DEFAULT session_user,
    sessions         bigint[] NOT NULL,
    log_rows         integer NOT NULL,
    connection_rows  integer NOT NULL,
    attendance_rows  integer NOT NULL,
    roster_rows      integer NOT NULL,
    override_rows    integer NOT NULL,
    audit_rows       integer NOT NULL,
    alert_rows       integer NOT NULL DEFAULT 0
);
COMMENT ON TABLE @extschema@.attendance_erasures IS
  'One row per attendance_forget_person call: who erased, when, the pseudonym and how many rows changed (never the erased identity).';

CREATE FUNCTION @extschema@._attendance_pseudonym(user_id bigint)
RETURNS bigint LANGUAGE sql STABLE STRICT SET search_path = pg_catalog, pg_temp AS $$
    SELECT -1 - (('x' || encode(substr(sha256(s.salt || convert_to($1::text, 'UTF8')), 1, 8), 'hex'))::bit(64)::bigint
                 & 9223372036854775807)
    FROM @extschema@.attendance_privacy_salt s;
$$;
REVOKE ALL ON FUNCTION @extschema@._attendance_pseudonym(bigint) FROM PUBLIC;

-- The one sanctioned change to the log besides the upgrade's redaction. SECURITY DEFINER
-- with session_replication_role = replica: only a superuser may set that parameter, so
-- the bypass of the immutability trigger exists only inside this function (its owner is
-- the superuser who created the extension); nobody can set it around their own UPDATE.
CREATE FUNCTION @extschema@.attendance_forget_person(user_id bigint)
RETURNS @extschema@.attendance_erasures
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET session_replication_role = replica AS $$
DECLARE
    p bigint;
    k text;
    uk text := attendance_forget_person.user_id::text;
    sessions bigint[];
    n_log integer;
    n_conn integer;
    n_att integer;
    n_roster integer;
    n_over integer;
    n_audit integer;
    n_alert integer;
    result @extschema@.attendance_erasures;
BEGIN
    IF attendance_forget_person.user_id IS NULL THEN
        RAISE EXCEPTION 'attendance_forget_person: user_id is required' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    p := @extschema@._attendance_pseudonym(attendance_forget_person.user_id);
    IF p IS NULL THEN
        RAISE EXCEPTION 'attendance_forget_person: the privacy salt is missing (attendance_privacy_salt)'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    k := p::text;
    -- The sessions the person appears in: their schedule rows are locked in id order, as
    -- the fold and calculations lock them, so that no derivation writes the person's old
    -- rows meanwhile.
    SELECT coalesce(array_agg(DISTINCT x.sid ORDER BY x.sid), '{}') INTO sessions FROM (
        SELECT m.session_id FROM @extschema@.meeting_attendances m WHERE m.user_key = uk
        UNION SELECT r.session_id FROM @extschema@.attendance_roster r WHERE r.user_id = attendance_forget_person.user_id
        UNION SELECT c.session_id FROM @extschema@.attendance_sessions c WHERE c.user_key = uk
        UNION SELECT o.session_id FROM @extschema@.attendance_overrides o WHERE o.user_key = uk
        UNION SELECT e.session_id FROM @extschema@.meeting_attendance_events e
              CROSS JOIN LATERAL (SELECT @extschema@._attendance_event_session(e.room_name, e.event_timestamp, e.session_id)
                                  AS session_id) e2(session_id)
              WHERE e.user_id = attendance_forget_person.user_id AND e2.session_id IS NOT NULL) x(sid);
    PERFORM 1 FROM @extschema@.attendance_session_schedule s
    WHERE s.session_id = ANY (sessions) ORDER BY s.session_id FOR UPDATE;

    -- The log: the person's rows keep their times, kinds, sids and role; the identity
    -- becomes the pseudonym, the name goes, and the body loses the participant's name,
    -- metadata and attributes (the identity in it becomes the pseudonym too).
    UPDATE @extschema@.meeting_attendance_events e SET
        user_id = p, user_key = k, participant_identity = k, participant_name = NULL,
        raw_webhook_data = CASE WHEN jsonb_typeof(e.raw_webhook_data -> 'participant') = 'object'
            THEN jsonb_set(e.raw_webhook_data, '{participant}',
                           ((e.raw_webhook_data -> 'participant') - 'name' - 'metadata' - 'attributes')
                           || jsonb_build_object('identity', k))
            ELSE e.raw_webhook_data END
    WHERE e.user_id = attendance_forget_person.user_id;
    GET DIAGNOSTICS n_log = ROW_COUNT;

    -- The derived rows and the inputs, under the same key, so that a later fold or
    -- calculation derives the same counts and statuses for the pseudonym.
    UPDATE @extschema@.attendance_sessions c SET user_key = k WHERE c.user_key = uk;
    GET DIAGNOSTICS n_conn = ROW_COUNT;
    UPDATE @extschema@.meeting_attendances m SET
        user_key = k, user_id = p, participant_identity = k, participant_name = NULL, updated_at = now()
    WHERE m.user_key = uk;
    GET DIAGNOSTICS n_att = ROW_COUNT;
    UPDATE @extschema@.attendance_roster r SET user_id = p WHERE r.user_id = attendance_forget_person.user_id;
    GET DIAGNOSTICS n_roster = ROW_COUNT;
    -- An override's reason is free text about the person (e.g. a doctor's note): erased;
    -- its status counts and is kept.
    UPDATE @extschema@.attendance_overrides o SET user_key = k, reason = 'erased (attendance_forget_person)'
    WHERE o.user_key = uk;
    GET DIAGNOSTICS n_over = ROW_COUNT;
    UPDATE @extschema@.attendance_status_changes a SET user_key = k WHERE a.user_key = uk;
    GET DIAGNOSTICS n_audit = ROW_COUNT;
    -- Low-attendance alerts name the person by key and id; the rate and the times stay.
    UPDATE @extschema@.attendance_alerts a SET user_key = k, user_id = p WHERE a.user_key = uk;
    GET DIAGNOSTICS n_alert = ROW_COUNT;

    IF n_log + n_conn + n_att + n_roster + n_over + n_audit + n_alert = 0 THEN
        IF EXISTS (SELECT 1 FROM @extschema@.attendance_erasures x WHERE x.pseudonym = p) THEN
            RAISE EXCEPTION 'attendance_forget_person: user % was already forgotten', attendance_forget_person.user_id
                USING ERRCODE = 'undefined_object';
        END IF;
        RAISE EXCEPTION 'attendance_forget_person: no attendance data for user %', attendance_forget_person.user_id
            USING ERRCODE = 'undefined_object';
    END IF;

    INSERT INTO @extschema@.attendance_erasures AS x (pseudonym, sessions, log_rows, connection_rows, attendance_rows,
                                                       roster_rows, override_rows, audit_rows, alert_rows)
    VALUES (p, sessions, n_log, n_conn, n_att, n_roster, n_over, n_audit, n_alert)
    ON CONFLICT (pseudonym) DO UPDATE SET
        erased_at = now(), actor = excluded.actor,
        sessions = ARRAY(SELECT DISTINCT u FROM unnest(x.sessions || excluded.sessions) u ORDER BY u),
        log_rows = x.log_rows + excluded.log_rows, connection_rows = x.connection_rows + excluded.connection_rows,
        attendance_rows = x.attendance_rows + excluded.attendance_rows, roster_rows = x.roster_rows + excluded.roster_rows,
        override_rows = x.override_rows + excluded.override_rows, audit_rows = x.audit_rows + excluded.audit_rows,
        alert_rows = x.alert_rows + excluded.alert_rows
    RETURNING * INTO result;
    RETURN result;
END;
$$;
REVOKE ALL ON FUNCTION @extschema@.attendance_forget_person(bigint) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.attendance_forget_person(bigint) IS
  'Erase a person''s identifying data (names, identities, metadata) from the log and every derived row, keeping counts and statuses under a salted pseudonym (a negative user id); audited in attendance_erasures. Owner only.';

GRANT SELECT ON @extschema@.attendance_erasures TO attendance_reader;
