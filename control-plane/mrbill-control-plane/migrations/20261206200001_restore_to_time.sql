-- A restore to a point in time (drivers that replay an archive: Kubernetes); a backup's
-- `path` is where it is: a directory (local) or a CloudNativePG Backup's name (Kubernetes).
ALTER TABLE restores ADD COLUMN to_time timestamptz;
