-- The deployment catalogue. One SQL for SQLite and PostgreSQL: times are Unix nanoseconds
-- (BIGINT), metadata is JSON text, statuses are text checked here.
CREATE TABLE deployments (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    service TEXT,
    environment TEXT,
    version TEXT,
    git_commit TEXT,
    started_by TEXT,
    metadata TEXT NOT NULL,
    retention_secs BIGINT,
    status TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'cancelled')),
    message TEXT,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    -- The log record of the finish marker on the node that finished it: a deployment's live
    -- streams end once they have read past it.
    finish_record BIGINT
);

CREATE INDEX deployments_by_start ON deployments (tenant, started_at, id);
CREATE INDEX deployments_running ON deployments (status, started_at);

-- Events counted towards each deployment, by level ('' when the event has none).
CREATE TABLE deployment_events (
    deployment_id TEXT NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    level TEXT NOT NULL,
    events BIGINT NOT NULL,
    first_event BIGINT NOT NULL,
    last_event BIGINT NOT NULL,
    PRIMARY KEY (deployment_id, level)
);

-- How far each node has counted its log: committed with the counts, so that a restart counts
-- each event once.
CREATE TABLE deployment_counting (
    node TEXT PRIMARY KEY,
    next_record BIGINT NOT NULL
);
