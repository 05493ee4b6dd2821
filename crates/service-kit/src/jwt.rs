//! Access tokens: EdDSA (Ed25519) JWTs with a `kid`, valid in exactly one cell.
//!
//! Only poc-service holds the private key ([`TokenSigner`]); dojo and media get the public key +
//! `kid` ([`TokenVerifier`]). Each cell has its own key pair and `aud` = its cell id, so a token
//! from cell A is invalid in cell B twice over.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey, spki::der::pem::LineEnding};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use wire_types::UserId;
use wire_types::auth::Role;

/// Access tokens never live longer than this.
pub const MAX_ACCESS_TTL: Duration = Duration::from_secs(300);
/// Clock skew tolerated between cell services.
const LEEWAY_SECS: u64 = 5;

/// Claims of an access token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: UserId,
    pub tenant: String,
    pub cell: String,
    pub role: Role,
    /// Bumped when the user is disabled or their role changes; stale tokens are rejected.
    pub token_version: i64,
    /// The cell id.
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
}

/// A freshly generated Ed25519 key pair in PEM form.
pub struct KeyPair {
    pub kid: String,
    /// PKCS#8 PEM.
    pub private_pem: SecretString,
    /// SPKI PEM.
    pub public_pem: String,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl KeyPair {
    /// Generates a key pair with a random `kid`.
    pub fn generate() -> anyhow::Result<Self> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("OS randomness: {e}"))?;
        let key = SigningKey::from_bytes(&seed);
        let private_pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .context("encoding private key")?;
        let public_pem = key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .context("encoding public key")?;
        Ok(Self {
            kid: format!("k-{}", crate::secrets::random_token(9)),
            private_pem: SecretString::from(private_pem.to_string()),
            public_pem,
        })
    }
}

/// The SPKI PEM public key of a PKCS#8 PEM private key, so services are configured with the
/// private key alone and the pair can never mismatch.
pub fn public_pem_from_private(private_pem: &SecretString) -> anyhow::Result<String> {
    use ed25519_dalek::pkcs8::DecodePrivateKey;
    let key = SigningKey::from_pkcs8_pem(private_pem.expose_secret())
        .context("parsing Ed25519 private key")?;
    key.verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .context("encoding public key")
}

/// Why a token was rejected. Both render as 401; the message differs.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// Issues access tokens for one cell.
pub struct TokenSigner {
    kid: String,
    key: EncodingKey,
    cell_id: String,
    tenant: String,
    ttl: Duration,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("kid", &self.kid)
            .field("cell_id", &self.cell_id)
            .finish_non_exhaustive()
    }
}

impl TokenSigner {
    /// `ttl` is capped at [`MAX_ACCESS_TTL`].
    pub fn new(
        kid: &str,
        private_pem: &SecretString,
        cell_id: &str,
        tenant: &str,
        ttl: Duration,
    ) -> anyhow::Result<Self> {
        let key = EncodingKey::from_ed_pem(private_pem.expose_secret().as_bytes())
            .context("parsing Ed25519 private key")?;
        Ok(Self {
            kid: kid.to_owned(),
            key,
            cell_id: cell_id.to_owned(),
            tenant: tenant.to_owned(),
            ttl: ttl.min(MAX_ACCESS_TTL),
        })
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Signs an access token for `user`.
    pub fn sign(&self, user: UserId, role: Role, token_version: i64) -> anyhow::Result<String> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = Claims {
            sub: user,
            tenant: self.tenant.clone(),
            cell: self.cell_id.clone(),
            role,
            token_version,
            aud: self.cell_id.clone(),
            iat: now,
            exp: now + self.ttl.as_secs() as i64,
        };
        self.sign_claims(&claims)
    }

    /// Signs arbitrary claims (tests use it to forge expired or foreign tokens).
    pub fn sign_claims(&self, claims: &Claims) -> anyhow::Result<String> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key).context("signing token")
    }
}

/// Verifies access tokens for one cell: EdDSA only, known `kid`, `aud` = this cell.
#[derive(Clone)]
pub struct TokenVerifier {
    keys: HashMap<String, DecodingKey>,
    validation: Validation,
    cell_id: String,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .field("cell_id", &self.cell_id)
            .finish()
    }
}

impl TokenVerifier {
    /// `public_keys` are `(kid, SPKI PEM)`; more than one during a key rotation.
    pub fn new(cell_id: &str, public_keys: &[(String, String)]) -> anyhow::Result<Self> {
        let mut keys = HashMap::new();
        for (kid, pem) in public_keys {
            keys.insert(
                kid.clone(),
                DecodingKey::from_ed_pem(pem.as_bytes())
                    .with_context(|| format!("public key {kid}"))?,
            );
        }
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_audience(&[cell_id]);
        validation.set_required_spec_claims(&["exp", "aud", "sub"]);
        validation.leeway = LEEWAY_SECS;
        Ok(Self {
            keys,
            validation,
            cell_id: cell_id.to_owned(),
        })
    }

    /// Checks signature, algorithm, `kid`, `aud`, expiry and that `cell` names this cell.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Invalid(e.to_string()))?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::Invalid("unexpected algorithm".into()));
        }
        let kid = header
            .kid
            .ok_or_else(|| TokenError::Invalid("missing kid".into()))?;
        let key = self
            .keys
            .get(&kid)
            .ok_or_else(|| TokenError::Invalid("unknown signing key".into()))?;
        let data =
            jsonwebtoken::decode::<Claims>(token, key, &self.validation).map_err(|e| {
                match e.kind() {
                    ErrorKind::ExpiredSignature => TokenError::Expired,
                    _ => TokenError::Invalid(e.to_string()),
                }
            })?;
        if data.claims.cell != self.cell_id {
            return Err(TokenError::Invalid("token is for another cell".into()));
        }
        // `exp - iat` above the cap means the token was not minted by a signer of ours.
        if data.claims.exp - data.claims.iat > MAX_ACCESS_TTL.as_secs() as i64 {
            return Err(TokenError::Invalid(
                "token lifetime exceeds the maximum".into(),
            ));
        }
        Ok(data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(cell: &str) -> (TokenSigner, TokenVerifier) {
        let kp = KeyPair::generate().expect("keygen");
        let signer = TokenSigner::new(
            &kp.kid,
            &kp.private_pem,
            cell,
            "acme",
            Duration::from_secs(300),
        )
        .expect("signer");
        let verifier =
            TokenVerifier::new(cell, &[(kp.kid.clone(), kp.public_pem.clone())]).expect("verifier");
        (signer, verifier)
    }

    #[test]
    fn a_signed_token_verifies_in_its_own_cell() {
        let (signer, verifier) = pair("c-acme");
        let user = UserId::new();
        let token = signer.sign(user, Role::Admin, 3).expect("sign");
        let claims = verifier.verify(&token).expect("valid");
        assert_eq!(
            (
                claims.sub,
                claims.role,
                claims.token_version,
                claims.aud.as_str()
            ),
            (user, Role::Admin, 3, "c-acme")
        );
    }

    #[test]
    fn a_token_from_another_cell_is_rejected() {
        let (other_signer, _) = pair("c-globex");
        let (_, verifier) = pair("c-acme");
        let token = other_signer
            .sign(UserId::new(), Role::Admin, 0)
            .expect("sign");
        assert!(matches!(
            verifier.verify(&token),
            Err(TokenError::Invalid(_))
        ));
    }

    #[test]
    fn a_token_for_another_audience_with_our_key_is_rejected() {
        let kp = KeyPair::generate().expect("keygen");
        let signer = TokenSigner::new(
            &kp.kid,
            &kp.private_pem,
            "c-other",
            "acme",
            Duration::from_secs(60),
        )
        .expect("signer");
        let verifier =
            TokenVerifier::new("c-acme", &[(kp.kid.clone(), kp.public_pem)]).expect("verifier");
        let token = signer.sign(UserId::new(), Role::Member, 0).expect("sign");
        assert!(matches!(
            verifier.verify(&token),
            Err(TokenError::Invalid(_))
        ));
    }

    #[test]
    fn expired_and_tampered_tokens_are_rejected() {
        let (signer, verifier) = pair("c-acme");
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = Claims {
            sub: UserId::new(),
            tenant: "acme".into(),
            cell: "c-acme".into(),
            role: Role::Member,
            token_version: 0,
            aud: "c-acme".into(),
            iat: now - 400,
            exp: now - 100,
        };
        let expired = signer.sign_claims(&claims).expect("sign");
        assert_eq!(verifier.verify(&expired), Err(TokenError::Expired));

        let token = signer.sign(UserId::new(), Role::Member, 0).expect("sign");
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        parts[1] = parts[1].chars().rev().collect();
        assert!(matches!(
            verifier.verify(&parts.join(".")),
            Err(TokenError::Invalid(_))
        ));
    }

    #[test]
    fn the_public_key_is_derived_from_the_private_key() {
        let kp = KeyPair::generate().expect("keygen");
        assert_eq!(
            public_pem_from_private(&kp.private_pem).expect("derive"),
            kp.public_pem
        );
    }

    #[test]
    fn ttl_is_capped_at_five_minutes() {
        let kp = KeyPair::generate().expect("keygen");
        let signer = TokenSigner::new(
            &kp.kid,
            &kp.private_pem,
            "c",
            "t",
            Duration::from_secs(3600),
        )
        .expect("signer");
        assert_eq!(signer.ttl(), MAX_ACCESS_TTL);
    }
}
