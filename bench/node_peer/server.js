// The webhook receiver a team would build instead of attendance-proxy + the extension,
// written the way LiveKit's documentation shows it: LiveKit's server SDK verifies the
// webhook (WebhookReceiver), node-postgres stores it with one
// INSERT ... ON CONFLICT (event_id) DO NOTHING, and 200 is answered after the insert.
// Benchmark peer only (bench/run.sh measures it in the same run as the proxy).
//
//   node server.js            PORT, PGHOST/PGPORT/PGUSER/PGDATABASE, LIVEKIT_API_KEY,
//                             LIVEKIT_API_SECRET, POOL_SIZE (8), WORKERS (1; >1: cluster)
'use strict';
const cluster = require('node:cluster');
const http = require('node:http');
const { WebhookReceiver } = require('livekit-server-sdk');
const { Pool } = require('pg');

const port = Number(process.env.PORT || 8090);
const workers = Number(process.env.WORKERS || 1);
const path = process.env.WEBHOOK_PATH || '/webhooks/livekit';

if (workers > 1 && cluster.isPrimary) {
  for (let i = 0; i < workers; i++) cluster.fork();
  const stop = () => { for (const w of Object.values(cluster.workers)) w.kill('SIGTERM'); };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  cluster.on('exit', () => { if (Object.keys(cluster.workers).length === 0) process.exit(0); });
} else {
  const receiver = new WebhookReceiver(process.env.LIVEKIT_API_KEY, process.env.LIVEKIT_API_SECRET);
  const pool = new Pool({ max: Math.max(1, Math.round(Number(process.env.POOL_SIZE || 8) / workers)) });
  const insert = {
    name: 'insert-webhook',
    text: `INSERT INTO bench_node.webhook_events
             (event_id, event, room_name, participant_sid, participant_identity, created_at, body)
           VALUES ($1, $2, $3, $4, $5, to_timestamp($6), $7)
           ON CONFLICT (event_id) DO NOTHING`,
  };

  const server = http.createServer(async (req, res) => {
    if (req.method !== 'POST' || req.url.split('?')[0] !== path) {
      res.writeHead(404).end();
      return;
    }
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const body = Buffer.concat(chunks).toString('utf8');
    let event;
    try {
      event = await receiver.receive(body, req.headers.authorization);
    } catch (err) {
      res.writeHead(401, { 'Content-Type': 'application/json' }).end(JSON.stringify({ error: String(err.message) }));
      return;
    }
    try {
      await pool.query({
        ...insert,
        values: [event.id, event.event, event.room?.name ?? null, event.participant?.sid ?? null,
                 event.participant?.identity ?? null, Number(event.createdAt ?? 0), body],
      });
      res.writeHead(200, { 'Content-Type': 'application/json' }).end('{"result":"ok"}');
    } catch (err) {
      console.error(err.message);
      res.writeHead(503, { 'Content-Type': 'application/json' }).end('{"error":"database unavailable"}');
    }
  });
  server.keepAliveTimeout = 5000;
  server.listen(port, '127.0.0.1');
  const stop = () => server.close(() => pool.end().then(() => process.exit(0)));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
