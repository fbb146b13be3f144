-------------------------------------------------------------------------------
-- Tables (docs/architecture.md, "Tables"; every column: docs/sql.md)
-------------------------------------------------------------------------------
-- The log is the truth; the inputs are what the school and the operator give; everything
-- else is derived from those two and can be derived again. Each table keeps the column
-- order, names and constraint names that every released version's upgrade leaves, so that
-- a fresh install and an upgraded one are the same schema (test/e2e/test_schema.py).
-- The triggers that guard a table are defined here with it.

-------------------------------------------------------------------------------
-- Inputs: webhook keys (owner only)
-------------------------------------------------------------------------------
-- The LiveKit API keys and secrets that may sign webhooks; a token's iss selects the key.
-- Several may be active at once (rotation); retired_at retires one now or later.
CREATE TABLE @extschema@.attendance_webhook_keys (
    api_key     text PRIMARY KEY CHECK (api_key <> ''),
    secret      text NOT NULL CHECK (length(secret) >= 16),
    created_at  timestamptz NOT NULL DEFAULT now(),
    retired_at  timestamptz,
    note        text
);
COMMENT ON TABLE @extschema@.attendance_webhook_keys IS
  'LiveKit API keys and secrets that may sign webhooks (iss selects the key). Owner-only.';

-- Each backend keeps a copy of the webhook keys; these triggers make every backend drop it
-- when the keys change (at once in the changing transaction, at commit for the others).
-- Per row, because logical replication's apply fires row triggers only, plus one for
-- TRUNCATE; ENABLE ALWAYS, so that they fire under session_replication_role = replica
-- (that apply, pg_restore's data load) as well (docs/security.md).
CREATE FUNCTION @extschema@._attendance_keys_changed()
RETURNS trigger
AS 'MODULE_PATHNAME', 'attendance_keys_changed'
LANGUAGE C SET search_path = pg_catalog, pg_temp;
CREATE TRIGGER attendance_webhook_keys_changed
    AFTER INSERT OR UPDATE OR DELETE ON @extschema@.attendance_webhook_keys
    FOR EACH ROW EXECUTE FUNCTION @extschema@._attendance_keys_changed();
CREATE TRIGGER attendance_webhook_keys_truncated
    AFTER TRUNCATE ON @extschema@.attendance_webhook_keys
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._attendance_keys_changed();
ALTER TABLE @extschema@.attendance_webhook_keys ENABLE ALWAYS TRIGGER attendance_webhook_keys_changed;
ALTER TABLE @extschema@.attendance_webhook_keys ENABLE ALWAYS TRIGGER attendance_webhook_keys_truncated;

-------------------------------------------------------------------------------
-- Inputs: policies. Every number of the status rules is a column; per-role rows override
-------------------------------------------------------------------------------
-- The status rules (docs/configuration.md, "Policies") and the low-attendance alert numbers:
-- a person whose attendance rate over their last alert_sessions sessions of a course is
-- below alert_below is alerted, once at least alert_min_sessions of them count; alert_below
-- NULL turns alerts off.
CREATE TABLE @extschema@.attendance_policies (
    name            text PRIMARY KEY CHECK (name <> ''),
    absent_below    numeric(5,2) NOT NULL DEFAULT 10 CHECK (absent_below BETWEEN 0 AND 100),
    partial_below   numeric(5,2) NOT NULL DEFAULT 50 CHECK (partial_below BETWEEN 0 AND 100),
    late_after      interval     NOT NULL DEFAULT '15 minutes' CHECK (late_after >= interval '0'),
    late_max        numeric(5,2) NOT NULL DEFAULT 75 CHECK (late_max BETWEEN 0 AND 100),
    merge_gap       interval     NOT NULL DEFAULT '0' CHECK (merge_gap >= interval '0'),
    description     text,
    updated_at      timestamptz  NOT NULL DEFAULT now(),
    alert_below     numeric(5,2) DEFAULT 75 CHECK (alert_below BETWEEN 0 AND 100),
    alert_sessions  integer NOT NULL DEFAULT 10 CHECK (alert_sessions BETWEEN 1 AND 1000),
    alert_min_sessions integer NOT NULL DEFAULT 3 CHECK (alert_min_sessions >= 1),
    reconnect_grace interval NOT NULL DEFAULT '0'
        CHECK (reconnect_grace >= interval '0' AND reconnect_grace <= interval '1 hour'),
    CONSTRAINT attendance_policies_alert_min_check CHECK (alert_min_sessions <= alert_sessions)
);
COMMENT ON COLUMN @extschema@.attendance_policies.alert_below IS
  'Low-attendance alert threshold in percent (rate below it over the last alert_sessions sessions of a course); NULL = no alerts.';
COMMENT ON COLUMN @extschema@.attendance_policies.reconnect_grace IS
  'A gap shorter than this after a network-type disconnect (SIGNAL_CLOSE, CONNECTION_TIMEOUT, MIGRATION, '
  'MEDIA_FAILURE, STATE_MISMATCH, SERVER_SHUTDOWN) before the person''s next join counts as presence; 0 = off.';
-- The default policy (the design's numbers). pg_dump does not keep this row (the extension
-- makes it); other policies are kept (80_grants.sql, "Backups").
INSERT INTO @extschema@.attendance_policies (name, description)
VALUES ('default', 'absent below 10%, partial below 50%, late after 15 min up to 75%, else present');

CREATE TABLE @extschema@.attendance_policy_roles (
    policy_name     text NOT NULL REFERENCES @extschema@.attendance_policies (name) ON UPDATE CASCADE ON DELETE CASCADE,
    role            text NOT NULL CHECK (role = lower(role)),
    absent_below    numeric(5,2) CHECK (absent_below BETWEEN 0 AND 100),
    partial_below   numeric(5,2) CHECK (partial_below BETWEEN 0 AND 100),
    late_after      interval CHECK (late_after >= interval '0'),
    late_max        numeric(5,2) CHECK (late_max BETWEEN 0 AND 100),
    merge_gap       interval CHECK (merge_gap >= interval '0'),
    reconnect_grace interval CHECK (reconnect_grace >= interval '0' AND reconnect_grace <= interval '1 hour'),
    PRIMARY KEY (policy_name, role)
);
COMMENT ON TABLE @extschema@.attendance_policy_roles IS
  'Per-role numbers of a policy (NULL = the policy''s own number), e.g. teachers need more.';

-------------------------------------------------------------------------------
-- Inputs: scheduled sessions (a class: a window over its rooms), their rooms and roster
-------------------------------------------------------------------------------
-- One row per session: its main room, window and policy (written by
-- attendance_schedule_session), and what the fold and the calculations keep about it.
CREATE TABLE @extschema@.attendance_session_schedule (
    session_id          bigint PRIMARY KEY,
    room_name           text NOT NULL CHECK (room_name <> ''),
    starts_at           timestamptz NOT NULL,
    ends_at             timestamptz NOT NULL,
    policy_name         text NOT NULL DEFAULT 'default' REFERENCES @extschema@.attendance_policies (name) ON UPDATE CASCADE,
    room_finished_at    timestamptz,
    calculated_at       timestamptz,
    needs_calculation   boolean NOT NULL DEFAULT true,
    recalculation_cause text,
    failed_attempts     integer NOT NULL DEFAULT 0,
    last_error          text,
    next_attempt_at     timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    calculated_snapshot pg_snapshot,
    needs_fold          boolean NOT NULL DEFAULT true,
    events_retired_at   timestamptz,
    course              text CHECK (course <> '' AND length(course) <= 200),
    CHECK (ends_at > starts_at)
);
CREATE INDEX attendance_session_schedule_room_name_starts_at_idx
    ON @extschema@.attendance_session_schedule (room_name, starts_at);
CREATE INDEX attendance_session_schedule_ends_at_idx
    ON @extschema@.attendance_session_schedule (ends_at) WHERE needs_calculation;
CREATE INDEX attendance_session_schedule_fold_idx
    ON @extschema@.attendance_session_schedule (session_id) WHERE needs_fold;
CREATE INDEX attendance_session_schedule_course_idx
    ON @extschema@.attendance_session_schedule (course, starts_at) WHERE course IS NOT NULL;
COMMENT ON COLUMN @extschema@.attendance_session_schedule.calculated_snapshot IS
  'The snapshot the last calculation read the log with: an event it did not see is a late webhook.';
COMMENT ON COLUMN @extschema@.attendance_session_schedule.needs_fold IS
  'The live rows must be derived again (the schedule, roster or policy changed).';
COMMENT ON COLUMN @extschema@.attendance_session_schedule.room_finished_at IS
  'The latest room_finished of the session''s room, as of the last calculation (derived).';
COMMENT ON COLUMN @extschema@.attendance_session_schedule.events_retired_at IS
  'When logged events of the session were first retired (attendance.event_retention): its stored results are '
  'kept and it is not derived or calculated again.';
COMMENT ON COLUMN @extschema@.attendance_session_schedule.course IS
  'The course (group of sessions) this session belongs to; NULL = ungrouped (docs/sql.md).';

-- A session scheduled (or moved) into a range of the log that retention already retired
-- would be calculated from nothing (its events are gone) and show everyone absent. It is
-- refused with a clear error instead (55000), whichever function writes the schedule. A
-- row whose window does not change (a new policy or course for a retired session) passes.
CREATE FUNCTION @extschema@._attendance_schedule_not_retired() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record;
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.starts_at = OLD.starts_at AND NEW.ends_at = OLD.ends_at
       AND NEW.room_name = OLD.room_name THEN
        RETURN NEW;
    END IF;
    -- (an upsert's insert that will meet the same row, window unchanged)
    IF TG_OP = 'INSERT' AND EXISTS (
           SELECT 1 FROM @extschema@.attendance_session_schedule s
           WHERE s.session_id = NEW.session_id AND s.starts_at = NEW.starts_at AND s.ends_at = NEW.ends_at
             AND s.room_name = NEW.room_name) THEN
        RETURN NEW;
    END IF;
    SELECT x.range_start, x.range_end INTO r FROM @extschema@.attendance_retired_events x
    WHERE x.range_start < NEW.ends_at AND x.range_end > NEW.starts_at
    ORDER BY x.range_start LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'session %: its window [%, %) lies in a range of the log that was retired (% to %, attendance.event_retention)',
            NEW.session_id, NEW.starts_at, NEW.ends_at, r.range_start, r.range_end
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Its webhooks are no longer logged, so it cannot be calculated; see attendance_log_partitions.';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER attendance_session_schedule_not_retired
    BEFORE INSERT OR UPDATE OF starts_at, ends_at, room_name ON @extschema@.attendance_session_schedule
    FOR EACH ROW EXECUTE FUNCTION @extschema@._attendance_schedule_not_retired();

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

-- Rooms linked to a session explicitly (attendance_link_room), e.g. breakout rooms.
CREATE TABLE @extschema@.attendance_session_rooms (
    session_id  bigint NOT NULL REFERENCES @extschema@.attendance_session_schedule (session_id) ON DELETE CASCADE,
    room_name   text NOT NULL CHECK (room_name <> ''),
    linked_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, room_name)
);
CREATE INDEX attendance_session_rooms_room_idx ON @extschema@.attendance_session_rooms (room_name);
COMMENT ON TABLE @extschema@.attendance_session_rooms IS
  'Rooms linked to a session besides its main room (attendance_link_room): time in them is presence in the session.';

-- The expected attendees of a session and their roles (attendance_expect): one who never
-- joins becomes absent; the roster's role wins over the one the webhooks carry.
CREATE TABLE @extschema@.attendance_roster (
    session_id  bigint NOT NULL,
    user_id     bigint NOT NULL,
    role        text NOT NULL DEFAULT 'student' CHECK (role IN ('teacher', 'student', 'observer')),
    added_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, user_id)
);

-- Manual statuses (attendance_override): recalculation never overwrites them.
CREATE TABLE @extschema@.attendance_overrides (
    session_id  bigint NOT NULL,
    user_key    text NOT NULL,
    status      text NOT NULL CHECK (status <> ''),
    reason      text NOT NULL CHECK (reason <> ''),
    actor       text NOT NULL DEFAULT current_user,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, user_key)
);

-------------------------------------------------------------------------------
-- The truth: the immutable webhook log, partitioned by event time
-------------------------------------------------------------------------------
-- One row per accepted webhook, never updated (docs/architecture.md, "The hot path"). The
-- log is range-partitioned by event time, one partition per attendance.partition_interval;
-- the scheduler's `partitions` job creates partitions ahead, gives rows that landed in the
-- default partition partitions of their own, and retires partitions older than
-- attendance.event_retention once every session their events count for is final
-- (docs/architecture.md, "Partitions and retention").
-- The partition key is part of every unique key, as PostgreSQL requires: a redelivery is
-- byte-identical, so it carries the same event time and (event_id, event_timestamp)
-- keeps ingestion idempotent across partitions. The keys and indexes are each
-- partition's own (_attendance_log_index), not the partitioned table's: a key of the
-- partitioned table, which CREATE EXTENSION makes, would be made again on each partition
-- when pg_restore attaches it, beside the partition's own from the dump (docs/operations.md,
-- "Backups"). Since the event time picks the partition, a partition's unique
-- (event_id, event_timestamp) is unique across the log, and ingestion's ON CONFLICT DO
-- NOTHING takes the unique keys of the partition the row goes to.
-- The CHECK on result is named ..._check1, the name the upgrade to 0.4.0 gave it: a
-- partition carries its parent's check constraints by name, and ATTACH PARTITION matches
-- them by name, so a partition detached by retention (and archived) attaches again only
-- to a log whose constraint has that name.
CREATE TABLE @extschema@.meeting_attendance_events (
    id                   bigserial,
    event_id             text NOT NULL,
    event_type           text NOT NULL,
    event_timestamp      timestamptz NOT NULL,
    received_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    session_id           bigint,
    room_name            text,
    room_sid             text,
    participant_sid      text,
    participant_identity text,
    user_id              bigint,
    user_key             text,
    participant_name     text,
    role                 text,
    participant_kind     text,
    joined_at            timestamptz,
    result               text NOT NULL CONSTRAINT meeting_attendance_events_result_check1
                             CHECK (result IN ('recorded', 'ignored')),
    reason               text,
    api_key              text,
    raw_webhook_data     jsonb NOT NULL,
    created_at           timestamptz NOT NULL DEFAULT now(),
    -- What the derivation reads of a leave or an abort (LiveKit's disconnectReason).
    disconnect_reason    text,
    -- A column of the application the extension replaces: for participant_left, the
    -- minutes from its joinedAt to its createdAt, rounded (written by ingestion; not a
    -- generated column, whose expression PostgreSQL would rebuild for every INSERT).
    duration_minutes     integer,
    -- A hand-written body accepted in development mode without createdAt (its time is its
    -- join time or its receipt time; the reason says which).
    development_event    boolean NOT NULL DEFAULT false,
    -- The transaction that logged the row (the late-webhook rule's input,
    -- _attendance_unseen_by). Not the row's xmin: moving a row into a partition of its own,
    -- an upgrade's copy, a redaction or attendance_forget_person rewrite the row and give
    -- it a new xmin, which would make an event seen long ago look like a late webhook.
    logged_xid           xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id()
) PARTITION BY RANGE (event_timestamp);
COMMENT ON TABLE @extschema@.meeting_attendance_events IS
  'Immutable log of accepted LiveKit webhooks (idempotent on event_id); rows are never updated. Partitioned by '
  'event_timestamp (attendance.partition_interval); old partitions are retired by attendance.event_retention.';
COMMENT ON COLUMN @extschema@.meeting_attendance_events.session_id IS
  'The session the room name names through attendance.room_pattern when logged (NULL if none). '
  'The session an event counts for is matched when deriving (_attendance_event_session).';

-- The log is immutable: UPDATE is refused. attendance_forget_person is the one sanctioned
-- change (docs/security.md); it runs with session_replication_role = replica.
CREATE FUNCTION @extschema@._attendance_events_immutable() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RAISE EXCEPTION 'meeting_attendance_events is an immutable log: % is not allowed', TG_OP
        USING ERRCODE = 'object_not_in_prerequisite_state';
END;
$$;
CREATE TRIGGER meeting_attendance_events_immutable
    BEFORE UPDATE ON @extschema@.meeting_attendance_events
    FOR EACH ROW EXECUTE FUNCTION @extschema@._attendance_events_immutable();

-- The keys and indexes of one partition of the log (the one home of its shape: the default
-- partition's below, every partition the maintenance makes, 30_jobs.sql, and the partitions
-- of a log distributed by room, attendance_distribute). by_room: the keys also hold the room,
-- as Citus requires of a table distributed by it; a redelivery carries the same room, so
-- (event_id, event_timestamp, room_name) keeps ingestion idempotent.
CREATE FUNCTION @extschema@._attendance_log_index(part regclass, by_room boolean DEFAULT false)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n text := (SELECT c.relname FROM pg_class c WHERE c.oid = part);
    r text := CASE WHEN by_room THEN ', room_name' ELSE '' END;
BEGIN
    EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I PRIMARY KEY (id%s), '
                   'ADD CONSTRAINT %I UNIQUE (event_id, event_timestamp%s)', part, n || '_pkey', r, n || '_event_key', r);
    EXECUTE format('CREATE INDEX %I ON %s (session_id, event_timestamp)', n || '_session_idx', part);
    EXECUTE format('CREATE INDEX %I ON %s (created_at)', n || '_created_idx', part);
    EXECUTE format('CREATE INDEX %I ON %s (room_name, event_timestamp)', n || '_room_idx', part);
END;
$$;

-- Whether the log is distributed by room (a Citus cluster: attendance_distribute).
CREATE FUNCTION @extschema@._attendance_log_distributed()
RETURNS boolean LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
        RETURN false;
    END IF;
    RETURN EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition d
                   WHERE d.logicalrelid = '@extschema@.meeting_attendance_events'::regclass);
END;
$$;

-- Ranges of the log that were retired: an event whose time falls in one is acknowledged
-- and not stored (every session it could count for is final).
CREATE TABLE @extschema@.attendance_retired_events (
    id             bigserial PRIMARY KEY,
    partition_name text NOT NULL,
    range_start    timestamptz NOT NULL,
    range_end      timestamptz NOT NULL CHECK (range_end > range_start),
    action         text NOT NULL CHECK (action IN ('dropped', 'detached')),
    events         bigint NOT NULL,
    sessions       bigint[] NOT NULL,
    retired_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX attendance_retired_events_range_idx ON @extschema@.attendance_retired_events (range_start, range_end);
COMMENT ON TABLE @extschema@.attendance_retired_events IS
  'Partitions of meeting_attendance_events retired by attendance.event_retention: their range, what was done '
  '(dropped or detached), how many events they held and the sessions those counted for.';

-- An event outside every partition is stored in the default partition (never refused);
-- the next maintenance gives it a partition of its own. The only events that route here
-- besides are those of retired ranges: they are skipped (not stored), which ingestion
-- then reports as result "retired". Only this partition has the trigger, so the hot path
-- pays nothing for it. The range partitions are made by the maintenance, never here: a
-- partition this script made would collide with a dumped one when a backup is restored.
CREATE TABLE @extschema@.meeting_attendance_events_default
    PARTITION OF @extschema@.meeting_attendance_events DEFAULT;
SELECT @extschema@._attendance_log_index('@extschema@.meeting_attendance_events_default');
CREATE FUNCTION @extschema@._attendance_skip_retired() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM @extschema@.attendance_retired_events r
               WHERE NEW.event_timestamp >= r.range_start AND NEW.event_timestamp < r.range_end) THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER meeting_attendance_events_skip_retired
    BEFORE INSERT ON @extschema@.meeting_attendance_events_default
    FOR EACH ROW EXECUTE FUNCTION @extschema@._attendance_skip_retired();

-------------------------------------------------------------------------------
-- Derived: rooms, connections, live and calculated rows (caches of the log)
-------------------------------------------------------------------------------
-- Every room the log has seen, kept by the fold (a room's first and last event time, and the
-- session its name names through attendance.room_pattern when it was logged). It is what the
-- naming rule for breakout rooms is evaluated over. Not kept by pg_dump: after a restore the
-- fold sees every event again.
CREATE TABLE @extschema@.attendance_rooms (
    room_name       text PRIMARY KEY,
    room_session    bigint,
    first_event_at  timestamptz NOT NULL,
    last_event_at   timestamptz NOT NULL
);
CREATE INDEX attendance_rooms_session_idx ON @extschema@.attendance_rooms (room_session) WHERE room_session IS NOT NULL;
COMMENT ON TABLE @extschema@.attendance_rooms IS
  'Every room name the log has seen (kept by the fold): what breakout rooms are found among.';

-- Connections: one row per session and connection (room and participant sid) that meets the
-- session's window, derived from the log (a cache: dropping and deriving again gives the
-- same rows). room_name was added last (0.5.0) and keeps its place at the end.
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
    room_name            text NOT NULL DEFAULT '',
    PRIMARY KEY (session_id, room_name, participant_sid)
);
CREATE INDEX attendance_sessions_open_idx ON @extschema@.attendance_sessions (session_id) WHERE leave_time IS NULL;
-- The sessions holding a connection: an event of it may change their rows (the fold derives
-- them again, docs/architecture.md, "The worker's loops").
CREATE INDEX attendance_sessions_connection_idx ON @extschema@.attendance_sessions (room_name, participant_sid);
COMMENT ON TABLE @extschema@.attendance_sessions IS
  'One row per LiveKit connection (participant sid) of a session, derived from the log by the '
  'worker''s fold: join, leave and how it ended (reconciled = closed by the derivation''s rule).';
COMMENT ON COLUMN @extschema@.attendance_sessions.room_name IS
  'The room the connection was in: the session''s main room or one linked to it (breakout rooms).';

-- One row per session and person: the live columns (the fold) and the result (a
-- calculation). derived_role is the role the derivation gives the person now (the roster's,
-- else the events', else student), kept by every fold and calculation; role is the one the
-- stored result used. A calculation that reads what the fold stored takes the role from
-- derived_role.
CREATE TABLE @extschema@.meeting_attendances (
    id                       bigserial PRIMARY KEY,
    session_id               bigint NOT NULL,
    user_key                 text NOT NULL,
    user_id                  bigint,
    participant_identity     text,
    participant_name         text,
    role                     text NOT NULL DEFAULT 'student',
    first_join_time          timestamptz,
    last_leave_time          timestamptz,
    join_count               integer NOT NULL DEFAULT 0,
    leave_count              integer NOT NULL DEFAULT 0,
    join_leave_cycles        jsonb NOT NULL DEFAULT '[]',
    total_duration_minutes   integer NOT NULL DEFAULT 0,
    presence_ms              bigint,
    session_duration_minutes integer,
    attendance_status        text,
    attendance_percentage    numeric(5,2),
    status_rule              text,
    policy_name              text,
    is_calculated            boolean NOT NULL DEFAULT false,
    attendance_calculated_at timestamptz,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now(),
    derived_role             text,
    UNIQUE (session_id, user_key)
);
CREATE INDEX meeting_attendances_uncalculated_idx ON @extschema@.meeting_attendances (session_id) WHERE NOT is_calculated;
COMMENT ON COLUMN @extschema@.meeting_attendances.derived_role IS
    'The role the derivation gives the person now (roster, else the events, else student); role is the one the stored result used.';

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

-- The fold's progress: every event with id <= safe_id has been folded (docs/architecture.md,
-- "The worker's loops"). One row. Not kept by pg_dump: after a restore the fold derives
-- every session again from the restored log.
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

-------------------------------------------------------------------------------
-- History: the audit of status changes, the scheduler's runs, upgrades' reviews
-------------------------------------------------------------------------------
-- Every change of status or percentage after the first calculation (old, new, cause).
CREATE TABLE @extschema@.attendance_status_changes (
    id              bigserial PRIMARY KEY,
    session_id      bigint NOT NULL,
    user_key        text NOT NULL,
    old_status      text,
    new_status      text,
    old_percentage  numeric(5,2),
    new_percentage  numeric(5,2),
    cause           text NOT NULL,
    actor           text NOT NULL DEFAULT current_user,
    changed_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX attendance_status_changes_session_id_user_key_idx
    ON @extschema@.attendance_status_changes (session_id, user_key);

-- The scheduler's run history (like pg_cron's job_run_details).
CREATE TABLE @extschema@.attendance_job_runs (
    id          bigserial PRIMARY KEY,
    job         text NOT NULL,
    status      text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'succeeded', 'failed')),
    started_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at timestamptz,
    processed   integer NOT NULL DEFAULT 0,
    failed      integer NOT NULL DEFAULT 0,
    message     text,
    pid         integer DEFAULT pg_backend_pid()
);
CREATE INDEX attendance_job_runs_started_at_idx ON @extschema@.attendance_job_runs (started_at);
CREATE INDEX attendance_job_runs_job_started_at_idx ON @extschema@.attendance_job_runs (job, started_at);
CREATE INDEX attendance_job_runs_id_idx ON @extschema@.attendance_job_runs (id) WHERE status = 'running';

-- Calculated sessions an upgrade flagged for recalculation under new rules (the upgrade to
-- 0.5.0 listed them; the audit of their recalculation says what changed, the view
-- attendance_upgrade_changes). A fresh install has none.
CREATE TABLE @extschema@.attendance_upgrade_review (
    session_id   bigint PRIMARY KEY,
    version      text NOT NULL,
    flagged_at   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE @extschema@.attendance_upgrade_review IS
  'Calculated sessions an upgrade flagged for recalculation under new rules (the audit says what changed).';

-------------------------------------------------------------------------------
-- Privacy: the salt of the pseudonyms and the audit of erasures (60_privacy.sql)
-------------------------------------------------------------------------------
-- The pseudonym of a user id is a negative bigint taken from SHA-256(salt || user id), where
-- the salt is a per-installation secret readable by the owner only: without it, a pseudonym
-- cannot be reversed by trying every user id. The salt is made by the first
-- attendance_forget_person, not here: pg_dump keeps it, and a salt this script made would
-- collide with the restored one.
CREATE TABLE @extschema@.attendance_privacy_salt (
    only_row   boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    salt       bytea NOT NULL CHECK (length(salt) >= 32),
    created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE @extschema@.attendance_privacy_salt IS
  'The per-installation secret salt of the pseudonyms attendance_forget_person gives (made at its first call; '
  'kept by pg_dump). Owner-only.';

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
