//! TLS for a cell's in-cluster Postgres: a certificate authority of the cell's own that signs
//! exactly one certificate — its Postgres server's, for the names of the cell's CNPG Services
//! (`postgres-rw`, `-ro`, `-r`) and the name another cluster reaches its primary by when the
//! cell moves ([`CLUSTERSET_DOMAIN`]) — and whose key is dropped right after. The services connect with
//! `sslmode=verify-full` and trust only that CA: a certificate of another cell's Postgres (or
//! any other certificate) does not verify, and nothing else can ever be signed by it.
//!
//! Valid for ten years; to roll, delete the cell's `postgres-tls` Secret: the operator makes a
//! new CA and certificate, and Postgres and the services read them on their next start.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use secrecy::SecretString;

/// The domain under which Kubernetes Multi-Cluster Services exports a Service to the other
/// clusters: a moving cell's target reaches the source's primary as
/// `postgres-rw.<namespace>.svc.clusterset.local` (the control plane's default source host).
pub const CLUSTERSET_DOMAIN: &str = "svc.clusterset.local";

/// How long the CA and the server certificate are valid.
const VALID_DAYS: i64 = 3650;

/// A cell's Postgres certificate chain, PEM encoded.
#[derive(Debug)]
pub struct PostgresTls {
    /// What the services trust.
    pub ca: String,
    /// The server's certificate, for the names of the CNPG Services in `namespace`.
    pub certificate: String,
    pub key: SecretString,
    /// When the CA and the certificate stop being valid (Unix seconds).
    pub not_after: i64,
}

/// A fresh CA and the Postgres server's certificate for the cell in `namespace`.
pub fn postgres(cell_id: &str, namespace: &str) -> Result<PostgresTls, rcgen::Error> {
    let now = time::OffsetDateTime::now_utc();
    // An hour back: clocks across nodes are never quite the same.
    let (not_before, not_after) = (
        now - time::Duration::hours(1),
        now + time::Duration::days(VALID_DAYS),
    );
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.distinguished_name
        .push(DnType::CommonName, format!("mrbill {cell_id} postgres CA"));
    (ca.not_before, ca.not_after) = (not_before, not_after);
    let ca_pem = ca.self_signed(&ca_key)?.pem();

    let names = ["rw", "ro", "r"]
        .into_iter()
        .flat_map(|kind| {
            let svc = format!("{}-{kind}", crate::render::POSTGRES_CLUSTER);
            [
                format!("{svc}.{namespace}"),
                format!("{svc}.{namespace}.svc"),
                format!("{svc}.{namespace}.svc.cluster.local"),
                svc,
            ]
        })
        .chain([format!(
            "{}.{namespace}.{CLUSTERSET_DOMAIN}",
            crate::render::POSTGRES_RW_SERVICE
        )])
        .collect::<Vec<_>>();
    let mut server = CertificateParams::new(names)?;
    server.distinguished_name.push(
        DnType::CommonName,
        format!("{}.{namespace}.svc", crate::render::POSTGRES_RW_SERVICE),
    );
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    (server.not_before, server.not_after) = (not_before, not_after);
    let key = KeyPair::generate()?;
    // The CA's key goes with the issuer: nothing else is ever signed with it.
    let certificate = server.signed_by(&key, &Issuer::new(ca, ca_key))?.pem();
    Ok(PostgresTls {
        ca: ca_pem,
        certificate,
        key: key.serialize_pem().into(),
        not_after: not_after.unix_timestamp(),
    })
}
