-------------------------------------------------------------------------------
-- Privacy: secrets in stored bodies, forgetting a person (docs/security.md)
-------------------------------------------------------------------------------
-- The tables (attendance_privacy_salt, attendance_erasures) are in 10_tables.sql.

-- Secrets in stored bodies: ingestion stores a body whose secret-bearing fields
-- (room.turnPassword, ingress stream keys, egress upload credentials, ...) are replaced by
-- "[redacted]"; the signature is verified over the received bytes first. This function is
-- the same redaction for a stored body (the upgrade to 0.4.0 ran it over the rows logged
-- before).
CREATE FUNCTION @extschema@._attendance_redact_secrets(body jsonb)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'attendance_redact_secrets'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@._attendance_redact_secrets(jsonb) IS
  'The body with the value of every secret-bearing field LiveKit sends replaced by "[redacted]" (what ingestion stores).';

-- The pseudonym of a user id: a negative bigint taken from SHA-256(salt || user id), the
-- salt being the installation's secret (attendance_privacy_salt).
CREATE FUNCTION @extschema@._attendance_pseudonym(user_id bigint)
RETURNS bigint LANGUAGE sql STABLE STRICT SET search_path = pg_catalog, pg_temp AS $$
    SELECT -1 - (('x' || encode(substr(sha256(s.salt || convert_to($1::text, 'UTF8')), 1, 8), 'hex'))::bit(64)::bigint
                 & 9223372036854775807)
    FROM @extschema@.attendance_privacy_salt s;
$$;

-- Forgetting a person (docs/security.md, "Forgetting a person"): the person's identifying
-- data leaves the log and every derived row and input; times, sids, roles, counts and
-- statuses stay under the pseudonym, so that a later fold or calculation derives the same
-- rows for it. The one sanctioned change to the log. SECURITY DEFINER with
-- session_replication_role = replica: only a superuser may set that parameter, so the
-- bypass of the immutability trigger exists only inside this function (its owner is the
-- superuser who created the extension); nobody can set it around their own UPDATE.
-- Forgetting a person again, after new webhooks named them in a session that already has
-- the pseudonym's row, merges the two (one person, one row). The planner's statistics lose
-- the erased values in the same call (docs/performance.md, "Forgetting a person").
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
    ev record;
    claimed bigint[] := '{}';
    new_identity jsonb;
    n_log integer;
    n_conn integer;
    n_att integer;
    n_roster integer;
    n_over integer;
    n_audit integer;
    n_alert integer;
    n_merged integer;
    parts regclass[];
    result @extschema@.attendance_erasures;
BEGIN
    IF attendance_forget_person.user_id IS NULL THEN
        RAISE EXCEPTION 'attendance_forget_person: user_id is required' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- The installation's salt, made once (48 bytes from three random UUIDs' hex digits).
    INSERT INTO @extschema@.attendance_privacy_salt AS x (salt)
    SELECT decode(replace(gen_random_uuid()::text || gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex')
    ON CONFLICT (only_row) DO NOTHING;
    p := @extschema@._attendance_pseudonym(attendance_forget_person.user_id);
    k := p::text;
    -- (a value, not an expression of the statement: Citus allows no STABLE function in the
    -- CASE of an UPDATE of a distributed table)
    new_identity := jsonb_build_object('identity', k);
    -- The sessions the person appears in: their schedule rows are locked in id order, as
    -- the fold and calculations lock them, so that no derivation writes the person's old
    -- rows meanwhile.
    SELECT coalesce(array_agg(DISTINCT x.sid ORDER BY x.sid), '{}') INTO sessions FROM (
        SELECT m.session_id FROM @extschema@.meeting_attendances m WHERE m.user_key = uk
        UNION SELECT r.session_id FROM @extschema@.attendance_roster r WHERE r.user_id = attendance_forget_person.user_id
        UNION SELECT c.session_id FROM @extschema@.attendance_sessions c WHERE c.user_key = uk
        UNION SELECT o.session_id FROM @extschema@.attendance_overrides o WHERE o.user_key = uk
        ) x(sid)
    WHERE x.sid IS NOT NULL;
    -- and the sessions its events count for (the log read by itself, then the rule:
    -- docs/architecture.md, "The log's readers")
    FOR ev IN SELECT e.room_name, e.event_timestamp, e.joined_at, e.session_id, e.event_type, e.participant_sid
              FROM @extschema@.meeting_attendance_events e WHERE e.user_id = attendance_forget_person.user_id LOOP
        claimed := claimed || ARRAY(
            SELECT c FROM @extschema@._attendance_claims(ev.room_name, ev.event_timestamp, ev.joined_at,
                                                         ev.session_id, ev.event_type, ev.participant_sid) c);
    END LOOP;
    sessions := ARRAY(SELECT DISTINCT u FROM pg_catalog.unnest(sessions || claimed) u WHERE u IS NOT NULL ORDER BY u);
    PERFORM 1 FROM @extschema@.attendance_session_schedule s
    WHERE s.session_id = ANY (sessions) ORDER BY s.session_id FOR UPDATE;
    -- A fold that read the person's old key before this commits derives these sessions
    -- whole (it reads needs_fold after taking the same locks).
    UPDATE @extschema@.attendance_session_schedule s SET needs_fold = true
    WHERE s.session_id = ANY (sessions) AND NOT s.needs_fold;

    -- The log: the person's rows keep their times, kinds, sids and role; the identity
    -- becomes the pseudonym, the name goes, and the body loses the participant's name,
    -- metadata and attributes (the identity in it becomes the pseudonym too).
    -- The partitions that held them are noted for their statistics (below).
    WITH changed AS (
        UPDATE @extschema@.meeting_attendance_events e SET
            user_id = p, user_key = k, participant_identity = k, participant_name = NULL,
            raw_webhook_data = CASE WHEN jsonb_typeof(e.raw_webhook_data -> 'participant') = 'object'
                THEN jsonb_set(e.raw_webhook_data, '{participant}',
                               ((e.raw_webhook_data -> 'participant') - 'name' - 'metadata' - 'attributes')
                               || new_identity)
                ELSE e.raw_webhook_data END
        WHERE e.user_id = attendance_forget_person.user_id
        RETURNING e.tableoid)
    SELECT count(*), coalesce(array_agg(DISTINCT c.tableoid), '{}')::regclass[] INTO n_log, parts FROM changed c;
    -- On a Citus cluster the rows came from the workers' shards, whose oids mean nothing
    -- here: the coordinator's partitions (the shards' statistics are the workers':
    -- docs/scaling.md, "Citus").
    IF @extschema@._attendance_log_distributed() THEN
        parts := ARRAY(SELECT i.inhrelid::regclass FROM pg_catalog.pg_inherits i
                       WHERE i.inhparent = '@extschema@.meeting_attendance_events'::regclass);
    END IF;

    -- The derived rows and the inputs, under the same key, so that a later fold or
    -- calculation derives the same counts and statuses for the pseudonym.
    UPDATE @extschema@.attendance_sessions c SET user_key = k WHERE c.user_key = uk;
    GET DIAGNOSTICS n_conn = ROW_COUNT;
    -- Forgotten before: a row of the pseudonym may already be in a session where new webhooks
    -- (or a new roster entry or override) named the person again. One person, one row: the
    -- live row under the old key goes and the session is derived again (its log rows are all
    -- the pseudonym's now); a newer override replaces the pseudonym's; a roster entry and an
    -- open alert the pseudonym already has are kept.
    WITH gone AS (
        DELETE FROM @extschema@.meeting_attendances m
        WHERE m.user_key = uk
          AND EXISTS (SELECT 1 FROM @extschema@.meeting_attendances x WHERE x.session_id = m.session_id AND x.user_key = k)
        RETURNING m.session_id)
    UPDATE @extschema@.attendance_session_schedule s SET needs_fold = true
    WHERE s.session_id IN (SELECT g.session_id FROM gone g);
    GET DIAGNOSTICS n_merged = ROW_COUNT;
    UPDATE @extschema@.meeting_attendances m SET
        user_key = k, user_id = p, participant_identity = k, participant_name = NULL, updated_at = now()
    WHERE m.user_key = uk;
    GET DIAGNOSTICS n_att = ROW_COUNT;
    n_att := n_att + n_merged;
    DELETE FROM @extschema@.attendance_roster r
    WHERE r.user_id = attendance_forget_person.user_id
      AND EXISTS (SELECT 1 FROM @extschema@.attendance_roster x WHERE x.session_id = r.session_id AND x.user_id = p);
    GET DIAGNOSTICS n_merged = ROW_COUNT;
    UPDATE @extschema@.attendance_roster r SET user_id = p WHERE r.user_id = attendance_forget_person.user_id;
    GET DIAGNOSTICS n_roster = ROW_COUNT;
    n_roster := n_roster + n_merged;
    DELETE FROM @extschema@.attendance_overrides o
    WHERE o.user_key = k
      AND EXISTS (SELECT 1 FROM @extschema@.attendance_overrides x WHERE x.session_id = o.session_id AND x.user_key = uk);
    -- An override's reason is free text about the person (e.g. a doctor's note): erased;
    -- its status counts and is kept.
    UPDATE @extschema@.attendance_overrides o SET user_key = k, reason = 'erased (attendance_forget_person)'
    WHERE o.user_key = uk;
    GET DIAGNOSTICS n_over = ROW_COUNT;
    UPDATE @extschema@.attendance_alerts a SET cleared_at = now(), cleared_cause = 'merged (attendance_forget_person)'
    WHERE a.user_key = uk AND a.cleared_at IS NULL
      AND EXISTS (SELECT 1 FROM @extschema@.attendance_alerts x
                  WHERE x.course = a.course AND x.user_key = k AND x.cleared_at IS NULL);
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

    -- The planner's statistics (pg_stats) hold values sampled from these tables: names,
    -- identities, user ids, bodies. A role sees those of every column it may read, and they
    -- stay until the next ANALYZE of the table. They lose the erased values here, in this
    -- transaction, so exactly when the erasure commits (docs/security.md, "Forgetting a
    -- person"; what each way costs: docs/performance.md, "Forgetting a person"):
    -- - the log: the statistics of the columns erased above are deleted, for the partitions
    --   that held the person's rows and for the log as a whole (which has some only if
    --   someone analyzed it). Sampling them again would cost a sample of each of those
    --   partitions, nearly all of them for a person of a year-long course; and the
    --   extension's queries find log rows by room, session, time or id, not by these
    --   columns. The next ANALYZE of a partition (autovacuum's) makes them again, from the
    --   erased rows. Deleting statistics rows needs a superuser: the owner, who created
    --   the extension.
    IF n_log > 0 THEN
        DELETE FROM pg_statistic s
        USING pg_attribute a
        WHERE s.starelid = ANY (parts || '@extschema@.meeting_attendance_events'::regclass)
          AND a.attrelid = s.starelid AND a.attnum = s.staattnum
          AND a.attname IN ('user_id', 'user_key', 'participant_identity', 'participant_name', 'raw_webhook_data');
    END IF;
    -- - the derived tables and inputs it changed are analyzed again (ANALYZE needs their
    --   owner): in this transaction ANALYZE samples the call's new row versions, not the
    --   old ones, and its statistics commit with the erasure. The planner uses these
    --   columns (course reports and alerts group and join on user_key).
    IF n_conn > 0 THEN
        ANALYZE @extschema@.attendance_sessions;
    END IF;
    IF n_att > 0 THEN
        ANALYZE @extschema@.meeting_attendances;
    END IF;
    IF n_roster > 0 THEN
        ANALYZE @extschema@.attendance_roster;
    END IF;
    IF n_over > 0 THEN
        ANALYZE @extschema@.attendance_overrides;
    END IF;
    IF n_audit > 0 THEN
        ANALYZE @extschema@.attendance_status_changes;
    END IF;
    IF n_alert > 0 THEN
        ANALYZE @extschema@.attendance_alerts;
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
COMMENT ON FUNCTION @extschema@.attendance_forget_person(bigint) IS
  'Erase a person''s identifying data (names, identities, metadata) from the log and every derived row, keeping counts and statuses under a salted pseudonym (a negative user id), and sample the changed tables'' statistics again; audited in attendance_erasures. Owner only.';
