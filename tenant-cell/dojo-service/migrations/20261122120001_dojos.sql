-- Dojos: live sessions whose shared document is a yrs doc, stored as snapshots + an update log.

CREATE TABLE dojos (
    id               uuid PRIMARY KEY,
    name             text NOT NULL,
    description      text NOT NULL DEFAULT '',
    language         text NOT NULL,
    host_id          uuid NOT NULL,
    max_participants integer NOT NULL CHECK (max_participants BETWEEN 2 AND 500),
    private          boolean NOT NULL DEFAULT false,
    join_code        text NOT NULL UNIQUE,
    scheduled_start  timestamptz NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    ended_at         timestamptz
);
CREATE INDEX dojos_open ON dojos (scheduled_start, id) WHERE ended_at IS NULL;

CREATE TABLE dojo_participants (
    dojo_id   uuid NOT NULL REFERENCES dojos (id) ON DELETE CASCADE,
    user_id   uuid NOT NULL,
    role      text NOT NULL CHECK (role IN ('host', 'editor', 'observer')),
    joined_at timestamptz NOT NULL DEFAULT now(),
    -- Removed by the host: kept so the user cannot simply join again with the code.
    removed   boolean NOT NULL DEFAULT false,
    PRIMARY KEY (dojo_id, user_id)
);
CREATE INDEX dojo_participants_user ON dojo_participants (user_id);

-- Append-only: every document update, stored before it is broadcast.
CREATE TABLE dojo_updates (
    dojo_id uuid NOT NULL REFERENCES dojos (id) ON DELETE CASCADE,
    seq     bigint NOT NULL,
    update  bytea NOT NULL,
    PRIMARY KEY (dojo_id, seq)
);

-- Compactions of the log: the whole document state up to `seq` (updates ≤ seq are removed),
-- with the code as text for the history API.
CREATE TABLE dojo_snapshots (
    dojo_id  uuid NOT NULL REFERENCES dojos (id) ON DELETE CASCADE,
    seq      bigint NOT NULL,
    state    bytea NOT NULL,
    code     text NOT NULL,
    taken_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dojo_id, seq)
);

CREATE TABLE dojo_chat (
    dojo_id uuid NOT NULL REFERENCES dojos (id) ON DELETE CASCADE,
    seq     bigint NOT NULL,
    user_id uuid NOT NULL,
    text    text NOT NULL,
    sent_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dojo_id, seq)
);
