-- 10,000 tasks due over the next hour (1 in 10 disabled).
INSERT INTO scheduled_tasks (name, command, schedule, enabled, next_run_at)
SELECT 'task_' || i, 'test', '* * * * *', i % 10 <> 0, now() + (i % 3600) * interval '1 second'
FROM generate_series(1, 10000) AS i;
ANALYZE scheduled_tasks;
