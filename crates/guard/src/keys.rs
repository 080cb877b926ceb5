//! Where the layer's accepted keys come from, asked on every request.

use std::sync::Arc;

use shared_auth::{SecretError, SecretSet};

/// The keys a guarded route accepts now. `None` while none are loaded: the layer answers
/// `503` with `Retry-After` (the caller retries) rather than refusing a caller it cannot judge.
pub trait KeySource: Clone + Send + Sync + 'static {
    /// The accepted set, lent for one request.
    type Keys: AsRef<SecretSet> + Send + 'static;

    /// The keys accepted at this moment.
    fn keys(&self) -> Option<Self::Keys>;
}

/// A fixed set: the same keys for the life of the process.
impl KeySource for Arc<SecretSet> {
    type Keys = Arc<SecretSet>;

    fn keys(&self) -> Option<Self::Keys> {
        Some(self.clone())
    }
}

/// Keys from two environment variables, read once: the current key, and optionally the
/// previous one (while senders move to a new key).
#[derive(Debug, Clone, Copy)]
pub struct KeysFromEnv {
    /// The variable holding the current key.
    pub current: &'static str,
    /// The variable holding the previous key, if any (absent or empty: none).
    pub previous: &'static str,
}

impl KeysFromEnv {
    /// The fixed set the variables hold now. An absent current key is refused as an empty
    /// one; a value that is no key is refused, naming which.
    pub fn load(self) -> Result<Arc<SecretSet>, SecretError> {
        let read = |name: &str| std::env::var(name).unwrap_or_default();
        let previous = Some(read(self.previous)).filter(|p| !p.is_empty());
        SecretSet::new(read(self.current).into(), previous.map(Into::into)).map(Arc::new)
    }
}
