//! What every handler can reach, and the service's clock.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use shared_auth::Settings;

use crate::budget::Budget;
use crate::database::Database;
use crate::identity::UserDirectory;
use crate::jwt::JwtVerifier;
use crate::refusals::Refusals;
use crate::secrets::SecretStore;

/// The service's idea of "now", in unix seconds. Shifted only by tests and drills (to check
/// expiry handling without waiting).
#[derive(Debug, Clone, Copy, Default)]
pub struct Clock {
    offset_s: i64,
}

impl Clock {
    pub fn system() -> Self {
        Self::default()
    }

    /// A clock running `offset_s` seconds ahead of (or, negative, behind) the system clock.
    pub fn shifted(offset_s: i64) -> Self {
        Self { offset_s }
    }

    pub fn now(&self) -> u64 {
        let system = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        system.saturating_add_signed(self.offset_s)
    }
}

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Inner>);

impl AppState {
    pub fn new(inner: Inner) -> Self {
        Self(Arc::new(inner))
    }
}

#[derive(Debug)]
pub struct Inner {
    pub settings: Settings,
    pub db: Database,
    pub secrets: SecretStore,
    pub jwt: Option<JwtVerifier>,
    /// The token issuer's user pool, asked before a user is created from a token.
    pub directory: Option<UserDirectory>,
    pub clock: Clock,
    /// Refusals of the guarded route, counted by reason (logged boundedly).
    pub refusals: Arc<Refusals>,
    /// The access log's budget, by response status ([`crate::budget`]).
    pub access: Arc<Budget<u16>>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
