//! What every handler can reach.

use std::sync::Arc;

use shared_auth::Settings;

use crate::budget::Budget;
use crate::clock::Clock;
use crate::database::Database;
use crate::identity::UserDirectory;
use crate::jwt::JwtVerifier;
use crate::refusals::Refusals;
use crate::secrets::SecretStore;

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
