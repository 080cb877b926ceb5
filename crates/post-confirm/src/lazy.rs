//! An AWS client built on its first use. The common path, a registration delivered at once,
//! needs neither SQS nor Cognito: a cold start that built them spent its time on clients it
//! would not call. The configuration they are built from is loaded once, at start, with the
//! Secrets Manager client's.

use std::fmt;
use std::sync::{Arc, OnceLock};

use aws_config::SdkConfig;

/// A client of type `C`, made from the shared configuration the first time it is asked for.
#[derive(Clone)]
pub struct LazyClient<C> {
    sdk: SdkConfig,
    make: fn(&SdkConfig) -> C,
    client: Arc<OnceLock<C>>,
}

impl<C> LazyClient<C> {
    /// A client `make` will build from `sdk` when first needed.
    pub fn new(sdk: SdkConfig, make: fn(&SdkConfig) -> C) -> Self {
        Self {
            sdk,
            make,
            client: Arc::new(OnceLock::new()),
        }
    }

    /// The client, built now if this is the first call.
    pub fn get(&self) -> &C {
        self.client.get_or_init(|| (self.make)(&self.sdk))
    }

    /// Whether the client has been built yet.
    pub fn is_built(&self) -> bool {
        self.client.get().is_some()
    }
}

impl<C> fmt::Debug for LazyClient<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LazyClient")
            .field("built", &self.is_built())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_is_built_once_and_only_when_asked_for() {
        let sdk = SdkConfig::builder().build();
        let lazy = LazyClient::new(sdk, aws_sdk_sqs::Client::new);
        let copy = lazy.clone();
        assert!(!lazy.is_built(), "nothing is built before the first use");
        let first: *const _ = lazy.get();
        assert!(
            lazy.is_built() && copy.is_built(),
            "clones share the one client"
        );
        assert!(
            std::ptr::eq(first, copy.get()),
            "a second use builds nothing new"
        );
    }
}
