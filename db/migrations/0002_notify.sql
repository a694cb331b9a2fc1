-- 0002: notify_url callbacks of cook jobs (docs/api.md, docs/worker.md "Notifications").
-- A row waits (pending) until its job is final (done or failed); then one worker at a
-- time POSTs the job's status document to url, retrying with backoff, and marks it sent
-- or, after the last attempt, failed. The job itself never waits for its notifications.

CREATE TABLE job_notifications (
    id         bigserial PRIMARY KEY,
    job_id     bigint NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    url        text NOT NULL,
    state      text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed')),
    attempts   integer NOT NULL DEFAULT 0,
    next_at    timestamptz NOT NULL DEFAULT now(),
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at    timestamptz
);
-- One row per (job, url): repeated POSTs with the same url share it.
CREATE UNIQUE INDEX job_notifications_job_url ON job_notifications (job_id, url);
-- The sender's scan: pending rows by due time.
CREATE INDEX job_notifications_due ON job_notifications (next_at) WHERE state = 'pending';
