-- The control plane's catalog: tenants, their cells, the reconciler's recorded steps and the
-- router feed's table.

-- Single-row counters.
CREATE TABLE meta (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    -- Revision of the route feed; bumped by every route change.
    route_revision bigint NOT NULL DEFAULT 0
);
INSERT INTO meta DEFAULT VALUES;

-- Where cells run, and how many capacity units each offers.
CREATE TABLE placements (
    name text PRIMARY KEY,
    capacity integer NOT NULL CHECK (capacity >= 0)
);

CREATE TABLE tenants (
    slug text PRIMARY KEY,
    display_name text NOT NULL,
    admin_email text NOT NULL,
    tier text NOT NULL,
    state text NOT NULL CHECK (state IN ('active', 'suspended', 'deleting')),
    backup_path text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Unique across tenants: an email address resolves to at most one tenant.
CREATE TABLE email_domains (
    domain text PRIMARY KEY,
    tenant text NOT NULL REFERENCES tenants (slug) ON DELETE CASCADE,
    position integer NOT NULL
);
CREATE INDEX email_domains_tenant ON email_domains (tenant);

CREATE TABLE cells (
    cell_id text PRIMARY KEY,
    tenant text NOT NULL UNIQUE REFERENCES tenants (slug) ON DELETE CASCADE,
    placement text NOT NULL REFERENCES placements (name),
    -- Capacity units taken from the placement (admission control).
    units integer NOT NULL,
    spec jsonb NOT NULL,
    generation bigint NOT NULL DEFAULT 1,
    status jsonb NOT NULL DEFAULT '{}',
    -- The operation the reconciler runs (NULL = nothing to do) and its instance id.
    op text CHECK (op IN ('provision', 'suspend', 'resume', 'delete')),
    op_id uuid,
    last_op text,
    last_op_id uuid,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Steps the reconciler completed, per operation instance: a restarted control plane skips them.
CREATE TABLE cell_steps (
    cell_id text NOT NULL REFERENCES cells (cell_id) ON DELETE CASCADE,
    op_id uuid NOT NULL,
    step text NOT NULL,
    duration_ms bigint NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (cell_id, op_id, step)
);

-- The router feed's table; `revision` is the feed revision of the entry's last change.
CREATE TABLE routes (
    tenant text PRIMARY KEY,
    entry jsonb NOT NULL,
    revision bigint NOT NULL
);

-- Tenants that were deleted, and where their backup is.
CREATE TABLE deleted_tenants (
    slug text NOT NULL,
    cell_id text NOT NULL,
    backup_path text NOT NULL,
    deleted_at timestamptz NOT NULL DEFAULT now()
);
