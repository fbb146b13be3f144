-- Privacy (docs/security.md): secrets LiveKit puts in webhook bodies are never stored,
-- so neither attendance_reader nor attendance_ingest can read them; and
-- attendance_forget_person erases a person's identifying data from the log and every
-- derived row, keeping counts and statuses under a salted pseudonym.
\set fixture test/fixtures/livekit/session-456.jsonl
\set VERBOSITY terse
\set ECHO none
\i test/sql/setup_456.psql
SET attendance.replay_mode = on;
\i test/sql/replay.psql
\set ECHO all
RESET attendance.replay_mode;

-- 1. The stored body is the received one with the secrets' values replaced, and nothing
-- else changed: the rule is "stored = received, each secret-bearing field's non-empty
-- value replaced by [redacted]". The fixture's bodies carry room.turnPassword.
\set fx `cat :fixture`
CREATE TEMP TABLE received AS
SELECT (line::jsonb->>'body')::jsonb AS b FROM regexp_split_to_table(:'fx', E'\n') AS t(line) WHERE line <> '';
SELECT count(*) AS bodies, count(*) FILTER (WHERE b #> '{room,turnPassword}' IS NOT NULL) AS with_turn_password FROM received;
SELECT count(*) AS logged,
       count(*) FILTER (WHERE e.raw_webhook_data = CASE WHEN r.b #> '{room,turnPassword}' IS NOT NULL
                                                         THEN jsonb_set(r.b, '{room,turnPassword}', '"[redacted]"')
                                                         ELSE r.b END) AS stored_as_the_rule_says,
       count(*) FILTER (WHERE e.raw_webhook_data #>> '{room,turnPassword}' = '[redacted]') AS redacted
FROM meeting_attendance_events e JOIN (SELECT DISTINCT b FROM received) r ON r.b->>'id' = e.event_id;
SELECT count(*) AS bodies_with_the_turn_password FROM meeting_attendance_events
WHERE raw_webhook_data::text LIKE '%qSzKooWjtOLLXdWuBVT4vNrYlioPMhEYNnn7Ql64Zic%';

-- egress credentials at any depth, also when the body is stored from its text (a number
-- with a fraction); an empty secret and a null one stay as sent
CREATE TEMP TABLE egress (body text);
INSERT INTO egress VALUES ('{"event":"egress_ended","id":"EV_egress1","createdAt":"1763131000","room":{"name":"session-456","turnPassword":"room-pw"},"egressInfo":{"egressId":"EG_1","roomName":"session-456","fileResults":[{"filename":"a.mp4","size":"1.5"}],"roomComposite":{"fileOutputs":[{"filepath":"a.mp4","s3":{"accessKey":"AKIAEXAMPLE","secret":"s3-secret-value","sessionToken":"","bucket":"class-recordings","region":"eu"}}],"streamOutputs":[{"urls":["rtmp://example/live"],"stream_key":"sk-live-1"}]},"score":1.50},"ingressInfo":{"streamKey":null}}');
SELECT pg_temp.try_ingest(body, attendance_sign_webhook(body, 'APIfixture')) AS outcome FROM egress;
SELECT e.raw_webhook_data = jsonb_set(jsonb_set(jsonb_set(jsonb_set(g.body::jsonb,
         '{room,turnPassword}', '"[redacted]"'),
         '{egressInfo,roomComposite,fileOutputs,0,s3,accessKey}', '"[redacted]"'),
         '{egressInfo,roomComposite,fileOutputs,0,s3,secret}', '"[redacted]"'),
         '{egressInfo,roomComposite,streamOutputs,0,stream_key}', '"[redacted]"') AS stored_as_the_rule_says,
       e.raw_webhook_data #>> '{egressInfo,score}' AS fraction_kept,
       e.raw_webhook_data #>> '{egressInfo,roomComposite,fileOutputs,0,s3,bucket}' AS bucket_kept
FROM egress g JOIN meeting_attendance_events e ON e.event_id = 'EV_egress1';
-- the same redaction as a function of a stored body (what the upgrade runs over old rows)
SELECT _attendance_redact_secrets('{"a":[{"password":"p","x":1.50}],"token":{"t":1},"secret":null}') AS redacted;

-- 2. As each role: the reader reads the log and finds no secret; the proxy's role reads nothing
CREATE ROLE att_priv_reader LOGIN IN ROLE attendance_reader;
CREATE ROLE att_priv_proxy LOGIN IN ROLE attendance_ingest;
SET ROLE att_priv_reader;
SELECT count(*) > 0 AS reads_the_log,
       count(*) FILTER (WHERE raw_webhook_data::text ~ '(qSzKooWj|room-pw|AKIAEXAMPLE|s3-secret-value|sk-live-1)') AS secrets_seen
FROM meeting_attendance_events;
SELECT _attendance_redact_secrets('{}');
RESET ROLE;
SET ROLE att_priv_proxy;
SELECT count(*) FROM meeting_attendance_events;
SELECT raw_webhook_data FROM meeting_attendance_events LIMIT 1;
RESET ROLE;

-- 3. Forgetting a person. Calculate first; override user 19 (excused, with a reason
-- that names her); keep what counts.
SET client_min_messages = warning;
SELECT count(*) AS persons FROM attendance_calculate(456);
SELECT attendance_status FROM attendance_override(456, 19, 'excused', 'Sara Ali: doctor''s note');
RESET client_min_messages;
CREATE TEMP TABLE before AS
SELECT user_id, role, first_join_time, last_leave_time, join_count, leave_count, join_leave_cycles,
       total_duration_minutes, presence_ms, attendance_status, attendance_percentage, status_rule
FROM meeting_attendances WHERE session_id = 456;
CREATE TEMP TABLE connections_before AS
SELECT c.participant_sid, m.user_id, c.join_time, c.join_source, c.leave_time, c.end_reason, c.leave_is_synthetic
FROM attendance_sessions c JOIN meeting_attendances m USING (session_id, user_key);
SELECT count(*) AS audit_rows_before FROM attendance_status_changes \gset

-- only the owner may forget; nobody else can bypass the log's immutability either
SET ROLE att_priv_reader;
SELECT attendance_forget_person(12);
SET session_replication_role = replica;
UPDATE meeting_attendance_events SET participant_name = NULL WHERE user_id = 12;
RESET ROLE;
SET ROLE att_priv_proxy;
SELECT attendance_forget_person(12);
RESET ROLE;
UPDATE meeting_attendance_events SET participant_name = NULL WHERE user_id = 12;

-- errors: NULL, a user with no data
SELECT attendance_forget_person(NULL);
SELECT attendance_forget_person(999);

-- forget 12 (Arabic name, a connection closed by reconciliation), 19 (override, user id
-- in attributes) and 7 (teacher, user id and role in metadata)
SELECT pseudonym AS p12, pseudonym < 0 AS negative, actor = session_user AS actor_ok, sessions, log_rows,
       connection_rows, attendance_rows, roster_rows, override_rows, audit_rows
FROM attendance_forget_person(12) \gset
SELECT :'negative' AS negative, :'actor_ok' AS actor_ok, :'sessions' AS sessions, :log_rows AS log_rows,
       :connection_rows AS connection_rows, :attendance_rows AS attendance_rows, :roster_rows AS roster_rows;
SELECT pseudonym AS p19, override_rows, audit_rows FROM attendance_forget_person(19) \gset
SELECT :override_rows AS override_rows, :audit_rows AS audit_rows;
SELECT pseudonym AS p7 FROM attendance_forget_person(7) \gset
-- the pseudonyms differ per person and are not the user ids
SELECT count(DISTINCT p) AS distinct_pseudonyms FROM (VALUES (:p12), (:p19), (:p7)) v(p) WHERE p < 0;
-- a second call says so
SELECT attendance_forget_person(12);

-- no identifying data is left anywhere: ids, identities, names, metadata, attributes
SELECT count(*) AS log_rows_left FROM meeting_attendance_events
WHERE user_id IN (7, 12, 19) OR user_key IN ('7', '12', '19')
   OR participant_identity IN ('user-7', 'user-12', 'user-19')
   OR participant_name IN ('أحمد محمد', 'Sara Ali', 'Teacher Fatima')
   OR raw_webhook_data::text ~ '(user-7"|user-12|user-19|أحمد|Sara Ali|Teacher Fatima|user_id)';
SELECT count(*) AS derived_rows_left FROM (
  SELECT user_key FROM meeting_attendances WHERE user_key IN ('7', '12', '19') OR user_id IN (7, 12, 19)
     OR participant_name IN ('أحمد محمد', 'Sara Ali', 'Teacher Fatima') OR (user_id < 0 AND participant_identity LIKE 'user-%')
  UNION ALL SELECT user_key FROM attendance_sessions WHERE user_key IN ('7', '12', '19')
  UNION ALL SELECT user_id::text FROM attendance_roster WHERE user_id IN (7, 12, 19)
  UNION ALL SELECT user_key FROM attendance_overrides WHERE user_key IN ('7', '12', '19') OR reason LIKE '%Sara%'
  UNION ALL SELECT user_key FROM attendance_status_changes WHERE user_key IN ('7', '12', '19')) x;
-- the other persons are untouched
SELECT user_id, participant_name FROM meeting_attendances WHERE user_id > 0 ORDER BY user_id;
SELECT count(*) AS others_log_rows FROM meeting_attendance_events WHERE user_id IN (23, 40) AND participant_name IS NOT NULL;
-- the log stays immutable
UPDATE meeting_attendance_events SET participant_name = 'x' WHERE user_id = :p12;
-- the audit names the pseudonyms, never the user ids
SELECT count(*) AS erasures, bool_and(pseudonym < 0) AS pseudonymous, bool_and(sessions = '{456}') AS sessions_ok
FROM attendance_erasures;

-- 4. Counts and statuses survive, under the pseudonyms, a recalculation and then a
-- full re-derivation from the log (the derived tables are caches)
CREATE TEMP TABLE pseudonyms AS SELECT * FROM (VALUES (12, :p12), (19, :p19), (7, :p7)) v(user_id, pseudonym);
CREATE TEMP VIEW after AS
SELECT coalesce(p.user_id, m.user_id) AS user_id, m.role, m.first_join_time, m.last_leave_time, m.join_count,
       m.leave_count, m.join_leave_cycles, m.total_duration_minutes, m.presence_ms, m.attendance_status,
       m.attendance_percentage, m.status_rule
FROM meeting_attendances m LEFT JOIN pseudonyms p ON p.pseudonym = m.user_id WHERE m.session_id = 456;
CREATE TEMP VIEW connections_after AS
SELECT c.participant_sid, coalesce(p.user_id, m.user_id) AS user_id, c.join_time, c.join_source, c.leave_time,
       c.end_reason, c.leave_is_synthetic
FROM attendance_sessions c JOIN meeting_attendances m USING (session_id, user_key)
LEFT JOIN pseudonyms p ON p.pseudonym = m.user_id;
SET client_min_messages = warning;
SELECT count(*) AS persons FROM attendance_calculate(456);
RESET client_min_messages;
-- the same results, so the recalculation audited nothing
SELECT count(*) - :audit_rows_before AS new_audit_rows FROM attendance_status_changes;
SELECT count(*) AS persons_after, (SELECT count(*) FROM before) AS persons_before FROM after;
(SELECT 'lost' AS diff, * FROM before EXCEPT SELECT 'lost', * FROM after)
UNION ALL
(SELECT 'new', * FROM after EXCEPT SELECT 'new', * FROM before);
SET client_min_messages = warning;
DELETE FROM attendance_sessions WHERE session_id = 456;
DELETE FROM meeting_attendances WHERE session_id = 456;
UPDATE attendance_session_schedule SET needs_fold = true WHERE session_id = 456;
SELECT attendance_fold() IS NOT NULL AS folded;
SELECT count(*) AS persons FROM attendance_calculate(456);
RESET client_min_messages;
SELECT count(*) AS persons_after, (SELECT count(*) FROM before) AS persons_before FROM after;
(SELECT 'lost' AS diff, * FROM before EXCEPT SELECT 'lost', * FROM after)
UNION ALL
(SELECT 'new', * FROM after EXCEPT SELECT 'new', * FROM before);
SELECT (SELECT count(*) FROM connections_after) AS connections,
       (SELECT count(*) FROM (SELECT * FROM connections_after EXCEPT SELECT * FROM connections_before) d) AS differing;
-- nothing resurrected a name or an identity
SELECT count(*) AS names_back FROM meeting_attendances WHERE user_id < 0 AND (participant_name IS NOT NULL OR participant_identity !~ '^-[0-9]+$');
SELECT a.user_id, m.role, m.attendance_status, m.attendance_percentage, o.status AS override
FROM pseudonyms a JOIN meeting_attendances m ON m.user_id = a.pseudonym
LEFT JOIN attendance_overrides o ON o.session_id = m.session_id AND o.user_key = m.user_key ORDER BY a.user_id;
-- explain works under the pseudonym
SELECT (attendance_explain(456, :p12)->>'percentage')::numeric = (SELECT attendance_percentage FROM before WHERE user_id = 12) AS explain_same;

DROP ROLE att_priv_reader, att_priv_proxy;
