//! A connection's two time limits, each where it belongs.
//!
//! - **Headers.** From a request's first byte (or, for a new connection, from the accept) to
//!   the blank line that ends its headers: `api.header_read_timeout_ms`. A client that starts
//!   a request and stalls, or trickles its headers, is cut there.
//! - **Idle keep-alive.** Between a response and the next request's first byte:
//!   `api.keep_alive_idle_s`, longer than the ALB's idle timeout. The ALB reuses idle
//!   connections to its targets and closes them itself after its own timeout; were the api to
//!   close first, a request the ALB sends into the closing connection would come back 502.
//!
//! hyper has one timer for both (it restarts its header timeout when a connection goes idle),
//! so it is switched off and this wrapper keeps the two apart. It sees bytes, not requests: a
//! request starts with the first byte read after a response was written, and its headers end
//! at the first empty line (`\r\n\r\n`, or `\n\n` as httparse also accepts). What follows the
//! headers (the body) is under the request timeout, not these.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::rt::{Read, ReadBufCursor, Write};
use tokio::time::{Instant, Sleep};

/// The limits one connection is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub header_read: Duration,
    pub keep_alive_idle: Duration,
}

/// Where a connection is between requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading a request's headers; `line` tracks the empty line that ends them.
    Headers { line: LineState },
    /// Headers read: the body and the handler run under the request timeout.
    Body,
    /// A response went out; waiting for the next request's first byte.
    Idle,
}

/// Progress towards an empty line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineState {
    InLine,
    AtLineStart,
    CrAtLineStart,
}

impl LineState {
    /// Feeds `bytes`; `Some(())` once an empty line has been read.
    fn feed(&mut self, bytes: &[u8]) -> Option<()> {
        for &b in bytes {
            *self = match (b, *self) {
                (b'\n', LineState::AtLineStart | LineState::CrAtLineStart) => return Some(()),
                (b'\n', _) => LineState::AtLineStart,
                (b'\r', LineState::AtLineStart) => LineState::CrAtLineStart,
                _ => LineState::InLine,
            };
        }
        None
    }
}

/// `io` held to `limits`. Reads fail with `TimedOut` once the current limit passes, which
/// makes hyper close the connection.
#[derive(Debug)]
pub struct Timed<IO> {
    io: IO,
    limits: Limits,
    phase: Phase,
    /// When the current phase's limit passes; `None` while no limit applies (`Body`).
    timer: Option<Pin<Box<Sleep>>>,
}

impl<IO> Timed<IO> {
    /// A new connection: its first request's headers are due within the header limit.
    pub fn new(io: IO, limits: Limits) -> Self {
        Self {
            io,
            limits,
            phase: Phase::Headers {
                line: LineState::InLine,
            },
            timer: Some(Box::pin(tokio::time::sleep(limits.header_read))),
        }
    }

    fn arm(&mut self, after: Duration) {
        let deadline = Instant::now() + after;
        match &mut self.timer {
            Some(timer) => timer.as_mut().reset(deadline),
            None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
    }

    fn received(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.phase == Phase::Idle {
            self.phase = Phase::Headers {
                line: LineState::InLine,
            };
            self.arm(self.limits.header_read);
        }
        if let Phase::Headers { line } = &mut self.phase
            && line.feed(bytes).is_some()
        {
            self.phase = Phase::Body;
            self.timer = None;
        }
    }

    fn sent(&mut self, cx: &mut Context<'_>) {
        self.phase = Phase::Idle;
        // Every write restarts the idle clock: the client waits while a response goes out.
        self.arm(self.limits.keep_alive_idle);
        // hyper may not read again until something wakes it: the timer must, so it is polled
        // here, with the connection's waker, and not only from a read that found nothing.
        if let Some(timer) = &mut self.timer {
            let _ = timer.as_mut().poll(cx);
        }
    }

    /// `Ready` with the error that closes the connection once the current limit passed.
    fn expired(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let passed = self
            .timer
            .as_mut()
            .is_some_and(|timer| timer.as_mut().poll(cx).is_ready());
        if !passed {
            return Poll::Pending;
        }
        let what = match self.phase {
            Phase::Idle => "idle keep-alive",
            _ => "request headers",
        };
        Poll::Ready(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{what} time limit passed"),
        ))
    }
}

impl<IO: Read + Unpin> Read for Timed<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        // Read into a scratch buffer first, so the bytes can be seen (hyper's cursor only
        // reports how much it was filled, not what with).
        let mut scratch = [0u8; 8 * 1024];
        let capacity = buf.remaining().min(scratch.len());
        let mut read = hyper::rt::ReadBuf::new(&mut scratch[..capacity]);
        match Pin::new(&mut self.io).poll_read(cx, read.unfilled()) {
            Poll::Ready(Ok(())) => {
                let n = read.filled().len();
                buf.put_slice(read.filled());
                self.received(&scratch[..n]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match self.expired(cx) {
                Poll::Ready(e) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<IO: Write + Unpin> Write for Timed<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.sent(cx);
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.sent(cx);
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ends(chunks: &[&[u8]]) -> bool {
        let mut line = LineState::InLine;
        chunks.iter().any(|c| line.feed(c).is_some())
    }

    #[test]
    fn the_empty_line_ending_headers_is_found_across_reads() {
        assert!(ends(&[b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"]));
        assert!(ends(&[b"GET / HTTP/1.1\r\nHost: a\r", b"\n", b"\r", b"\n"]));
        assert!(ends(&[b"GET / HTTP/1.1\nHost: a\n\n"]));
        assert!(!ends(&[b"GET / HTTP/1.1\r\nHost: a\r\n"]));
        assert!(!ends(&[b"GET / HTTP/1.1\r\nX: \r\r\n"]));
        assert!(!ends(&[b"GET / HTTP/1.1\r\nX: a\r\n\r", b"X"]));
    }
}
