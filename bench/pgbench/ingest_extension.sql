SELECT attendance_ingest_webhook(h.body, h.tok) FROM bench.hooks h WHERE h.id = (SELECT nextval('bench.seq'));
