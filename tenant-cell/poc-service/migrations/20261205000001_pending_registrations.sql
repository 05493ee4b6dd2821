-- Open registrations waiting for their address to be confirmed: the account exists only once the
-- code mailed to the address comes back. Only a SHA-256 of `<email>:<code>` is stored.
CREATE TABLE pending_registrations (
    email          text PRIMARY KEY,
    display_name   text NOT NULL,
    password_hash  text NOT NULL,
    code_hash      text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL
);
