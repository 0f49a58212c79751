-- One task by id, recent ids more often (zipfian over the seeded 10,000).
\set id random_zipfian(1, 10000, 1.1)
SELECT id, name, command, schedule, enabled, next_run_at FROM scheduled_tasks WHERE id = :id;
