-- 0004: the identity of the blob store this database describes (jobstore_bind_store).
--
-- The store keeps the same 32 hex digits in its ID file. Garbage collection and expiry
-- delete blobs only when both agree: a collector given an empty or another deployment's
-- database would otherwise find every blob unreferenced and wipe the store. One row at
-- most (the singleton key); created with the store's ID file by the first worker that
-- finds neither (docs/operations.md, "Expiry and garbage collection").

CREATE TABLE store_identity (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    id         text NOT NULL CHECK (id ~ '^[0-9a-f]{32}$'),
    created_at timestamptz NOT NULL DEFAULT now()
);
