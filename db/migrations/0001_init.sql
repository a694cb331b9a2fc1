-- 0001: the archive (contents, directories), jobs and bundles.
-- Ids are raw bytes (bytea); the API shows them as lowercase hex.

CREATE TABLE contents (
    sha1_git   bytea PRIMARY KEY CHECK (length(sha1_git) = 20),
    sha256     bytea NOT NULL CHECK (length(sha256) = 32),   -- the store's key
    sha1       bytea NOT NULL CHECK (length(sha1) = 20),     -- bits-service, app stash
    length     bigint NOT NULL CHECK (length >= 0),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX contents_sha256 ON contents (sha256);

-- A directory is its canonical git tree body; its id is sha1("tree <len>\0" || raw).
CREATE TABLE directories (
    id         bytea PRIMARY KEY CHECK (length(id) = 20),
    raw        bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE jobs (
    id               bigserial PRIMARY KEY,
    kind             text NOT NULL,
    dedup_key        text,
    state            text NOT NULL DEFAULT 'queued'
                     CHECK (state IN ('queued', 'running', 'done', 'failed', 'expired')),
    params           jsonb NOT NULL DEFAULT '{}',
    result           jsonb,
    progress_message text,
    error            text,
    attempts         integer NOT NULL DEFAULT 0,
    worker           text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz
);
-- One live job per key: concurrent POSTs for the same bundle make one job. A failed or
-- expired job leaves the index, so a new POST cooks again.
CREATE UNIQUE INDEX jobs_dedup_live ON jobs (dedup_key)
    WHERE state IN ('queued', 'running', 'done');
CREATE INDEX jobs_dedup_key ON jobs (dedup_key, id DESC);
CREATE INDEX jobs_unfinished ON jobs (updated_at) WHERE state IN ('queued', 'running');

CREATE TABLE bundles (
    job_id           bigint PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    sha256           bytea NOT NULL CHECK (length(sha256) = 32),
    size             bigint NOT NULL CHECK (size >= 0),
    created_at       timestamptz NOT NULL DEFAULT now(),
    last_download_at timestamptz
);
CREATE INDEX bundles_sha256 ON bundles (sha256);

-- Wakeups for long-polls: the id and new state, delivered at COMMIT (research B.3).
CREATE FUNCTION jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('job_state',
        json_build_object('id', NEW.id, 'state', NEW.state)::text);
    RETURN NEW;
END $$;
CREATE TRIGGER jobs_notify AFTER INSERT OR UPDATE OF state, progress_message ON jobs
    FOR EACH ROW EXECUTE FUNCTION jobs_notify();
