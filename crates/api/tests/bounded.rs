//! What hostile traffic can make the real api binary hold, measured on the process: its log
//! for a flood of any status and any method, its memory for a thousand connections sending
//! huge unfinished headers, and its open connections past `api.max_connections`. Counts and
//! bytes, not times.

use std::path::PathBuf;
use std::time::Duration;

use crate::common::*;
use testkit::process::Process;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The api binary on a fresh database, logging JSON to a file; `extra` settings added.
struct Api {
    process: Process,
    base: String,
    addr: String,
    log: PathBuf,
}

impl Api {
    async fn start(label: &str, extra: &[(&str, &str)]) -> Api {
        let port = testkit::services::free_port().expect("port");
        let dir = std::env::temp_dir().join(format!(
            "tollgate-bounded-{label}-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).expect("dir");
        let log = dir.join("api.log");
        let mut env: Vec<(String, String)> = [
            ("TOLLGATE_ENV", "local".to_owned()),
            ("TOLLGATE_LOG_FORMAT", "json".to_owned()),
            ("RUST_LOG", "info".to_owned()),
            ("DATABASE_URL", fresh_database().await),
            ("TOLLGATE_SECRET_CURRENT", CURRENT.to_owned()),
            ("TOLLGATE__API__LISTEN", format!("127.0.0.1:{port}")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let mut process = Process::start(
            "api",
            std::path::Path::new(env!("CARGO_BIN_EXE_api")),
            &env,
            &log,
        )
        .expect("the api starts");
        let base = format!("http://127.0.0.1:{port}");
        process
            .wait_ready(&reqwest::Client::new(), &format!("{base}/healthz"))
            .await
            .expect("the api is ready");
        Api {
            process,
            base,
            addr: format!("127.0.0.1:{port}"),
            log,
        }
    }

    fn pid(&self) -> u32 {
        self.process.id().expect("running")
    }

    /// Resident memory, in bytes, from `/proc`.
    fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("/proc/<pid>/status (Linux)");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmRSS")
            * 1024
    }

    /// Open TCP sockets of the process (listener, database, clients).
    fn sockets(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("/proc/<pid>/fd")
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|target| target.to_string_lossy().starts_with("socket:"))
            .count()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// One raw request on a fresh connection; the status, or 0 when the connection was closed
/// without an answer.
async fn raw_status(addr: &str, request: &[u8]) -> u16 {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    if stream.write_all(request).await.is_err() {
        return 0;
    }
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    String::from_utf8_lossy(&response)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Before, the method was logged verbatim and 404/405 responses were outside any bound: 200
/// requests with a 16 KB method added 3.1 MB of log, one line 420 KB. Now the method is one
/// of HTTP's or `OTHER`, and every status logs a bounded share per window plus a count.
#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_any_status_and_any_method_keeps_the_log_bounded() {
    let api = Api::start("log", &[]).await;
    let before = api.log_text().len();
    let long_method = "X".repeat(16 * 1024);
    let mut statuses = std::collections::BTreeMap::new();
    for i in 0..200 {
        let requests = [
            format!("{long_method} /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
            format!("GET /nope/{i} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
            "DELETE /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_owned(),
        ];
        for request in requests {
            *statuses
                .entry(raw_status(&api.addr, request.as_bytes()).await)
                .or_insert(0) += 1;
        }
    }
    assert_eq!(statuses.get(&404), Some(&200), "{statuses:?}");
    assert!(statuses.get(&405) >= Some(&200), "{statuses:?}");
    let log = api.log_text();
    let added = &log[before..];
    let longest = added.lines().map(str::len).max().unwrap_or(0);
    eprintln!(
        "600 hostile requests added {} bytes of log; the longest line {longest} bytes",
        added.len()
    );
    assert!(
        !added.contains(&long_method[..64]),
        "the method is never echoed"
    );
    assert!(longest < 1_024, "a line of {longest} bytes");
    let access_lines = added.matches("finished processing request").count();
    assert!(
        access_lines <= 2 * 20 + 2,
        "{access_lines} access-log lines for 600 error responses (a share of 20 per status)"
    );
    assert!(added.len() < 64 * 1024, "{} bytes of log", added.len());
}

/// 1,000 connections each sending ~400 KB of headers that never end. Before the cap on a
/// head's bytes, RSS rose by about 300 MB within a second (the task has 512 MB). Each is
/// now answered 431 and closed at `api.max_header_bytes`: RSS stays within what
/// `capacity::connection_memory_bytes` allows for them, and `/healthz` answers throughout.
#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_connections_with_huge_unfinished_headers_hold_bounded_memory() {
    const CONNECTIONS: u32 = 1_000;
    const PADDING: usize = 400 * 1024;
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(
        open_files >= 2 * u64::from(CONNECTIONS) + 500,
        "this test opens {CONNECTIONS} connections; the open-file limit is {open_files}: raise it (ulimit -n 4096)"
    );
    let api = Api::start("memory", &[]).await;
    let settings = shared_auth::load_for(shared_auth::Component::Api, &Default::default())
        .expect("local settings");
    let bound = shared_auth::settings::capacity::connection_memory_bytes(
        CONNECTIONS,
        settings.api.max_header_bytes,
    );
    let baseline = api.rss();

    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let mut attackers = tokio::task::JoinSet::new();
    for _ in 0..CONNECTIONS {
        let addr = api.addr.clone();
        let release = release.clone();
        attackers.spawn(async move {
            let Ok(mut stream) = TcpStream::connect(&addr).await else {
                return;
            };
            let chunk = vec![b'a'; 16 * 1024];
            if stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: ")
                .await
                .is_err()
            {
                return;
            }
            for _ in 0..PADDING / chunk.len() {
                if stream.write_all(&chunk).await.is_err() {
                    break;
                }
            }
            release.notified().await;
        });
    }
    let mut peak = baseline;
    let http = reqwest::Client::new();
    let mut served = 0;
    for _ in 0..100 {
        peak = peak.max(api.rss());
        let ok = http
            .get(format!("{}/healthz", api.base))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        served += usize::from(ok);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    peak = peak.max(api.rss());
    release.notify_waiters();
    while attackers.join_next().await.is_some() {}
    let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
    eprintln!(
        "RSS {:.1} MB before, {:.1} MB at the peak of {CONNECTIONS} × {} KB unfinished heads (bound +{:.1} MB)",
        mb(baseline),
        mb(peak),
        PADDING / 1024,
        mb(bound)
    );
    assert_eq!(
        served, 100,
        "legitimate requests answered during the attack"
    );
    assert!(
        peak.saturating_sub(baseline) <= bound,
        "RSS grew by {:.1} MB, more than the {:.1} MB bound",
        mb(peak - baseline),
        mb(bound)
    );
}

/// Past `api.max_connections`, connections wait in the listen backlog instead of being
/// served: the process never holds more client sockets than the cap, however many arrive.
#[tokio::test(flavor = "multi_thread")]
async fn connections_past_the_cap_wait_and_are_served_as_slots_free() {
    const CAP: usize = 20;
    let api = Api::start(
        "cap",
        &[
            ("TOLLGATE__API__MAX_CONNECTIONS", "20"),
            ("TOLLGATE__API__HEADER_READ_TIMEOUT_MS", "1500"),
        ],
    )
    .await;
    let idle = api.sockets();
    let mut silent = Vec::new();
    for _ in 0..100 {
        silent.push(TcpStream::connect(&api.addr).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held = api.sockets().saturating_sub(idle);
    assert!(
        held <= CAP,
        "{held} client sockets held with a cap of {CAP}"
    );
    assert!(held >= CAP / 2, "the cap is used ({held})");
    // The silent ones are cut at the header limit, slots free, and a real request is served.
    let status = reqwest::Client::new()
        .get(format!("{}/healthz", api.base))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("served once slots free")
        .status();
    assert_eq!(status, 200);
    drop(silent);
}
