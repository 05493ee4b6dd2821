//! Secret files (0600 here; 0440 with the pod's `fsGroup` in Kubernetes) and random secrets.
//!
//! **Invariant:** secret values live in `SecretString`s, whose `Debug` prints `[REDACTED]`, so
//! they cannot reach a log line by accident.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::SecretString;
use sha2::{Digest, Sha256};

/// Mode bits a secret file must not have: any access for others, and group write or execute.
/// Group *read* is allowed because Kubernetes projects Secret volumes as `0440` owned by the
/// pod's `fsGroup` (a group only that pod's processes hold); the local driver writes `0600`.
const FORBIDDEN_MODE: u32 = 0o037;

/// Reads a secret file, refusing files other users can read or anyone but the owner can change.
pub fn read_secret(path: &Path) -> anyhow::Result<SecretString> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & FORBIDDEN_MODE != 0 {
        bail!(
            "{} is open to other users (mode {mode:o}); expected 0600, or 0440 as Kubernetes mounts Secrets",
            path.display(),
        );
    }
    let raw =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(SecretString::from(
        raw.trim_end_matches(['\n', '\r']).to_owned(),
    ))
}

/// Writes a secret file with mode 0600 (created that way, never widened in between).
pub fn write_secret(path: &Path, value: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(value.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// `n` random bytes from the OS, URL-safe base64 without padding.
pub fn random_token(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// SHA-256 of a high-entropy token, hex; what we store instead of the token itself.
pub fn token_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Constant-time string equality, for comparing presented secrets.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_files_are_0600_and_round_trip() {
        use secrecy::ExposeSecret;
        let dir = std::env::temp_dir().join(format!("sk-secret-{}", random_token(6)));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let path = dir.join("token");
        write_secret(&path, "s3cret").expect("write");
        assert_eq!(
            std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(read_secret(&path).expect("read").expose_secret(), "s3cret");
        // How Kubernetes mounts a projected Secret volume with `defaultMode: 0440` + `fsGroup`.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o440)).expect("chmod");
        assert_eq!(
            read_secret(&path).expect("0440 read").expose_secret(),
            "s3cret"
        );
        for open in [0o644, 0o604, 0o660, 0o640 | 0o001, 0o620] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(open)).expect("chmod");
            assert!(read_secret(&path).is_err(), "mode {open:o} accepted");
        }
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn random_tokens_differ_and_hashes_are_stable() {
        assert_ne!(random_token(32), random_token(32));
        assert_eq!(token_hash("a"), token_hash("a"));
        assert_eq!(token_hash("a").len(), 64);
        assert!(
            constant_time_eq("abc", "abc")
                && !constant_time_eq("abc", "abd")
                && !constant_time_eq("a", "ab")
        );
    }
}
