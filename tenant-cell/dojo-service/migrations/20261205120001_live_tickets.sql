-- One-time tickets for the live socket: a client that cannot set headers on a WebSocket opens
-- `/v1/dojos/{id}/live?ticket=…` instead of putting its access token in the URL (where proxies
-- and logs keep it). Only a SHA-256 of the ticket is stored; it works once, for 30 seconds.
CREATE TABLE live_tickets (
    ticket_hash  text PRIMARY KEY,
    dojo_id      uuid NOT NULL REFERENCES dojos (id) ON DELETE CASCADE,
    -- The claims of the access token that asked for it: who the socket belongs to.
    claims       jsonb NOT NULL,
    expires_at   timestamptz NOT NULL
);
