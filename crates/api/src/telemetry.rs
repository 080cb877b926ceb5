//! Logging: JSON lines in the cloud (CloudWatch), readable lines locally; `RUST_LOG` filters.
//!
//! The lines leave the request path in batches: a logging call appends its line to a shared
//! buffer (a copy under an uncontended lock, no system call, no wake-up) and goes on; a writer
//! thread wakes when the buffer gets its first line, waits [`FLUSH_INTERVAL`] for more, and
//! writes them all to stderr in one call. Under load that is one wake-up and one write per
//! interval instead of one per line (BENCHMARKS.md: a thread hand-off per line cost more than
//! the write it saved). The buffer never drops a line: past [`BUFFERED_BYTES`] a logging call
//! waits for the writer, so memory stays bounded; and the [`LogGuard`] `main` holds writes what
//! is buffered before the process exits, SIGTERM included: the audit line of a registration is
//! never lost to a stop.
//!
//! The functions install theirs in `lambda_support::telemetry`, and the two differ on purpose:
//! the api stamps each line and prints readable lines on a terminal, with `EnvFilter`'s span
//! directives; a function's lines are stamped by Lambda, always JSON, and filtered by `Targets`
//! so no regex engine rides in the zip. One init would make one side carry the other's weight.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Bytes of lines the buffer may hold before a logging call waits for the writer.
pub const BUFFERED_BYTES: usize = 1 << 20;
/// How long the writer gathers lines after the first before writing them: the longest a line
/// waits, and what bounds the writes to one per interval under load.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(50);

/// Keeps the writer thread; dropping it writes every buffered line, then returns.
#[must_use = "dropping the guard at once stops the log's writer"]
#[derive(Debug)]
pub struct LogGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.changed.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Installs the global subscriber. JSON unless `env` is `local` (or `TOLLGATE_LOG_FORMAT=json`).
pub fn init(env: &str) -> LogGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = env != shared_auth::settings::DEFAULT_ENV
        || std::env::var("TOLLGATE_LOG_FORMAT").is_ok_and(|f| f == "json");
    let (stderr, guard) = writer(std::io::stderr(), BUFFERED_BYTES, FLUSH_INTERVAL);
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
    guard
}

/// A writer whose lines a thread writes into `sink` in batches, every `interval` at most once,
/// holding at most about `capacity` bytes unwritten; lossless (a full buffer makes the caller
/// wait, never drops).
pub fn writer<W: Write + Send + 'static>(
    mut sink: W,
    capacity: usize,
    interval: Duration,
) -> (Batched, LogGuard) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        changed: Condvar::new(),
        capacity,
    });
    let writer = shared.clone();
    let thread = std::thread::Builder::new()
        .name("api-log".into())
        .spawn(move || writer.run(&mut sink, interval))
        .expect("the log writer thread starts");
    (
        Batched(shared.clone()),
        LogGuard {
            shared,
            thread: Some(thread),
        },
    )
}

/// The logging side: each line appended to the shared buffer.
#[derive(Debug, Clone)]
pub struct Batched(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Signals the writer (a first line, a full buffer, the end) and waiting callers (room).
    changed: Condvar,
    capacity: usize,
}

#[derive(Debug, Default)]
struct State {
    lines: Vec<u8>,
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `line`, waiting while the buffer is full; wakes the writer for a first line or
    /// a full buffer only.
    fn append(&self, line: &[u8]) {
        let mut state = self.lock();
        while state.lines.len() >= self.capacity && !state.closed {
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        let was_empty = state.lines.is_empty();
        state.lines.extend_from_slice(line);
        let full = state.lines.len() >= self.capacity;
        drop(state);
        if was_empty || full {
            self.changed.notify_all();
        }
    }

    /// The writer thread: wait for a line, gather for `interval` (less if the buffer fills or
    /// the guard is dropped), write the batch; until the guard is dropped and nothing is left.
    fn run(&self, sink: &mut dyn Write, interval: Duration) {
        let mut batch = Vec::new();
        loop {
            let mut state = self.lock();
            while state.lines.is_empty() && !state.closed {
                state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            if !state.closed && state.lines.len() < self.capacity {
                state = self
                    .changed
                    .wait_timeout_while(state, interval, |s| {
                        !s.closed && s.lines.len() < self.capacity
                    })
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            std::mem::swap(&mut batch, &mut state.lines);
            let done = state.closed && batch.is_empty();
            drop(state);
            // Room again for callers waiting on a full buffer.
            self.changed.notify_all();
            if done {
                return;
            }
            let _ = sink.write_all(&batch);
            let _ = sink.flush();
            batch.clear();
        }
    }
}

impl Write for &Batched {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.append(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Write for Batched {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        (&*self).write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Batched {
    type Writer = &'a Batched;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
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

    /// A burst against a stalled sink fills the buffer and then waits: memory holds at most the
    /// buffer and the batch the writer has in hand. Once the sink moves, every line arrives.
    #[test]
    fn a_burst_is_bounded_by_the_buffer_and_loses_no_line() {
        const CAPACITY: usize = 128;
        const BURST: usize = 200;
        let gate = Gate::default();
        let (mut writer, guard) = writer(gate.clone(), CAPACITY, Duration::from_millis(5));
        // Bytes accepted by the writer so far.
        let sent = Arc::new(AtomicUsize::new(0));
        let producer = {
            let sent = sent.clone();
            std::thread::spawn(move || {
                for n in 0..BURST {
                    let line = format!("line {n:03}\n");
                    writer.write_all(line.as_bytes()).expect("write");
                    sent.fetch_add(line.len(), Ordering::SeqCst);
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
        // The buffer (a line may start just below the bound) and the batch in the writer's hand.
        let bound = 2 * (CAPACITY + "line 000\n".len());
        assert!(
            held > 0 && held <= bound,
            "{held} bytes were accepted with the sink stalled and a buffer of {CAPACITY}: \
             unbounded (at most {bound})"
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

    /// Lines written under load reach the sink in a few writes, not one each; and a line
    /// written alone is not held longer than about the interval.
    #[test]
    fn lines_are_written_in_batches_and_a_lone_line_within_the_interval() {
        #[derive(Clone, Default)]
        struct Counting {
            writes: Arc<AtomicUsize>,
            lines: Arc<AtomicUsize>,
        }
        impl Write for Counting {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.writes.fetch_add(1, Ordering::SeqCst);
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
        let sink = Counting::default();
        let (mut writer, guard) = writer(sink.clone(), 1 << 20, Duration::from_millis(50));
        for n in 0..1_000 {
            writer
                .write_all(format!("line {n}\n").as_bytes())
                .expect("write");
        }
        let started = Instant::now();
        while sink.lines.load(Ordering::SeqCst) < 1_000
            && started.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            sink.lines.load(Ordering::SeqCst),
            1_000,
            "every line, without a flush"
        );
        let writes = sink.writes.load(Ordering::SeqCst);
        assert!(writes <= 3, "1,000 lines took {writes} writes: not batched");
        writer.write_all(b"alone\n").expect("write");
        let started = Instant::now();
        while sink.lines.load(Ordering::SeqCst) < 1_001
            && started.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            sink.lines.load(Ordering::SeqCst),
            1_001,
            "a lone line is written within the interval, not held"
        );
        drop(guard);
    }
}
