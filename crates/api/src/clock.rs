//! The service's clock: a leaf that the secret store and the state both read.

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
        shared_auth::unix::seconds().saturating_add_signed(self.offset_s)
    }
}
