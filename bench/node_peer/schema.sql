-- The Node peer's table: one row per webhook, the event id as idempotency key.
CREATE SCHEMA IF NOT EXISTS bench_node;
CREATE TABLE IF NOT EXISTS bench_node.webhook_events (
  event_id             text PRIMARY KEY,
  event                text NOT NULL,
  room_name            text,
  participant_sid      text,
  participant_identity text,
  created_at           timestamptz NOT NULL,
  body                 jsonb NOT NULL,
  received_at          timestamptz NOT NULL DEFAULT now()
);
