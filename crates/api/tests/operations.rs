//! Running the service: secret rotation, database outages, health, OpenAPI, shutdown, config.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::*;
use api::secrets::SecretProvider;
use aws_sdk_secretsmanager::Client as SecretsManager;
use reqwest::StatusCode;
use serde_json::Value;
use shared_aws::secrets_manager;
use testkit::local_aws;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

async fn signed_status(app: &TestApp, secret: &str, sub: &str) -> StatusCode {
    signed_status_at(app, secret, sub, now()).await
}

/// The status of a signed registration, asked every 100 ms until it is `expected` (4 s at most,
/// four refresh intervals here); the last one seen.
async fn signed_status_within(
    app: &TestApp,
    secret: &str,
    sub: &str,
    expected: StatusCode,
) -> StatusCode {
    let mut status = signed_status(app, secret, sub).await;
    for _ in 0..40 {
        if status == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        status = signed_status(app, secret, sub).await;
    }
    status
}

/// The status of a registration signed at `at` (unix seconds).
async fn signed_status_at(app: &TestApp, secret: &str, sub: &str, at: u64) -> StatusCode {
    let body = body_for(sub, "ada@example.com");
    let headers = app.credentials(secret, body.as_bytes(), at);
    app.post_user(body.as_bytes(), &headers).await.status()
}

/// The contract's windows as the local settings give them.
fn acceptance() -> shared_aws::versions::Acceptance {
    let settings = shared_auth::load_for(shared_auth::Component::Api, &Default::default())
        .expect("local settings");
    shared_aws::versions::Acceptance::for_settings(&settings)
}

/// A new secret in moto holding `value`, and an app reading it from there every second.
async fn app_on_secrets_manager(value: &str) -> (TestApp, SecretsManager, String) {
    let sm: SecretsManager = secrets_manager(&local_aws()).await;
    let secret_id = format!("tollgate/test/{}", uuid::Uuid::new_v4().simple());
    sm.create_secret()
        .name(&secret_id)
        .secret_string(value)
        .send()
        .await
        .expect("moto creates the secret");
    let app = app_reading(&secret_id, api::Clock::system()).await;
    (app, sm, secret_id)
}

/// An app reading `secret_id` from moto every second, by `clock`.
async fn app_reading(secret_id: &str, clock: api::Clock) -> TestApp {
    spawn_with(Options {
        provider: Some(SecretProvider::SecretsManager {
            client: secrets_manager(&local_aws()).await,
            secret_id: secret_id.to_owned(),
            acceptance: acceptance(),
        }),
        clock,
        ..Options::default().var("TOLLGATE__API__SECRET_REFRESH_S", "1")
    })
    .await
}

async fn stage_pending(sm: &SecretsManager, secret_id: &str, value: &str) -> String {
    let token = uuid::Uuid::new_v4().to_string();
    sm.put_secret_value()
        .secret_id(secret_id)
        .client_request_token(&token)
        .secret_string(value)
        .version_stages("AWSPENDING")
        .send()
        .await
        .expect("put pending");
    token
}

/// After a rotation the version before it is accepted for `guard.previous_grace_s`, then
/// refused: a leaked value dies with the grace instead of living until the next rotation.
#[tokio::test]
async fn the_previous_version_is_refused_once_its_grace_has_passed() {
    let first = "first-secret-version-0123456789abcdefghijkl";
    let second = "second-secret-version-0123456789abcdefghijk";
    let (_app, sm, secret_id) = app_on_secrets_manager(first).await;
    sm.put_secret_value()
        .secret_id(&secret_id)
        .secret_string(second)
        .send()
        .await
        .expect("rotate: second is current, first previous");
    let grace = acceptance().previous_grace_s;
    for (shift, previous_accepted) in [(0, true), (grace - 60, true), (grace + 5, false)] {
        let app = app_reading(&secret_id, api::Clock::shifted(shift as i64)).await;
        let at = now() + shift;
        let sub = uuid::Uuid::new_v4().to_string();
        let expected = if previous_accepted {
            StatusCode::CREATED
        } else {
            StatusCode::FORBIDDEN
        };
        assert_eq!(
            signed_status_at(&app, first, &sub, at).await,
            expected,
            "previous, {shift} s after the promotion"
        );
        let sub = uuid::Uuid::new_v4().to_string();
        assert_eq!(
            signed_status_at(&app, second, &sub, at).await,
            StatusCode::CREATED,
            "current, {shift} s after the promotion"
        );
    }
}

/// `AWSPENDING` opens the door only while a rotation can be running: a version staged by
/// hand, or left behind by a failed rotation, is refused once that time has passed.
#[tokio::test]
async fn a_pending_version_is_refused_once_no_rotation_can_be_running() {
    let first = "first-secret-version-0123456789abcdefghijkl";
    let pending = "pending-secret-version-0123456789abcdefghij";
    let (app, sm, secret_id) = app_on_secrets_manager(first).await;
    stage_pending(&sm, &secret_id, pending).await;
    assert_eq!(
        signed_status_within(&app, pending, SUB, StatusCode::CREATED).await,
        StatusCode::CREATED,
        "accepted while a rotation can be running"
    );
    let later = acceptance().rotation_s + 5;
    let stale = app_reading(&secret_id, api::Clock::shifted(later as i64)).await;
    let sub = uuid::Uuid::new_v4().to_string();
    assert_eq!(
        signed_status_at(&stale, pending, &sub, now() + later).await,
        StatusCode::FORBIDDEN,
        "refused {later} s after it was staged"
    );
    assert_eq!(
        signed_status_at(&stale, first, &sub, now() + later).await,
        StatusCode::CREATED,
        "the current version is untouched"
    );
    let readyz: Value = stale
        .http
        .get(format!("{}/readyz", stale.base))
        .send()
        .await
        .expect("readyz")
        .json()
        .await
        .expect("json");
    assert!(readyz["secret_versions"]["pending"].is_null(), "{readyz}");
}

/// A staged value that is no key (here, too short) is left out, warned about and counted; it never
/// stops a freshly started task from serving the current one.
#[tokio::test]
async fn a_malformed_pending_value_is_left_out_and_the_current_one_still_works() {
    let first = "first-secret-version-0123456789abcdefghijkl";
    let (_app, sm, secret_id) = app_on_secrets_manager(first).await;
    let token = stage_pending(&sm, &secret_id, "short").await;
    let fresh = app_reading(&secret_id, api::Clock::system()).await;
    assert_eq!(
        signed_status(&fresh, first, SUB).await,
        StatusCode::CREATED,
        "the current secret works on a task started with a bad pending value"
    );
    let readyz: Value = fresh
        .http
        .get(format!("{}/readyz", fresh.base))
        .send()
        .await
        .expect("readyz")
        .json()
        .await
        .expect("json");
    assert_eq!(readyz["secret"], true, "{readyz}");
    assert!(readyz["secret_versions"]["pending"].is_null(), "{readyz}");
    assert_ne!(readyz["secret_versions"]["current"], token.as_str());
}

#[tokio::test]
async fn a_rotation_in_secrets_manager_is_picked_up_and_the_old_secret_still_passes() {
    let first = "first-secret-version-0123456789abcdefghijkl";
    let second = "second-secret-version-0123456789abcdefghijk";
    let (app, sm, secret_id) = app_on_secrets_manager(first).await;
    assert_eq!(signed_status(&app, first, SUB).await, StatusCode::CREATED);
    assert_eq!(
        signed_status(&app, second, SUB).await,
        StatusCode::FORBIDDEN,
        "not yet rotated"
    );

    sm.put_secret_value()
        .secret_id(&secret_id)
        .secret_string(second)
        .send()
        .await
        .expect("rotate");
    // Accepted within one refresh interval (1 s here).
    assert_eq!(
        signed_status_within(&app, second, SUB, StatusCode::OK).await,
        StatusCode::OK,
        "the new secret was not accepted within 4 s"
    );
    assert_eq!(
        signed_status(&app, first, SUB).await,
        StatusCode::OK,
        "previous version still accepted"
    );
}

/// A rotation's pending version (`AWSPENDING`) is accepted once refreshed, reported by id on
/// `/readyz`, and dropped when the rotation promotes it (the label may stay on the promoted
/// version: that is not "pending").
#[tokio::test]
async fn a_pending_version_is_accepted_and_reported_by_id_until_promoted() {
    let first = "first-secret-version-0123456789abcdefghijkl";
    let pending = "pending-secret-version-0123456789abcdefghij";
    let (app, sm, secret_id) = app_on_secrets_manager(first).await;
    let readyz = || async {
        let v: Value = app
            .http
            .get(format!("{}/readyz", app.base))
            .send()
            .await
            .expect("readyz")
            .json()
            .await
            .expect("json");
        v["secret_versions"].clone()
    };
    let before = readyz().await;
    assert!(
        before["current"].is_string() && before["pending"].is_null(),
        "{before}"
    );
    assert_eq!(
        signed_status(&app, pending, SUB).await,
        StatusCode::FORBIDDEN
    );

    let token = uuid::Uuid::new_v4().to_string();
    sm.put_secret_value()
        .secret_id(&secret_id)
        .client_request_token(&token)
        .secret_string(pending)
        .version_stages("AWSPENDING")
        .send()
        .await
        .expect("put pending");
    let mut seen = Value::Null;
    for _ in 0..40 {
        seen = readyz().await;
        if seen["pending"] == token.as_str() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen["pending"], token.as_str(), "{seen}");
    assert_eq!(seen["current"], before["current"]);
    let text = serde_json::to_string(&seen).expect("json");
    assert!(!text.contains(pending) && !text.contains(first), "ids only");
    assert_eq!(signed_status(&app, pending, SUB).await, StatusCode::CREATED);
    assert_eq!(signed_status(&app, first, SUB).await, StatusCode::OK);

    sm.update_secret_version_stage()
        .secret_id(&secret_id)
        .version_stage("AWSCURRENT")
        .move_to_version_id(&token)
        .remove_from_version_id(before["current"].as_str().expect("id"))
        .send()
        .await
        .expect("promote");
    for _ in 0..40 {
        seen = readyz().await;
        if seen["current"] == token.as_str() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen["current"], token.as_str(), "{seen}");
    assert_eq!(seen["previous"], before["current"], "{seen}");
    assert!(seen["pending"].is_null(), "promoted is not pending: {seen}");
}

#[tokio::test]
async fn a_failed_refresh_keeps_the_last_good_secret() {
    let value = "only-secret-version-0123456789abcdefghijklm";
    let (app, sm, secret_id) = app_on_secrets_manager(value).await;
    sm.delete_secret()
        .secret_id(&secret_id)
        .force_delete_without_recovery(true)
        .send()
        .await
        .expect("delete");
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(signed_status(&app, value, SUB).await, StatusCode::CREATED);
}

/// A loopback TCP proxy in front of PostgreSQL: stopping it is a database outage as the
/// service sees it, without disturbing the server other tests share.
struct Proxy {
    port: u16,
    tasks: JoinSet<()>,
}

impl Proxy {
    async fn start(port: u16, target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("proxy binds");
        let port = listener.local_addr().expect("addr").port();
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                connections.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Proxy { port, tasks }
    }

    /// Drops the listener and every open connection.
    async fn stop(mut self) -> u16 {
        self.tasks.shutdown().await;
        self.port
    }
}

fn server_of(url: &str) -> SocketAddr {
    let after = url.split("@").last().expect("host");
    let host_port = after.split('/').next().expect("host:port");
    host_port
        .parse()
        .expect("DATABASE_URL host is an IP:port on loopback")
}

#[tokio::test]
async fn a_database_outage_answers_503_and_recovers_by_itself() {
    let direct = fresh_database().await;
    let target = server_of(&direct);
    let proxy = Proxy::start(0, target).await;
    let via_proxy = direct.replacen(&target.to_string(), &format!("127.0.0.1:{}", proxy.port), 1);
    let app = spawn_with(Options {
        database_url: Some(via_proxy),
        ..Options::default().var("TOLLGATE__API__DB_ACQUIRE_TIMEOUT_MS", "500")
    })
    .await;
    assert_eq!(
        app.register(&body_for(SUB, "ada@example.com"))
            .await
            .status(),
        StatusCode::CREATED
    );

    let port = proxy.stop().await;
    let other = "22222222-3333-4444-8555-666666666666";
    let response = app.register(&body_for(other, "bob@example.com")).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "2");
    let problem = response.text().await.expect("body");
    assert!(
        !problem.to_lowercase().contains("sql") && !problem.contains("127.0.0.1"),
        "{problem}"
    );
    let ready = app
        .http
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .expect("sent");
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let health = app
        .http
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .expect("sent");
    assert_eq!(
        health.status(),
        StatusCode::OK,
        "liveness does not depend on the database"
    );

    let _proxy = Proxy::start(port, target).await;
    let mut recovered = false;
    for _ in 0..30 {
        if app
            .register(&body_for(other, "bob@example.com"))
            .await
            .status()
            == StatusCode::CREATED
        {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        recovered,
        "the service did not recover within 6 s of the database returning"
    );
    assert_eq!(app.user_count().await, 2);
}

#[tokio::test]
async fn readiness_reports_database_and_secret() {
    let app = spawn().await;
    let response = app
        .http
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("json");
    // Fixed secrets (`secret_source = "env"`) have no Secrets Manager version ids.
    assert_eq!(
        body,
        serde_json::json!({"database": true, "secret": true,
            "secret_versions": {"current": null, "previous": null, "pending": null}})
    );
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = spawn().await;
    let response = app
        .http
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .expect("sent");
    let id = response.headers()["x-request-id"].to_str().expect("ascii");
    assert_eq!(id.len(), 36, "a UUID: {id}");
}

#[tokio::test]
async fn the_openapi_document_describes_the_routes_served() {
    let app = spawn().await;
    let doc: Value = app
        .http
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert!(
        doc["openapi"].as_str().expect("version").starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().expect("paths");
    let mut listed: Vec<(String, String)> = paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("path item")
                .keys()
                .map(move |method| (method.to_uppercase(), path.clone()))
        })
        .collect();
    listed.sort();
    let expected = [
        ("DELETE", "/user"),
        ("GET", "/healthz"),
        ("GET", "/openapi.json"),
        ("GET", "/readyz"),
        ("GET", "/users/me"),
        ("POST", "/user"),
    ];
    assert_eq!(
        listed,
        expected.map(|(m, p)| (m.to_owned(), p.to_owned())).to_vec()
    );
    let register: Vec<&String> = paths["/user"]["post"]["responses"]
        .as_object()
        .expect("responses")
        .keys()
        .collect();
    for status in ["200", "201", "400", "403", "413", "415", "422", "503"] {
        assert!(
            register.iter().any(|s| *s == status),
            "POST /user documents {status}"
        );
    }
    // Every documented route exists on the live service: none answers 404 or 405. (Without
    // JWT settings `/users/me` is switched off, so it is checked by its own tests.)
    for (method, path) in listed.iter().filter(|(_, p)| p != "/users/me") {
        let req = app.http.request(
            method.parse().expect("method"),
            format!("{}{path}", app.base),
        );
        let status = req.send().await.expect("sent").status();
        assert!(
            status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}: {status}"
        );
    }
}

#[tokio::test]
async fn shutdown_finishes_the_request_in_flight() {
    let mut app = spawn().await;
    let body = body_for(SUB, "ada@example.com");
    let lines: Vec<String> = app
        .credentials(CURRENT, body.as_bytes(), now())
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    let request = raw_post("/user", &lines, &body);
    let (head, tail) = request.split_at(request.len() - 10);
    let mut stream = TcpStream::connect(app.addr).await.expect("connect");
    stream.write_all(head.as_bytes()).await.expect("first part");
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stream
        .write_all(tail.as_bytes())
        .await
        .expect("rest of the body");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("response");
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    app.stop().await;
}

#[test]
fn check_config_prints_settings_without_secrets() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_api"))
        .arg("--check-config")
        .env("TOLLGATE_ENV", "local")
        .env(
            "DATABASE_URL",
            "postgres://tollgate:hunter2-db-password@127.0.0.1:5432/tollgate",
        )
        .env("TOLLGATE_SECRET_CURRENT", CURRENT)
        .output()
        .expect("api runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains("allowed_cidrs") && stdout.contains("127.0.0.1/32"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("hunter2") && !stdout.contains(CURRENT),
        "{stdout}"
    );
}

#[test]
fn a_bad_setting_exits_2_naming_the_key() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_api"))
        .arg("--check-config")
        .env("TOLLGATE__GUARD__MAX_SKEW_S", "0")
        .output()
        .expect("api runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("guard.max_skew_s"), "{stderr}");
}

#[tokio::test]
async fn migrate_applies_the_schema_and_is_repeatable() {
    let url = fresh_database().await;
    for _ in 0..2 {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_api"))
            .arg("--migrate")
            .env("DATABASE_URL", &url)
            .output()
            .expect("api runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let pool = sqlx::PgPool::connect(&url).await.expect("connect");
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('public.users') IS NOT NULL")
        .fetch_one(&pool)
        .await
        .expect("query");
    assert!(exists, "users table created");
}
