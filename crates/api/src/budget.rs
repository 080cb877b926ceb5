//! A log budget: per key (a refusal's reason, a response's status), the first `share` events
//! of each window are logged and the rest only counted, with a summary of how many were not.
//! It is what keeps the log of any flood bounded: a few lines per key per window, whatever
//! the attacker sends.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct Tally {
    window_start: Option<Instant>,
    logged: u32,
    /// Events not logged since the last summary.
    not_logged: u64,
}

/// Whether to log one event, and how many of the key's events the window that just ended did
/// not log (to be summarised now).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admit {
    pub log: bool,
    pub not_logged_before: Option<u64>,
}

#[derive(Debug)]
pub struct Budget<K> {
    window: Duration,
    tallies: Mutex<BTreeMap<K, Tally>>,
}

impl<K: Ord + Copy> Budget<K> {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            tallies: Mutex::new(BTreeMap::new()),
        }
    }

    /// Counts one event of `key`; it is logged while the key's window has logged fewer than
    /// `share`.
    pub fn admit(&self, key: K, share: u32) -> Admit {
        let now = Instant::now();
        let mut tallies = self.tallies.lock().unwrap_or_else(|e| e.into_inner());
        let tally = tallies.entry(key).or_default();
        let mut not_logged_before = None;
        if tally
            .window_start
            .is_none_or(|start| now.duration_since(start) >= self.window)
        {
            not_logged_before = Some(std::mem::take(&mut tally.not_logged)).filter(|n| *n > 0);
            tally.window_start = Some(now);
            tally.logged = 0;
        }
        let log = tally.logged < share;
        if log {
            tally.logged += 1;
        } else {
            tally.not_logged += 1;
        }
        Admit {
            log,
            not_logged_before,
        }
    }

    /// Every key's events not logged since its last summary; resets them.
    pub fn take_not_logged(&self) -> Vec<(K, u64)> {
        let mut tallies = self.tallies.lock().unwrap_or_else(|e| e.into_inner());
        tallies
            .iter_mut()
            .map(|(k, t)| (*k, std::mem::take(&mut t.not_logged)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_logs_its_share_per_window_and_counts_the_rest() {
        let budget = Budget::new(Duration::from_secs(3600));
        let logged = (0..100).filter(|_| budget.admit(404u16, 5).log).count();
        assert_eq!(logged, 5);
        assert!(budget.admit(200u16, 5).log, "another key has its own share");
        assert_eq!(budget.take_not_logged(), [(404, 95)]);
        assert!(budget.take_not_logged().is_empty());
    }

    #[test]
    fn a_new_window_logs_again_and_reports_the_old_windows_count() {
        let budget = Budget::new(Duration::from_millis(1));
        for _ in 0..20 {
            budget.admit("k", 1);
        }
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(
            budget.admit("k", 1),
            Admit {
                log: true,
                not_logged_before: Some(19)
            }
        );
    }
}
