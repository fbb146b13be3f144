-------------------------------------------------------------------------------
-- Inputs: webhooks, keys, the schedule, the roster, rooms (docs/sql.md)
-------------------------------------------------------------------------------

-------------------------------------------------------------------------------
-- Ingestion (the hot path: docs/architecture.md) and the receiver's helpers
-------------------------------------------------------------------------------
-- Verifies the token, parses the body and appends one row to the log; writes nothing else.
-- SECURITY DEFINER: callers (attendance_ingest) need no access to the keys or the log.
CREATE FUNCTION @extschema@.attendance_ingest_webhook(body text, authorization text DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'attendance_ingest_webhook'
LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION @extschema@.attendance_ingest_webhook(text, text) IS
  'Verify, parse and append one LiveKit webhook to the log; returns {result, event, event_id, session_id, reason}. Writes nothing else.';

-- A token as LiveKit would send it, signed with a stored key (tests, replays, manual checks).
CREATE FUNCTION @extschema@.attendance_sign_webhook(body text, api_key text, ttl integer DEFAULT 600)
RETURNS text
AS 'MODULE_PATHNAME', 'attendance_sign_webhook'
LANGUAGE C VOLATILE STRICT SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

-- attendance-proxy rejects, before any call of attendance_ingest_webhook, a token whose
-- iss names no active key (docs/proxy.md, "Rejected before the database"). It may learn
-- the key names, never the secrets: this function is what the ingest-only role may
-- execute for that. The proxy reads it every few seconds, and again when a token names
-- a key it does not know. Ingestion stays the authority: it verifies everything again.
CREATE FUNCTION @extschema@.attendance_webhook_key_names()
RETURNS SETOF text LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT k.api_key FROM @extschema@.attendance_webhook_keys k
    WHERE k.retired_at IS NULL OR k.retired_at > now()
    ORDER BY k.api_key;
$$;
COMMENT ON FUNCTION @extschema@.attendance_webhook_key_names() IS
    'The names of the active webhook keys (never their secrets), for the receiver''s precheck.';

-- attendance-proxy's GET /readyz says whether the database accepts writes now: a full
-- data disk (53100), a read-only server (25006) ... (docs/proxy.md, "Health and metrics";
-- docs/operations.md, "Disk full"). SELECT 1 succeeds on such a server, so the probe
-- writes: a temporary table of its own gets a page, which is written to the disk of
-- the database's temporary tablespace (by default the database's own), and the
-- catalog rows of the table are logged; then everything is rolled back. It leaves
-- nothing behind and locks nothing anyone else uses.
CREATE FUNCTION @extschema@.attendance_write_probe()
RETURNS boolean LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    BEGIN
        CREATE TEMPORARY TABLE attendance_write_probe (b integer);
        INSERT INTO pg_temp.attendance_write_probe VALUES (1);  -- the file grows by a page
        RAISE EXCEPTION USING ERRCODE = 'P0004', MESSAGE = 'attendance write probe done';
    EXCEPTION WHEN assert_failure THEN  -- P0004: raised just above, nothing else raises it
        RETURN true;
    END;
END;
$$;
COMMENT ON FUNCTION @extschema@.attendance_write_probe() IS
    'Writes a page and rolls it back: raises the error that a write meets now (53100 disk full, 25006 read-only ...).';

-------------------------------------------------------------------------------
-- Webhook keys (owner only; docs/security.md)
-------------------------------------------------------------------------------
-- Adds a key, or replaces its secret and un-retires it.
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

-- Retires a key now or at a later time.
CREATE FUNCTION @extschema@.attendance_retire_webhook_key(api_key text, at timestamptz DEFAULT now())
RETURNS boolean LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    UPDATE @extschema@.attendance_webhook_keys SET retired_at = $2 WHERE attendance_webhook_keys.api_key = $1
    RETURNING true;
$$;

-- The keys without their secrets (a fingerprint instead).
CREATE FUNCTION @extschema@.attendance_list_webhook_keys(
    OUT api_key text, OUT created_at timestamptz, OUT retired_at timestamptz, OUT active boolean,
    OUT secret_sha256 text, OUT note text)
RETURNS SETOF record LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT k.api_key, k.created_at, k.retired_at, (k.retired_at IS NULL OR k.retired_at > now()),
           left(encode(sha256(convert_to(k.secret, 'UTF8')), 'hex'), 12), k.note
    FROM @extschema@.attendance_webhook_keys k ORDER BY k.api_key;
$$;

-------------------------------------------------------------------------------
-- The schedule, the roster and a session's rooms
-------------------------------------------------------------------------------
-- Registers or moves a session (upsert). Matching is done when deriving: every session of
-- the old and the new room is derived again, so the events logged before this call count
-- as if it came first. Moving it, or changing its policy or course, after calculation
-- flags it for recalculation with a cause that says why.
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

-- A roster entry: an expected attendee who never joins becomes absent; the roster's role
-- wins. A change after calculation flags the session ('roster change').
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
    PERFORM @extschema@._attendance_flag(ARRAY[result.session_id], 'roster change');
    UPDATE @extschema@.attendance_session_schedule s SET needs_fold = true
    WHERE s.session_id = result.session_id AND NOT s.needs_fold;
    RETURN result;
END;
$$;

-- Linking a room to a session, and unlinking it. A calculated session is calculated again
-- (cause 'rooms changed'): its rows depend on its rooms.
CREATE FUNCTION @extschema@.attendance_link_room(session_id bigint, room_name text)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
BEGIN
    IF $1 IS NULL OR $2 IS NULL OR $2 = '' THEN
        RAISE EXCEPTION 'attendance_link_room: session_id and a non-empty room_name are required'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM 1 FROM @extschema@.attendance_session_schedule s WHERE s.session_id = $1 FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'attendance_link_room: session % is not scheduled', $1
            USING ERRCODE = 'no_data_found', HINT = 'Schedule it first with attendance_schedule_session.';
    END IF;
    INSERT INTO @extschema@.attendance_session_rooms (session_id, room_name) VALUES ($1, $2)
    ON CONFLICT DO NOTHING;
    IF FOUND THEN
        PERFORM @extschema@._attendance_rooms_changed($1);
    END IF;
END;
$$;
CREATE FUNCTION @extschema@.attendance_unlink_room(session_id bigint, room_name text)
RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
BEGIN
    PERFORM 1 FROM @extschema@.attendance_session_schedule s WHERE s.session_id = $1 FOR UPDATE;
    DELETE FROM @extschema@.attendance_session_rooms l WHERE l.session_id = $1 AND l.room_name = $2;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM @extschema@._attendance_rooms_changed($1);
    RETURN true;
END;
$$;
CREATE FUNCTION @extschema@._attendance_rooms_changed(session_id bigint)
RETURNS void LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    UPDATE @extschema@.attendance_session_schedule s
    SET needs_fold = true,
        needs_calculation = needs_calculation OR calculated_at IS NOT NULL,
        recalculation_cause = CASE WHEN calculated_at IS NULL OR (needs_calculation AND recalculation_cause IS NOT NULL)
                                   THEN recalculation_cause ELSE 'rooms changed' END,
        updated_at = now()
    WHERE s.session_id = $1;
    SELECT @extschema@._attendance_wake_worker();
$$;
