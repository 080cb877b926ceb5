//! A forged flood against the real api binary: every refusal is counted in the EMF metrics it
//! prints, while its log stays bounded — a few lines per reason plus a summary, no access-log
//! line per refused request. Counts, not times.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;
use secrecy::SecretString;
use serde_json::Value;

const WRONG_SECRET: &str = "not-the-secret-0123456789abcdefghijklmnopq";
const FORGED_SIGNATURES: usize = 300;
const UNSIGNED_QUERIES: usize = 120;
/// The binary's per-reason share of logged refusals in one window (`Refusals::LOG_PER_WINDOW`).
const LOG_PER_WINDOW: usize = api::refusals::Refusals::LOG_PER_WINDOW as usize;

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_flood_is_counted_in_full_and_logged_in_bounds() {
    let database_url = fresh_database().await;
    let port = testkit::services::free_port().expect("port");
    let dir = std::env::temp_dir().join(format!("tollgate-flood-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (stdout_path, stderr_path) = (dir.join("stdout"), dir.join("stderr"));
    let mut api = Command::new(env!("CARGO_BIN_EXE_api"))
        .env("TOLLGATE_ENV", "local")
        .env("TOLLGATE_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .env("DATABASE_URL", &database_url)
        .env("TOLLGATE_SECRET_CURRENT", CURRENT)
        .env("TOLLGATE__API__LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::from(
            std::fs::File::create(&stdout_path).expect("stdout file"),
        ))
        .stderr(Stdio::from(
            std::fs::File::create(&stderr_path).expect("stderr file"),
        ))
        .spawn()
        .expect("the api starts");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..100 {
        if http
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        ready,
        "the api did not come up: {}",
        std::fs::read_to_string(&stderr_path).unwrap_or_default()
    );

    // The contract the binary runs (deploy/local.toml), to forge well-formed credentials.
    let vars = HashMap::from([("TOLLGATE_ENV".to_owned(), "local".to_owned())]);
    let contract = shared_auth::load_for(shared_auth::Component::Api, &vars)
        .expect("local settings")
        .guard;
    let body = body_for(SUB, "ada@example.com");
    let forged = contract.credentials(
        &[SecretString::from(WRONG_SECRET)],
        &body_id(body.as_bytes()),
        body.as_bytes(),
        now(),
    );
    let good = contract.credentials(
        &[SecretString::from(CURRENT)],
        &body_id(body.as_bytes()),
        body.as_bytes(),
        now(),
    );

    let send = |url: String, headers: Vec<(String, String)>| {
        let http = http.clone();
        let body = body.clone();
        async move {
            let mut request = http
                .post(url)
                .header("content-type", "application/json")
                .body(body);
            for (k, v) in headers {
                request = request.header(k, v);
            }
            request.send().await.expect("request").status().as_u16()
        }
    };
    let forged_headers: Vec<(String, String)> = forged
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let good_headers: Vec<(String, String)> = good
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for _ in 0..FORGED_SIGNATURES {
        assert_eq!(
            send(format!("{base}/user"), forged_headers.clone()).await,
            403
        );
    }
    for i in 0..UNSIGNED_QUERIES {
        assert_eq!(
            send(format!("{base}/user?n={i}"), good_headers.clone()).await,
            403
        );
    }
    // A real registration is still logged by the access log.
    assert_eq!(send(format!("{base}/user"), good_headers).await, 201);

    // SIGTERM: the api drains and flushes its metrics on the way out.
    let pid = api.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let mut exited = None;
    for _ in 0..100 {
        if let Some(status) = api.try_wait().expect("wait") {
            exited = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = exited.unwrap_or_else(|| {
        let _ = api.kill();
        panic!("the api did not stop within 10 s of SIGTERM")
    });
    assert!(status.success(), "{status}");

    let stdout = std::fs::read_to_string(&stdout_path).expect("stdout");
    let stderr = std::fs::read_to_string(&stderr_path).expect("stderr");
    let mut counted: HashMap<String, u64> = HashMap::new();
    for line in stdout.lines().filter(|l| l.contains("\"_aws\"")) {
        let v: Value = serde_json::from_str(line).expect("EMF line is JSON");
        *counted
            .entry(v["Reason"].as_str().expect("reason").to_owned())
            .or_default() += v[api::refusals::METRIC].as_u64().expect("count");
    }
    assert_eq!(
        counted.get("signature_mismatch"),
        Some(&(FORGED_SIGNATURES as u64)),
        "{stdout}"
    );
    assert_eq!(
        counted.get("query_not_signed"),
        Some(&(UNSIGNED_QUERIES as u64)),
        "{stdout}"
    );

    let logs: Vec<Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let refused = |reason: &str| {
        logs.iter()
            .filter(|v| v["message"] == "registration refused" && v["deny_reason"] == reason)
            .count()
    };
    assert_eq!(refused("signature_mismatch"), LOG_PER_WINDOW);
    assert_eq!(refused("query_not_signed"), LOG_PER_WINDOW);
    let not_logged: u64 = logs.iter().filter_map(|v| v["not_logged"].as_u64()).sum();
    assert_eq!(
        not_logged,
        (FORGED_SIGNATURES + UNSIGNED_QUERIES - 2 * LOG_PER_WINDOW) as u64,
        "the summary accounts for every refusal not logged"
    );
    let access = |status: u64| {
        logs.iter()
            .filter(|v| v["target"] == "tower_http::trace::on_response" && v["status"] == status)
            .count()
    };
    let access_403 = access(403);
    assert_eq!(
        access_403, 0,
        "refusals must not each get an access-log line"
    );
    let access_201 = access(201);
    assert_eq!(
        access_201, 1,
        "the real registration keeps its access-log line:\n{stderr}"
    );
    assert!(
        logs.len() < 40,
        "{} log lines for {} refusals: the log of a flood must stay bounded",
        logs.len(),
        FORGED_SIGNATURES + UNSIGNED_QUERIES
    );
    assert!(
        !stderr.contains(CURRENT) && !stderr.contains(WRONG_SECRET) && !stdout.contains(CURRENT)
    );
    std::fs::remove_dir_all(&dir).ok();
}
