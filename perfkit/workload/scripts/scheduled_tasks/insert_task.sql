-- insert_test_task(format!("task_{}", i), "test", "* * * * *"): one new task, due within the hour.
\set n random(1, 1000000)
\set due_s random(0, 3599)
INSERT INTO scheduled_tasks (name, command, schedule, next_run_at)
VALUES ('task_' || :n, 'test', '* * * * *', now() + make_interval(secs => :due_s));
