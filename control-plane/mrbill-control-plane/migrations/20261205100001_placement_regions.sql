-- Placements carry a region (data residency is per region) and can be cordoned: a cordoned
-- placement keeps its cells but admits no new ones.
ALTER TABLE placements
    ADD COLUMN region text NOT NULL DEFAULT 'local',
    ADD COLUMN cordoned boolean NOT NULL DEFAULT false;
