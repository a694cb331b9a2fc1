-- 0003: the rest of the graph (revisions, releases, snapshots), git loads, and what
-- expiry needs of bundles (sticky, last use).
--
-- Revisions and releases keep their raw git object body (without the "commit <n>\0"
-- header), so a bundle reproduces them byte for byte, malformed historical objects
-- included; the columns beside it are what walks need without parsing. A snapshot keeps
-- its SWH manifest (branches sorted by name, research swh-vault.md); its id is
-- sha1("snapshot <len>\0" || raw).
--
-- Invariant the loader relies on: an object is inserted only after everything it
-- references (a revision after its tree and its parents, a tree after its entries), so a
-- row that exists stands for its whole closure and a later load may skip it.

CREATE TABLE revisions (
    id         bytea PRIMARY KEY CHECK (length(id) = 20),
    directory  bytea NOT NULL CHECK (length(directory) = 20),
    parents    bytea[] NOT NULL DEFAULT '{}',
    raw        bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE releases (
    id          bytea PRIMARY KEY CHECK (length(id) = 20),
    target      bytea NOT NULL CHECK (length(target) = 20),
    target_type text NOT NULL
                CHECK (target_type IN ('content', 'directory', 'revision', 'release')),
    name        bytea NOT NULL,
    raw         bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE snapshots (
    id         bytea PRIMARY KEY CHECK (length(id) = 20),
    raw        bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Sticky bundles (admin flag) never expire nor get evicted; expiry orders by last use.
ALTER TABLE bundles ADD COLUMN sticky boolean NOT NULL DEFAULT false;
CREATE INDEX bundles_last_use ON bundles ((coalesce(last_download_at, created_at)))
    WHERE NOT sticky;
