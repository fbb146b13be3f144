-- The fold's cost per webhook against the size of the class (hand-run; docs/performance.md,
-- "0.5.0: the incremental fold"):
--   psql -X -q -d <scratch database> -f bench/fold_incremental.sql
-- In a scratch database (it creates and drops the extension). For classes of 30, 300 and
-- 3,000 persons, all joined and folded, each repetition logs one webhook (a leave) and
-- folds it, 3 × 40 times, interleaved: the fold as it runs (it derives the one person the
-- leave names), the same fold made to derive the whole session (needs_fold set before it,
-- as a schedule change would), and the floor: the same webhook logged with nothing to fold
-- (a room nobody scheduled, whose event the fold reads and claims for no session). Times
-- are per webhook, the webhook's own logging excluded (timed separately); each webhook and
-- its fold commit before the next.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS attendance CASCADE;
CREATE EXTENSION attendance;
SELECT attendance_add_webhook_key('APIbench', 'bench-secret-0123456789abcdef0123') \gset
SET attendance.replay_mode = on;
CREATE TEMP TABLE timings (size int, variant text, rep int, ingest_ms float8, fold_ms float8);

CREATE FUNCTION pg_temp.hook(ev text, room text, n int, k int, at bigint) RETURNS text LANGUAGE sql AS $$
    SELECT json_build_object('event', ev, 'id', 'EV_' || room || '_' || ev || '_' || n || '_' || k,
        'createdAt', at::text, 'room', json_build_object('name', room),
        'participant', json_build_object('sid', 'PA_' || room || '_' || n || '_' || k, 'identity', 'user-' || n,
                                          'joinedAtMs', ((1763110800 + n % 600)::bigint * 1000)::text,
                                          'disconnectReason', 'CLIENT_INITIATED'))::text;
$$;
CREATE FUNCTION pg_temp.ingest(body text) RETURNS void LANGUAGE sql AS $$
    SELECT attendance_ingest_webhook(body, attendance_sign_webhook(body, 'APIbench'));
$$;
-- One webhook and its fold; returns (ingest ms, fold ms).
CREATE FUNCTION pg_temp.one(body text, whole_session bigint) RETURNS float8[] LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz; t1 timestamptz; t2 timestamptz;
BEGIN
    IF whole_session IS NOT NULL THEN
        UPDATE attendance_session_schedule SET needs_fold = true WHERE session_id = whole_session;
    END IF;
    t0 := clock_timestamp();
    PERFORM pg_temp.ingest(body);
    t1 := clock_timestamp();
    PERFORM attendance_fold();
    t2 := clock_timestamp();
    RETURN ARRAY[extract(epoch FROM t1 - t0) * 1000, extract(epoch FROM t2 - t1) * 1000];
END $$;

DO $$
DECLARE size int; n int; rep int; r float8[]; room text; v text;
BEGIN
    FOREACH size IN ARRAY ARRAY[30, 300, 3000] LOOP
        room := 'bench-room-' || size;
        -- 2025-11-14 09:00-10:00 UTC; everyone joined between 09:00 and 09:10
        PERFORM attendance_schedule_session(size, room, '2025-11-14 09:00Z', '2025-11-14 10:00Z');
        FOR n IN 1 .. size LOOP
            PERFORM pg_temp.ingest(pg_temp.hook('participant_joined', room, n, 0, 1763110800 + n % 600));
        END LOOP;
        PERFORM attendance_fold();
        COMMIT;
        FOR rep IN 1 .. 120 LOOP
            -- person rep leaves and joins again on a new sid: every webhook changes one person
            v := (ARRAY['incremental', 'whole session', 'floor'])[1 + rep % 3];
            IF v = 'floor' THEN
                r := pg_temp.one(pg_temp.hook('participant_left', 'unscheduled-' || size, rep, rep,
                                              1763112600 + rep), NULL);
            ELSE
                r := pg_temp.one(pg_temp.hook('participant_left', room, 1 + rep % size, 0, 1763112600 + rep),
                                 CASE WHEN v = 'whole session' THEN size END);
            END IF;
            INSERT INTO timings VALUES (size, v, rep, r[1], r[2]);
            COMMIT;  -- each webhook and its fold in a transaction of their own, as deployed
        END LOOP;
    END LOOP;
END $$;

SELECT size AS class, variant, count(*) AS webhooks,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ingest_ms)::numeric, 3) AS ingest_ms_p50,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY fold_ms)::numeric, 3) AS fold_ms_p50,
       round(percentile_cont(0.9) WITHIN GROUP (ORDER BY fold_ms)::numeric, 3) AS fold_ms_p90
FROM timings GROUP BY 1, 2 ORDER BY 1, 2;
-- the fold per webhook, against the webhook's own logging and against the floor's fold
SELECT t.size AS class,
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY t.fold_ms) FILTER (WHERE t.variant = 'incremental')
            / percentile_cont(0.5) WITHIN GROUP (ORDER BY t.ingest_ms))::numeric, 2) AS incremental_fold_per_ingest,
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY t.fold_ms) FILTER (WHERE t.variant = 'whole session')
            / percentile_cont(0.5) WITHIN GROUP (ORDER BY t.ingest_ms))::numeric, 2) AS whole_fold_per_ingest,
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY t.fold_ms) FILTER (WHERE t.variant = 'incremental')
            / percentile_cont(0.5) WITHIN GROUP (ORDER BY t.fold_ms) FILTER (WHERE t.variant = 'floor'))::numeric, 2)
         AS incremental_per_floor
FROM timings t GROUP BY 1 ORDER BY 1;
DROP EXTENSION attendance CASCADE;
