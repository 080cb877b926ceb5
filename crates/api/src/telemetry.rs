//! Logging: JSON lines in the cloud (CloudWatch), readable lines locally; `RUST_LOG` filters.
//!
//! The lines leave the request path: a handler hands its line to a writer thread through a
//! bounded queue ([`BUFFERED_LINES`]) and goes on; the thread writes to stderr. The queue never
//! drops a line (a burst beyond it makes the logging call wait, so memory stays bounded), and
//! the [`LogGuard`] `main` holds writes what is queued before the process exits, SIGTERM
//! included: the audit line of a registration is never lost to a stop.
//!
//! The functions install theirs in `lambda_support::telemetry`, and the two differ on purpose:
//! the api stamps each line and prints readable lines on a terminal, with `EnvFilter`'s span
//! directives; a function's lines are stamped by Lambda, always JSON, and filtered by `Targets`
//! so no regex engine rides in the zip. One init would make one side carry the other's weight.

use std::io::Write;

use tracing_appender::non_blocking::{NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

/// Lines the writer thread may hold before a logging call waits for it.
pub const BUFFERED_LINES: usize = 8_192;

/// Keeps the writer thread; dropping it writes every queued line, then returns.
#[must_use = "dropping the guard at once stops the log's writer"]
#[derive(Debug)]
pub struct LogGuard {
    _writer: WorkerGuard,
}

/// Installs the global subscriber. JSON unless `env` is `local` (or `TOLLGATE_LOG_FORMAT=json`).
pub fn init(env: &str) -> LogGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = env != shared_auth::settings::DEFAULT_ENV
        || std::env::var("TOLLGATE_LOG_FORMAT").is_ok_and(|f| f == "json");
    let (stderr, guard) = writer(std::io::stderr(), BUFFERED_LINES);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let result = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.try_init()
    };
    // Already installed (tests build several apps in one process): keep the first.
    let _ = result;
    LogGuard { _writer: guard }
}

/// A writer that hands each line to a thread writing into `sink`, holding at most `lines`
/// unwritten; lossless (a full queue makes the caller wait, never drops).
pub fn writer<W: Write + Send + 'static>(sink: W, lines: usize) -> (NonBlocking, WorkerGuard) {
    NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(lines)
        .thread_name("api-log")
        .finish(sink)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Condvar, Mutex};
    use std::time::{Duration, Instant};

    use super::*;

    /// A sink that holds every write until it is opened, counting the lines it got.
    #[derive(Clone, Default)]
    struct Gate {
        open: Arc<(Mutex<bool>, Condvar)>,
        lines: Arc<AtomicUsize>,
    }

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let (open, opened) = &*self.open;
            let guard = open.lock().expect("gate");
            drop(opened.wait_while(guard, |open| !*open).expect("gate"));
            self.lines.fetch_add(
                buf.iter().filter(|b| **b == b'\n').count(),
                Ordering::SeqCst,
            );
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A burst against a stalled sink fills the queue and then waits: memory holds at most the
    /// limit (and the line the writer has in hand). Once the sink moves, every line arrives.
    #[test]
    fn a_burst_is_bounded_by_the_queue_and_loses_no_line() {
        const LIMIT: usize = 16;
        const BURST: usize = 200;
        let gate = Gate::default();
        let (mut writer, guard) = writer(gate.clone(), LIMIT);
        let sent = Arc::new(AtomicUsize::new(0));
        let producer = {
            let sent = sent.clone();
            std::thread::spawn(move || {
                for n in 0..BURST {
                    writer
                        .write_all(format!("line {n}\n").as_bytes())
                        .expect("write");
                    sent.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        // Wait (bounded) until the producer stops advancing against the stalled sink.
        let (mut last, mut still_since) = (usize::MAX, Instant::now());
        let give_up = Instant::now() + Duration::from_secs(10);
        while Instant::now() < give_up && still_since.elapsed() < Duration::from_millis(300) {
            let now = sent.load(Ordering::SeqCst);
            if now != last {
                (last, still_since) = (now, Instant::now());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let held = sent.load(Ordering::SeqCst);
        assert!(
            held <= LIMIT + 1,
            "{held} lines were accepted with the sink stalled and a queue of {LIMIT}: unbounded"
        );
        let (open, opened) = &*gate.open;
        *open.lock().expect("gate") = true;
        opened.notify_all();
        producer
            .join()
            .expect("the producer ends once the sink moves");
        drop(guard);
        assert_eq!(
            gate.lines.load(Ordering::SeqCst),
            BURST,
            "every line reaches the sink"
        );
    }
}
