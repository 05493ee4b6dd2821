-- Cells on Kubernetes are deleted without a local backup file (the operator deletes the namespace).
ALTER TABLE deleted_tenants ALTER COLUMN backup_path DROP NOT NULL;
