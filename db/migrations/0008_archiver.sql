-- 0008: the Droplet Archiver's replication (docs/api.md "Droplet Archiver"). A droplet
-- posted to /droplets/{app}/{sha1} is a Bits droplet (bits_resources, kind 'droplet', key
-- "<app>/<sha1>"); for each peer of archiver_sync_hosts a row here says whether the peer
-- has it. Workers send the pending rows that are due (one at a time per row: FOR UPDATE
-- SKIP LOCKED and a lease in next_at), retrying with backoff; a periodic reconcile asks
-- each peer which droplets it holds and puts back to pending what it lacks.

CREATE TABLE droplet_replicas (
    key         text NOT NULL CHECK (length(key) BETWEEN 1 AND 1024),
    peer        text NOT NULL CHECK (length(peer) BETWEEN 1 AND 300),   -- "host:port"
    state       text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done')),
    attempts    integer NOT NULL DEFAULT 0,
    next_at     timestamptz NOT NULL DEFAULT now(),
    last_error  text,
    done_at     timestamptz,
    PRIMARY KEY (key, peer)
);
CREATE INDEX droplet_replicas_due ON droplet_replicas (next_at) WHERE state = 'pending';
