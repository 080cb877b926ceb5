//! How each registration ended, as one CloudWatch metric line (embedded metric format) on
//! stdout: the alarms count `lost` and `gave_up`, and an operator reads the rest. Each line is
//! published by `{Service, Outcome}` (what the alarms watch) and by `{Service, Path, Outcome}`
//! (which of the function's ways ended it: the operations dashboard's view).

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

/// Which of the function's ways a registration went: the trigger, the retry queue, the sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    Trigger,
    Queue,
    Sweep,
}

impl Path {
    pub fn as_str(self) -> &'static str {
        match self {
            Path::Trigger => "trigger",
            Path::Queue => "queue",
            Path::Sweep => "sweep",
        }
    }
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

/// Prints one metric line for a registration that went `path` and ended as `outcome` after
/// `attempts`.
pub fn emit(path: Path, outcome: Outcome, attempts: u32) {
    println!(
        "{}",
        line(path, outcome, attempts, shared_auth::unix::millis())
    );
}

fn line(path: Path, outcome: Outcome, attempts: u32, timestamp_ms: u64) -> String {
    shared_aws::emf::line_in_sets(
        "post-confirm",
        &[("Path", path.as_str()), ("Outcome", outcome.as_str())],
        &[&["Service", "Outcome"], &["Service", "Path", "Outcome"]],
        &[
            (METRIC, 1, "Count"),
            ("Attempts", u64::from(attempts), "Count"),
        ],
        timestamp_ms,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_line_counts_by_outcome_for_the_alarms_and_by_path_for_the_dashboard() {
        use shared_aws::emf::metrics_of;
        let metrics = metrics_of(&line(Path::Queue, Outcome::GaveUp, 3, 1));
        let sets: Vec<Vec<(String, String)>> = metrics
            .iter()
            .filter(|m| m.name == METRIC)
            .map(|m| m.dimensions.clone().into_iter().collect())
            .collect();
        let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
            list.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert_eq!(
            sets,
            vec![
                pairs(&[("Outcome", "gave_up"), ("Service", "post-confirm")]),
                pairs(&[
                    ("Outcome", "gave_up"),
                    ("Path", "queue"),
                    ("Service", "post-confirm")
                ]),
            ]
        );
    }

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
