-- Kubernetes cells create their first admin's invite themselves from the token's hash; the
-- control plane keeps the invite (token included) to show it, as the local driver keeps its file.
ALTER TABLE tenants ADD COLUMN admin_invite jsonb;
