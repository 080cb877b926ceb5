//! The registration guard: [`tollgate_guard`]'s layer, bound to the `POST /user` handler (so
//! no spelling of the path, `/user/`, `//user`, `/USER`, `/%75ser`, can reach the handler
//! without it), fed by this service's pieces: the keys the secret store holds now (current,
//! previous within its grace, pending during a rotation), the service's clock, and the
//! refusal counter ([`crate::refusals`]: every refusal counted, boundedly logged).
//!
//! The layer checks the source address and the credential's shape from the headers alone,
//! reads the body under `api.body_limit_bytes`, verifies the signature over the exact bytes
//! the handler then reads, answers a verified dry run `204` itself, and gives the handler
//! [`tollgate_guard::Verified`] (its `signed_at` orders registrations).

use std::net::IpAddr;
use std::sync::Arc;

use shared_auth::{DenyReason, SecretSet};
use tollgate_guard::{GuardLayer, KeySource, OnRefusal};

use crate::refusals::Refusals;
use crate::secrets::{Loaded, SecretStore};
use crate::state::AppState;

/// The guard of the registration route, from the service's state.
pub fn layer(state: &AppState) -> GuardLayer<StoreKeys> {
    let clock = state.clock;
    GuardLayer::new(
        state.settings.guard.clone(),
        StoreKeys(state.secrets.clone()),
    )
    .body_limit(state.settings.api.body_limit_bytes)
    .on_refusal(Counted(state.refusals.clone()))
    .clock(move || clock.now())
}

/// The keys the secret store holds at this moment; none until its first load.
#[derive(Debug, Clone)]
pub struct StoreKeys(SecretStore);

/// One load of the store, lent to the guard for one request.
#[derive(Debug)]
pub struct LoadedKeys(Arc<Loaded>);

impl AsRef<SecretSet> for LoadedKeys {
    fn as_ref(&self) -> &SecretSet {
        &self.0.set
    }
}

impl KeySource for StoreKeys {
    type Keys = LoadedKeys;

    fn keys(&self) -> Option<LoadedKeys> {
        self.0.get().map(LoadedKeys)
    }
}

/// Every refusal into the counter (a metric per reason; a few log lines per window).
#[derive(Debug, Clone)]
struct Counted(Arc<Refusals>);

impl OnRefusal for Counted {
    fn refused(&self, reason: DenyReason, client: Option<IpAddr>) {
        self.0.record(reason, client);
    }
}
