//! Refusals of the guarded route: every one counted, few logged.
//!
//! A forged flood must not become one log line per attacker request: that costs throughput
//! here and turns an attack into a CloudWatch Logs bill. So per reason the first
//! [`Refusals::LOG_PER_WINDOW`] refusals of each window are logged (with the client), the
//! rest only counted, and a summary line says how many were not logged. The counts leave as
//! CloudWatch embedded-metric-format (EMF) lines on stdout, one per reason and flush
//! (`Tollgate/RegistrationRefused`, dimension `Reason`), which CloudWatch turns into metrics
//! without an agent or an API call.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use shared_auth::DenyReason;

use crate::budget::Budget;

/// The metric's name (namespace [`shared_aws::emf::NAMESPACE`], dimensions `Service` and
/// `Reason`, and `Service` alone for the total).
pub const METRIC: &str = "RegistrationRefused";

/// Counts and (boundedly) logs refusals by reason.
#[derive(Debug)]
pub struct Refusals {
    log: Budget<&'static str>,
    /// Refusals not yet reported as a metric, by reason.
    unreported: Mutex<BTreeMap<&'static str, u64>>,
}

impl Default for Refusals {
    fn default() -> Self {
        Self::new(Self::WINDOW)
    }
}

impl Refusals {
    /// Logged refusals per reason per window.
    pub const LOG_PER_WINDOW: u32 = 5;
    /// The log window, and how often the metrics are flushed.
    pub const WINDOW: Duration = Duration::from_secs(60);

    pub fn new(window: Duration) -> Self {
        Self {
            log: Budget::new(window),
            unreported: Mutex::new(BTreeMap::new()),
        }
    }

    /// Counts one refusal; logs it unless this reason's window already logged its share.
    pub fn record(&self, reason: DenyReason, client: Option<IpAddr>) {
        let code = reason.code();
        *self
            .unreported
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(code)
            .or_default() += 1;
        let admit = self.log.admit(code, Self::LOG_PER_WINDOW);
        if let Some(n) = admit.not_logged_before {
            not_logged_summary(code, n);
        }
        if admit.log {
            tracing::warn!(
                deny_reason = code,
                client = client
                    .map(|c| c.to_string())
                    .as_deref()
                    .unwrap_or("unknown"),
                "registration refused"
            );
        }
    }

    /// The counts since the last flush as EMF lines (one per reason with refusals), and a
    /// summary log line for refusals not logged. Resets the counts.
    pub fn flush(&self) -> Vec<String> {
        for (code, not_logged) in self.log.take_not_logged() {
            not_logged_summary(code, not_logged);
        }
        let counts =
            std::mem::take(&mut *self.unreported.lock().unwrap_or_else(|e| e.into_inner()));
        counts
            .into_iter()
            .filter(|(_, count)| *count > 0)
            .map(|(code, count)| emf_line(code, count))
            .collect()
    }

    /// Flushes to stdout (where the awslogs driver and Lambda pick EMF up).
    pub fn flush_to_stdout(&self) {
        let lines = self.flush();
        if lines.is_empty() {
            return;
        }
        let mut out = std::io::stdout().lock();
        for line in lines {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
    }
}

fn not_logged_summary(code: &'static str, not_logged: u64) {
    tracing::warn!(
        deny_reason = code,
        not_logged,
        "registration refusals counted but not logged (flood bound)"
    );
}

/// Each count under `{Service, Reason}` and under `{Service}`: the refusal alarm
/// (`infra/alarms.tf`) watches the total of every reason.
fn emf_line(code: &str, count: u64) -> String {
    use shared_aws::emf;
    emf::line_with(
        "api",
        ("Reason", code),
        &[(METRIC, count, "Count")],
        emf::Sets::WithServiceTotal,
        shared_auth::unix::millis(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total(lines: &[String], reason: &str) -> u64 {
        lines
            .iter()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("EMF is JSON"))
            .filter(|v| v["Reason"] == reason)
            .map(|v| v[METRIC].as_u64().expect("count"))
            .sum()
    }

    #[test]
    fn every_refusal_is_counted_once_by_reason() {
        let refusals = Refusals::default();
        for _ in 0..250 {
            refusals.record(DenyReason::SignatureMismatch, None);
        }
        refusals.record(
            DenyReason::SourceNotAllowed,
            Some("203.0.113.9".parse().expect("ip")),
        );
        let lines = refusals.flush();
        assert_eq!(total(&lines, "signature_mismatch"), 250);
        assert_eq!(total(&lines, "source_not_allowed"), 1);
        assert!(refusals.flush().is_empty(), "a flush resets the counts");
    }

    #[test]
    fn a_new_window_logs_again_and_every_refusal_is_still_counted() {
        let refusals = Refusals::new(Duration::from_millis(1));
        for _ in 0..20 {
            refusals.record(DenyReason::SignatureMismatch, None);
        }
        std::thread::sleep(Duration::from_millis(5));
        refusals.record(DenyReason::SignatureMismatch, None);
        assert_eq!(total(&refusals.flush(), "signature_mismatch"), 21);
    }
}
