INSERT INTO bench_floor.events (event_id, body) SELECT h.event_id, h.body FROM bench.hooks h WHERE h.id = (SELECT nextval('bench.seq')) ON CONFLICT (event_id) DO NOTHING;
