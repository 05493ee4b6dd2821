-- PoCs and the search outbox.

CREATE TABLE pocs (
    id              uuid PRIMARY KEY,
    owner_id        uuid NOT NULL REFERENCES users (id),
    name            text NOT NULL,
    description     text NOT NULL DEFAULT '',
    repository_url  text NOT NULL,
    -- Lower-case.
    language        text NOT NULL,
    -- Normalised lower-case kebab-case, de-duplicated.
    tags            text[] NOT NULL DEFAULT '{}',
    frameworks      text[] NOT NULL DEFAULT '{}',
    visibility      text NOT NULL CHECK (visibility IN ('private', 'tenant')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    -- Soft delete: the row stays for reports of the past and for restore.
    deleted_at      timestamptz
);
CREATE INDEX pocs_live_created_idx ON pocs (created_at, id) WHERE deleted_at IS NULL;
CREATE INDEX pocs_live_owner_idx ON pocs (owner_id) WHERE deleted_at IS NULL;
CREATE INDEX pocs_live_tags_idx ON pocs USING gin (tags) WHERE deleted_at IS NULL;

-- Ids of PoCs whose index entry is stale. Filled by the trigger below in the writing
-- transaction; drained (and deleted) by the indexer once the index has the change.
CREATE TABLE search_outbox (
    seq         bigserial PRIMARY KEY,
    poc_id      uuid NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE FUNCTION pocs_enqueue_search() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO search_outbox (poc_id) VALUES (NEW.id);
    -- Delivered on commit; identical notifications in one transaction are folded.
    PERFORM pg_notify('poc_search_outbox', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER pocs_enqueue_search
    AFTER INSERT OR UPDATE ON pocs
    FOR EACH ROW EXECUTE FUNCTION pocs_enqueue_search();
