-- 0009: a queued or running job may name a blob in its params (a package upload's zip,
-- "bits": "<sha256 hex>"), stored by the API and read by the worker later. The garbage
-- collector counts those as references (shared/jobstore.c), however long the job waits.
CREATE INDEX jobs_params_bits ON jobs ((params->>'bits')) WHERE state IN ('queued', 'running');
