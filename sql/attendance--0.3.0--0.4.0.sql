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
-- (issue 16: nothing yet)

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
    audit_rows       integer NOT NULL
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

    IF n_log + n_conn + n_att + n_roster + n_over + n_audit = 0 THEN
        IF EXISTS (SELECT 1 FROM @extschema@.attendance_erasures x WHERE x.pseudonym = p) THEN
            RAISE EXCEPTION 'attendance_forget_person: user % was already forgotten', attendance_forget_person.user_id
                USING ERRCODE = 'undefined_object';
        END IF;
        RAISE EXCEPTION 'attendance_forget_person: no attendance data for user %', attendance_forget_person.user_id
            USING ERRCODE = 'undefined_object';
    END IF;

    INSERT INTO @extschema@.attendance_erasures AS x (pseudonym, sessions, log_rows, connection_rows, attendance_rows,
                                                       roster_rows, override_rows, audit_rows)
    VALUES (p, sessions, n_log, n_conn, n_att, n_roster, n_over, n_audit)
    ON CONFLICT (pseudonym) DO UPDATE SET
        erased_at = now(), actor = excluded.actor,
        sessions = ARRAY(SELECT DISTINCT u FROM unnest(x.sessions || excluded.sessions) u ORDER BY u),
        log_rows = x.log_rows + excluded.log_rows, connection_rows = x.connection_rows + excluded.connection_rows,
        attendance_rows = x.attendance_rows + excluded.attendance_rows, roster_rows = x.roster_rows + excluded.roster_rows,
        override_rows = x.override_rows + excluded.override_rows, audit_rows = x.audit_rows + excluded.audit_rows
    RETURNING * INTO result;
    RETURN result;
END;
$$;
REVOKE ALL ON FUNCTION @extschema@.attendance_forget_person(bigint) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.attendance_forget_person(bigint) IS
  'Erase a person''s identifying data (names, identities, metadata) from the log and every derived row, keeping counts and statuses under a salted pseudonym (a negative user id); audited in attendance_erasures. Owner only.';

GRANT SELECT ON @extschema@.attendance_erasures TO attendance_reader;
