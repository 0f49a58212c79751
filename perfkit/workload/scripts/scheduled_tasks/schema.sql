-- The review's service stores scheduled tasks (insert_test_task(name, command, cron)) and
-- looks them up: the table, its id and a partial index on what is due.
CREATE TABLE scheduled_tasks (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    command text NOT NULL,
    schedule text NOT NULL,
    enabled boolean NOT NULL DEFAULT true,
    next_run_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX scheduled_tasks_due ON scheduled_tasks (next_run_at) WHERE enabled;
CREATE INDEX scheduled_tasks_name ON scheduled_tasks (name);
