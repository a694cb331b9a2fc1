-- 0006: Bits (the Cloud Foundry bits-service, docs/api.md "Bits"): packages, droplets,
-- buildpacks and buildpack cache entries, each a name in its kind's namespace bound to a
-- blob of the store (its sha256), with the sha1 and sha256 the bits-service reports.
-- The blob is shared with everything else that holds the same bytes (an archived file,
-- an app-stash entry, another resource): a name is a row, never a copy.
--
-- Keys are what the bits-service's routes capture: a package or buildpack guid, a
-- droplet's "guid/checksum" or "guid", a buildpack cache entry's "app_guid/stack".

CREATE TABLE bits_resources (
    kind       text NOT NULL
               CHECK (kind IN ('package', 'droplet', 'buildpack', 'buildpack_cache')),
    key        text NOT NULL CHECK (length(key) BETWEEN 1 AND 1024),
    sha256     bytea NOT NULL CHECK (length(sha256) = 32),   -- the store's key
    sha1       bytea NOT NULL CHECK (length(sha1) = 20),
    size       bigint NOT NULL CHECK (size >= 0),
    metadata   jsonb,                                       -- buildpacks: their metadata
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, key)
);
-- Garbage collection asks whether a blob is referenced.
CREATE INDEX bits_resources_sha256 ON bits_resources (sha256);
-- Buildpack cache deletes by app ("app_guid/" prefix): text_pattern_ops makes LIKE
-- 'prefix%' an index range scan whatever the database's collation.
CREATE INDEX bits_resources_key_prefix ON bits_resources (kind, key text_pattern_ops);

-- The app stash matches files by sha1 (bits-service §1.5): every stored content is a
-- stash entry.
CREATE INDEX contents_sha1 ON contents (sha1);
