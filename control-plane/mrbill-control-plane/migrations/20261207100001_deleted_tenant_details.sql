-- What a restore needs to bring a deleted tenant back as it was (its row, email domains, the
-- cell's placement and spec), and whether one did.
ALTER TABLE deleted_tenants ADD COLUMN tenant jsonb;
ALTER TABLE deleted_tenants ADD COLUMN restored_at timestamptz;

-- The backup a delete takes is one of the tenant's backups (kind `final`), restorable as the
-- others are.
ALTER TABLE backups DROP CONSTRAINT backups_kind_check;
ALTER TABLE backups ADD CONSTRAINT backups_kind_check
    CHECK (kind IN ('scheduled', 'manual', 'final'));
