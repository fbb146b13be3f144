-- attendance 0.1.0: LiveKit webhooks into exact meeting attendance.
\echo Use "CREATE EXTENSION attendance" to load this file. \quit

-------------------------------------------------------------------------------
-- Webhook keys: the API secrets that sign LiveKit webhooks (readable by the owner only)
-------------------------------------------------------------------------------
CREATE TABLE @extschema@.attendance_webhook_keys (
    api_key     text PRIMARY KEY CHECK (api_key <> ''),
    secret      text NOT NULL CHECK (length(secret) >= 16),
    created_at  timestamptz NOT NULL DEFAULT now(),
    retired_at  timestamptz,
    note        text
);
REVOKE ALL ON @extschema@.attendance_webhook_keys FROM PUBLIC;
COMMENT ON TABLE @extschema@.attendance_webhook_keys IS
  'LiveKit API keys and secrets that may sign webhooks (iss selects the key). Owner-only.';

-------------------------------------------------------------------------------
-- Policies: every number of the status rules is a column; per-role numbers override
-------------------------------------------------------------------------------
CREATE TABLE @extschema@.attendance_policies (
    name            text PRIMARY KEY CHECK (name <> ''),
    absent_below    numeric(5,2) NOT NULL DEFAULT 10 CHECK (absent_below BETWEEN 0 AND 100),
    partial_below   numeric(5,2) NOT NULL DEFAULT 50 CHECK (partial_below BETWEEN 0 AND 100),
    late_after      interval     NOT NULL DEFAULT '15 minutes' CHECK (late_after >= interval '0'),
    late_max        numeric(5,2) NOT NULL DEFAULT 75 CHECK (late_max BETWEEN 0 AND 100),
    merge_gap       interval     NOT NULL DEFAULT '0' CHECK (merge_gap >= interval '0'),
    description     text,
    updated_at      timestamptz  NOT NULL DEFAULT now()
);
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
    PRIMARY KEY (policy_name, role)
);
COMMENT ON TABLE @extschema@.attendance_policy_roles IS
  'Per-role numbers of a policy (NULL = the policy''s own number), e.g. teachers need more.';

-------------------------------------------------------------------------------
-- Scheduled sessions (a class in a LiveKit room) and their roster
-------------------------------------------------------------------------------
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
    CHECK (ends_at > starts_at)
);
CREATE INDEX ON @extschema@.attendance_session_schedule (room_name, starts_at);
CREATE INDEX ON @extschema@.attendance_session_schedule (ends_at) WHERE needs_calculation;

CREATE TABLE @extschema@.attendance_roster (
    session_id  bigint NOT NULL,
    user_id     bigint NOT NULL,
    role        text NOT NULL DEFAULT 'student' CHECK (role IN ('teacher', 'student', 'observer')),
    added_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, user_id)
);

-------------------------------------------------------------------------------
-- The immutable webhook log: one row per accepted webhook, never updated
-------------------------------------------------------------------------------
CREATE TABLE @extschema@.meeting_attendance_events (
    id                   bigserial PRIMARY KEY,
    event_id             text NOT NULL UNIQUE,
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
    result               text NOT NULL CHECK (result IN ('recorded', 'ignored')),
    reason               text,
    api_key              text,
    raw_webhook_data     jsonb NOT NULL,
    created_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON @extschema@.meeting_attendance_events (session_id, event_timestamp);
CREATE INDEX ON @extschema@.meeting_attendance_events (created_at);
CREATE INDEX ON @extschema@.meeting_attendance_events (room_name) WHERE session_id IS NULL;
COMMENT ON TABLE @extschema@.meeting_attendance_events IS
  'Immutable log of accepted LiveKit webhooks (idempotent on event_id); rows are never updated.';

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

-------------------------------------------------------------------------------
-- Connections: one row per LiveKit participant sid (a device/connection)
-------------------------------------------------------------------------------
CREATE TABLE @extschema@.attendance_sessions (
    participant_sid      text PRIMARY KEY,
    session_id           bigint,
    room_name            text NOT NULL,
    room_sid             text,
    participant_identity text NOT NULL,
    user_key             text NOT NULL,
    user_id              bigint,
    participant_name     text,
    role                 text,
    join_time            timestamptz,
    join_source          text CHECK (join_source IN ('joined', 'rebuilt_from_leave', 'aborted')),
    leave_time           timestamptz,
    end_reason           text CHECK (end_reason IN ('left', 'aborted', 'reconciled')),
    leave_is_synthetic   boolean NOT NULL DEFAULT false,
    disconnect_reason    text,
    join_event_id        text,
    leave_event_id       text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON @extschema@.attendance_sessions (session_id, user_key);
CREATE INDEX ON @extschema@.attendance_sessions (room_name) WHERE session_id IS NULL;
CREATE INDEX ON @extschema@.attendance_sessions (join_time) WHERE leave_time IS NULL;
COMMENT ON TABLE @extschema@.attendance_sessions IS
  'One row per LiveKit connection (participant sid): join, leave and how it ended.';

-------------------------------------------------------------------------------
-- Live and calculated attendance: one row per session and person
-------------------------------------------------------------------------------
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
    UNIQUE (session_id, user_key)
);
CREATE INDEX ON @extschema@.meeting_attendances (is_calculated, session_id);

-------------------------------------------------------------------------------
-- Manual overrides and the audit of every status change after calculation
-------------------------------------------------------------------------------
CREATE TABLE @extschema@.attendance_overrides (
    session_id  bigint NOT NULL,
    user_key    text NOT NULL,
    status      text NOT NULL CHECK (status <> ''),
    reason      text NOT NULL CHECK (reason <> ''),
    actor       text NOT NULL DEFAULT current_user,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, user_key)
);

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
CREATE INDEX ON @extschema@.attendance_status_changes (session_id, user_key);

-------------------------------------------------------------------------------
-- Background job runs (like pg_cron's job_run_details)
-------------------------------------------------------------------------------
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
CREATE INDEX ON @extschema@.attendance_job_runs (started_at);
CREATE INDEX ON @extschema@.attendance_job_runs (job, started_at);
CREATE INDEX ON @extschema@.attendance_job_runs (id) WHERE status = 'running';

-------------------------------------------------------------------------------
-- Functions
-------------------------------------------------------------------------------
CREATE FUNCTION @extschema@.attendance_ingest_webhook(body text, authorization text DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'attendance_ingest_webhook'
LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION @extschema@.attendance_ingest_webhook(text, text) IS
  'Verify, parse and record one LiveKit webhook; returns {result, event, event_id, session_id, reason}.';

CREATE FUNCTION @extschema@.attendance_sign_webhook(body text, api_key text, ttl integer DEFAULT 600)
RETURNS text
AS 'MODULE_PATHNAME', 'attendance_sign_webhook'
LANGUAGE C VOLATILE STRICT SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION @extschema@.attendance_sign_webhook(text, text, integer) FROM PUBLIC;

CREATE FUNCTION @extschema@.attendance_add_webhook_key(api_key text, secret text, note text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- Checked here so that no constraint error ever prints the row (and the secret).
    IF coalesce($1, '') = '' THEN
        RAISE EXCEPTION 'attendance_add_webhook_key: api_key is required' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF $2 IS NULL OR length($2) < 16 THEN
        RAISE EXCEPTION 'attendance_add_webhook_key: the secret must have at least 16 characters'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO @extschema@.attendance_webhook_keys AS k (api_key, secret, note) VALUES ($1, $2, $3)
    ON CONFLICT ON CONSTRAINT attendance_webhook_keys_pkey
    DO UPDATE SET secret = excluded.secret, note = excluded.note, retired_at = NULL;
END;
$$;
REVOKE ALL ON FUNCTION @extschema@.attendance_add_webhook_key(text, text, text) FROM PUBLIC;

CREATE FUNCTION @extschema@.attendance_retire_webhook_key(api_key text, at timestamptz DEFAULT now())
RETURNS boolean LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    UPDATE @extschema@.attendance_webhook_keys SET retired_at = $2 WHERE attendance_webhook_keys.api_key = $1
    RETURNING true;
$$;
REVOKE ALL ON FUNCTION @extschema@.attendance_retire_webhook_key(text, timestamptz) FROM PUBLIC;

CREATE FUNCTION @extschema@.attendance_list_webhook_keys(
    OUT api_key text, OUT created_at timestamptz, OUT retired_at timestamptz, OUT active boolean,
    OUT secret_sha256 text, OUT note text)
RETURNS SETOF record LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT k.api_key, k.created_at, k.retired_at, (k.retired_at IS NULL OR k.retired_at > now()),
           left(encode(sha256(convert_to(k.secret, 'UTF8')), 'hex'), 12), k.note
    FROM @extschema@.attendance_webhook_keys k ORDER BY k.api_key;
$$;
REVOKE ALL ON FUNCTION @extschema@.attendance_list_webhook_keys() FROM PUBLIC;

-- Rebuilds the live per-person row from its connections (called by ingestion).
CREATE FUNCTION @extschema@._attendance_refresh_live(p_session bigint, p_user_key text)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    UPDATE @extschema@.meeting_attendances m SET
        first_join_time = a.first_join,
        last_leave_time = a.last_leave,
        join_count = a.joins,
        leave_count = a.leaves,
        join_leave_cycles = a.cycles,
        total_duration_minutes = CASE WHEN m.is_calculated THEN m.total_duration_minutes ELSE a.minutes END,
        is_calculated = false,
        updated_at = now()
    FROM (
        SELECT min(c.join_time) FILTER (WHERE c.end_reason IS DISTINCT FROM 'aborted') AS first_join,
               CASE WHEN bool_or(c.leave_time IS NULL AND c.join_time IS NOT NULL
                                 AND c.end_reason IS DISTINCT FROM 'aborted')
                    THEN NULL
                    ELSE max(c.leave_time) FILTER (WHERE c.end_reason IS DISTINCT FROM 'aborted') END AS last_leave,
               count(*) FILTER (WHERE c.join_time IS NOT NULL AND c.end_reason IS DISTINCT FROM 'aborted')::int AS joins,
               count(*) FILTER (WHERE c.end_reason = 'left')::int AS leaves,
               coalesce(jsonb_agg(jsonb_build_object(
                   'participant_sid', c.participant_sid, 'joined_at', c.join_time, 'left_at', c.leave_time,
                   'end', c.end_reason, 'synthetic_leave', c.leave_is_synthetic)
                   ORDER BY c.join_time NULLS LAST, c.participant_sid), '[]') AS cycles,
               coalesce(round(sum(extract(epoch FROM c.leave_time - c.join_time))
                   FILTER (WHERE c.end_reason IS DISTINCT FROM 'aborted' AND c.leave_time > c.join_time) / 60), 0)::int AS minutes
        FROM @extschema@.attendance_sessions c
        WHERE c.session_id = p_session AND c.user_key = p_user_key
    ) a
    WHERE m.session_id = p_session AND m.user_key = p_user_key;
END;
$$;
REVOKE ALL ON FUNCTION @extschema@._attendance_refresh_live(bigint, text) FROM PUBLIC;

CREATE FUNCTION @extschema@.attendance_schedule_session(
    session_id bigint, room_name text, starts_at timestamptz, ends_at timestamptz, policy text DEFAULT 'default')
RETURNS @extschema@.attendance_session_schedule
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    result @extschema@.attendance_session_schedule;
    person record;
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

    -- Connections that arrived before the room was known now belong to this session.
    FOR person IN
        WITH matched AS (
            UPDATE @extschema@.attendance_sessions c SET session_id = result.session_id, updated_at = now()
            WHERE c.session_id IS NULL AND c.room_name = result.room_name
              AND coalesce(c.join_time, c.leave_time, c.created_at)
                  BETWEEN result.starts_at - interval '12 hours' AND result.ends_at + interval '12 hours'
            RETURNING c.user_key, c.user_id, c.participant_identity, c.participant_name, c.role)
        SELECT DISTINCT ON (user_key) * FROM matched
    LOOP
        INSERT INTO @extschema@.meeting_attendances AS m
            (session_id, user_key, user_id, participant_identity, participant_name, role)
        VALUES (result.session_id, person.user_key, person.user_id, person.participant_identity,
                person.participant_name, coalesce(person.role, 'student'))
        ON CONFLICT (session_id, user_key) DO NOTHING;
        PERFORM @extschema@._attendance_refresh_live(result.session_id, person.user_key);
    END LOOP;
    PERFORM @extschema@._attendance_wake_worker();
    RETURN result;
END;
$$;

CREATE FUNCTION @extschema@.attendance_expect(session_id bigint, user_id bigint, role text DEFAULT 'student')
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
    UPDATE @extschema@.meeting_attendances m SET role = result.role, is_calculated = false, updated_at = now()
    WHERE m.session_id = result.session_id AND m.user_key = result.user_id::text AND m.role <> result.role;
    -- A roster change after calculation leads to recalculation.
    UPDATE @extschema@.attendance_session_schedule s
    SET needs_calculation = true, recalculation_cause = 'roster change', updated_at = now()
    WHERE s.session_id = result.session_id AND s.calculated_at IS NOT NULL
      AND (NOT s.needs_calculation OR s.recalculation_cause IS NULL);
    IF FOUND THEN
        PERFORM @extschema@._attendance_wake_worker();
    END IF;
    RETURN result;
END;
$$;

-------------------------------------------------------------------------------
-- Calculation, explanation, overrides, reconciliation, the scheduler
-------------------------------------------------------------------------------
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

CREATE FUNCTION @extschema@.attendance_calculate(OUT processed integer, OUT failed integer)
RETURNS record
AS 'MODULE_PATHNAME', 'attendance_calculate_due'
LANGUAGE C VOLATILE SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION @extschema@.attendance_calculate() IS
  'Calculate every due session (what the background worker runs); each session in its own subtransaction.';

CREATE FUNCTION @extschema@.attendance_explain(session_id bigint, user_id bigint)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'attendance_explain'
LANGUAGE C STABLE STRICT SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.attendance_explain(session_id bigint, user_key text)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'attendance_explain'
LANGUAGE C STABLE STRICT SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.attendance_reconcile()
RETURNS jsonb
AS 'MODULE_PATHNAME', 'attendance_reconcile'
LANGUAGE C VOLATILE SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION @extschema@.attendance_reconcile() IS
  'Close connections whose leave never came (synthetic, labelled leaves) and recalculate affected sessions.';

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

CREATE FUNCTION @extschema@._attendance_run_job(job text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'attendance_run_job'
LANGUAGE C VOLATILE STRICT SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.attendance_run_job(job text)
RETURNS @extschema@.attendance_job_runs
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    run_id bigint := @extschema@._attendance_run_job(job);
    result @extschema@.attendance_job_runs;
BEGIN
    SELECT * INTO result FROM @extschema@.attendance_job_runs r WHERE r.id = run_id;
    RETURN result;
END;
$$;
COMMENT ON FUNCTION @extschema@.attendance_run_job(text) IS
  'Run a scheduler job (calculate, reconcile or cleanup) now in this session, recorded in attendance_job_runs.';

CREATE FUNCTION @extschema@.attendance_worker_status()
RETURNS jsonb
AS 'MODULE_PATHNAME', 'attendance_worker_status'
LANGUAGE C VOLATILE SET search_path = pg_catalog, pg_temp;

-- Wakes the scheduler when the transaction commits (used by schedule and calculation).
CREATE FUNCTION @extschema@._attendance_wake_worker()
RETURNS void
AS 'MODULE_PATHNAME', 'attendance_wake_worker'
LANGUAGE C VOLATILE;

-- The per-session report an application reads (the seed synced this per student).
CREATE VIEW @extschema@.attendance_session_report AS
SELECT m.session_id, s.room_name, s.starts_at, s.ends_at, m.user_id, m.user_key, m.participant_name, m.role,
       m.first_join_time AS enter_time, m.last_leave_time AS leave_time,
       m.total_duration_minutes AS minutes, m.attendance_status AS status, m.attendance_percentage AS percentage,
       m.status_rule, m.policy_name, m.is_calculated, m.attendance_calculated_at AS calculated_at,
       o.reason AS override_reason
FROM @extschema@.meeting_attendances m
LEFT JOIN @extschema@.attendance_session_schedule s ON s.session_id = m.session_id
LEFT JOIN @extschema@.attendance_overrides o ON o.session_id = m.session_id AND o.user_key = m.user_key;

-------------------------------------------------------------------------------
-- Views for operators (docs/operations.md)
-------------------------------------------------------------------------------
-- The latest webhooks, newest first, with what each one did.
CREATE VIEW @extschema@.attendance_recent_events AS
SELECT e.id, e.received_at, e.event_timestamp, e.event_type, e.result, e.session_id, e.room_name, e.user_id,
       e.user_key, e.participant_name, e.participant_sid, e.joined_at,
       CASE WHEN e.event_type = 'participant_left' AND e.joined_at IS NOT NULL
            THEN e.event_timestamp - e.joined_at END AS connection_duration,
       e.reason, e.event_id
FROM @extschema@.meeting_attendance_events e
ORDER BY e.id DESC
LIMIT 1000;

-- Webhook activity per event type and result in the last N minutes.
CREATE FUNCTION @extschema@.attendance_webhook_activity(minutes integer DEFAULT 60)
RETURNS TABLE (event_type text, result text, webhooks bigint, first_received timestamptz, last_received timestamptz)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT e.event_type, e.result, count(*), min(e.received_at), max(e.received_at)
    FROM @extschema@.meeting_attendance_events e
    WHERE e.created_at >= now() - make_interval(mins => $1)
    GROUP BY e.event_type, e.result ORDER BY 3 DESC, 1, 2;
$$;

-- Who is in a meeting right now: connections joined and not (yet) left.
CREATE VIEW @extschema@.attendance_in_meeting_now AS
SELECT c.session_id, c.room_name, c.user_id, c.user_key, c.participant_name, c.participant_sid, c.join_time,
       now() - c.join_time AS in_meeting_for
FROM @extschema@.attendance_sessions c
WHERE c.leave_time IS NULL AND c.join_time IS NOT NULL AND c.end_reason IS NULL
ORDER BY c.join_time;

-- Events that could not be attached: unknown room, or no user id for the person.
CREATE VIEW @extschema@.attendance_unmatched_events AS
SELECT e.id, e.received_at, e.event_type, e.room_name, e.participant_identity, e.participant_sid,
       CASE WHEN e.session_id IS NULL THEN 'unknown room' ELSE 'no user id for identity' END AS problem,
       e.event_id
FROM @extschema@.meeting_attendance_events e
WHERE e.result = 'recorded'
  AND (e.session_id IS NULL
       OR (e.participant_sid IS NOT NULL AND e.user_id IS NULL))
ORDER BY e.id DESC;

-- Sessions waiting for calculation, when they are due, and whether they are overdue.
CREATE VIEW @extschema@.attendance_sessions_due AS
SELECT s.session_id, s.room_name, s.starts_at, s.ends_at,
       greatest(s.ends_at + coalesce(nullif(current_setting('attendance.calculation_delay', true), '')::interval,
                                     interval '5 minutes'),
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
FROM (VALUES ('calculate'), ('reconcile'), ('cleanup')) j(job)
LEFT JOIN LATERAL (SELECT * FROM @extschema@.attendance_job_runs r WHERE r.job = j.job ORDER BY r.id DESC LIMIT 1) last
  ON true;

-------------------------------------------------------------------------------
-- Privileges (docs/security.md): nothing is granted to PUBLIC.
--   attendance_ingest  may only call attendance_ingest_webhook (what the proxy logs in as)
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

GRANT USAGE ON SCHEMA @extschema@ TO attendance_ingest, attendance_reader;
GRANT EXECUTE ON FUNCTION @extschema@.attendance_ingest_webhook(text, text) TO attendance_ingest;

GRANT SELECT ON @extschema@.meeting_attendances, @extschema@.meeting_attendance_events,
    @extschema@.attendance_sessions, @extschema@.attendance_session_schedule, @extschema@.attendance_roster,
    @extschema@.attendance_policies, @extschema@.attendance_policy_roles, @extschema@.attendance_overrides,
    @extschema@.attendance_status_changes, @extschema@.attendance_job_runs,
    @extschema@.attendance_session_report, @extschema@.attendance_recent_events,
    @extschema@.attendance_in_meeting_now, @extschema@.attendance_unmatched_events,
    @extschema@.attendance_sessions_due, @extschema@.attendance_sessions_overdue,
    @extschema@.attendance_job_status
  TO attendance_reader;
GRANT EXECUTE ON FUNCTION @extschema@.attendance_explain(bigint, bigint), @extschema@.attendance_explain(bigint, text),
    @extschema@.attendance_worker_status(), @extschema@.attendance_webhook_activity(integer)
  TO attendance_reader;

-- A scheduler that is already running picks the new extension up at once.
SELECT @extschema@._attendance_wake_worker();
