//! The Kubernetes Secrets that carry a cell's identity: what its tokens, signed links and
//! database credentials depend on. The operator generates them once per cell (and on a
//! migration's target waits for them instead); the control plane copies them, by name, from a
//! moving cell's source to its target; the cell-operator chart's `-cell-identity` role grants
//! exactly these names (`operator/tests/charts.rs` checks it against [`names`]).

use crate::DatabaseEngine;
use crate::contract::Service;

/// `private.pem`, `public.pem`, `kid`: the cell's token-signing key pair.
pub const JWT: &str = "cell-jwt";
/// `token`: the cell's internal-API token.
pub const SERVICE_TOKEN: &str = "cell-service-token";
/// `key`: media's URL-signing key.
pub const MEDIA_URL_KEY: &str = "media-url-key";
/// A migration source's replication role and its Postgres CA (`username`, `password`,
/// `ca.crt`).
pub const MIGRATOR: &str = "migrator-role";
/// On a migration's target: the copy of the source's [`MIGRATOR`].
pub const MIGRATION_SOURCE: &str = "migration-source";

/// `<service>-database`: `url`, the service's own database and role.
pub fn database(service: &str) -> String {
    format!("{service}-database")
}

/// `<service>-role`: the in-cluster managed role's `username` and `password` (the password of
/// [`database`]'s URL), which CloudNativePG reads.
pub fn role(service: &str) -> String {
    format!("{service}-role")
}

/// Every identity Secret of a cell with `engine` (an RDS cell's database credentials are its
/// instance's, not the cell's).
pub fn names(engine: DatabaseEngine) -> Vec<String> {
    let mut names = vec![
        JWT.to_owned(),
        SERVICE_TOKEN.to_owned(),
        MEDIA_URL_KEY.to_owned(),
    ];
    if engine == DatabaseEngine::InCluster {
        for service in Service::ALL.map(Service::name) {
            names.push(database(service));
            names.push(role(service));
        }
    }
    names
}
