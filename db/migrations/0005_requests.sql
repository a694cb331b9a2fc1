-- 0005: Requests (Cachito's API v1, docs/api.md "Requests"): the request rows, their state
-- history, configuration files, logs, and the index of the dependency artifacts the
-- store holds (npm tarballs, generic files), so a dependency is downloaded once.
--
-- A request is worked on by one job (kind 'request', params {"request_id": N}); the
-- job's bundle (a bundles row, as for cooks) is the request's bundle. The trigger below
-- makes the request's state follow its job atomically: when the job ends done the
-- request is complete, when it ends failed the request is failed with the job's reason
-- (unless a worker already failed it with Cachito's error_origin and error_type).

CREATE TABLE requests (
    id                      bigserial PRIMARY KEY,
    job_id                  bigint REFERENCES jobs (id) ON DELETE SET NULL,
    repo                    text NOT NULL,
    ref                     text NOT NULL CHECK (ref ~ '^[a-f0-9]{40}$'),
    pkg_managers            text[] NOT NULL DEFAULT '{}',
    packages                jsonb NOT NULL DEFAULT '{}',   -- the "packages" parameter
    flags                   text[] NOT NULL DEFAULT '{}',
    dependency_replacements jsonb NOT NULL DEFAULT '[]',
    "user"                  text,
    submitted_by            text,
    state                   text NOT NULL DEFAULT 'in_progress'
                            CHECK (state IN ('in_progress', 'complete', 'failed', 'stale')),
    state_reason            text NOT NULL DEFAULT 'The request was initiated',
    created                 timestamptz NOT NULL DEFAULT now(),
    updated                 timestamptz NOT NULL DEFAULT now(),
    packages_count          integer,
    dependencies_count      integer,
    error_origin            text CHECK (error_origin IN ('client', 'server')),
    error_type              text,
    environment_variables   jsonb NOT NULL DEFAULT '{}',   -- {NAME: {"value", "kind"}}
    packages_data           jsonb,   -- {"packages": [...]} with their dependencies (worker)
    source_dir              bytea CHECK (length(source_dir) = 20)   -- app/'s tree id
);
CREATE INDEX requests_state_updated ON requests (state, updated);
CREATE INDEX requests_repo_ref ON requests (repo, ref, id DESC);
CREATE INDEX requests_job ON requests (job_id);

-- Every state change and progress message, newest first by id.
CREATE TABLE request_states (
    id           bigserial PRIMARY KEY,
    request_id   bigint NOT NULL REFERENCES requests (id) ON DELETE CASCADE,
    state        text NOT NULL,
    state_reason text NOT NULL,
    updated      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX request_states_request ON request_states (request_id, id DESC);

CREATE TABLE request_config_files (
    request_id bigint NOT NULL REFERENCES requests (id) ON DELETE CASCADE,
    path       text NOT NULL,
    content    bytea NOT NULL,
    PRIMARY KEY (request_id, path)
);

-- The request's log (GET /requests/{id}/logs): the worker's messages for it.
CREATE TABLE request_logs (
    id         bigserial PRIMARY KEY,
    request_id bigint NOT NULL REFERENCES requests (id) ON DELETE CASCADE,
    at         timestamptz NOT NULL DEFAULT now(),
    line       text NOT NULL
);
CREATE INDEX request_logs_request ON request_logs (request_id, id);

-- Dependency artifacts held in the store, by what identifies them upstream: for npm the
-- package name, version and lockfile integrity; for generic files the URL and checksum.
-- GC keeps every blob listed here.
CREATE TABLE artifacts (
    kind       text NOT NULL CHECK (kind IN ('npm', 'generic')),
    name       text NOT NULL,
    version    text NOT NULL,
    integrity  text NOT NULL,            -- "sha512-<base64>" (npm SRI), "sha256:<hex>" ...
    sha256     bytea NOT NULL CHECK (length(sha256) = 32),
    size       bigint NOT NULL CHECK (size >= 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, name, version, integrity)
);
CREATE INDEX artifacts_sha256 ON artifacts (sha256);

-- The request follows its job's end (see the top of the file).
CREATE FUNCTION requests_follow_job() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r requests%ROWTYPE;
    reason text;
BEGIN
    IF NEW.kind <> 'request' OR NEW.state = OLD.state
       OR NEW.state NOT IN ('done', 'failed') THEN
        RETURN NEW;
    END IF;
    SELECT * INTO r FROM requests WHERE job_id = NEW.id FOR UPDATE;
    IF NOT FOUND OR r.state <> 'in_progress' THEN
        RETURN NEW;
    END IF;
    IF NEW.state = 'done' THEN
        UPDATE requests SET state = 'complete', state_reason = 'Completed successfully',
            updated = now() WHERE id = r.id;
        INSERT INTO request_states (request_id, state, state_reason)
            VALUES (r.id, 'complete', 'Completed successfully');
    ELSE
        reason := coalesce(NEW.error, 'An unknown error occurred');
        UPDATE requests SET state = 'failed', state_reason = reason, updated = now(),
            error_origin = coalesce(error_origin, 'server'),
            error_type = coalesce(error_type, 'UnknownError')
            WHERE id = r.id;
        INSERT INTO request_states (request_id, state, state_reason)
            VALUES (r.id, 'failed', reason);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER requests_follow_job AFTER UPDATE OF state ON jobs
    FOR EACH ROW EXECUTE FUNCTION requests_follow_job();
