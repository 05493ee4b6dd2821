//! The per-cell Secrets, generated **once**: the controller creates each one only when it does
//! not exist (create, never apply), so a reconcile can never rotate a key by accident. Names and
//! keys are the ones `render` mounts.

use cell_model::contract::Service;
use cell_model::{Cell, DatabaseEngine, SearchEngine};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use service_kit::cell_secrets::CellSecrets;
use service_kit::secrets::random_token;

use crate::render::{
    CELL_LABEL, JWT_SECRET, MEDIA_URL_KEY_SECRET, MEILISEARCH_SECRET, POSTGRES_RW_SERVICE,
    POSTGRES_TLS_SECRET, SERVICE_TOKEN_SECRET, TENANT_LABEL, database_secret, namespace,
    role_secret,
};

/// Annotation marking a Secret the operator made and must never overwrite.
pub const GENERATED_ONCE: &str = "mrbill.dev/generated-once";
/// Annotation of a certificate's Secret: when it expires (Unix seconds), which the operator
/// reports as `mrbill_cell_certificate_expiry_timestamp_seconds` (`apply::existing_secrets`).
pub const NOT_AFTER: &str = "mrbill.dev/not-after";

fn secret(cell: &Cell, name: &str, data: Value) -> Value {
    typed_secret(cell, name, "Opaque", data)
}

fn typed_secret(cell: &Cell, name: &str, kind: &str, data: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": kind,
        "metadata": {
            "name": name,
            "namespace": namespace(cell),
            "labels": { TENANT_LABEL: cell.spec.tenant, CELL_LABEL: cell.spec.cell_id },
            "annotations": { GENERATED_ONCE: "true" },
        },
        "stringData": data,
    })
}

/// Names of the Secrets [`rds`] makes.
pub fn rds_names() -> Vec<String> {
    Service::ALL.map(|s| database_secret(s.name())).to_vec()
}

/// An `rds` cell's database Secrets, once its instance is available at `host:port`: a role +
/// database URL per service (TLS required, as RDS wants). The operator makes the roles
/// ([`crate::roles`]); the master user stays with it.
pub fn rds(cell: &Cell, host: &str, port: i32) -> Vec<Value> {
    Service::ALL
        .map(Service::name)
        .into_iter()
        .map(|service| {
            let url = format!(
                "postgres://{service}:{}@{host}:{port}/{service}?sslmode=require",
                CellSecrets::database_password().expose_secret()
            );
            secret(cell, &database_secret(service), json!({ "url": url }))
        })
        .collect()
}

/// The password in a database URL this module wrote (`postgres://<role>:<password>@…`).
pub fn password_of(url: &str) -> Option<&str> {
    let credentials = url.split_once("://")?.1.split_once('@')?.0;
    credentials.split_once(':').map(|(_, password)| password)
}

/// The cell's identity: what a migration's target gets from its source (the control plane
/// copies them) instead of generating its own — keys, key id, service token, URL-signing key,
/// and (in-cluster) the services' database passwords.
pub fn identity_names(cell: &Cell) -> Vec<String> {
    cell_model::identity::names(cell.spec.database.engine)
}

/// An `rds` migration source's replication credentials, its instance's address (`host`),
/// where the target subscribes (the control plane names it in the target's spec), and its
/// artifacts' `bucket` and `region`, which the target copies.
pub fn rds_migrator(cell: &Cell, host: &str, bucket: &crate::aws::Bucket) -> Value {
    let mut data = crate::buckets::secret_data(bucket);
    data["host"] = json!(host);
    migrator_with(cell, data)
}

/// A migration source's replication credentials, its Postgres CA (`ca`), which the target
/// needs to verify it, and its claimed bucket with that bucket's key, which the target copies:
/// the [`crate::render::migration::MIGRATOR_SECRET`].
pub fn migrator(cell: &Cell, ca: &str, bucket: &crate::aws::Bucket) -> Value {
    let mut data = crate::buckets::secret_data(bucket);
    data["ca.crt"] = json!(ca);
    migrator_with(cell, data)
}

/// The migrator's role and a fresh password, with what the target needs to reach the source.
fn migrator_with(cell: &Cell, mut data: Value) -> Value {
    data["username"] = json!(crate::render::migration::MIGRATOR_ROLE);
    data["password"] = json!(CellSecrets::database_password().expose_secret());
    typed_secret(
        cell,
        crate::render::migration::MIGRATOR_SECRET,
        "kubernetes.io/basic-auth",
        data,
    )
}

/// Names of the Secrets a cell needs (what [`generate`] makes), without generating anything.
pub fn names(cell: &Cell) -> Vec<String> {
    let mut names = vec![
        JWT_SECRET.to_owned(),
        SERVICE_TOKEN_SECRET.to_owned(),
        MEDIA_URL_KEY_SECRET.to_owned(),
    ];
    if cell.spec.search == SearchEngine::Meilisearch {
        names.push(MEILISEARCH_SECRET.to_owned());
    }
    if cell.spec.database.engine == DatabaseEngine::InCluster {
        names.push(POSTGRES_TLS_SECRET.to_owned());
        for service in Service::ALL.map(Service::name) {
            names.push(database_secret(service));
            names.push(role_secret(service));
        }
    }
    names
}

/// Fresh values for every Secret the cell needs. Database URLs are generated for `in-cluster`
/// Postgres (roles `poc`, `dojo`, `media` in the cell's own CNPG cluster, their passwords also
/// in the `<service>-role` Secrets CNPG reads); an RDS cell's come from its instance once it
/// exists.
pub fn generate(cell: &Cell) -> anyhow::Result<Vec<Value>> {
    let CellSecrets {
        jwt,
        service_token,
        media_url_key,
    } = CellSecrets::generate()?;
    let mut out = vec![
        secret(
            cell,
            JWT_SECRET,
            json!({
                "private.pem": jwt.private_pem.expose_secret(),
                "public.pem": jwt.public_pem,
                "kid": jwt.kid,
            }),
        ),
        secret(
            cell,
            SERVICE_TOKEN_SECRET,
            json!({ "token": service_token.expose_secret() }),
        ),
        secret(
            cell,
            MEDIA_URL_KEY_SECRET,
            json!({ "key": media_url_key.expose_secret() }),
        ),
    ];
    if cell.spec.search == SearchEngine::Meilisearch {
        out.push(secret(
            cell,
            MEILISEARCH_SECRET,
            json!({ "master-key": random_token(32) }),
        ));
    }
    if cell.spec.database.engine == DatabaseEngine::InCluster {
        let tls = crate::tls::postgres(&cell.spec.cell_id, &namespace(cell))?;
        let mut tls_secret = typed_secret(
            cell,
            POSTGRES_TLS_SECRET,
            "kubernetes.io/tls",
            json!({
                "ca.crt": tls.ca,
                "tls.crt": tls.certificate,
                "tls.key": tls.key.expose_secret(),
            }),
        );
        tls_secret["metadata"]["annotations"][NOT_AFTER] = json!(tls.not_after.to_string());
        out.push(tls_secret);
        for service in Service::ALL.map(Service::name) {
            let password = CellSecrets::database_password();
            let url = format!(
                "postgres://{service}:{}@{POSTGRES_RW_SERVICE}.{}.svc:5432/{service}",
                password.expose_secret(),
                namespace(cell)
            );
            out.push(secret(
                cell,
                &database_secret(service),
                json!({ "url": url }),
            ));
            // The same password for CNPG's managed role; the label makes CNPG apply a
            // changed password.
            let mut role = typed_secret(
                cell,
                &role_secret(service),
                "kubernetes.io/basic-auth",
                json!({ "username": service, "password": password.expose_secret() }),
            );
            role["metadata"]["labels"]["cnpg.io/reload"] = json!("true");
            out.push(role);
        }
    }
    Ok(out)
}

/// The cell's copy of the platform's SMTP URL ([`crate::render::SMTP_SECRET`]). Created once
/// like every Secret: to roll a new URL out, delete the cells' `smtp` Secrets and the operator
/// recreates them.
pub fn smtp(cell: &Cell, mail: &crate::render::Mail) -> Value {
    secret(
        cell,
        crate::render::SMTP_SECRET,
        json!({ "url": mail.smtp_url.expose_secret() }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_of_a_written_url_is_read_back() {
        let url = "postgres://poc:s3cr3t-_x@db.example:5432/poc?sslmode=require";
        assert_eq!(password_of(url), Some("s3cr3t-_x"));
        assert_eq!(password_of("postgres://poc@db/poc"), None);
        assert_eq!(password_of("not a url"), None);
    }
}
