-- Schema of the synthetic scheduler service the measured suite tests
-- (shaped like the reviewed service: tasks on cron schedules, executors, runs).
CREATE TABLE executors (
    id bigserial PRIMARY KEY,
    name text NOT NULL UNIQUE,
    kind text NOT NULL CHECK (kind IN ('http', 'shell', 'sql')),
    endpoint text,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tasks (
    id bigserial PRIMARY KEY,
    name text NOT NULL UNIQUE,
    schedule text NOT NULL,
    executor_id bigint NOT NULL REFERENCES executors (id) ON DELETE RESTRICT,
    payload jsonb NOT NULL DEFAULT '{}'::jsonb,
    status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused', 'deleted')),
    max_retries int NOT NULL DEFAULT 3,
    next_run_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tasks_next_run ON tasks (next_run_at) WHERE status = 'active';

CREATE TABLE runs (
    id bigserial PRIMARY KEY,
    task_id bigint NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    attempt int NOT NULL DEFAULT 1,
    started_at timestamptz NOT NULL,
    finished_at timestamptz,
    outcome text CHECK (outcome IN ('ok', 'failed', 'timeout')),
    output text
);
CREATE INDEX runs_task ON runs (task_id, started_at);

CREATE TABLE tags (
    id serial PRIMARY KEY,
    name text NOT NULL UNIQUE
);

CREATE TABLE task_tags (
    task_id bigint NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    tag_id int NOT NULL REFERENCES tags (id) ON DELETE CASCADE,
    PRIMARY KEY (task_id, tag_id)
);

CREATE TABLE audit_log (
    id bigserial PRIMARY KEY,
    task_id bigint,
    action text NOT NULL,
    detail jsonb,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE FUNCTION audit_task_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_log (task_id, action, detail)
    VALUES (
        COALESCE(NEW.id, OLD.id),
        lower(TG_OP),
        CASE WHEN TG_OP = 'UPDATE'
             THEN jsonb_build_object('from', OLD.status, 'to', NEW.status)
        END
    );
    RETURN COALESCE(NEW, OLD);
END;
$$;

CREATE TRIGGER tasks_audit AFTER INSERT OR UPDATE OF status OR DELETE ON tasks
    FOR EACH ROW EXECUTE FUNCTION audit_task_change();
