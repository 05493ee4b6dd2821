//! The collector behind TLS: a CA made for the test, the collector's certificate for
//! `127.0.0.1` and a client certificate, written as the PEM files the standard
//! `OTEL_EXPORTER_OTLP_*CERTIFICATE*` variables name.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A test CA and what it signed, as files in `dir`.
pub struct Tls {
    /// The CA's certificate (`OTEL_EXPORTER_OTLP_CERTIFICATE`).
    pub ca: PathBuf,
    /// A client certificate and its key, signed by the CA.
    pub client_certificate: PathBuf,
    pub client_key: PathBuf,
    ca_pem: String,
    server_pem: String,
    server_key_pem: String,
}

impl Tls {
    /// Makes a CA, the collector's certificate (for `127.0.0.1` and `localhost`) and a client
    /// certificate, and writes the CA and the client's files into `dir`.
    pub fn new(dir: &Path) -> Self {
        let ca_key = KeyPair::generate().expect("a CA key");
        let mut ca = CertificateParams::default();
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.distinguished_name
            .push(DnType::CommonName, "test collector CA");
        let ca_pem = ca.self_signed(&ca_key).expect("the CA").pem();
        let issuer = Issuer::new(ca, ca_key);
        let signed = |names: Vec<String>, purpose| {
            let mut params = CertificateParams::new(names).expect("names");
            params.extended_key_usages = vec![purpose];
            let key = KeyPair::generate().expect("a key");
            let pem = params.signed_by(&key, &issuer).expect("signed").pem();
            (pem, key.serialize_pem())
        };
        let (server_pem, server_key_pem) = signed(
            vec!["127.0.0.1".into(), "localhost".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_pem, client_key_pem) = signed(
            vec!["trace-export-test".into()],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let write = |name: &str, pem: &str| {
            let path = dir.join(name);
            std::fs::write(&path, pem).expect("a PEM file");
            path
        };
        Self {
            ca: write("collector-ca.pem", &ca_pem),
            client_certificate: write("client.pem", &client_pem),
            client_key: write("client-key.pem", &client_key_pem),
            ca_pem,
            server_pem,
            server_key_pem,
        }
    }

    /// The server side: this certificate, and client certificates signed by the CA required.
    pub(super) fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).expect("the CA's PEM"))
            .expect("the CA as a root");
        let clients = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.into(),
            provider.clone(),
        )
        .build()
        .expect("the client verifier");
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_client_cert_verifier(clients)
            .with_single_cert(
                vec![CertificateDer::from_pem_slice(self.server_pem.as_bytes()).expect("PEM")],
                PrivateKeyDer::from_pem_slice(self.server_key_pem.as_bytes()).expect("key PEM"),
            )
            .expect("the server's certificate");
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }
}

/// Accepts TCP connections and completes their TLS handshake; a failed one is counted and
/// skipped.
pub(super) struct Listener {
    pub(super) tcp: tokio::net::TcpListener,
    pub(super) acceptor: tokio_rustls::TlsAcceptor,
    pub(super) refused: Arc<dyn Fn() + Send + Sync>,
}

impl axum::serve::Listener for Listener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            match self.acceptor.accept(tcp).await {
                Ok(tls) => return (tls, addr),
                Err(_) => (self.refused)(),
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}
