//! The session: tokens kept only through the app's [`TokenStore`], refreshed before they
//! expire, one refresh at a time.

use std::sync::{Arc, Mutex};

/// What the app keeps for the user between launches (in the Keychain on iOS, in Keystore-backed
/// storage on Android). The core hands tokens to nothing else.
#[derive(Clone, PartialEq, Eq, uniffi::Record)]
pub struct StoredSession {
    /// The company (tenant slug) and its endpoint through the router.
    pub tenant: String,
    pub endpoint: String,
    pub access_token: String,
    /// When the access token expires, in milliseconds since the Unix epoch.
    pub access_expires_at_ms: i64,
    pub refresh_token: String,
}

impl std::fmt::Debug for StoredSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the tokens.
        f.debug_struct("StoredSession")
            .field("tenant", &self.tenant)
            .field("endpoint", &self.endpoint)
            .field("access_expires_at_ms", &self.access_expires_at_ms)
            .finish_non_exhaustive()
    }
}

/// Where the app keeps the session. Implemented by the platform (Keychain, Android Keystore);
/// [`MemoryTokenStore`] keeps it in memory.
#[uniffi::export(with_foreign)]
pub trait TokenStore: Send + Sync {
    fn load(&self) -> Option<StoredSession>;
    fn save(&self, session: StoredSession);
    fn clear(&self);
}

/// A [`TokenStore`] in memory: gone with the process (tests, previews).
#[derive(Default, uniffi::Object)]
pub struct MemoryTokenStore {
    session: Mutex<Option<StoredSession>>,
}

#[uniffi::export]
impl MemoryTokenStore {
    #[uniffi::constructor]
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
}

#[uniffi::export]
impl TokenStore for MemoryTokenStore {
    fn load(&self) -> Option<StoredSession> {
        self.session
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn save(&self, session: StoredSession) {
        *self.session.lock().unwrap_or_else(|p| p.into_inner()) = Some(session);
    }

    fn clear(&self) {
        *self.session.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}
