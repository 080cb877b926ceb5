//! The time an invocation may work: one rule, whatever the runtime's deadline header says.
//!
//! Cognito waits at most 5 s for a PostConfirmation trigger, whatever timeout the function is
//! configured with, so the runtime's deadline (`Lambda-Runtime-Deadline-Ms`, epoch
//! milliseconds in AWS) is only ever an upper bound. Emulators differ: cargo-lambda's sends the
//! function's timeout as a *relative* value (`600000`), which read as an epoch time lies in
//! 1970. A deadline that cannot be right — in the past when the invocation arrives, or further
//! away than Lambda's longest timeout — is ignored in favour of Cognito's budget, with one
//! warning.

use std::time::{Duration, Instant};

/// How long Cognito waits for the trigger before it gives up on it.
pub const COGNITO_BUDGET: Duration = Duration::from_secs(5);
/// Lambda's longest function timeout: a deadline further away than this is not a real one.
pub const MAX_FUNCTION_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Why the runtime's deadline was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Implausible {
    /// No deadline (the header was absent: the runtime's context holds 0).
    Absent,
    /// Already past when the invocation arrived (e.g. a relative value read as epoch time).
    Past,
    /// Further away than any Lambda timeout allows.
    TooFar,
}

impl std::fmt::Display for Implausible {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Implausible::Absent => "no runtime deadline",
            Implausible::Past => "the runtime deadline is already past",
            Implausible::TooFar => "the runtime deadline is further away than Lambda's 15 min",
        })
    }
}

/// What an invocation that no one waits on (a queue batch, a sweep, a probe) may work with
/// when the runtime's deadline cannot be right: the function's usual timeout.
pub const FALLBACK_TIMEOUT: Duration = Duration::from_secs(60);

/// The budget of one invocation, measured from its arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Time to work in, the margin already taken off.
    pub work: Duration,
    /// Set when the runtime's deadline was ignored.
    pub ignored: Option<Implausible>,
}

/// The work budget for an invocation that arrived at `now_epoch_ms` with the runtime deadline
/// `deadline_epoch_ms`: the earlier of that deadline and Cognito's 5 s, less `margin`.
pub fn budget(deadline_epoch_ms: u64, now_epoch_ms: u64, margin: Duration) -> Budget {
    capped_budget(deadline_epoch_ms, now_epoch_ms, margin, COGNITO_BUDGET)
}

/// As [`budget`], capped at `cap` instead of Cognito's 5 s.
fn capped_budget(
    deadline_epoch_ms: u64,
    now_epoch_ms: u64,
    margin: Duration,
    cap: Duration,
) -> Budget {
    let runtime_left = if deadline_epoch_ms == 0 {
        Err(Implausible::Absent)
    } else if deadline_epoch_ms <= now_epoch_ms {
        Err(Implausible::Past)
    } else {
        let left = Duration::from_millis(deadline_epoch_ms - now_epoch_ms);
        if left > MAX_FUNCTION_TIMEOUT {
            Err(Implausible::TooFar)
        } else {
            Ok(left)
        }
    };
    let (total, ignored) = match runtime_left {
        Ok(left) => (left.min(cap), None),
        Err(why) => (cap.min(FALLBACK_TIMEOUT), Some(why)),
    };
    Budget {
        work: total.saturating_sub(margin),
        ignored,
    }
}

/// The instant a Cognito trigger works to, for an invocation that arrived at `arrived`; logs
/// one warning when the runtime's deadline had to be ignored.
pub fn work_deadline(deadline_epoch_ms: u64, arrived: Instant, margin: Duration) -> Instant {
    deadline_within(deadline_epoch_ms, arrived, margin, COGNITO_BUDGET)
}

/// The instant an invocation nobody waits on (a queue batch, a sweep) works to: the runtime's
/// deadline less `margin`, or [`FALLBACK_TIMEOUT`] when that deadline cannot be right.
pub fn runtime_deadline(deadline_epoch_ms: u64, arrived: Instant, margin: Duration) -> Instant {
    deadline_within(deadline_epoch_ms, arrived, margin, MAX_FUNCTION_TIMEOUT)
}

fn deadline_within(
    deadline_epoch_ms: u64,
    arrived: Instant,
    margin: Duration,
    cap: Duration,
) -> Instant {
    let now_ms = shared_auth::unix::millis();
    let budget = capped_budget(deadline_epoch_ms, now_ms, margin, cap);
    if let Some(why) = budget.ignored {
        tracing::warn!(
            deadline_ms = deadline_epoch_ms,
            reason = %why,
            budget_ms = budget.work.as_millis() as u64,
            "ignoring the runtime deadline; working to the fallback budget"
        );
    }
    arrived + budget.work
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-19T12:00:00Z in epoch milliseconds, as AWS states deadlines.
    const NOW: u64 = 1_795_089_600_000;
    const MARGIN: Duration = Duration::from_millis(300);

    #[test]
    fn an_aws_deadline_shorter_than_cognitos_budget_is_used() {
        // A function configured with a 3 s timeout.
        let b = budget(NOW + 3_000, NOW, MARGIN);
        assert_eq!(b.work, Duration::from_millis(2_700));
        assert_eq!(b.ignored, None);
    }

    #[test]
    fn an_aws_deadline_longer_than_cognitos_budget_is_capped_at_five_seconds() {
        // The stack's own setting: a 10 s timeout; Cognito still gives up after 5 s.
        let b = budget(NOW + 10_000, NOW, MARGIN);
        assert_eq!(b.work, COGNITO_BUDGET - MARGIN);
        assert_eq!(b.ignored, None);
    }

    #[test]
    fn cargo_lambdas_relative_deadline_falls_back_to_the_cognito_budget() {
        // cargo-lambda 1.x sends `Lambda-Runtime-Deadline-Ms: 600000`.
        let b = budget(600_000, NOW, MARGIN);
        assert_eq!(b.work, COGNITO_BUDGET - MARGIN);
        assert_eq!(b.ignored, Some(Implausible::Past));
    }

    #[test]
    fn an_absent_deadline_falls_back_to_the_cognito_budget() {
        let b = budget(0, NOW, MARGIN);
        assert_eq!(b.work, COGNITO_BUDGET - MARGIN);
        assert_eq!(b.ignored, Some(Implausible::Absent));
    }

    #[test]
    fn a_deadline_already_past_falls_back_to_the_cognito_budget() {
        for deadline in [NOW, NOW - 1, NOW - 60_000] {
            let b = budget(deadline, NOW, MARGIN);
            assert_eq!(b.ignored, Some(Implausible::Past), "{deadline}");
            assert_eq!(b.work, COGNITO_BUDGET - MARGIN);
        }
    }

    #[test]
    fn a_deadline_beyond_lambdas_longest_timeout_falls_back_to_the_cognito_budget() {
        let b = budget(NOW + 15 * 60_000 + 1, NOW, MARGIN);
        assert_eq!(b.ignored, Some(Implausible::TooFar));
        assert_eq!(b.work, COGNITO_BUDGET - MARGIN);
        // Exactly 15 min is still a real (if long) timeout, and is capped by Cognito's budget.
        let b = budget(NOW + 15 * 60_000, NOW, MARGIN);
        assert_eq!(b.ignored, None);
        assert_eq!(b.work, COGNITO_BUDGET - MARGIN);
    }

    #[test]
    fn an_invocation_nobody_waits_on_works_to_the_runtimes_deadline() {
        let b = capped_budget(NOW + 60_000, NOW, MARGIN, MAX_FUNCTION_TIMEOUT);
        assert_eq!(b.work, Duration::from_millis(60_000) - MARGIN);
        let b = capped_budget(600_000, NOW, MARGIN, MAX_FUNCTION_TIMEOUT);
        assert_eq!(
            b.work,
            FALLBACK_TIMEOUT - MARGIN,
            "a relative deadline falls back"
        );
    }

    #[test]
    fn a_deadline_inside_the_margin_leaves_no_time() {
        let b = budget(NOW + 200, NOW, MARGIN);
        assert_eq!(b.work, Duration::ZERO);
        assert_eq!(b.ignored, None);
    }
}
