-- The baseline a team would write by hand: the same rules as the attendance extension
-- (the webhook checks of docs/security.md, "Forged webhooks"; the reading of a body of
-- docs/integration.md, "LiveKit's side"; the calculation's rules of src/core/calc.hpp and
-- docs/decisions.md, "Calculation") in plain PL/pgSQL, with pgcrypto for the signature.
-- Same tables, same columns, same indexes as the extension's, in schema bench_baseline.
--
--   bench_baseline.ingest_webhook(body, authorization) -> jsonb
--       verify the HS256 token (hmac/digest from pgcrypto), parse the body with jsonb,
--       log it idempotently, upsert the connection and the person's live row.
--   bench_baseline.calculate_session(session_id) -> integer
--       per person: union of the connections clipped to the window (a loop over the
--       connections ordered by join time), percentage, status rules, upsert + audit.
--
-- It is checked to give the extension's results on the benchmark workload
-- (bench/bench.py aborts otherwise).

CREATE SCHEMA bench_baseline;
CREATE EXTENSION pgcrypto SCHEMA bench_baseline;

CREATE TABLE bench_baseline.webhook_keys (
    api_key     text PRIMARY KEY,
    secret      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    retired_at  timestamptz
);

CREATE TABLE bench_baseline.policies (
    name            text PRIMARY KEY,
    absent_below    numeric(5,2) NOT NULL DEFAULT 10,
    partial_below   numeric(5,2) NOT NULL DEFAULT 50,
    late_after      interval     NOT NULL DEFAULT '15 minutes',
    late_max        numeric(5,2) NOT NULL DEFAULT 75
);
INSERT INTO bench_baseline.policies (name) VALUES ('default');

CREATE TABLE bench_baseline.session_schedule (
    session_id          bigint PRIMARY KEY,
    room_name           text NOT NULL,
    starts_at           timestamptz NOT NULL,
    ends_at             timestamptz NOT NULL,
    policy_name         text NOT NULL DEFAULT 'default' REFERENCES bench_baseline.policies (name),
    room_finished_at    timestamptz,
    calculated_at       timestamptz,
    needs_calculation   boolean NOT NULL DEFAULT true,
    recalculation_cause text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON bench_baseline.session_schedule (room_name, starts_at);
CREATE INDEX ON bench_baseline.session_schedule (ends_at) WHERE needs_calculation;

CREATE TABLE bench_baseline.roster (
    session_id  bigint NOT NULL,
    user_id     bigint NOT NULL,
    role        text NOT NULL DEFAULT 'student',
    PRIMARY KEY (session_id, user_id)
);

CREATE TABLE bench_baseline.overrides (
    session_id  bigint NOT NULL,
    user_key    text NOT NULL,
    status      text NOT NULL,
    reason      text NOT NULL,
    PRIMARY KEY (session_id, user_key)
);

CREATE TABLE bench_baseline.events (
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
    result               text NOT NULL,
    reason               text,
    api_key              text,
    raw_webhook_data     jsonb NOT NULL,
    created_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON bench_baseline.events (session_id, event_timestamp);
CREATE INDEX ON bench_baseline.events (created_at);
CREATE INDEX ON bench_baseline.events (room_name) WHERE session_id IS NULL;

CREATE TABLE bench_baseline.connections (
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
    join_source          text,
    leave_time           timestamptz,
    end_reason           text,
    leave_is_synthetic   boolean NOT NULL DEFAULT false,
    disconnect_reason    text,
    join_event_id        text,
    leave_event_id       text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON bench_baseline.connections (session_id, user_key);
CREATE INDEX ON bench_baseline.connections (room_name) WHERE session_id IS NULL;
CREATE INDEX ON bench_baseline.connections (join_time) WHERE leave_time IS NULL;

CREATE TABLE bench_baseline.attendances (
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
CREATE INDEX ON bench_baseline.attendances (is_calculated, session_id);

CREATE TABLE bench_baseline.status_changes (
    id              bigserial PRIMARY KEY,
    session_id      bigint NOT NULL,
    user_key        text NOT NULL,
    old_status      text,
    new_status      text,
    old_percentage  numeric(5,2),
    new_percentage  numeric(5,2),
    cause           text NOT NULL,
    changed_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON bench_baseline.status_changes (session_id, user_key);

-- base64url (no padding) -> bytea
CREATE FUNCTION bench_baseline.b64url_decode(s text) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT decode(translate(s, '-_', '+/') || repeat('=', (4 - length(s) % 4) % 4), 'base64');
$$;

CREATE FUNCTION bench_baseline.ingest_webhook(body text, auth text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    tok text;
    parts text[];
    hdr jsonb;
    claims jsonb;
    key_secret text;
    now_s bigint := extract(epoch FROM clock_timestamp())::bigint;
    b jsonb;
    ev text;
    ev_id text;
    created_s bigint;
    ev_ts timestamptz;
    room text;
    room_sid text;
    p jsonb;
    meta jsonb;
    attrs jsonb;
    p_sid text;
    p_identity text;
    p_name text;
    p_kind text;
    p_reason text;
    joined_ms bigint;
    joined timestamptz;
    uid bigint;
    ukey text;
    prole text;
    roster_role text;
    m text[];
    sess bigint;
    res text := 'recorded';
    why text;
    row_id bigint;
    participant_event boolean;
    attends boolean := true;
BEGIN
    -- 1. The token: HS256 over header.payload with the key's secret; exp, nbf; body hash.
    tok := regexp_replace(coalesce(auth, ''), '^Bearer ', '');
    IF tok = '' THEN
        RAISE EXCEPTION 'missing token' USING ERRCODE = 'invalid_authorization_specification';
    END IF;
    parts := string_to_array(tok, '.');
    IF array_length(parts, 1) IS DISTINCT FROM 3 THEN
        RAISE EXCEPTION 'malformed token' USING ERRCODE = 'invalid_authorization_specification';
    END IF;
    hdr := convert_from(bench_baseline.b64url_decode(parts[1]), 'UTF8')::jsonb;
    IF hdr->>'alg' IS DISTINCT FROM 'HS256' THEN
        RAISE EXCEPTION 'token algorithm must be HS256' USING ERRCODE = 'invalid_authorization_specification';
    END IF;
    claims := convert_from(bench_baseline.b64url_decode(parts[2]), 'UTF8')::jsonb;
    SELECT k.secret INTO key_secret FROM bench_baseline.webhook_keys k
    WHERE k.api_key = claims->>'iss' AND (k.retired_at IS NULL OR k.retired_at > now());
    IF key_secret IS NULL THEN
        RAISE EXCEPTION 'unknown or retired API key' USING ERRCODE = 'invalid_authorization_specification';
    END IF;
    IF rtrim(translate(encode(bench_baseline.hmac(parts[1] || '.' || parts[2], key_secret, 'sha256'), 'base64'),
                       '+/', '-_'), '=') <> rtrim(parts[3], '=') THEN
        RAISE EXCEPTION 'bad signature' USING ERRCODE = 'invalid_authorization_specification';
    END IF;
    IF claims->>'exp' IS NULL OR (claims->>'exp')::bigint + 60 < now_s THEN
        RAISE EXCEPTION 'token expired' USING ERRCODE = 'invalid_authorization_specification';
    END IF;
    IF (claims->>'nbf')::bigint - 60 > now_s THEN
        RAISE EXCEPTION 'token not yet valid' USING ERRCODE = 'invalid_authorization_specification';
    END IF;
    IF claims->>'sha256' IS DISTINCT FROM encode(bench_baseline.digest(body, 'sha256'), 'base64') THEN
        RAISE EXCEPTION 'body hash does not match' USING ERRCODE = 'invalid_authorization_specification';
    END IF;

    -- 2. The body.
    b := body::jsonb;
    ev := b->>'event';
    ev_id := b->>'id';
    created_s := coalesce(b->>'createdAt', b->>'created_at')::bigint;
    IF ev IS NULL OR coalesce(created_s, 0) = 0 THEN
        RAISE EXCEPTION 'not a LiveKit webhook' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    ev_ts := timestamptz 'epoch' + created_s * interval '1 second';
    room := b->'room'->>'name';
    room_sid := b->'room'->>'sid';
    participant_event := ev IN ('participant_joined', 'participant_left', 'participant_connection_aborted');

    -- 3. Room -> session: the scheduled room, else the pattern.
    IF coalesce(room, '') <> '' THEN
        SELECT s.session_id INTO sess FROM bench_baseline.session_schedule s WHERE s.room_name = room
        ORDER BY (ev_ts BETWEEN s.starts_at - interval '1 hour' AND s.ends_at + interval '1 hour') DESC,
                 abs(extract(epoch FROM s.starts_at - ev_ts)), s.session_id DESC
        LIMIT 1 FOR KEY SHARE;
        IF sess IS NULL THEN
            m := regexp_match(room, 'session-([0-9]+)$');
            sess := m[1]::bigint;
        END IF;
    END IF;

    -- 4. Participant -> person: attributes.user_id, metadata user_id, identity pattern.
    p := b->'participant';
    IF p IS NOT NULL THEN
        p_sid := p->>'sid';
        p_identity := p->>'identity';
        p_name := p->>'name';
        p_kind := coalesce(p->>'kind', 'STANDARD');
        p_reason := p->>'disconnectReason';
        attrs := p->'attributes';
        IF coalesce(p->>'metadata', '') <> '' THEN
            BEGIN
                meta := (p->>'metadata')::jsonb;
            EXCEPTION WHEN others THEN
                meta := NULL;
            END;
            IF jsonb_typeof(meta) IS DISTINCT FROM 'object' THEN meta := NULL; END IF;
        END IF;
        joined_ms := nullif(coalesce(p->>'joinedAtMs', p->>'joined_at_ms'), '')::bigint;
        IF joined_ms IS NULL OR joined_ms <= 0 THEN
            joined_ms := nullif(coalesce(p->>'joinedAt', p->>'joined_at'), '')::bigint * 1000;
        END IF;
        IF joined_ms > 0 THEN
            joined := timestamptz 'epoch' + joined_ms * interval '1 millisecond';
        END IF;
        IF attrs->>'user_id' ~ '^\s*-?[0-9]+\s*$' THEN
            uid := btrim(attrs->>'user_id')::bigint;
        ELSIF meta->>'user_id' ~ '^\s*-?[0-9]+\s*$' THEN
            uid := btrim(meta->>'user_id')::bigint;
        ELSE
            m := regexp_match(p_identity, '^(?:user[-_])?([0-9]+)(?:[-_].*)?$');
            uid := m[1]::bigint;
        END IF;
        ukey := coalesce(uid::text, p_identity);
        prole := lower(coalesce(attrs->>'role', meta->>'role'));
        IF sess IS NOT NULL AND uid IS NOT NULL THEN
            SELECT r.role INTO roster_role FROM bench_baseline.roster r WHERE r.session_id = sess AND r.user_id = uid;
            IF roster_role IS NOT NULL THEN prole := roster_role; END IF;
        END IF;
        IF p_kind IN ('AGENT', 'EGRESS', 'INGRESS', 'SIP', 'CONNECTOR')
           OR coalesce((p->'permission'->>'recorder')::boolean, false)
           OR coalesce((p->'permission'->>'hidden')::boolean, false) THEN
            attends := false;
            why := 'not a person attending';
        ELSIF prole = 'observer' THEN
            attends := false;
            why := 'role observer does not attend';
        END IF;
    END IF;

    IF participant_event AND NOT attends THEN
        res := 'ignored';
    ELSIF ev = 'room_started' OR NOT (participant_event OR ev = 'room_finished') THEN
        res := 'ignored';
        why := ev || ' has no attendance meaning';
    ELSIF sess IS NULL THEN
        why := 'room is not matched to a session (unmatched)';
    END IF;

    -- 5. The immutable log, idempotent on the event id.
    INSERT INTO bench_baseline.events (event_id, event_type, event_timestamp, session_id, room_name, room_sid,
        participant_sid, participant_identity, user_id, user_key, participant_name, role, participant_kind,
        joined_at, result, reason, api_key, raw_webhook_data)
    VALUES (ev_id, ev, ev_ts, sess, room, room_sid, p_sid, p_identity, uid, ukey, p_name, prole,
        p_kind, joined, res, why, claims->>'iss', b)
    ON CONFLICT (event_id) DO NOTHING
    RETURNING id INTO row_id;
    IF row_id IS NULL THEN
        RETURN jsonb_build_object('result', 'duplicate', 'event', ev, 'event_id', ev_id, 'session_id', sess);
    END IF;
    IF res <> 'recorded' THEN
        RETURN jsonb_build_object('result', res, 'event', ev, 'event_id', ev_id, 'session_id', sess, 'reason', why);
    END IF;

    IF ev = 'room_finished' THEN
        IF sess IS NOT NULL THEN
            UPDATE bench_baseline.session_schedule SET room_finished_at = ev_ts, updated_at = now(),
                needs_calculation = needs_calculation OR calculated_at IS NOT NULL,
                recalculation_cause = CASE WHEN calculated_at IS NOT NULL THEN 'late webhook' ELSE recalculation_cause END
            WHERE session_id = sess;
        END IF;
        RETURN jsonb_build_object('result', res, 'event', ev, 'event_id', ev_id, 'session_id', sess);
    END IF;

    -- 6. The person's live row (locked first), the connection, the live aggregates.
    IF sess IS NOT NULL THEN
        INSERT INTO bench_baseline.attendances AS a (session_id, user_key, user_id, participant_identity,
            participant_name, role)
        VALUES (sess, ukey, uid, p_identity, p_name, coalesce(prole, 'student'))
        ON CONFLICT (session_id, user_key) DO UPDATE SET
            participant_name = coalesce(excluded.participant_name, a.participant_name),
            participant_identity = excluded.participant_identity, role = coalesce(prole, a.role),
            updated_at = now();
    END IF;

    IF ev = 'participant_joined' THEN
        INSERT INTO bench_baseline.connections AS c (participant_sid, session_id, room_name, room_sid,
            participant_identity, user_key, user_id, participant_name, role, join_time, join_source, join_event_id)
        VALUES (p_sid, sess, room, room_sid, p_identity, ukey, uid, p_name, prole, coalesce(joined, ev_ts),
            'joined', ev_id)
        ON CONFLICT (participant_sid) DO UPDATE SET
            join_time = coalesce(excluded.join_time, c.join_time), join_source = 'joined',
            join_event_id = excluded.join_event_id,
            end_reason = CASE WHEN c.end_reason = 'aborted' THEN NULL ELSE c.end_reason END,
            participant_name = coalesce(excluded.participant_name, c.participant_name), updated_at = now();
    ELSIF ev = 'participant_left' THEN
        INSERT INTO bench_baseline.connections AS c (participant_sid, session_id, room_name, room_sid,
            participant_identity, user_key, user_id, participant_name, role, join_time, join_source,
            leave_time, end_reason, disconnect_reason, leave_event_id)
        VALUES (p_sid, sess, room, room_sid, p_identity, ukey, uid, p_name, prole, joined,
            CASE WHEN joined IS NULL THEN NULL ELSE 'rebuilt_from_leave' END, ev_ts, 'left',
            nullif(p_reason, 'UNKNOWN_REASON'), ev_id)
        ON CONFLICT (participant_sid) DO UPDATE SET
            leave_time = CASE WHEN c.leave_time IS NULL OR c.leave_is_synthetic OR c.end_reason = 'aborted'
                              THEN excluded.leave_time ELSE greatest(c.leave_time, excluded.leave_time) END,
            end_reason = CASE WHEN c.end_reason = 'aborted' AND c.join_event_id IS NULL THEN 'aborted' ELSE 'left' END,
            leave_is_synthetic = false, disconnect_reason = excluded.disconnect_reason,
            leave_event_id = excluded.leave_event_id,
            join_time = coalesce(c.join_time, excluded.join_time),
            join_source = coalesce(c.join_source, excluded.join_source), updated_at = now();
    ELSE
        INSERT INTO bench_baseline.connections AS c (participant_sid, session_id, room_name, room_sid,
            participant_identity, user_key, user_id, participant_name, role, join_time, join_source,
            leave_time, end_reason, disconnect_reason, leave_event_id)
        VALUES (p_sid, sess, room, room_sid, p_identity, ukey, uid, p_name, prole, joined, 'aborted', ev_ts,
            'aborted', nullif(p_reason, 'UNKNOWN_REASON'), ev_id)
        ON CONFLICT (participant_sid) DO UPDATE SET
            end_reason = CASE WHEN c.join_event_id IS NULL THEN 'aborted' ELSE c.end_reason END,
            disconnect_reason = coalesce(c.disconnect_reason, excluded.disconnect_reason), updated_at = now();
    END IF;

    IF sess IS NOT NULL THEN
        UPDATE bench_baseline.attendances a SET
            first_join_time = x.first_join, last_leave_time = x.last_leave, join_count = x.joins,
            leave_count = x.leaves, join_leave_cycles = x.cycles,
            total_duration_minutes = CASE WHEN a.is_calculated THEN a.total_duration_minutes ELSE x.minutes END,
            is_calculated = false, updated_at = now()
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
            FROM bench_baseline.connections c
            WHERE c.session_id = sess AND c.user_key = ukey
        ) x
        WHERE a.session_id = sess AND a.user_key = ukey;

        UPDATE bench_baseline.session_schedule SET needs_calculation = true,
            recalculation_cause = 'late webhook', updated_at = now()
        WHERE session_id = sess AND calculated_at IS NOT NULL
          AND (NOT needs_calculation OR recalculation_cause IS DISTINCT FROM 'late webhook');
    END IF;

    RETURN jsonb_build_object('result', res, 'event', ev, 'event_id', ev_id, 'session_id', sess,
                              'log_id', row_id, 'reason', why);
END;
$$;

-- One session: per person, the union of the connections clipped to the window.
CREATE FUNCTION bench_baseline.calculate_session(p_session bigint, p_cause text DEFAULT 'manual')
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    s bench_baseline.session_schedule;
    pol bench_baseline.policies;
    start_ms bigint;
    end_ms bigint;
    eff_end_ms bigint;
    window_ms bigint;
    over boolean;
    r record;
    cur_key text;
    cur_uid bigint;
    cur_role text;
    cur_override text;
    seg_s bigint;
    seg_e bigint;
    cs bigint;
    ce bigint;
    presence bigint;
    first_presence bigint;
    n integer := 0;
    pct numeric(5,2);
    st text;
    rule text;
    old record;
BEGIN
    SELECT * INTO s FROM bench_baseline.session_schedule WHERE session_id = p_session FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'session % is not scheduled', p_session USING ERRCODE = 'undefined_object';
    END IF;
    SELECT * INTO pol FROM bench_baseline.policies WHERE name = s.policy_name;
    start_ms := floor(extract(epoch FROM s.starts_at) * 1000)::bigint;
    end_ms := floor(extract(epoch FROM s.ends_at) * 1000)::bigint;
    window_ms := end_ms - start_ms;
    -- An open connection counts until the scheduled end, the room's end, or now.
    eff_end_ms := floor(extract(epoch FROM least(s.ends_at, coalesce(s.room_finished_at, s.ends_at), now())) * 1000)::bigint;
    over := now() >= s.ends_at;

    -- The persons (live rows, the roster's role wins) with their counted connections,
    -- ordered by join time; a sentinel row at the end flushes the last person.
    FOR r IN
        WITH persons AS (
            SELECT a.user_key, a.user_id, a.role FROM bench_baseline.attendances a
            WHERE a.session_id = p_session
              AND NOT EXISTS (SELECT 1 FROM bench_baseline.roster ro
                              WHERE ro.session_id = p_session AND ro.user_id::text = a.user_key)
            UNION ALL
            SELECT ro.user_id::text, ro.user_id, ro.role FROM bench_baseline.roster ro WHERE ro.session_id = p_session
        )
        SELECT * FROM (
            SELECT p.user_key, p.user_id, p.role, o.status AS override_status,
                   floor(extract(epoch FROM c.join_time) * 1000)::bigint AS join_ms,
                   coalesce(floor(extract(epoch FROM c.leave_time) * 1000)::bigint, eff_end_ms) AS end_ms,
                   false AS sentinel
            FROM persons p
            LEFT JOIN bench_baseline.connections c
              ON c.session_id = p_session AND c.user_key = p.user_key AND c.join_time IS NOT NULL
             AND c.end_reason IS DISTINCT FROM 'aborted' AND (c.leave_time IS NULL OR c.leave_time >= c.join_time)
            LEFT JOIN bench_baseline.overrides o ON o.session_id = p_session AND o.user_key = p.user_key
            WHERE p.role <> 'observer'
            UNION ALL
            SELECT NULL, NULL, NULL, NULL, NULL, NULL, true
        ) x
        ORDER BY x.sentinel, x.user_key, x.join_ms, x.end_ms
    LOOP
        IF cur_key IS NOT NULL AND (r.sentinel OR r.user_key <> cur_key) THEN
            -- Finish the previous person.
            IF seg_s IS NOT NULL THEN presence := presence + (seg_e - seg_s); END IF;
            pct := least(100, round(presence * 100::numeric / window_ms, 2));
            IF cur_override IS NOT NULL THEN
                st := cur_override; rule := 'override';
            ELSIF presence = 0 THEN
                st := 'absent'; rule := 'no_presence';
            ELSIF presence * 100 < pol.absent_below * window_ms THEN
                st := 'absent'; rule := 'below_absent';
            ELSIF presence * 100 < pol.partial_below * window_ms THEN
                st := 'partial'; rule := 'below_partial';
            ELSIF first_presence - start_ms > extract(epoch FROM pol.late_after) * 1000
                  AND presence * 100 <= pol.late_max * window_ms THEN
                st := 'late'; rule := 'late';
            ELSE
                st := 'present'; rule := 'present';
            END IF;
            SELECT a.attendance_status, a.attendance_percentage, a.attendance_calculated_at INTO old
            FROM bench_baseline.attendances a WHERE a.session_id = p_session AND a.user_key = cur_key;
            IF old.attendance_calculated_at IS NOT NULL
               AND (old.attendance_status IS DISTINCT FROM st OR old.attendance_percentage IS DISTINCT FROM pct) THEN
                INSERT INTO bench_baseline.status_changes (session_id, user_key, old_status, new_status,
                    old_percentage, new_percentage, cause)
                VALUES (p_session, cur_key, old.attendance_status, st, old.attendance_percentage, pct, p_cause);
            END IF;
            INSERT INTO bench_baseline.attendances AS a (session_id, user_key, user_id, role, attendance_status,
                status_rule, attendance_percentage, presence_ms, total_duration_minutes, session_duration_minutes,
                policy_name, is_calculated, attendance_calculated_at)
            VALUES (p_session, cur_key, cur_uid, cur_role, st, rule, pct, presence, (presence + 30000) / 60000,
                (window_ms + 30000) / 60000, s.policy_name, over, now())
            ON CONFLICT (session_id, user_key) DO UPDATE SET
                user_id = coalesce(excluded.user_id, a.user_id), role = excluded.role,
                attendance_status = excluded.attendance_status, status_rule = excluded.status_rule,
                attendance_percentage = excluded.attendance_percentage, presence_ms = excluded.presence_ms,
                total_duration_minutes = excluded.total_duration_minutes,
                session_duration_minutes = excluded.session_duration_minutes, policy_name = excluded.policy_name,
                is_calculated = excluded.is_calculated, attendance_calculated_at = excluded.attendance_calculated_at,
                updated_at = now();
            n := n + 1;
            cur_key := NULL;
        END IF;
        EXIT WHEN r.sentinel;
        IF cur_key IS NULL THEN
            cur_key := r.user_key; cur_uid := r.user_id; cur_role := r.role; cur_override := r.override_status;
            seg_s := NULL; seg_e := NULL; presence := 0; first_presence := NULL;
        END IF;
        -- Clip the connection to the window, then merge it into the running union.
        IF r.join_ms IS NOT NULL AND r.end_ms > r.join_ms THEN
            cs := greatest(r.join_ms, start_ms);
            ce := least(r.end_ms, end_ms);
            IF ce > cs THEN
                IF seg_s IS NULL THEN
                    seg_s := cs; seg_e := ce; first_presence := cs;
                ELSIF cs <= seg_e THEN
                    seg_e := greatest(seg_e, ce);
                ELSE
                    presence := presence + (seg_e - seg_s);
                    seg_s := cs; seg_e := ce;
                END IF;
            END IF;
        END IF;
    END LOOP;

    UPDATE bench_baseline.session_schedule SET calculated_at = now(), needs_calculation = NOT over,
        recalculation_cause = NULL, updated_at = now()
    WHERE session_id = p_session;
    PERFORM pg_notify('attendance_calculated', p_session::text);
    RETURN n;
END;
$$;
