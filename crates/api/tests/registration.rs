//! What `POST /user` does with an accepted caller's body: validation, idempotency on the
//! Cognito `sub`, concurrency.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::Value;

async fn problem(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json",
        "errors are problem+json"
    );
    (status, response.json().await.expect("problem body"))
}

#[tokio::test]
async fn first_registration_creates_and_answers_201_with_location() {
    let app = spawn().await;
    let response = app.register(&body_for(SUB, "ada@example.com")).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let user: Value = response.json().await.expect("user json");
    assert_eq!(user["sub"], SUB);
    assert_eq!(user["email"], "ada@example.com");
    assert_eq!(user["email_verified"], true);
    assert_eq!(user["username"], "ada");
    assert_eq!(
        location,
        format!("/users/{}", user["id"].as_str().expect("id"))
    );
    let stored: (String, bool) =
        sqlx::query_as("SELECT email, email_verified FROM users WHERE cognito_sub = $1::uuid")
            .bind(SUB)
            .fetch_one(&app.db)
            .await
            .expect("row stored");
    assert_eq!(stored, ("ada@example.com".to_owned(), true));
}

#[tokio::test]
async fn an_identical_replay_answers_200_with_the_same_user() {
    let app = spawn().await;
    let body = body_for(SUB, "ada@example.com");
    let first: Value = app.register(&body).await.json().await.expect("json");
    let replay = app.register(&body).await;
    assert_eq!(replay.status(), StatusCode::OK);
    assert!(replay.headers().get("location").is_none());
    let second: Value = replay.json().await.expect("json");
    assert_eq!(first, second, "nothing changed, not even updated_at");
    assert_eq!(app.user_count().await, 1);
}

#[tokio::test]
async fn a_replay_with_changed_attributes_updates_them() {
    let app = spawn().await;
    app.register(&body_for(SUB, "ada@example.com")).await;
    let changed = format!(
        r#"{{"sub":"{SUB}","email":"ada@example.org","email_verified":false,"username":"ada"}}"#
    );
    // Signed a second later: registrations apply in the order they were signed.
    let headers = app.credentials(CURRENT, changed.as_bytes(), now() + 1);
    let response = app.post_user(changed.as_bytes(), &headers).await;
    assert_eq!(response.status(), StatusCode::OK);
    let user: Value = response.json().await.expect("json");
    assert_eq!(user["email"], "ada@example.org");
    assert_eq!(user["email_verified"], false);
    assert_eq!(app.user_count().await, 1);
}

#[tokio::test]
async fn fifty_concurrent_identical_registrations_make_one_row() {
    let app = spawn().await;
    let body = body_for(SUB, "ada@example.com");
    let headers = app.credentials(CURRENT, body.as_bytes(), now());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let mut request = app
            .http
            .post(format!("{}/user", app.base))
            .header("content-type", "application/json")
            .body(body.clone());
        for (k, v) in &headers {
            request = request.header(k, v);
        }
        tasks.spawn(async move { request.send().await.expect("sent").status() });
    }
    let mut created = 0;
    while let Some(status) = tasks.join_next().await {
        match status.expect("task") {
            StatusCode::CREATED => created += 1,
            StatusCode::OK => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(created, 1, "exactly one request creates");
    assert_eq!(app.user_count().await, 1);
}

#[tokio::test]
async fn a_phone_only_user_without_email_is_registered() {
    let app = spawn().await;
    let body = format!(r#"{{"sub":"{SUB}","username":"+15550100"}}"#);
    let response = app.register(&body).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let user: Value = response.json().await.expect("json");
    assert_eq!(user["email"], Value::Null);
    assert_eq!(user["email_verified"], false);
}

#[tokio::test]
async fn malformed_json_is_400() {
    let app = spawn().await;
    for body in ["{", "not json", "", r#"{"sub": "x",}"#, "\u{0}"] {
        let (status, problem) = problem(app.register(body).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}");
        assert_eq!(problem["status"], 400);
    }
    assert_eq!(app.user_count().await, 0);
}

#[tokio::test]
async fn invalid_fields_are_422_naming_the_field() {
    let app = spawn().await;
    let cases = [
        (
            r#"{"sub":"nope","email":"a@example.com","username":"ada"}"#.to_owned(),
            "sub",
        ),
        (
            format!(r#"{{"sub":"{SUB}","email":"not-an-address","username":"ada"}}"#),
            "email",
        ),
        (
            format!(r#"{{"sub":"{SUB}","email":"a@example.com","username":""}}"#),
            "username",
        ),
        (
            format!(
                r#"{{"sub":"{SUB}","email":"a@example.com","username":"{}"}}"#,
                "u".repeat(129)
            ),
            "username",
        ),
        (
            format!(r#"{{"sub":"{SUB}","email":"a@example.com","username":"ada","admin":true}}"#),
            "admin",
        ),
        (
            format!(r#"{{"sub":"{SUB}","email":"a@example.com"}}"#),
            "username",
        ),
        (
            format!(
                r#"{{"sub":"{SUB}","email":"a@example.com","username":"ada","email_verified":"yes"}}"#
            ),
            "email_verified",
        ),
        (r#"{"sub":123,"username":"ada"}"#.to_owned(), "sub"),
        ("[]".to_owned(), "(body)"),
    ];
    for (body, field) in cases {
        let (status, problem) = problem(app.register(&body).await).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(problem["field"], field, "{body}: {problem}");
    }
    assert_eq!(app.user_count().await, 0);
}

#[tokio::test]
async fn a_wrong_content_type_is_415() {
    let app = spawn().await;
    let body = body_for(SUB, "ada@example.com");
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/jsonp",
    ] {
        let mut headers = app.credentials(CURRENT, body.as_bytes(), now());
        headers.push(("content-type".into(), content_type.into()));
        let mut req = app
            .http
            .post(format!("{}/user", app.base))
            .body(body.clone());
        for (k, v) in &headers {
            req = req.header(k, v);
        }
        let (status, _) = problem(req.send().await.expect("sent")).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{content_type}");
    }
    let mut headers = app.credentials(CURRENT, body.as_bytes(), now());
    headers.push((
        "content-type".into(),
        "application/json; charset=utf-8".into(),
    ));
    let mut req = app
        .http
        .post(format!("{}/user", app.base))
        .body(body.clone());
    for (k, v) in &headers {
        req = req.header(k, v);
    }
    assert_eq!(
        req.send().await.expect("sent").status(),
        StatusCode::CREATED,
        "parameters are fine"
    );
}

#[tokio::test]
async fn an_oversized_body_is_413_declared_or_streamed() {
    let app = spawn().await;
    let big = format!(r#"{{"sub":"{SUB}","username":"{}"}}"#, "a".repeat(20_000));
    let (status, problem) = problem(app.register(&big).await).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        problem["detail"]
            .as_str()
            .expect("detail")
            .contains("16384")
    );

    // Chunked, with no Content-Length: the limit applies while reading.
    let headers: Vec<String> = app
        .credentials(CURRENT, big.as_bytes(), now())
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    let mut req = format!(
        "POST /user HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n{}\r\n\r\n",
        headers.join("\r\n")
    );
    for chunk in big.as_bytes().chunks(4096) {
        req.push_str(&format!(
            "{:x}\r\n{}\r\n",
            chunk.len(),
            std::str::from_utf8(chunk).expect("ascii")
        ));
    }
    req.push_str("0\r\n\r\n");
    let (status, _) = app.raw(&req).await;
    assert_eq!(status, 413);
    assert_eq!(app.user_count().await, 0);
}

#[tokio::test]
async fn unknown_routes_are_404_problems() {
    let app = spawn().await;
    let response = app
        .http
        .get(format!("{}/nope", app.base))
        .send()
        .await
        .expect("sent");
    let (status, problem) = problem(response).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(problem["status"], 404);
}

#[tokio::test]
async fn pooled_connections_the_server_closed_while_idle_are_replaced_not_failed() {
    let app = spawn().await;
    let sub = |n: usize| format!("00000000-0000-4000-8000-{n:012}");
    // Registrations at once, so the pool holds several connections.
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..10 {
        let body = body_for(&sub(n), "ada@example.com");
        let headers = app.credentials(CURRENT, body.as_bytes(), now());
        let mut request = app
            .http
            .post(format!("{}/user", app.base))
            .header("content-type", "application/json")
            .body(body);
        for (k, v) in &headers {
            request = request.header(k, v);
        }
        tasks.spawn(async move { request.send().await.expect("sent").status() });
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.expect("task"), StatusCode::CREATED);
    }

    // The server closes every other connection to this database (a restart or failover as
    // the pool sees it), and they sit idle past the ping threshold.
    let others: Vec<i32> = sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity \
          WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(&app.db)
    .await
    .expect("connections");
    let mut closed = 0;
    for pid in others {
        let done: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .fetch_one(&app.db)
            .await
            .expect("terminate");
        closed += usize::from(done);
    }
    assert!(closed >= 2, "the api held {closed} connections");
    tokio::time::sleep(api::database::PING_WHEN_IDLE_FOR + std::time::Duration::from_millis(200))
        .await;

    for n in 10..20 {
        let response = app.register(&body_for(&sub(n), "ada@example.com")).await;
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "registration {n} after the server closed the pool's connections"
        );
    }
    assert_eq!(app.user_count().await, 20);
}
