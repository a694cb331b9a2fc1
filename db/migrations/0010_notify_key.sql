-- 0010: job notifications name the job's dedup_key too. The API keeps finished cooks'
-- status documents by that key (api/statuscache.c) and drops one when a notification
-- names it: the job expired, or a new job took the key of a failed one.
CREATE OR REPLACE FUNCTION jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('job_state',
        json_build_object('id', NEW.id, 'state', NEW.state, 'key', NEW.dedup_key)::text);
    RETURN NEW;
END $$;
