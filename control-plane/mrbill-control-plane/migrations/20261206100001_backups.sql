-- Backups of a cell (scheduled by its tier, or asked for) and restores from them.
CREATE TABLE backups (
    id uuid PRIMARY KEY,
    tenant text NOT NULL,
    cell_id text NOT NULL,
    -- Where the cell ran when the backup was asked for.
    placement text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('scheduled', 'manual')),
    state text NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed')),
    requested_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    -- The moment its databases show (the snapshots' transaction time).
    taken_at timestamptz,
    finished_at timestamptz,
    bytes bigint,
    path text,
    error text
);
CREATE INDEX backups_tenant ON backups (tenant, requested_at DESC);
CREATE INDEX backups_open ON backups (requested_at) WHERE state IN ('pending', 'running');

-- A restore is an operation of the cell (id = the operation's id): which backup it brings back.
CREATE TABLE restores (
    id uuid PRIMARY KEY,
    cell_id text NOT NULL,
    tenant text NOT NULL,
    backup_id uuid NOT NULL REFERENCES backups (id),
    placement text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);

ALTER TABLE cells DROP CONSTRAINT cells_op_check;
ALTER TABLE cells ADD CONSTRAINT cells_op_check
    CHECK (op IN ('provision', 'suspend', 'resume', 'delete', 'migrate', 'abort', 'scale', 'restore'));
