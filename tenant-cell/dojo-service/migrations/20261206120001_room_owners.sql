-- Which replica's room owns a dojo's document: every load takes the room over by bumping
-- `epoch` (and announces it on the `dojo_rooms` channel); every stored batch checks that its
-- room's epoch is still the current one in the same transaction. A room that was taken over
-- can therefore never store (nor acknowledge) another update: its sockets reconnect to the
-- new owner, which loaded the document after the takeover committed.
CREATE TABLE dojo_room_owners (
    dojo_id uuid PRIMARY KEY REFERENCES dojos (id) ON DELETE CASCADE,
    epoch   bigint NOT NULL
);
