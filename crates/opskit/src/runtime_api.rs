//! A local implementation of the AWS Lambda Runtime API (the `2018-06-01` interface a custom
//! runtime's `bootstrap` talks to), so the real binary can run here as it runs in Lambda.
//!
//! Standard library only; used by the Lambda functions' tests and by `cargo xtask` (`up`,
//! `reconcile`, `rotate-secret` on a local AWS, `bench`). Why not axum, which testkit already
//! has: `next` is a long poll answered when another thread calls [`RuntimeApi::invoke`], and
//! the callers invoke from blocking code (`spawn_blocking`, plain threads, xtask's synchronous
//! tasks). A std server with a `Condvar` serves them whatever async runtime they are in, or
//! none; the protocol is four routes of plain HTTP/1.1, which the post-confirm binary's own
//! `lambda_runtime` client exercises on every test.
//!
//! Served routes: `GET /2018-06-01/runtime/invocation/next` (long-polls until [`RuntimeApi::invoke`]
//! queues an event), `POST …/invocation/{id}/response`, `POST …/invocation/{id}/error`,
//! `POST /2018-06-01/runtime/init/error`.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How an invocation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The function's result (the JSON it returned).
    Response(String),
    /// The function's error report (the JSON the runtime posted).
    Error(String),
    /// Nothing came back in time.
    TimedOut,
}

struct Pending {
    id: String,
    payload: String,
    deadline_ms: u64,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Pending>,
    results: HashMap<String, Outcome>,
    init_error: Option<String>,
    next_polls: u32,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    /// How far the host's clock runs ahead of this machine's, in milliseconds.
    clock_ahead_ms: std::sync::atomic::AtomicU64,
}

/// A running Runtime API on a loopback port; it serves until the process ends. Clones speak
/// to the same one (a handle for another thread).
#[derive(Clone)]
pub struct RuntimeApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    counter: Arc<Mutex<u64>>,
}

impl std::fmt::Debug for RuntimeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeApi")
            .field("addr", &self.addr)
            .finish()
    }
}

impl RuntimeApi {
    pub fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let accept_shared = shared.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let shared = accept_shared.clone();
                std::thread::spawn(move || serve_connection(stream, &shared));
            }
        });
        Ok(Self {
            addr,
            shared,
            counter: Arc::new(Mutex::new(0)),
        })
    }

    /// The value for `AWS_LAMBDA_RUNTIME_API`.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// The environment a Lambda execution environment gives a custom runtime.
    pub fn lambda_env(&self, function_name: &str) -> Vec<(String, String)> {
        [
            ("AWS_LAMBDA_RUNTIME_API", self.address()),
            ("AWS_LAMBDA_FUNCTION_NAME", function_name.to_owned()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".to_owned()),
            (
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{function_name}"),
            ),
            ("AWS_LAMBDA_LOG_STREAM_NAME", "local".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Runs the clock the deadlines are told by `by` ahead of this machine's: the Runtime API
    /// of a Lambda host whose clock is off (it and the function share the host's clock).
    pub fn set_clock_ahead(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.shared
            .clock_ahead_ms
            .store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// Queues `payload` for the function with `budget` to run, and waits (up to `budget` plus a
    /// second) for its outcome.
    pub fn invoke(&self, payload: &str, budget: Duration) -> Outcome {
        let id = {
            let mut n = self.counter.lock().expect("counter");
            *n += 1;
            format!("00000000-0000-4000-8000-{:012}", *n)
        };
        let now_ms = shared_auth::unix::millis().saturating_add(
            self.shared
                .clock_ahead_ms
                .load(std::sync::atomic::Ordering::Relaxed),
        );
        let mut state = self.shared.state.lock().expect("state");
        state.queue.push_back(Pending {
            id: id.clone(),
            payload: payload.to_owned(),
            deadline_ms: now_ms + budget.as_millis() as u64,
        });
        self.shared.changed.notify_all();
        let give_up = Instant::now() + budget + Duration::from_secs(1);
        loop {
            if let Some(outcome) = state.results.remove(&id) {
                return outcome;
            }
            let left = give_up.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Outcome::TimedOut;
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, left)
                .expect("state")
                .0;
        }
    }

    /// What the runtime reported through `/runtime/init/error`, if anything.
    pub fn init_error(&self) -> Option<String> {
        self.shared.state.lock().expect("state").init_error.clone()
    }

    /// How many times the functions have asked for work so far (each poll of
    /// `/invocation/next`; a started process polls once when ready).
    pub fn polls(&self) -> u32 {
        self.shared.state.lock().expect("state").next_polls
    }

    /// Waits until the function has asked for work `count` times (it is ready).
    pub fn wait_for_polls(&self, count: u32, timeout: Duration) -> bool {
        let give_up = Instant::now() + timeout;
        let mut state = self.shared.state.lock().expect("state");
        while state.next_polls < count {
            let left = give_up.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, left)
                .expect("state")
                .0;
        }
        true
    }
}

struct HttpRequest {
    method: String,
    path: String,
    body: String,
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<HttpRequest> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut length = 0usize;
    let mut chunked = false;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let name = name.trim().to_ascii_lowercase();
            let value = value.trim();
            if name == "content-length" {
                length = value.parse().ok()?;
            } else if name == "transfer-encoding" && value.eq_ignore_ascii_case("chunked") {
                chunked = true;
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).ok()?;
            let size = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).ok()?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        body.resize(length, 0);
        reader.read_exact(&mut body).ok()?;
    }
    Some(HttpRequest {
        method,
        path,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn respond(
    stream: &mut TcpStream,
    status: &str,
    headers: &[(String, String)],
    body: &str,
) -> std::io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    stream.write_all(out.as_bytes())
}

fn serve_connection(stream: TcpStream, shared: &Shared) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    while let Some(request) = read_request(&mut reader) {
        const BASE: &str = "/2018-06-01/runtime";
        let route = request.path.strip_prefix(BASE).unwrap_or("");
        let result = match (request.method.as_str(), route) {
            ("GET", "/invocation/next") => {
                let mut state = shared.state.lock().expect("state");
                state.next_polls += 1;
                shared.changed.notify_all();
                let pending = loop {
                    if let Some(p) = state.queue.pop_front() {
                        break p;
                    }
                    state = shared.changed.wait(state).expect("state");
                };
                drop(state);
                let headers = vec![
                    (
                        "Lambda-Runtime-Aws-Request-Id".to_owned(),
                        pending.id.clone(),
                    ),
                    (
                        "Lambda-Runtime-Deadline-Ms".to_owned(),
                        pending.deadline_ms.to_string(),
                    ),
                    (
                        "Lambda-Runtime-Invoked-Function-Arn".to_owned(),
                        "arn:aws:lambda:ap-northeast-1:000000000000:function:post-confirm"
                            .to_owned(),
                    ),
                    (
                        "Lambda-Runtime-Trace-Id".to_owned(),
                        "Root=1-00000000-000000000000000000000000;Sampled=0".to_owned(),
                    ),
                ];
                respond(&mut writer, "200 OK", &headers, &pending.payload)
            }
            ("POST", "/init/error") => {
                shared.state.lock().expect("state").init_error = Some(request.body);
                shared.changed.notify_all();
                respond(&mut writer, "202 Accepted", &[], r#"{"status":"OK"}"#)
            }
            ("POST", r) if r.starts_with("/invocation/") => {
                let rest = &r["/invocation/".len()..];
                let outcome = match rest.rsplit_once('/') {
                    Some((id, "response")) => {
                        Some((id.to_owned(), Outcome::Response(request.body)))
                    }
                    Some((id, "error")) => Some((id.to_owned(), Outcome::Error(request.body))),
                    _ => None,
                };
                match outcome {
                    Some((id, outcome)) => {
                        shared
                            .state
                            .lock()
                            .expect("state")
                            .results
                            .insert(id, outcome);
                        shared.changed.notify_all();
                        respond(&mut writer, "202 Accepted", &[], r#"{"status":"OK"}"#)
                    }
                    None => respond(&mut writer, "404 Not Found", &[], "{}"),
                }
            }
            _ => respond(&mut writer, "404 Not Found", &[], "{}"),
        };
        if result.is_err() {
            return;
        }
    }
}
