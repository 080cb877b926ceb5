//! The one checklist printer: a ✓/✗ line per check, names aligned, failures counted. `up` and
//! `verify` both report through it, so their tables read alike.

use anyhow::Result;
use opskit::cmd;

#[derive(Debug, Default)]
pub struct Report {
    checks: Vec<(String, Result<String>)>,
    /// Print each check as it is recorded (long flows show progress), not only in the table.
    live: bool,
}

impl Report {
    /// A report that also prints each check as it is recorded.
    #[cfg(feature = "local")]
    pub fn live() -> Self {
        Self {
            checks: Vec::new(),
            live: true,
        }
    }

    pub fn record(&mut self, name: &str, result: Result<String>) {
        if self.live {
            eprintln!("  {} {name}: {}", mark(result.is_ok()), detail(&result));
        }
        self.checks.push((name.to_owned(), result));
    }

    /// Prints the aligned table on stdout.
    pub fn print(&self) {
        let width = self
            .checks
            .iter()
            .map(|(n, _)| n.chars().count())
            .max()
            .unwrap_or(0);
        println!();
        for (name, result) in &self.checks {
            println!(
                "{}  {name:<width$}  {}",
                mark(result.is_ok()),
                detail(result)
            );
        }
    }

    pub fn failures(&self) -> usize {
        self.checks.iter().filter(|(_, r)| r.is_err()).count()
    }
}

fn mark(ok: bool) -> String {
    if ok {
        cmd::paint("32", "✓")
    } else {
        cmd::paint("31", "✗")
    }
}

fn detail(result: &Result<String>) -> String {
    match result {
        Ok(detail) => detail.clone(),
        Err(e) => format!("{e:#}"),
    }
}
