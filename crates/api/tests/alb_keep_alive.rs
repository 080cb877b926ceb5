//! The api behind the ALB, as AWS documents the pair: the ALB keeps idle connections to its
//! targets open for its idle timeout and reuses them, so the api must keep an idle connection
//! open longer (else a request sent into a connection the api is closing comes back 502),
//! while a client that has *started* a request still gets the header-read limit. Real sockets
//! against the real binary, with the times the shipped staging contract gives it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use shared_auth::Component;

struct Api(Child);

impl Drop for Api {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The staging contract as shipped: the ALB's idle timeout and the api's two limits.
fn staging() -> shared_auth::Settings {
    let vars = [("TOLLGATE_ENV".to_owned(), "staging".to_owned())].into();
    shared_auth::load_for(Component::Deploy, &vars).expect("deploy/staging.toml loads")
}

/// The ALB gets its idle timeout from the contract: infra/edge.tf must pass it through.
fn alb_idle_timeout() -> Duration {
    let edge = include_str!("../../../infra/edge.tf");
    assert!(
        edge.contains("idle_timeout               = var.alb_idle_timeout_s"),
        "infra/edge.tf must set the ALB's idle_timeout from var.alb_idle_timeout_s"
    );
    Duration::from_secs(staging().deploy.alb_idle_timeout_s)
}

async fn start_api() -> (Api, String) {
    let staging = staging();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let child = Command::new(env!("CARGO_BIN_EXE_api"))
        .env("TOLLGATE_ENV", "local")
        .env("DATABASE_URL", fresh_database().await)
        .env("TOLLGATE__API__LISTEN", format!("127.0.0.1:{port}"))
        .env("TOLLGATE_SECRET_CURRENT", CURRENT)
        .env(
            "TOLLGATE__API__KEEP_ALIVE_IDLE_S",
            staging.api.keep_alive_idle_s.to_string(),
        )
        .env(
            "TOLLGATE__API__HEADER_READ_TIMEOUT_MS",
            staging.api.header_read_timeout_ms.to_string(),
        )
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the api binary starts");
    let addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "the api never listened");
        std::thread::sleep(Duration::from_millis(100));
    }
    (Api(child), addr)
}

/// Sends one kept-alive GET and reads its whole response (the body is small and sized).
fn get(stream: &mut TcpStream) -> std::io::Result<String> {
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: api\r\n\r\n")?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&answer);
        if text.contains("\r\n\r\n") && text.ends_with('}') {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

#[tokio::test]
async fn a_connection_idle_past_the_albs_idle_timeout_is_still_answered() {
    let idle = alb_idle_timeout() + Duration::from_secs(2);
    let (_api, addr) = start_api().await;
    let mut stream = TcpStream::connect(&addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let first = get(&mut stream).expect("the first request is answered");
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    // The ALB keeps the connection for reuse; it sends the next request up to its idle
    // timeout later. The api must still be there.
    tokio::time::sleep(idle).await;
    let second = get(&mut stream).unwrap_or_else(|e| format!("(error: {e})"));
    assert!(
        second.starts_with("HTTP/1.1 200"),
        "after {} s idle, a request on the kept-alive connection got {second:?}",
        idle.as_secs()
    );
}

#[tokio::test]
async fn a_client_that_stalls_inside_its_headers_is_cut_at_the_header_read_limit() {
    let limit = Duration::from_millis(staging().api.header_read_timeout_ms);
    let (_api, addr) = start_api().await;
    let mut stream = TcpStream::connect(&addr).expect("connect");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHos")
        .expect("half a header line");
    let started = Instant::now();
    stream
        .set_read_timeout(Some(limit * 2))
        .expect("read timeout");
    let mut buf = [0u8; 64];
    let closed = match stream.read(&mut buf) {
        Ok(0) => true,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        Ok(_) => false,
    };
    assert!(
        closed,
        "a stalled header was still open after {:?} (limit {limit:?})",
        started.elapsed()
    );
    assert!(
        started.elapsed() >= limit / 2,
        "cut after {:?}, well before the {limit:?} limit",
        started.elapsed()
    );
}
