//! The secrets every cell has, generated once by whichever driver provisions it.

use std::path::Path;

use secrecy::SecretString;

use crate::secrets::{random_token, write_secret};

/// The secrets every cell has, whichever driver runs it: the token signing key pair, the
/// token services present to each other, and the key signing media links. Generated once when
/// the cell is provisioned — the local driver keeps them as files ([`CellSecrets::FILES`]), the
/// operator as Secrets — and never rotated by a retried step.
#[derive(Debug)]
pub struct CellSecrets {
    pub jwt: crate::jwt::KeyPair,
    pub service_token: SecretString,
    pub media_url_key: SecretString,
}

impl CellSecrets {
    /// The files [`CellSecrets::write_missing`] writes, in the order it writes them.
    pub const FILES: [&str; 5] = [
        "jwt-public.pem",
        "jwt.kid",
        "jwt-private.pem",
        "service-token",
        "media-url-key",
    ];

    pub fn generate() -> anyhow::Result<Self> {
        Ok(Self {
            jwt: crate::jwt::KeyPair::generate()?,
            service_token: SecretString::from(random_token(32)),
            media_url_key: SecretString::from(random_token(32)),
        })
    }

    /// A database role's password (URL-safe: it goes into database URLs as it is).
    pub fn database_password() -> SecretString {
        SecretString::from(random_token(24))
    }

    /// Writes the secrets `dir` lacks (0600), keeping those it has. The key pair is written
    /// as a whole, its private half last: present means complete.
    pub fn write_missing(dir: &Path) -> anyhow::Result<()> {
        use secrecy::ExposeSecret;
        std::fs::create_dir_all(dir)?;
        let missing = |name: &str| !dir.join(name).exists();
        if !Self::FILES.iter().any(|f| missing(f)) {
            return Ok(());
        }
        let fresh = Self::generate()?;
        if missing("jwt-private.pem") {
            write_secret(&dir.join("jwt-public.pem"), &fresh.jwt.public_pem)?;
            write_secret(&dir.join("jwt.kid"), &fresh.jwt.kid)?;
            write_secret(
                &dir.join("jwt-private.pem"),
                fresh.jwt.private_pem.expose_secret(),
            )?;
        }
        for (name, value) in [
            ("service-token", &fresh.service_token),
            ("media-url-key", &fresh.media_url_key),
        ] {
            if missing(name) {
                write_secret(&dir.join(name), value.expose_secret())?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::read_secret;

    #[test]
    fn cell_secrets_are_written_once_and_completed_when_partly_missing() {
        use secrecy::ExposeSecret;
        let dir = std::env::temp_dir().join(format!("sk-cell-{}", random_token(6)));
        CellSecrets::write_missing(&dir).expect("write");
        let read = |name: &str| {
            read_secret(&dir.join(name))
                .expect(name)
                .expose_secret()
                .to_owned()
        };
        let before: Vec<String> = CellSecrets::FILES.iter().map(|f| read(f)).collect();
        CellSecrets::write_missing(&dir).expect("again");
        let again: Vec<String> = CellSecrets::FILES.iter().map(|f| read(f)).collect();
        assert_eq!(before, again, "a retry rotates nothing");
        std::fs::remove_file(dir.join("media-url-key")).expect("remove");
        CellSecrets::write_missing(&dir).expect("complete");
        assert_eq!(read("jwt-private.pem"), before[2], "the key pair is kept");
        assert_eq!(read("service-token"), before[3]);
        assert_ne!(read("media-url-key"), before[4], "the missing one is new");
        std::fs::remove_dir_all(dir).ok();
    }
}
