//! The guard and the body extractor through the router alone, with `oneshot` and no socket: the
//! peer address comes from `MockConnectInfo`, and the database is one that cannot be reached, so
//! every answer here is proven to need neither the network nor PostgreSQL.

use std::net::SocketAddr;
use std::time::Duration;

use api::secrets::{SecretProvider, SecretStore};
use api::{Clock, build_state, router};
use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Request, StatusCode};
use secrecy::SecretString;
use shared_auth::{Component, SecretSet};
use tower::ServiceExt;

const SECRET: &str = "whsec_cm91dGVyLXRlc3Qta2V5LTAxMjM0NTY3ODlhYmNkZWY=";
const BODY: &str = r#"{"sub":"7d8ca528-4931-4254-9273-ea5ee853f271","email":"ada@example.com","email_verified":true,"username":"ada"}"#;

/// The service as seen from `peer`, on a database at a closed port.
async fn app(peer: [u8; 4]) -> (Router, shared_auth::GuardContract) {
    let vars = [
        ("TOLLGATE_ENV", "local"),
        ("DATABASE_URL", "postgres://nobody@127.0.0.1:9/none"),
        ("TOLLGATE__API__MIGRATE_ON_START", "false"),
        ("TOLLGATE__API__DB_ACQUIRE_TIMEOUT_MS", "500"),
        ("TOLLGATE__API__BODY_LIMIT_BYTES", "1024"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .into();
    let settings = shared_auth::load_for(Component::Api, &vars).expect("settings");
    let contract = settings.guard.clone();
    let secrets = SecretStore::start(
        SecretProvider::Fixed(SecretSet::new(SECRET.into(), None).expect("secret")),
        Duration::from_secs(60),
    )
    .await;
    let state = build_state(settings, secrets, Clock::system())
        .await
        .expect("state");
    let router = router(state)
        .expect("router")
        .layer(MockConnectInfo(SocketAddr::from((peer, 40_000))));
    (router, contract)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn signed(
    contract: &shared_auth::GuardContract,
    secret: &str,
    content_type: &str,
    body: &str,
) -> Request<Body> {
    let mut request = Request::post("/user").header("content-type", content_type);
    for (name, value) in contract
        .credentials(
            &[SecretString::from(secret)],
            &shared_auth::registration_id("router-tests", body),
            body.as_bytes(),
            now(),
        )
        .iter()
    {
        request = request.header(name, value);
    }
    request.body(Body::from(body.to_owned())).expect("request")
}

async fn status(router: &Router, request: Request<Body>) -> (StatusCode, String) {
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, content_type)
}

#[tokio::test]
async fn an_outside_address_is_refused_even_with_a_valid_signature() {
    let (router, contract) = app([203, 0, 113, 9]).await;
    let (code, content_type) =
        status(&router, signed(&contract, SECRET, "application/json", BODY)).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert_eq!(content_type, "application/problem+json");
}

#[tokio::test]
async fn an_allowed_address_without_the_secret_is_refused() {
    let (router, contract) = app([127, 0, 0, 1]).await;
    let unsigned = Request::post("/user")
        .header("content-type", "application/json")
        .body(Body::from(BODY))
        .expect("request");
    assert_eq!(status(&router, unsigned).await.0, StatusCode::FORBIDDEN);
    let wrong = signed(
        &contract,
        "another-secret-0123456789abcdefghijklmnopq",
        "application/json",
        BODY,
    );
    assert_eq!(status(&router, wrong).await.0, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_verified_request_meets_the_json_extractor_before_the_database() {
    let (router, contract) = app([127, 0, 0, 1]).await;
    let cases = [
        (
            "text/plain",
            BODY.to_owned(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "application/json",
            "{\"sub\":".to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "application/json",
            BODY.replace("7d8ca528-4931-4254-9273-ea5ee853f271", "not-a-uuid"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "application/json",
            format!("{{\"x\":\"{}\"}}", "a".repeat(2_000)),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (content_type, body, expected) in cases {
        let (code, problem) = status(&router, signed(&contract, SECRET, content_type, &body)).await;
        assert_eq!(
            code,
            expected,
            "{content_type} {}",
            &body[..body.len().min(40)]
        );
        assert_eq!(problem, "application/problem+json");
    }
}

#[tokio::test]
async fn a_valid_registration_with_the_database_down_is_503_not_lost_silently() {
    let (router, contract) = app([127, 0, 0, 1]).await;
    let response = router
        .clone()
        .oneshot(signed(&contract, SECRET, "application/json", BODY))
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        response.headers().contains_key("retry-after"),
        "the Lambda is told to retry"
    );
}
