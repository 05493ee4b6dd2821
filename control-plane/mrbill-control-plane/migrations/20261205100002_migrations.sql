-- Moving a cell between placements (`mrbill cell migrate`): the cell keeps its id and identity;
-- while a migration runs the target placement holds the cell's units too.
ALTER TABLE cells DROP CONSTRAINT cells_op_check;
ALTER TABLE cells ADD CONSTRAINT cells_op_check
    CHECK (op IN ('provision', 'suspend', 'resume', 'delete', 'migrate', 'abort'));
ALTER TABLE cells ADD COLUMN target_placement text REFERENCES placements (name);

-- One row per migration (id = the migrate operation's id), kept as history.
CREATE TABLE migrations (
    id uuid PRIMARY KEY,
    cell_id text NOT NULL,
    tenant text NOT NULL,
    source text NOT NULL,
    target text NOT NULL,
    -- running → switched (the route points at the target) → done; running → aborting → aborted
    state text NOT NULL CHECK (state IN ('running', 'switched', 'done', 'aborting', 'aborted')),
    frozen_at timestamptz,
    freeze_ms bigint,
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
CREATE INDEX migrations_tenant ON migrations (tenant, started_at DESC);

-- A migration's source cell: kept stopped for a grace period, then backed up and removed.
CREATE TABLE retired_cells (
    cell_id text NOT NULL,
    placement text NOT NULL,
    tenant text NOT NULL,
    -- The cell's spec when it was retired (what the driver's delete steps work on).
    spec jsonb NOT NULL,
    backup_path text,
    retire_after timestamptz NOT NULL,
    PRIMARY KEY (cell_id, placement)
);
