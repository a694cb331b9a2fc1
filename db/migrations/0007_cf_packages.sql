-- 0007: Cloud Foundry v3 packages (docs/api.md "CF v3 packages"; research
-- bits-service.md §5): a package belongs to an app (a guid: bitsvault keeps no apps) and
-- is bits (a zip, stored as a blob) or docker (an image reference). A bits upload is
-- packed by a worker (job kind 'package_upload', params {"package_guid", ...}); the
-- trigger below moves the package with its job, atomically: done -> READY with the
-- zip's checksums (result {"package_sha256", "package_sha1", "package_size"}), failed ->
-- FAILED with the job's reason in data.error. Deleted packages are rows gone; their blob
-- stays until the collector finds nothing else naming it.

CREATE TABLE cf_packages (
    guid        uuid PRIMARY KEY,
    app_guid    text NOT NULL CHECK (length(app_guid) BETWEEN 1 AND 255),
    type        text NOT NULL CHECK (type IN ('bits', 'docker')),
    state       text NOT NULL CHECK (state IN ('AWAITING_UPLOAD', 'PROCESSING_UPLOAD',
                    'READY', 'FAILED', 'COPYING', 'EXPIRED')),
    data        jsonb NOT NULL DEFAULT '{}',   -- docker: image, username, password
    error       text,                          -- FAILED: why
    sha256      bytea CHECK (length(sha256) = 32),   -- READY bits: the zip's blob
    sha1        bytea CHECK (length(sha1) = 20),
    size        bigint,
    job_id      bigint REFERENCES jobs (id) ON DELETE SET NULL,
    metadata    jsonb NOT NULL DEFAULT '{"labels": {}, "annotations": {}}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cf_packages_app ON cf_packages (app_guid, created_at, guid);
CREATE INDEX cf_packages_created ON cf_packages (created_at, guid);
CREATE INDEX cf_packages_sha256 ON cf_packages (sha256);
CREATE INDEX cf_packages_job ON cf_packages (job_id);

CREATE FUNCTION cf_packages_follow_job() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.kind <> 'package_upload' OR NEW.state = OLD.state
       OR NEW.state NOT IN ('done', 'failed') THEN
        RETURN NEW;
    END IF;
    IF NEW.state = 'done'
       AND coalesce(NEW.result->>'package_sha256', '') ~ '^[0-9a-f]{64}$'
       AND coalesce(NEW.result->>'package_sha1', '') ~ '^[0-9a-f]{40}$'
       AND coalesce(NEW.result->>'package_size', '') ~ '^[0-9]{1,18}$' THEN
        UPDATE cf_packages SET state = 'READY', error = NULL,
            sha256 = decode(NEW.result->>'package_sha256', 'hex'),
            sha1 = decode(NEW.result->>'package_sha1', 'hex'),
            size = (NEW.result->>'package_size')::bigint, updated_at = now()
            WHERE job_id = NEW.id AND state = 'PROCESSING_UPLOAD';
    ELSE
        -- failed, or done with a result that names no zip (a worker's bug): FAILED
        UPDATE cf_packages SET state = 'FAILED',
            error = coalesce(NEW.error, 'the package could not be processed'), updated_at = now()
            WHERE job_id = NEW.id AND state = 'PROCESSING_UPLOAD';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER cf_packages_follow_job AFTER UPDATE OF state ON jobs
    FOR EACH ROW EXECUTE FUNCTION cf_packages_follow_job();

-- The app stash also matches the blobs of Bits resources by sha1 (shared/bits.c).
CREATE INDEX bits_resources_sha1 ON bits_resources (sha1);
