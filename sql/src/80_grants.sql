-------------------------------------------------------------------------------
-- Privileges (docs/security.md): nothing is granted to PUBLIC.
--   attendance_ingest  may only ingest webhooks, learn the key names and probe for writes
--                      (what attendance-proxy logs in as)
--   attendance_reader  may read attendance, the log, sessions and the scheduler's state
--   the owner          everything, including keys, schedule, roster, overrides, policies
-- The roles are cluster-wide NOLOGIN groups; they are created if missing and kept on
-- DROP EXTENSION (other databases may use them).
-------------------------------------------------------------------------------
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'attendance_ingest') THEN
        CREATE ROLE attendance_ingest NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'attendance_reader') THEN
        CREATE ROLE attendance_reader NOLOGIN;
    END IF;
END;
$$;

-- No function of the extension is executable by PUBLIC (pg_regress `grants` checks every
-- one). Every function granted to a role other than the owner pins its search_path.
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
        JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid
        WHERE d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e'
          AND d.refobjid = (SELECT oid FROM pg_catalog.pg_extension WHERE extname = 'attendance')
    LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END;
$$;
-- The secrets: owner only, explicitly.
REVOKE ALL ON @extschema@.attendance_webhook_keys, @extschema@.attendance_privacy_salt FROM PUBLIC;

GRANT USAGE ON SCHEMA @extschema@ TO attendance_ingest, attendance_reader;

-- The receiver: ingestion, the key names (never the secrets), the readiness write probe.
GRANT EXECUTE ON FUNCTION @extschema@.attendance_ingest_webhook(text, text),
    @extschema@.attendance_webhook_key_names(), @extschema@.attendance_write_probe()
  TO attendance_ingest;

-- The reader: every table and view but the keys, the salt and the log's partitions (read
-- through the log).
GRANT SELECT ON @extschema@.meeting_attendances, @extschema@.meeting_attendance_events,
    @extschema@.attendance_sessions, @extschema@.attendance_session_schedule, @extschema@.attendance_roster,
    @extschema@.attendance_policies, @extschema@.attendance_policy_roles, @extschema@.attendance_overrides,
    @extschema@.attendance_status_changes, @extschema@.attendance_job_runs, @extschema@.attendance_fold_state,
    @extschema@.attendance_retired_events, @extschema@.attendance_alerts, @extschema@.attendance_erasures,
    @extschema@.attendance_rooms, @extschema@.attendance_session_rooms, @extschema@.attendance_upgrade_review,
    @extschema@.attendance_session_report, @extschema@.attendance_recent_events,
    @extschema@.attendance_in_meeting_now, @extschema@.attendance_unmatched_events,
    @extschema@.attendance_sessions_due, @extschema@.attendance_sessions_overdue,
    @extschema@.attendance_job_status, @extschema@.attendance_log_partitions,
    @extschema@.attendance_low_attendance, @extschema@.attendance_session_room_links,
    @extschema@.attendance_upgrade_changes
  TO attendance_reader;
-- ... and the functions it reads through: each pins its search_path; the rule functions
-- themselves (inlined, search_path not pinned) are reached only through those that run as
-- the owner (20_rules.sql).
GRANT EXECUTE ON FUNCTION @extschema@.attendance_explain(bigint, bigint), @extschema@.attendance_explain(bigint, text),
    @extschema@.attendance_worker_status(), @extschema@.attendance_webhook_activity(integer),
    @extschema@.attendance_course_report(text, date, date), @extschema@._attendance_tally(text[]),
    @extschema@._attendance_calculation_delay(), @extschema@._attendance_log_partitions(),
    @extschema@._attendance_event_session(text, timestamptz, bigint),
    @extschema@._attendance_event_claimed_by(text, timestamptz, timestamptz, bigint, text, text),
    @extschema@._attendance_event_sessions(text, timestamptz, timestamptz, bigint, text, text),
    @extschema@._attendance_room_known(text, bigint), @extschema@._attendance_room_links(bigint)
  TO attendance_reader;

-------------------------------------------------------------------------------
-- Backups: pg_dump keeps what the extension stores (docs/operations.md, "Backups")
-------------------------------------------------------------------------------
-- pg_dump writes an extension's tables as its CREATE EXTENSION, without their rows, unless
-- they are marked as configuration tables. Every table that holds what was received or
-- decided is marked, with the sequences of their ids. Not marked: attendance_fold_state
-- (the fold's progress: after a restore the fold derives every session again from the
-- restored log), attendance_rooms (derived by the fold), and the default policy's row,
-- which CREATE EXTENSION makes (restoring it too would collide; its edits are not kept,
-- the docs say so). The log's range partitions are not members of the extension: pg_dump
-- writes each one (its table, its ATTACH and its rows) like any table.
DO $$
DECLARE
    t record;
BEGIN
    -- one call per statement: each call updates the extension's catalog row
    FOR t IN SELECT * FROM (VALUES ('@extschema@.attendance_webhook_keys', ''),
             ('@extschema@.attendance_policies', 'WHERE name <> ''default'''),
             ('@extschema@.attendance_policy_roles', ''),
             ('@extschema@.attendance_session_schedule', ''),
             ('@extschema@.attendance_roster', ''),
             ('@extschema@.meeting_attendance_events_default', ''),
             ('@extschema@.attendance_sessions', ''),
             ('@extschema@.meeting_attendances', ''),
             ('@extschema@.attendance_overrides', ''),
             ('@extschema@.attendance_status_changes', ''),
             ('@extschema@.attendance_job_runs', ''),
             ('@extschema@.attendance_retired_events', ''),
             ('@extschema@.attendance_alerts', ''),
             ('@extschema@.attendance_privacy_salt', ''),
             ('@extschema@.attendance_erasures', ''),
             ('@extschema@.meeting_attendance_events_id_seq', ''),
             ('@extschema@.meeting_attendances_id_seq', ''),
             ('@extschema@.attendance_status_changes_id_seq', ''),
             ('@extschema@.attendance_job_runs_id_seq', ''),
             ('@extschema@.attendance_retired_events_id_seq', ''),
             ('@extschema@.attendance_alerts_id_seq', ''),
             ('@extschema@.attendance_erasures_id_seq', ''),
             ('@extschema@.attendance_session_rooms', ''),
             ('@extschema@.attendance_upgrade_review', '')) v(tab, filter) LOOP
        PERFORM pg_catalog.pg_extension_config_dump(t.tab::regclass, t.filter);
    END LOOP;
END;
$$;

-- A scheduler that is already running picks the new extension up at once.
SELECT @extschema@._attendance_wake_worker();
