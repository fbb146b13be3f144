-- attendance 0.5.2 -> 0.5.3: one home for cause precedence (docs/architecture.md, "Rules and
-- their homes").
\echo Use "ALTER EXTENSION attendance UPDATE TO '0.5.3'" to load this file. \quit

-- Which cause stands when a cause meets a session's pending one: the library's
-- core::prevailing_cause, which the calculation's audit asks too.
CREATE FUNCTION @extschema@._attendance_prevailing_cause(pending text, incoming text)
RETURNS text AS 'MODULE_PATHNAME', 'attendance_prevailing_cause' LANGUAGE C IMMUTABLE PARALLEL SAFE;
REVOKE ALL ON FUNCTION @extschema@._attendance_prevailing_cause(text, text) FROM PUBLIC;

-- The flag asks it instead of a CASE of its own (the same causes as 0.5.2's).
CREATE OR REPLACE FUNCTION @extschema@._attendance_flag(session_ids bigint[], cause text, event_ids bigint[] DEFAULT NULL)
RETURNS integer LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n integer;
    event_sessions bigint[];
    event_xids xid8[];
BEGIN
    -- Lock the rows first, in id order as calculations do: a calculation running now is
    -- waited for, and the UPDATE below (a new snapshot) then sees what it stored.
    PERFORM 1 FROM @extschema@.attendance_session_schedule s
    WHERE s.session_id = ANY ($1) ORDER BY s.session_id FOR UPDATE;
    -- The events' logging transactions, read from the log by themselves (the log is never
    -- joined to the schedule in one statement: docs/architecture.md, "The log's readers").
    IF $3 IS NOT NULL THEN
        SELECT pg_catalog.array_agg(x.session_id), pg_catalog.array_agg(e.logged_xid)
        INTO event_sessions, event_xids
        FROM pg_catalog.unnest($1, $3) AS x(session_id, event_id)
        JOIN @extschema@.meeting_attendance_events e ON e.id = x.event_id;
    END IF;
    UPDATE @extschema@.attendance_session_schedule s
    SET needs_calculation = true,
        recalculation_cause = @extschema@._attendance_prevailing_cause(
            CASE WHEN s.needs_calculation THEN s.recalculation_cause END, $2),
        needs_fold = true,
        updated_at = now()
    WHERE s.session_id = ANY ($1) AND s.calculated_at IS NOT NULL
      AND (NOT s.needs_calculation OR s.recalculation_cause IS DISTINCT FROM $2)
      AND ($3 IS NULL OR EXISTS (
            SELECT 1 FROM unnest(event_sessions, event_xids) AS x(session_id, logged_xid)
            WHERE x.session_id = s.session_id
              AND @extschema@._attendance_unseen_by(x.logged_xid, s.calculated_snapshot)));
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM @extschema@._attendance_wake_worker();
    END IF;
    RETURN n;
END;
$$;
