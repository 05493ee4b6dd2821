-- The restore a cell's spec named before this one (none: NULL): a restore undone before its
-- switch puts it back (on Kubernetes it names the archive folder of the database kept).
ALTER TABLE restores ADD COLUMN previous jsonb;
