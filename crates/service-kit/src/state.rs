//! The shape of a service's request state: one `Inner` struct per service behind an `Arc`,
//! cheap to clone into handlers and workers.

use std::sync::Arc;

/// A service's shared state (`pub type AppState = Shared<Inner>;`).
pub struct Shared<T>(pub Arc<T>);

impl<T> Shared<T> {
    pub fn new(inner: T) -> Self {
        Self(Arc::new(inner))
    }
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> std::ops::Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> std::fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}
