//! Unix time by this machine's clock, read in one place: what a signature's timestamp, the
//! replay and grace windows, queued messages and metric lines count in. A clock set before 1970
//! reads as 0 rather than failing a sign-up.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch.
pub fn seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Milliseconds since the Unix epoch.
pub fn millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Seconds since the Unix epoch of `t` (a time read from elsewhere: an answer's `Date`); `None`
/// before 1970.
pub fn seconds_of(t: SystemTime) -> Option<u64> {
    t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}
