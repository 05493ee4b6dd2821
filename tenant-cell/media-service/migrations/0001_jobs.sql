-- media-service's own database: report and video jobs and their artifacts.
CREATE TABLE media_jobs (
    id            uuid PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('report', 'video')),
    owner_id      uuid NOT NULL,
    -- The request as accepted (CreateReport / CreateVideo, validated and normalised).
    params        jsonb NOT NULL,
    state         text NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'processing', 'completed', 'failed', 'cancelled')),
    progress      smallint NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    attempts      integer NOT NULL DEFAULT 0,
    -- Pending jobs wait until then (retry backoff).
    run_after     timestamptz NOT NULL DEFAULT now(),
    -- A processing job belongs to `lease_owner` until `lease_until`; past it, any worker may
    -- take it over (the previous one died). `lease_token` changes on every claim.
    lease_owner   text,
    lease_token   uuid,
    lease_until   timestamptz,
    error_code    text,
    error_message text,
    -- What the job found out while running (cards, duration).
    facts         jsonb NOT NULL DEFAULT '{}',
    -- Object keys and sizes of the artifacts, once completed: {"main": {...}, "thumbnail": {...}}.
    artifacts     jsonb NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz
);

-- Listing a user's jobs of a kind, newest first.
CREATE INDEX media_jobs_owner ON media_jobs (owner_id, kind, created_at DESC, id DESC);
-- Claiming: due pending jobs and expired leases, oldest first.
CREATE INDEX media_jobs_due ON media_jobs (created_at) WHERE state IN ('pending', 'processing');

-- Objects whose job was deleted while a worker was still writing them: removed by the next
-- sweep, so nothing is left behind in object storage.
CREATE TABLE media_orphans (
    key        text PRIMARY KEY,
    job_id     uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX media_orphans_job ON media_orphans (job_id);
