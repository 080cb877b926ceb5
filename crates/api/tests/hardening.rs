//! What an adversarial review found, each kept fixed: repeated X-Forwarded-For lines, queries
//! outside the signature, replays that would revert newer data, slow and silent connections,
//! HTTP/2 cleartext, caller-chosen request ids, long addresses Cognito accepts, and a slow
//! JWKS endpoint that must not stall tokens whose key is known.

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// A signed raw registration for a new `sub`, from loopback (allowed), with `extra` lines.
fn signed_raw(app: &TestApp, path_and_query: &str, extra: &[&str]) -> (String, String) {
    let sub = uuid::Uuid::new_v4().to_string();
    let body = body_for(&sub, "ada@example.com");
    let mut headers: Vec<String> = app
        .credentials(CURRENT, body.as_bytes(), now())
        .into_iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    headers.extend(extra.iter().map(|h| (*h).to_owned()));
    (raw_post(path_and_query, &headers, &body), sub)
}

async fn rows_for(app: &TestApp, sub: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM users WHERE cognito_sub = $1::uuid")
        .bind(sub)
        .fetch_one(&app.db)
        .await
        .expect("count")
}

#[tokio::test]
async fn x_forwarded_for_in_several_lines_is_refused() {
    let app =
        spawn_with(Options::default().var("TOLLGATE__GUARD__TRUSTED_PROXIES", "127.0.0.0/8")).await;
    // A forged first line and an appended second one: which is the proxy's cannot be told.
    let (request, sub) = signed_raw(
        &app,
        "/user",
        &[
            "X-Forwarded-For: 127.0.0.1",
            "X-Forwarded-For: 198.51.100.7",
        ],
    );
    let (status, _) = app.raw(&request).await;
    assert_eq!(status, 403);
    assert_eq!(rows_for(&app, &sub).await, 0);
    // One line is judged as usual: an allowed entry passes.
    let (request, sub) = signed_raw(&app, "/user", &["X-Forwarded-For: 127.0.0.1"]);
    assert_eq!(app.raw(&request).await.0, 201);
    assert_eq!(rows_for(&app, &sub).await, 1);
}

#[tokio::test]
async fn a_query_string_on_the_guarded_route_is_refused() {
    let app = spawn().await;
    for target in ["/user?sub=other", "/user?x", "/user?a=1&b=2"] {
        let (request, sub) = signed_raw(&app, target, &[]);
        let (status, _) = app.raw(&request).await;
        assert_eq!(status, 403, "{target}");
        assert_eq!(rows_for(&app, &sub).await, 0, "{target}");
    }
}

async fn email_of(app: &TestApp, sub: &str) -> Option<String> {
    sqlx::query_scalar("SELECT email FROM users WHERE cognito_sub = $1::uuid")
        .bind(sub)
        .fetch_one(&app.db)
        .await
        .expect("row")
}

#[tokio::test]
async fn a_replay_of_an_older_registration_never_reverts_newer_data() {
    let app = spawn().await;
    let app = &app;
    let send = |email: &'static str, ts: u64| {
        let body = body_for(SUB, email);
        let headers = app.credentials(CURRENT, body.as_bytes(), ts);
        async move {
            app.post_user(body.as_bytes(), &headers)
                .await
                .status()
                .as_u16()
        }
    };
    let t = now();
    assert_eq!(send("old@example.com", t - 20).await, 201, "A");
    assert_eq!(send("new@example.com", t - 10).await, 200, "B, newer");
    assert_eq!(
        send("old@example.com", t - 20).await,
        200,
        "A replayed: idempotent"
    );
    let email = email_of(app, SUB).await;
    assert_eq!(
        email.as_deref(),
        Some("new@example.com"),
        "A's replay reverted B"
    );
    // Out of order the other way: a newer one still applies.
    assert_eq!(send("newest@example.com", t - 5).await, 200);
    let email = email_of(app, SUB).await;
    assert_eq!(email.as_deref(), Some("newest@example.com"));
    assert_eq!(app.user_count().await, 1);
}

#[tokio::test]
async fn an_address_as_long_as_cognito_allows_is_registered() {
    let app = spawn().await;
    let email = format!("{}@example.com", "a".repeat(2_000));
    let response = app.register(&body_for(SUB, &email)).await;
    assert_eq!(response.status(), 201);
    let too_long = format!("{}@example.com", "a".repeat(2_048));
    let response = app
        .register(&body_for(&uuid::Uuid::new_v4().to_string(), &too_long))
        .await;
    assert_eq!(response.status(), 422, "past Cognito's own limit");
}

/// Reads until the server closes the connection; `None` if it is still open after `wait`.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> Option<Vec<u8>> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(seen),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn slow_headers_and_idle_connections_are_closed() {
    let app = spawn_with(
        Options::default()
            .var("TOLLGATE__API__HEADER_READ_TIMEOUT_MS", "500")
            .var("TOLLGATE__API__KEEP_ALIVE_IDLE_S", "2"),
    )
    .await;
    // A partial request that never completes its headers.
    let mut slow = TcpStream::connect(app.addr).await.expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    assert!(
        closed_within(&mut slow, Duration::from_secs(5))
            .await
            .is_some(),
        "a connection sending partial headers stayed open"
    );
    // A silent connection.
    let mut silent = TcpStream::connect(app.addr).await.expect("connect");
    assert!(
        closed_within(&mut silent, Duration::from_secs(5))
            .await
            .is_some()
    );
    // A kept-alive connection that goes idle after one request.
    let mut idle = TcpStream::connect(app.addr).await.expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let answer = closed_within(&mut idle, Duration::from_secs(5))
        .await
        .expect("an idle kept-alive connection stayed open");
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    // Headers trickled a byte at a time, each well inside the limit: the limit counts from the
    // request's first byte, so the connection is cut all the same.
    let mut trickle = TcpStream::connect(app.addr).await.expect("connect");
    let mut cut = false;
    for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter() {
        if trickle.write_all(&[*byte]).await.is_err() {
            cut = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cut = cut
        || closed_within(&mut trickle, Duration::from_secs(1))
            .await
            .is_some();
    assert!(
        cut,
        "headers trickled over 5 s outlived a 0.5 s header limit"
    );
}

#[tokio::test]
async fn http2_cleartext_is_not_spoken() {
    let app = spawn().await;
    let mut stream = TcpStream::connect(app.addr).await.expect("connect");
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .expect("write");
    let answer = closed_within(&mut stream, Duration::from_secs(5))
        .await
        .expect("closed");
    // No HTTP/2 SETTINGS frame back: either nothing or an HTTP/1 error.
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 4") || answer.starts_with(b"HTTP/1.1 5"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
}

#[tokio::test]
async fn only_short_well_formed_request_ids_are_echoed() {
    let app = spawn().await;
    let echoed = |id: Option<String>| {
        let app = &app;
        async move {
            let mut request = app.http.get(format!("{}/healthz", app.base));
            if let Some(id) = id {
                request = request.header("x-request-id", id);
            }
            let response = request.send().await.expect("response");
            response
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
                .expect("every response carries a request id")
        }
    };
    assert_eq!(echoed(Some("abc-123_x.y:z".into())).await, "abc-123_x.y:z");
    for bad in [
        "a".repeat(65),
        "has space".into(),
        "<script>".into(),
        "é".into(),
    ] {
        let got = echoed(Some(bad.clone())).await;
        assert_ne!(got, bad);
        assert!(
            uuid::Uuid::try_parse(&got).is_ok(),
            "{bad:?} replaced by {got:?}"
        );
    }
    let twice = app
        .http
        .get(format!("{}/healthz", app.base))
        .header("x-request-id", "one")
        .header("x-request-id", "two")
        .send()
        .await
        .expect("response");
    let got = twice
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        uuid::Uuid::try_parse(got).is_ok(),
        "two ids replaced by one of ours: {got:?}"
    );
}

/// A JWKS proxy in front of moto that answers the first fetch at once and holds every later
/// one until released.
async fn jwks_proxy(upstream: String, release: Arc<Notify>) -> String {
    use axum::routing::get;
    let fetches = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let app = axum::Router::new().route(
        "/jwks.json",
        get(move || {
            let (upstream, release, fetches) = (upstream.clone(), release.clone(), fetches.clone());
            async move {
                if fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst) > 0 {
                    release.notified().await;
                }
                reqwest::get(&upstream)
                    .await
                    .expect("moto")
                    .text()
                    .await
                    .expect("jwks")
            }
        }),
    );
    format!("http://{}/jwks.json", serve(app).await)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_jwks_fetch_for_an_unknown_key_does_not_stall_known_keys() {
    use base64::Engine as _;
    let sdk = testkit::sdk_config(&testkit::local_aws()).await;
    let pool = testkit::cognito::UserPool::create(&sdk, &testkit::aws_endpoint(), "jwks")
        .await
        .expect("pool");
    let user = pool
        .sign_up("jwks-user", "jwks@example.com")
        .await
        .expect("user");
    let release = Arc::new(Notify::new());
    let proxy = jwks_proxy(pool.jwks_url.clone(), release.clone()).await;
    let verifier = Arc::new(
        api::jwt::JwtVerifier::with_refetch_interval(
            pool.issuer.clone(),
            pool.client_id.clone(),
            proxy,
            Duration::ZERO,
        )
        .expect("verifier"),
    );
    verifier
        .verify(&user.id_token, now())
        .await
        .expect("the first fetch warms the cache");

    // An unsigned token naming an unknown key: its fetch hangs at the proxy.
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let forged = format!(
        "{}.{}.AAAA",
        b64(&serde_json::json!({"alg": "RS256", "kid": "attacker-key"})),
        b64(&serde_json::json!({"sub": SUB}))
    );
    let slow = tokio::spawn({
        let verifier = verifier.clone();
        async move { verifier.verify(&forged, now()).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !slow.is_finished(),
        "the unknown key's fetch is held at the proxy"
    );
    let valid = tokio::time::timeout(
        Duration::from_secs(3),
        verifier.verify(&user.id_token, now()),
    )
    .await
    .expect("a token with a known key waited for the JWKS fetch");
    assert!(valid.is_ok());
    release.notify_waiters();
    assert!(
        slow.await.expect("task").is_err(),
        "the forged token is refused"
    );
}
