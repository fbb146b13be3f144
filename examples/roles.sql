-- The school application's database roles (docs/integration.md, "Roles").
-- Run with psql as the extension's owner, in the database of the extension, after
-- CREATE EXTENSION and again after every ALTER EXTENSION attendance UPDATE (a new
-- version may replace a function, and a grant goes with the function it was on):
--   psql -d school -v ON_ERROR_STOP=1 -f examples/roles.sql
-- It only adds: running it twice changes nothing. The login roles are made separately:
--   CREATE ROLE school_web LOGIN IN ROLE school_app, school_override;
--   CREATE ROLE school_dpo LOGIN IN ROLE school_privacy;

-- The extension's schema, whichever it is (CREATE EXTENSION attendance [SCHEMA s]).
SELECT n.nspname AS attendance_schema
FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname = 'attendance' \gset
SET search_path = :"attendance_schema";

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'school_app') THEN
        CREATE ROLE school_app NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'school_override') THEN
        CREATE ROLE school_override NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'school_privacy') THEN
        CREATE ROLE school_privacy NOLOGIN;
    END IF;
END;
$$;

-- school_app: reads everything attendance_reader reads (results, reports, explain,
-- alerts, the log), schedules sessions and sets their rosters. It writes inputs only.
GRANT attendance_reader TO school_app;
GRANT EXECUTE ON FUNCTION
    attendance_schedule_session(bigint, text, timestamptz, timestamptz, text, text),
    attendance_expect(bigint, bigint, text)
  TO school_app;
-- Both functions run with their caller's rights: they write the schedule and the roster,
-- flag calculated sessions for recalculation and wake the scheduler.
GRANT INSERT, UPDATE ON attendance_session_schedule, attendance_roster TO school_app;
GRANT EXECUTE ON FUNCTION _attendance_flag(bigint[], text, bigint[]), _attendance_prevailing_cause(text, text),
    _attendance_wake_worker()
  TO school_app;
-- Breakout rooms (0.5.0): linking and unlinking a room write the session's links and flag
-- the session, also with the caller's rights.
GRANT EXECUTE ON FUNCTION attendance_link_room(bigint, text), attendance_unlink_room(bigint, text),
    _attendance_rooms_changed(bigint)
  TO school_app;
GRANT INSERT, DELETE ON attendance_session_rooms TO school_app;

-- school_override: manual statuses (excused). attendance_override recalculates the
-- session at once with its caller's rights, so this role writes what a calculation
-- writes: results, connections, the audit and the low-attendance alerts.
GRANT attendance_reader TO school_override;
GRANT EXECUTE ON FUNCTION attendance_override(bigint, bigint, text, text) TO school_override;
GRANT INSERT, UPDATE, DELETE ON attendance_overrides TO school_override;
GRANT EXECUTE ON FUNCTION _attendance_calculate_session(bigint, text),
    _attendance_evaluate_alerts(bigint[], text[])
  TO school_override;
GRANT UPDATE ON attendance_session_schedule TO school_override;
GRANT INSERT, UPDATE, DELETE ON meeting_attendances TO school_override;
GRANT INSERT, DELETE ON attendance_sessions TO school_override;
GRANT INSERT ON attendance_status_changes TO school_override;
GRANT INSERT, UPDATE ON attendance_alerts TO school_override;
GRANT USAGE ON SEQUENCE meeting_attendances_id_seq, attendance_status_changes_id_seq, attendance_alerts_id_seq
  TO school_override;
-- The calculation reads a session's rooms and events through the rule functions (owner-only
-- since 0.4.1, so that no other role calls them directly under a search_path of its own)
-- and the log's readers (0.5.2), and notes rooms it has not seen yet (0.5.0).
GRANT EXECUTE ON FUNCTION _attendance_session_events(bigint[], text[]), _attendance_session_rooms(bigint[]),
    _attendance_room_events(bigint[], text[]), _attendance_left_between(text, text, timestamptz, timestamptz),
    _attendance_unseen_by(xid8, pg_snapshot),
    _attendance_claims(text, timestamptz, timestamptz, bigint, text, text),
    _attendance_holds(text, timestamptz, text, text),
    _attendance_room_sessions(text, bigint), _attendance_parent_room(text),
    _attendance_setting_interval(text, interval)
  TO school_override;
GRANT INSERT ON attendance_rooms TO school_override;

-- school_privacy: forgetting a person on request. attendance_forget_person runs with the
-- owner's rights (SECURITY DEFINER), so EXECUTE is all it needs.
GRANT USAGE ON SCHEMA :"attendance_schema" TO school_privacy;
GRANT EXECUTE ON FUNCTION attendance_forget_person(bigint) TO school_privacy;
