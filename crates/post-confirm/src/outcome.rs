//! How each registration ended, as one CloudWatch metric line (embedded metric format) on
//! stdout: the alarms count `lost` and `gave_up`, and an operator reads the rest. Each line is
//! published by `{Service, Outcome}` (what the alarms watch) and by `{Service, Path, Outcome}`
//! (which of the function's ways ended it: the operations dashboard's view).

use crate::client::{Delivered, DeliveryError};
use crate::event::Registration;

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
    /// The way in the signed body names (`via`), which the api stores with the row.
    pub fn via(self) -> shared_auth::heartbeat::Via {
        use shared_auth::heartbeat::Via;
        match self {
            Path::Trigger => Via::Trigger,
            Path::Queue => Via::Queue,
            Path::Sweep => Via::Sweep,
        }
    }

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

/// Prints one metric line for `registration`, which went `path` and ended as `outcome` after
/// `attempts`; nothing for a heartbeat user's, which the heartbeat's own metric reports, so
/// the heartbeat never counts as a sign-up.
pub fn emit(registration: &Registration, path: Path, outcome: Outcome, attempts: u32) {
    if !counted(registration) {
        tracing::debug!(
            path = path.as_str(),
            outcome = outcome.as_str(),
            "heartbeat user: not counted as a registration"
        );
        return;
    }
    println!(
        "{}",
        line(path, outcome, attempts, shared_auth::unix::millis())
    );
}

/// Whether a registration counts as a person's sign-up: every one but a heartbeat user's.
pub fn counted(registration: &Registration) -> bool {
    !registration.is_heartbeat()
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
    fn a_heartbeat_users_registration_is_not_a_sign_up() {
        let person = Registration::from_attributes("ada", |name| match name {
            "sub" => Some("7d8ca528-4931-4254-9273-ea5ee853f271"),
            "email" => Some("ada@example.com"),
            _ => None,
        })
        .expect("valid");
        assert!(counted(&person));
        let heartbeat = Registration {
            email: Some(shared_auth::heartbeat::email("n1")),
            ..person.clone()
        };
        assert!(!counted(&heartbeat));
        let phone_only = Registration {
            email: None,
            ..person
        };
        assert!(counted(&phone_only));
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
