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
use std::time::{Duration, Instant};

use shared_auth::DenyReason;

/// The metric's name (namespace [`shared_auth::emf::NAMESPACE`], dimension `Reason`).
pub const METRIC: &str = "RegistrationRefused";

#[derive(Debug, Default)]
struct Tally {
    window_start: Option<Instant>,
    logged: u32,
    /// Refusals not logged since the last summary.
    not_logged: u64,
    /// Refusals not yet reported as a metric.
    unreported: u64,
}

/// Counts and (boundedly) logs refusals by reason.
#[derive(Debug)]
pub struct Refusals {
    window: Duration,
    tallies: Mutex<BTreeMap<&'static str, Tally>>,
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
            window,
            tallies: Mutex::new(BTreeMap::new()),
        }
    }

    /// Counts one refusal; logs it unless this reason's window already logged its share.
    pub fn record(&self, reason: DenyReason, client: Option<IpAddr>) {
        let code = reason.code();
        let now = Instant::now();
        let (log, summary) = {
            let mut tallies = self.tallies.lock().unwrap_or_else(|e| e.into_inner());
            let tally = tallies.entry(code).or_default();
            tally.unreported += 1;
            let mut summary = None;
            if tally
                .window_start
                .is_none_or(|start| now.duration_since(start) >= self.window)
            {
                summary = Some(std::mem::take(&mut tally.not_logged)).filter(|n| *n > 0);
                tally.window_start = Some(now);
                tally.logged = 0;
            }
            let log = tally.logged < Self::LOG_PER_WINDOW;
            if log {
                tally.logged += 1;
            } else {
                tally.not_logged += 1;
            }
            (log, summary)
        };
        if let Some(n) = summary {
            not_logged_summary(code, n);
        }
        if log {
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
        let taken: Vec<(&'static str, u64, u64)> = {
            let mut tallies = self.tallies.lock().unwrap_or_else(|e| e.into_inner());
            tallies
                .iter_mut()
                .map(|(code, t)| {
                    (
                        *code,
                        std::mem::take(&mut t.unreported),
                        std::mem::take(&mut t.not_logged),
                    )
                })
                .collect()
        };
        let mut lines = Vec::new();
        for (code, count, not_logged) in taken {
            if not_logged > 0 {
                not_logged_summary(code, not_logged);
            }
            if count > 0 {
                lines.push(emf_line(code, count));
            }
        }
        lines
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

fn emf_line(code: &str, count: u64) -> String {
    shared_auth::emf::line("api", ("Reason", code), &[(METRIC, count, "Count")])
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
    fn a_new_window_logs_again() {
        let refusals = Refusals::new(Duration::from_millis(1));
        for _ in 0..20 {
            refusals.record(DenyReason::SignatureMismatch, None);
        }
        std::thread::sleep(Duration::from_millis(5));
        refusals.record(DenyReason::SignatureMismatch, None);
        let tallies = refusals.tallies.lock().expect("lock");
        let tally = &tallies["signature_mismatch"];
        assert_eq!(tally.logged, 1, "the new window starts its own share");
        assert_eq!(
            tally.not_logged, 0,
            "the old window's count went to its summary"
        );
        assert_eq!(tally.unreported, 21);
    }
}
