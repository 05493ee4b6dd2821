-- Every search index is a consumer of the change log: each poc-service replica with an index of
-- its own (the embedded engine), or one shared consumer for a shared engine (Meilisearch). The
-- trigger writes one row per registered consumer in the writing transaction; each consumer
-- drains (and deletes) only its rows, so every index sees every change.
--
-- The table is new (not search_outbox renamed in place): replicas of the previous version fail
-- to drain during a rolling update instead of taking rows meant for the new ones. Rows of the
-- old outbox are dropped: an index registers as a new consumer and is rebuilt from Postgres.

CREATE TABLE search_consumers (
    consumer  text PRIMARY KEY,
    -- Refreshed by the consumer while it runs; consumers gone for long are removed (with
    -- their rows) and rebuild their index if they come back.
    seen_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE search_changes (
    seq         bigserial PRIMARY KEY,
    consumer    text NOT NULL REFERENCES search_consumers (consumer) ON DELETE CASCADE,
    poc_id      uuid NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX search_changes_consumer ON search_changes (consumer, seq);

CREATE OR REPLACE FUNCTION pocs_enqueue_search() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Reading search_consumers holds its ACCESS SHARE lock until commit: a consumer
    -- registering (ACCESS EXCLUSIVE) waits for this transaction, so it either gets this row
    -- or sees the change in the snapshot it rebuilds from.
    INSERT INTO search_changes (consumer, poc_id)
    SELECT consumer, NEW.id FROM search_consumers;
    -- Delivered on commit; identical notifications in one transaction are folded.
    PERFORM pg_notify('poc_search_outbox', '');
    RETURN NULL;
END;
$$;

DROP TABLE search_outbox;
