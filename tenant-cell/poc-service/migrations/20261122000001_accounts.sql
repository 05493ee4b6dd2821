-- Accounts: users, refresh-token families, invites, cell settings and login throttling.

CREATE TABLE users (
    id             uuid PRIMARY KEY,
    -- Normalised (trimmed, lower-case); the login name.
    email          text NOT NULL UNIQUE,
    display_name   text NOT NULL,
    password_hash  text NOT NULL,
    role           text NOT NULL CHECK (role IN ('admin', 'member')),
    disabled       boolean NOT NULL DEFAULT false,
    -- Bumped on disable and role change; access tokens carrying an older version are refused.
    token_version  bigint NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX users_created_at_idx ON users (created_at, id);

-- Refresh tokens rotate: each use marks the token used and issues a successor in the same
-- family. Only SHA-256 hashes are stored.
CREATE TABLE refresh_tokens (
    token_hash  text PRIMARY KEY,
    family_id   uuid NOT NULL,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    revoked_at  timestamptz
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id);

CREATE TABLE invites (
    id          uuid PRIMARY KEY,
    token_hash  text NOT NULL UNIQUE,
    -- When set, only this (normalised) address may register with the invite.
    email       text,
    role        text NOT NULL CHECK (role IN ('admin', 'member')),
    -- The provisioning-time invite for the tenant's first admin.
    bootstrap   boolean NOT NULL DEFAULT false,
    created_by  uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    used_by     uuid REFERENCES users (id) ON DELETE SET NULL,
    revoked_at  timestamptz
);

-- One row: cell-wide account settings.
CREATE TABLE settings (
    id            boolean PRIMARY KEY DEFAULT true CHECK (id),
    registration  text NOT NULL DEFAULT 'invite_only' CHECK (registration IN ('open', 'invite_only'))
);
INSERT INTO settings DEFAULT VALUES;

-- Failed-login counters per account (`acct:<email>`) and per client IP (`ip:<addr>`).
CREATE TABLE login_throttle (
    key            text PRIMARY KEY,
    failures       integer NOT NULL,
    window_start   timestamptz NOT NULL,
    blocked_until  timestamptz
);
