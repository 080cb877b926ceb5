//! How each registration ended, as one CloudWatch metric line (embedded metric format) on
//! stdout: the alarms count `lost` and `gave_up`, and an operator reads the rest.

use crate::client::{Delivered, DeliveryError};

/// The metric (namespace [`shared_aws::emf::NAMESPACE`], dimension `Outcome`).
pub const METRIC: &str = "Registration";

/// How one registration ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The api created the user (201).
    Registered,
    /// The user was there already (200): a retry, a replay, a sweep.
    Replay,
    /// The trigger could not register in time and handed the registration to the retry queue.
    Queued,
    /// The trigger could neither register nor queue: the sweep must find the user.
    Lost,
    /// A queued registration failed again and will be retried after its backoff.
    Retry,
    /// Dead-lettered: the api refused it for good, or it failed on its last receive.
    GaveUp,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Registered => "registered",
            Outcome::Replay => "replay",
            Outcome::Queued => "queued",
            Outcome::Lost => "lost",
            Outcome::Retry => "retry",
            Outcome::GaveUp => "gave_up",
        }
    }

    /// A delivered registration's outcome.
    pub fn of(delivered: &Delivered) -> Self {
        if delivered.status == 201 {
            Outcome::Registered
        } else {
            Outcome::Replay
        }
    }
}

/// Whether an error is the api's final word (a refusal or a redirect) rather than trouble that
/// may pass (no answer in time, a server error, the secret unreadable).
pub fn is_final(error: &DeliveryError) -> bool {
    matches!(
        error,
        DeliveryError::Rejected { .. } | DeliveryError::Redirected { .. }
    )
}

/// Prints one metric line for a registration that ended as `outcome` after `attempts`.
pub fn emit(outcome: Outcome, attempts: u32) {
    let line = shared_aws::emf::line(
        "post-confirm",
        ("Outcome", outcome.as_str()),
        &[
            (METRIC, 1, "Count"),
            ("Attempts", u64::from(attempts), "Count"),
        ],
    );
    println!("{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_and_redirects_are_final_the_rest_may_pass() {
        assert!(is_final(&DeliveryError::Rejected {
            status: 422,
            attempts: 1
        }));
        assert!(is_final(&DeliveryError::Redirected {
            status: 307,
            location: "https://elsewhere".into(),
            attempts: 1
        }));
        assert!(!is_final(&DeliveryError::Exhausted {
            attempts: 4,
            last: "timeout".into()
        }));
        assert!(!is_final(&DeliveryError::SecretTimedOut));
        assert_eq!(
            Outcome::of(&Delivered {
                status: 201,
                attempts: 1
            }),
            Outcome::Registered
        );
    }
}
