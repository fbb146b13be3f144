-- Privileges and SQL hygiene: roles, secrets, pinned search_path against hostile objects.
\set VERBOSITY terse
SET client_min_messages = warning;
SET timezone = 'UTC';
DROP EXTENSION IF EXISTS attendance CASCADE;

-- Hostile functions and operators planted in public BEFORE the extension exists; every
-- call would be recorded in hostile_calls.
CREATE TABLE public.hostile_calls (what text);
GRANT INSERT ON public.hostile_calls TO PUBLIC;
CREATE FUNCTION public.hostile_texteq(a text, b text) RETURNS boolean LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO public.hostile_calls VALUES ('=(text,text)'); RETURN a OPERATOR(pg_catalog.=) b; END $$;
CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = text, FUNCTION = public.hostile_texteq);
CREATE FUNCTION public.hostile_int8eq(a bigint, b bigint) RETURNS boolean LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO public.hostile_calls VALUES ('=(bigint,bigint)'); RETURN a OPERATOR(pg_catalog.=) b; END $$;
CREATE OPERATOR public.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = public.hostile_int8eq);
CREATE FUNCTION public.hostile_concat(a text, b text) RETURNS text LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO public.hostile_calls VALUES ('||(text,text)'); RETURN a OPERATOR(pg_catalog.||) b; END $$;
CREATE OPERATOR public.|| (LEFTARG = text, RIGHTARG = text, FUNCTION = public.hostile_concat);
CREATE FUNCTION public.lower(t text) RETURNS text LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO public.hostile_calls VALUES ('lower'); RETURN pg_catalog.lower(t); END $$;
CREATE FUNCTION public.length(t text) RETURNS integer LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO public.hostile_calls VALUES ('length'); RETURN pg_catalog.length(t); END $$;
CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO public.hostile_calls VALUES ('now'); RETURN pg_catalog.now(); END $$;
CREATE FUNCTION public.pg_notify(a text, b text) RETURNS void LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO public.hostile_calls VALUES ('pg_notify'); END $$;
CREATE FUNCTION public.jsonb_to_recordset(j jsonb) RETURNS SETOF record LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO public.hostile_calls VALUES ('jsonb_to_recordset'); END $$;
CREATE FUNCTION public.unnest(a bigint[]) RETURNS SETOF bigint LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO public.hostile_calls VALUES ('unnest(bigint[])'); RETURN QUERY SELECT pg_catalog.unnest(a); END $$;
CREATE FUNCTION public.unnest(a text[]) RETURNS SETOF text LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO public.hostile_calls VALUES ('unnest(text[])'); RETURN QUERY SELECT pg_catalog.unnest(a); END $$;
CREATE FUNCTION public.sha256(b bytea) RETURNS bytea LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO public.hostile_calls VALUES ('sha256'); RETURN pg_catalog.sha256(b); END $$;

CREATE EXTENSION attendance;
-- the caller puts public before pg_catalog: the most a hostile object could ask for
SET search_path = public, pg_catalog;
RESET client_min_messages;
SELECT attendance_add_webhook_key('APIfixture', 'fixture-secret-0123456789abcdef0123');
SELECT (attendance_schedule_session(456, 'session-456', '2025-11-14 14:30:00Z', '2025-11-14 15:15:00Z')).session_id;
SELECT (attendance_expect(456, 12)).user_id;
SET attendance.replay_mode = on;
\set fixture test/fixtures/livekit/session-456.jsonl
\set ECHO none
\i test/sql/replay.psql
\set ECHO all
RESET attendance.replay_mode;
SET client_min_messages = warning;
SELECT count(*) AS rows FROM attendance_calculate(456);
SELECT attendance_explain(456, 12)->>'percentage' AS pct;
SELECT attendance_status FROM attendance_override(456, 19, 'excused', 'note');
SELECT attendance_reconcile();
SELECT job, status FROM attendance_run_job('calculate');
-- courses: scheduling with a course, the calculation's alert evaluation, the course report
-- and the alerts view: with a minimum of one session the absent students are alerted
-- (raised and notified by the extension's own functions only)
UPDATE attendance_policies SET alert_min_sessions = 1 WHERE name OPERATOR(pg_catalog.=) 'default';
SELECT (attendance_schedule_session(456, 'session-456', '2025-11-14 14:30:00Z', '2025-11-14 15:15:00Z', 'default', 'course-1')).course;
SELECT count(*) AS rows FROM attendance_calculate(456);
SELECT count(*) AS report_rows FROM attendance_course_report('course-1', '2025-11-01', '2025-11-30');
SELECT count(*) AS open_alerts FROM attendance_low_attendance;
SELECT count(*) > 0 AS has_rows FROM attendance_session_report;
SELECT count(*) > 0 AS has_rows FROM attendance_recent_events;
SELECT count(session_id) > 0 AS has_sessions FROM attendance_recent_events;
SELECT count(*) AS unmatched FROM attendance_unmatched_events;
SELECT api_key, active FROM attendance_list_webhook_keys();
SELECT log_rows > 0 AS forgotten FROM attendance_forget_person(40);
RESET client_min_messages;
-- not one hostile call
SELECT count(*) AS hostile_calls FROM public.hostile_calls;
-- control: the planted objects are live for unpinned SQL under this search_path
SELECT lower('ABC') AS control;
SELECT what AS hostile_calls_after_control FROM public.hostile_calls;
RESET search_path;

-- Roles: the proxy's role may only ingest; the reader may only read; secrets stay with the owner.
CREATE ROLE att_proxy LOGIN IN ROLE attendance_ingest;
CREATE ROLE att_school LOGIN IN ROLE attendance_reader;
CREATE ROLE att_nobody LOGIN;
CREATE TEMP TABLE signed AS
SELECT b AS body, attendance_sign_webhook(b, 'APIfixture') AS tok FROM (VALUES
  ('{"event":"participant_joined","id":"EV_role1","createdAt":"1763131000","room":{"name":"session-456"},"participant":{"sid":"PA_role1","identity":"user-77"}}')) v(b);
GRANT SELECT ON signed TO att_proxy, att_school, att_nobody;

SET ROLE att_proxy;
SELECT r->>'result' AS result FROM signed, attendance_ingest_webhook(body, tok) r;
SELECT count(*) FROM meeting_attendances;
SELECT secret FROM attendance_webhook_keys;
SELECT attendance_sign_webhook('{}', 'APIfixture');
SELECT attendance_calculate(456);
SET attendance.development_mode = on;
RESET ROLE;

SET ROLE att_school;
SELECT count(*) > 0 AS reads_attendance FROM meeting_attendances;
SELECT count(*) > 0 AS reads_report FROM attendance_session_report;
SELECT attendance_explain(456, 12)->>'percentage' AS pct;
SELECT r->>'result' FROM signed, attendance_ingest_webhook(body, tok) r;
SELECT secret FROM attendance_webhook_keys;
SELECT * FROM attendance_list_webhook_keys();
SELECT attendance_override(456, 12, 'excused', 'self-service');
RESET ROLE;

SET ROLE att_nobody;
SELECT r->>'result' FROM signed, attendance_ingest_webhook(body, tok) r;
SELECT count(*) FROM meeting_attendances;
RESET ROLE;

-- errors never echo a secret
SELECT attendance_add_webhook_key('APIshort', 'tooshort-secret');
SELECT attendance_add_webhook_key('', 'a-long-enough-secret-123');

DROP TABLE signed;
DROP ROLE att_proxy, att_school, att_nobody;
SET client_min_messages = warning;
DROP EXTENSION attendance CASCADE;
DROP OPERATOR public.= (text, text);
DROP OPERATOR public.= (bigint, bigint);
DROP OPERATOR public.|| (text, text);
DROP FUNCTION public.hostile_texteq(text, text), public.hostile_int8eq(bigint, bigint), public.hostile_concat(text, text),
  public.lower(text), public.length(text), public.now(), public.pg_notify(text, text), public.jsonb_to_recordset(jsonb),
  public.sha256(bytea);
DROP TABLE public.hostile_calls;
