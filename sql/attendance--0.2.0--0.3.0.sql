-- attendance 0.2.0 -> 0.3.0: the log is the truth (docs/architecture.md).
-- Ingestion appends one row to meeting_attendance_events and writes nothing else;
-- connections, live rows and results are derived from the logged events by one C++
-- derivation, off the hot path (the worker's fold) or when calculating.
\echo Use "ALTER EXTENSION attendance UPDATE TO '0.3.0'" to load this file. \quit

-------------------------------------------------------------------------------
-- The log: what the derivation reads of each event, and the seed's duration_minutes
-------------------------------------------------------------------------------
ALTER TABLE @extschema@.meeting_attendance_events ADD COLUMN disconnect_reason text;
-- The seed's column: for participant_left, the minutes from its joinedAt to its createdAt,
-- rounded (written by ingestion; not a generated column, whose expression PostgreSQL
-- would rebuild for every INSERT).
ALTER TABLE @extschema@.meeting_attendance_events ADD COLUMN duration_minutes integer;
-- A hand-written body accepted in development mode without createdAt (its time is its
-- join time or its receipt time; the reason says which).
ALTER TABLE @extschema@.meeting_attendance_events ADD COLUMN development_event boolean NOT NULL DEFAULT false;
-- disconnect_reason and duration_minutes are filled once for the events logged before
-- 0.3.0, from their stored bodies.
ALTER TABLE @extschema@.meeting_attendance_events DISABLE TRIGGER meeting_attendance_events_immutable;
UPDATE @extschema@.meeting_attendance_events
SET disconnect_reason = nullif(raw_webhook_data #>> '{participant,disconnectReason}', 'UNKNOWN_REASON'),
    duration_minutes = CASE WHEN event_type = 'participant_left' AND joined_at IS NOT NULL
                            THEN round(extract(epoch FROM event_timestamp - joined_at) / 60)::integer END
WHERE event_type IN ('participant_left', 'participant_connection_aborted');
ALTER TABLE @extschema@.meeting_attendance_events ENABLE TRIGGER meeting_attendance_events_immutable;
COMMENT ON COLUMN @extschema@.meeting_attendance_events.session_id IS
  'The session the room name names through attendance.room_pattern when logged (NULL if none). '
  'The session an event counts for is matched when deriving (_attendance_event_session).';

-- Indexes: a session's events are found by room (and time) or by the room pattern's
-- session id; created_at keeps its index for the seed's "latest events" query.
DROP INDEX IF EXISTS @extschema@.meeting_attendance_events_room_name_idx;
CREATE INDEX meeting_attendance_events_room_idx ON @extschema@.meeting_attendance_events (room_name, event_timestamp);

-------------------------------------------------------------------------------
-- The schedule: what the derivation and the worker keep per session
-------------------------------------------------------------------------------
ALTER TABLE @extschema@.attendance_session_schedule
    ADD COLUMN calculated_snapshot pg_snapshot,
    ADD COLUMN needs_fold boolean NOT NULL DEFAULT true;
COMMENT ON COLUMN @extschema@.attendance_session_schedule.calculated_snapshot IS
  'The snapshot the last calculation read the log with: an event it did not see is a late webhook.';
COMMENT ON COLUMN @extschema@.attendance_session_schedule.needs_fold IS
  'The live rows must be derived again (the schedule, roster or policy changed).';
COMMENT ON COLUMN @extschema@.attendance_session_schedule.room_finished_at IS
  'The latest room_finished of the session''s room, as of the last calculation (derived).';
CREATE INDEX attendance_session_schedule_fold_idx ON @extschema@.attendance_session_schedule (session_id) WHERE needs_fold;

-------------------------------------------------------------------------------
-- Connections: derived from the log (a cache: dropping and re-deriving gives the same rows)
-------------------------------------------------------------------------------
DROP VIEW @extschema@.attendance_in_meeting_now;
DROP TABLE @extschema@.attendance_sessions;
CREATE TABLE @extschema@.attendance_sessions (
    session_id           bigint NOT NULL,
    participant_sid      text NOT NULL,
    user_key             text NOT NULL,
    join_time            timestamptz,
    join_source          text CHECK (join_source IN ('joined', 'rebuilt_from_leave', 'aborted')),
    leave_time           timestamptz,
    end_reason           text CHECK (end_reason IN ('left', 'aborted', 'reconciled')),
    leave_is_synthetic   boolean NOT NULL DEFAULT false,
    disconnect_reason    text,
    join_event_id        text,
    leave_event_id       text,
    derived_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, participant_sid)
);
CREATE INDEX attendance_sessions_open_idx ON @extschema@.attendance_sessions (session_id) WHERE leave_time IS NULL;
COMMENT ON TABLE @extschema@.attendance_sessions IS
  'One row per LiveKit connection (participant sid) of a session, derived from the log by the '
  'worker''s fold: join, leave and how it ended (reconciled = closed by the derivation''s rule).';
GRANT SELECT ON @extschema@.attendance_sessions TO attendance_reader;

CREATE VIEW @extschema@.attendance_in_meeting_now AS
SELECT c.session_id, s.room_name, m.user_id, c.user_key, m.participant_name, c.participant_sid, c.join_time,
       now() - c.join_time AS in_meeting_for
FROM @extschema@.attendance_sessions c
LEFT JOIN @extschema@.attendance_session_schedule s ON s.session_id = c.session_id
LEFT JOIN @extschema@.meeting_attendances m ON m.session_id = c.session_id AND m.user_key = c.user_key
WHERE c.leave_time IS NULL AND c.join_time IS NOT NULL AND c.end_reason IS NULL
ORDER BY c.join_time;
GRANT SELECT ON @extschema@.attendance_in_meeting_now TO attendance_reader;

DROP INDEX IF EXISTS @extschema@.meeting_attendances_is_calculated_session_id_idx;
CREATE INDEX meeting_attendances_uncalculated_idx ON @extschema@.meeting_attendances (session_id) WHERE NOT is_calculated;

-- The fold's progress: every event with id <= safe_id has been folded (docs/architecture.md).
CREATE TABLE @extschema@.attendance_fold_state (
    only_row      boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    safe_id       bigint NOT NULL DEFAULT 0,
    last_fold_at  timestamptz,
    last_events   integer NOT NULL DEFAULT 0,
    last_sessions integer NOT NULL DEFAULT 0,
    last_lag_ms   bigint,
    folds         bigint NOT NULL DEFAULT 0
);
INSERT INTO @extschema@.attendance_fold_state DEFAULT VALUES;
GRANT SELECT ON @extschema@.attendance_fold_state TO attendance_reader;

DROP FUNCTION @extschema@._attendance_refresh_live(bigint, text);

-------------------------------------------------------------------------------
-- One home for each rule
-------------------------------------------------------------------------------
-- _attendance_match, _attendance_unseen_by and _attendance_session_events have no SET
-- clause, so that PostgreSQL inlines them into the queries that use them (a function with
-- SET is called per row). They are used only where search_path is already pinned: from
-- the extension's own functions (which SET it) and from each other. Views and ad hoc SQL
-- use _attendance_event_session, which pins it: an inlined body would resolve operators
-- through the caller's search_path (pg_regress `security`).
--
-- Matching: the session an event counts for, against the schedule as it is now. The
-- scheduled session of the event's room (the one whose window, widened by an hour, holds
-- the event, else the one starting nearest to it, else the highest id), else the session
-- the room name names through attendance.room_pattern.
-- (A set-returning function, used as LATERAL _attendance_match(...), is inlined into the
-- query; _attendance_event_session is the same rule as a plain value, for views and ad hoc
-- SQL, with search_path pinned.)
CREATE FUNCTION @extschema@._attendance_match(room_name text, at timestamptz, room_session bigint)
RETURNS SETOF bigint LANGUAGE sql STABLE ROWS 1 AS $$
    SELECT coalesce(
        (SELECT s.session_id FROM @extschema@.attendance_session_schedule s
         WHERE s.room_name = $1
         ORDER BY ($2 BETWEEN s.starts_at - interval '1 hour' AND s.ends_at + interval '1 hour') DESC,
                  abs(extract(epoch FROM s.starts_at - $2)), s.session_id DESC
         LIMIT 1),
        $3);
$$;
CREATE FUNCTION @extschema@._attendance_event_session(room_name text, at timestamptz, room_session bigint)
RETURNS bigint LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT m FROM @extschema@._attendance_match($1, $2, $3) m;
$$;

-- Late webhooks: an event that the session's last calculation did not see (its
-- transaction was not visible in the calculation's snapshot). The row's 32-bit xmin is
-- made a full transaction id relative to the next one.
CREATE FUNCTION @extschema@._attendance_unseen_by(x xid, snapshot pg_snapshot)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT $2 IS NOT NULL AND age($1) < 1000000000 AND NOT pg_visible_in_snapshot(
        (pg_snapshot_xmax(pg_current_snapshot())::text::bigint
         - ((pg_snapshot_xmax(pg_current_snapshot())::text::bigint - $1::text::bigint) & 4294967295))::text::xid8,
        $2);
$$;

-- Flagging: a calculated session must be calculated again, for `cause`. A pending cause
-- is kept unless the new one is a late webhook (which is what the audit then says). With
-- event_xmins (one per element of session_ids: the transaction that logged an event of
-- that session), only sessions whose last calculation did not see such an event are
-- flagged; evaluated under the row lock, so a calculation committing meanwhile is judged
-- by its own snapshot.
CREATE FUNCTION @extschema@._attendance_flag(session_ids bigint[], cause text, event_xmins bigint[] DEFAULT NULL)
RETURNS integer LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n integer;
BEGIN
    -- Lock the rows first, in id order as calculations do: a calculation running now is
    -- waited for, and the UPDATE below (a new snapshot) then sees what it stored. Without
    -- it, a change committed during a session's first calculation would find the session
    -- not yet calculated and flag nothing, and the calculation would not have seen it.
    PERFORM 1 FROM @extschema@.attendance_session_schedule s
    WHERE s.session_id = ANY ($1) ORDER BY s.session_id FOR UPDATE;
    UPDATE @extschema@.attendance_session_schedule s
    SET needs_calculation = true,
        recalculation_cause = CASE WHEN s.needs_calculation AND s.recalculation_cause IS NOT NULL
                                        AND $2 <> 'late webhook' THEN s.recalculation_cause ELSE $2 END,
        needs_fold = true,
        updated_at = now()
    WHERE s.session_id = ANY ($1) AND s.calculated_at IS NOT NULL
      AND (NOT s.needs_calculation OR s.recalculation_cause IS DISTINCT FROM $2)
      AND ($3 IS NULL OR EXISTS (
            SELECT 1 FROM unnest($1, $3) AS x(session_id, xmin)
            WHERE x.session_id = s.session_id
              AND @extschema@._attendance_unseen_by(x.xmin::text::xid, s.calculated_snapshot)));
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM @extschema@._attendance_wake_worker();
    END IF;
    RETURN n;
END;
$$;

-- The calculation delay as the library defines it (the setting, in seconds).
CREATE FUNCTION @extschema@._attendance_calculation_delay()
RETURNS interval
AS 'MODULE_PATHNAME', 'attendance_calculation_delay'
LANGUAGE C STABLE;

-- Due: a flagged session is due calculation_delay after its end, and not before its next
-- attempt after a failure. The scheduler, attendance_calculate() and attendancectl read this.
CREATE OR REPLACE VIEW @extschema@.attendance_sessions_due AS
SELECT s.session_id, s.room_name, s.starts_at, s.ends_at,
       greatest(s.ends_at + @extschema@._attendance_calculation_delay(),
                coalesce(s.next_attempt_at, '-infinity')) AS due_at,
       s.recalculation_cause, s.failed_attempts, s.last_error, s.calculated_at
FROM @extschema@.attendance_session_schedule s
WHERE s.needs_calculation;

-- The events of these sessions, matched by the rule above, as the derivation reads them;
-- `unseen` says whether the session's last calculation did not see the event.
CREATE FUNCTION @extschema@._attendance_session_events(session_ids bigint[])
RETURNS TABLE (session_id bigint, event_id text, event_type text, at_ms bigint, participant_sid text,
               participant_identity text, user_key text, user_id bigint, participant_name text, role text,
               joined_ms bigint, disconnect_reason text, unseen boolean)
LANGUAGE sql STABLE AS $$
    -- Candidates by index: the events of the sessions' rooms, and those whose room names
    -- one of the sessions through the room pattern; each matched once.
    WITH candidates AS MATERIALIZED (
        SELECT e.id, e.room_name, e.event_timestamp, e.session_id AS room_session
        FROM @extschema@.meeting_attendance_events e
        WHERE e.room_name = ANY (ARRAY(SELECT x.room_name FROM @extschema@.attendance_session_schedule x
                                       WHERE x.session_id = ANY ($1)))
          AND e.result = 'recorded'
        UNION
        SELECT e.id, e.room_name, e.event_timestamp, e.session_id
        FROM @extschema@.meeting_attendance_events e
        WHERE e.session_id = ANY ($1) AND e.result = 'recorded'),
    matched AS MATERIALIZED (
        SELECT c.id, m.session_id
        FROM candidates c,
             LATERAL @extschema@._attendance_match(c.room_name, c.event_timestamp, c.room_session) m(session_id))
    SELECT m.session_id, e.event_id, e.event_type,
           floor(extract(epoch FROM e.event_timestamp) * 1000)::bigint, e.participant_sid,
           e.participant_identity, e.user_key, e.user_id, e.participant_name, e.role,
           floor(extract(epoch FROM e.joined_at) * 1000)::bigint, e.disconnect_reason,
           @extschema@._attendance_unseen_by(e.xmin, s.calculated_snapshot)
    FROM matched m
    JOIN @extschema@.meeting_attendance_events e ON e.id = m.id
    LEFT JOIN @extschema@.attendance_session_schedule s ON s.session_id = m.session_id
    WHERE m.session_id = ANY ($1);
$$;

-------------------------------------------------------------------------------
-- Functions that changed
-------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION @extschema@.attendance_schedule_session(
    session_id bigint, room_name text, starts_at timestamptz, ends_at timestamptz, policy text DEFAULT 'default')
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
    IF NOT EXISTS (SELECT 1 FROM @extschema@.attendance_policies p WHERE p.name = attendance_schedule_session.policy) THEN
        RAISE EXCEPTION 'attendance_schedule_session: unknown policy "%"', attendance_schedule_session.policy
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Policies are rows of attendance_policies.';
    END IF;
    SELECT s.room_name INTO old_room FROM @extschema@.attendance_session_schedule s
    WHERE s.session_id = attendance_schedule_session.session_id FOR UPDATE;
    INSERT INTO @extschema@.attendance_session_schedule AS s
        (session_id, room_name, starts_at, ends_at, policy_name)
    VALUES (attendance_schedule_session.session_id, attendance_schedule_session.room_name,
            attendance_schedule_session.starts_at, attendance_schedule_session.ends_at,
            attendance_schedule_session.policy)
    ON CONFLICT ON CONSTRAINT attendance_session_schedule_pkey DO UPDATE SET
        room_name = excluded.room_name, starts_at = excluded.starts_at, ends_at = excluded.ends_at,
        policy_name = excluded.policy_name, needs_calculation = true,
        recalculation_cause = CASE WHEN s.calculated_at IS NULL THEN s.recalculation_cause
                                   WHEN s.policy_name <> excluded.policy_name THEN 'policy change'
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

CREATE OR REPLACE FUNCTION @extschema@.attendance_expect(session_id bigint, user_id bigint, role text DEFAULT 'student')
RETURNS @extschema@.attendance_roster
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    result @extschema@.attendance_roster;
BEGIN
    IF attendance_expect.session_id IS NULL OR attendance_expect.user_id IS NULL OR attendance_expect.role IS NULL THEN
        RAISE EXCEPTION 'attendance_expect: no argument may be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF lower(attendance_expect.role) NOT IN ('teacher', 'student', 'observer') THEN
        RAISE EXCEPTION 'attendance_expect: role must be teacher, student or observer, not "%"', attendance_expect.role
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO @extschema@.attendance_roster AS r (session_id, user_id, role)
    VALUES (attendance_expect.session_id, attendance_expect.user_id, lower(attendance_expect.role))
    ON CONFLICT ON CONSTRAINT attendance_roster_pkey DO UPDATE SET role = excluded.role
    RETURNING * INTO result;
    PERFORM @extschema@._attendance_flag(ARRAY[result.session_id], 'roster change');
    UPDATE @extschema@.attendance_session_schedule s SET needs_fold = true
    WHERE s.session_id = result.session_id AND NOT s.needs_fold;
    RETURN result;
END;
$$;

-- Policy edits after calculation flag every calculated session of the policy. One
-- function for every trigger: each names, as its argument, the column of the transition
-- table `changed` that holds the policy's name.
CREATE FUNCTION @extschema@._attendance_policy_changed()
RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@._attendance_flag(
        (SELECT coalesce(array_agg(s.session_id), '{}') FROM @extschema@.attendance_session_schedule s
         WHERE s.policy_name IN (SELECT to_jsonb(c) ->> TG_ARGV[0] FROM changed c)), 'policy change');
    RETURN NULL;
END;
$$;
CREATE TRIGGER attendance_policy_roles_inserted AFTER INSERT ON @extschema@.attendance_policy_roles
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._attendance_policy_changed('policy_name');
CREATE TRIGGER attendance_policy_roles_updated AFTER UPDATE ON @extschema@.attendance_policy_roles
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._attendance_policy_changed('policy_name');
CREATE TRIGGER attendance_policy_roles_deleted AFTER DELETE ON @extschema@.attendance_policy_roles
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._attendance_policy_changed('policy_name');
CREATE TRIGGER attendance_policies_updated AFTER UPDATE ON @extschema@.attendance_policies
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._attendance_policy_changed('name');

-- The latest webhooks with the session each one counts for now (matched when deriving).
CREATE OR REPLACE VIEW @extschema@.attendance_recent_events AS
SELECT e.id, e.received_at, e.event_timestamp, e.event_type, e.result,
       @extschema@._attendance_event_session(e.room_name, e.event_timestamp, e.session_id) AS session_id,
       e.room_name, e.user_id, e.user_key, e.participant_name, e.participant_sid, e.joined_at,
       CASE WHEN e.event_type = 'participant_left' AND e.joined_at IS NOT NULL
            THEN e.event_timestamp - e.joined_at END AS connection_duration,
       e.reason, e.event_id
FROM (SELECT * FROM @extschema@.meeting_attendance_events ORDER BY id DESC LIMIT 1000) e
ORDER BY e.id DESC;

-- Events no session claims: an unknown room (no scheduled room of that name and no
-- session in its name), or a participant without a user id.
CREATE OR REPLACE VIEW @extschema@.attendance_unmatched_events AS
SELECT e.id, e.received_at, e.event_type, e.room_name, e.participant_identity, e.participant_sid,
       CASE WHEN m.session_id IS NULL THEN 'unknown room' ELSE 'no user id for identity' END AS problem,
       e.event_id
FROM @extschema@.meeting_attendance_events e
CROSS JOIN LATERAL (SELECT @extschema@._attendance_event_session(e.room_name, e.event_timestamp, e.session_id)
                    AS session_id) m
WHERE e.result = 'recorded'
  AND (m.session_id IS NULL OR (e.participant_sid IS NOT NULL AND e.user_id IS NULL))
ORDER BY e.id DESC;

-- The fold: derives the live rows of the sessions with new events (what the worker runs
-- every attendance.fold_interval); returns what it did.
CREATE FUNCTION @extschema@.attendance_fold()
RETURNS jsonb
AS 'MODULE_PATHNAME', 'attendance_fold'
LANGUAGE C VOLATILE SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION @extschema@.attendance_fold() IS
  'Derive the live rows and connections of every session with events logged since the last fold, and flag calculated sessions that received a late webhook.';

COMMENT ON FUNCTION @extschema@.attendance_reconcile() IS
  'Derive again every session with an open connection, so that connections whose leave never came are shown closed by the derivation''s rule.';

COMMENT ON FUNCTION @extschema@.attendance_ingest_webhook(text, text) IS
  'Verify, parse and append one LiveKit webhook to the log; returns {result, event, event_id, session_id, reason}. Writes nothing else.';

REVOKE ALL ON FUNCTION @extschema@._attendance_event_session(text, timestamptz, bigint),
    @extschema@._attendance_match(text, timestamptz, bigint),
    @extschema@._attendance_unseen_by(xid, pg_snapshot), @extschema@._attendance_flag(bigint[], text, bigint[]),
    @extschema@._attendance_session_events(bigint[]), @extschema@.attendance_fold(),
    @extschema@._attendance_policy_changed()
  FROM PUBLIC;
-- attendance_reader reads the log and runs attendance_explain, which derives through these.
GRANT EXECUTE ON FUNCTION @extschema@._attendance_calculation_delay(),
    @extschema@._attendance_event_session(text, timestamptz, bigint),
    @extschema@._attendance_match(text, timestamptz, bigint),
    @extschema@._attendance_unseen_by(xid, pg_snapshot), @extschema@._attendance_session_events(bigint[])
  TO attendance_reader;

-- Derive every session from the log once (the connections table was rebuilt above).
UPDATE @extschema@.attendance_session_schedule SET needs_fold = true;
SELECT @extschema@.attendance_fold() IS NOT NULL AS derived;
