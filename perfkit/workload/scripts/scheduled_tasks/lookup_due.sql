-- The scheduler's poll: the next enabled tasks due within a window of 1..60 s.
\set window_s random(1, 60)
SELECT id, name, command, schedule, next_run_at
FROM scheduled_tasks
WHERE enabled AND next_run_at <= now() + make_interval(secs => :window_s)
ORDER BY next_run_at
LIMIT 10;
