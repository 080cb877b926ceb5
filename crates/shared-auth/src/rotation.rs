//! The guard secret's rotation, as the rotation function, `cargo xtask` and Terraform must
//! agree on it: Secrets Manager's four steps by name, and how long one step may wait.

use std::fmt;
use std::time::Duration;

/// One of Secrets Manager's rotation steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Create,
    Set,
    Test,
    Finish,
}

/// A step name Secrets Manager does not send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown rotation step `{0}`")]
pub struct UnknownStep(pub String);

impl Step {
    /// The four steps in the order Secrets Manager runs them.
    pub const ALL: [Step; 4] = [Step::Create, Step::Set, Step::Test, Step::Finish];

    /// The name Secrets Manager sends in the event's `Step`.
    pub fn name(self) -> &'static str {
        match self {
            Step::Create => "createSecret",
            Step::Set => "setSecret",
            Step::Test => "testSecret",
            Step::Finish => "finishSecret",
        }
    }

    pub fn parse(name: &str) -> Result<Step, UnknownStep> {
        Step::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| UnknownStep(name.chars().take(40).collect()))
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What one waiting step may take for an api that refreshes every `refresh_s` seconds: see
/// the new version once, wait one interval, see it again, with room for a slow refresh. The
/// function's timeout (rendered for Terraform) is larger.
pub fn step_budget(refresh_s: u64) -> Duration {
    Duration::from_secs(refresh_s.saturating_mul(3).saturating_add(30).min(600))
}

/// The rotation function's timeout: one step's wait, with room to start and report.
pub fn function_timeout(refresh_s: u64) -> Duration {
    step_budget(refresh_s) + Duration::from_secs(30)
}

/// The longest a rotation runs: its four steps, each up to the function's timeout. An
/// `AWSPENDING` version older than this belongs to a rotation that failed.
pub fn longest(refresh_s: u64) -> Duration {
    function_timeout(refresh_s) * 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_names_are_secrets_managers() {
        for step in Step::ALL {
            assert_eq!(Step::parse(step.name()).expect("known"), step);
        }
        assert!(Step::parse("createsecret").is_err());
        assert!(Step::parse("").is_err());
    }
}
