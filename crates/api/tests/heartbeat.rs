//! `DELETE` on the guarded route: the heartbeat's read-and-delete. It reads back which way a
//! row came in and removes it, for a heartbeat user's row alone, and only past the guard.

use crate::common::*;
use lambda_support::route::GuardedRoute;
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::Value;
use shared_auth::heartbeat;

const HEARTBEAT_SUB: &str = "0b7e6c1e-58b4-4f9e-9d47-2b0d3c1f4a11";

fn route(app: &TestApp) -> GuardedRoute {
    GuardedRoute::new(app.http.clone(), app.settings.guard.clone(), &app.base)
}

async fn forget(app: &TestApp, sub: &str) -> reqwest::Response {
    route(app)
        .forget(&[SecretString::from(CURRENT)], sub)
        .send()
        .await
        .expect("request sent")
}

fn with_via(body: &str, via: &str) -> String {
    let mut value: Value = serde_json::from_str(body).expect("json");
    value["via"] = Value::String(via.to_owned());
    value.to_string()
}

async fn stored_via(app: &TestApp, sub: &str) -> Option<String> {
    sqlx::query_scalar("SELECT registered_via FROM users WHERE cognito_sub = $1::uuid")
        .bind(sub)
        .fetch_one(&app.db)
        .await
        .expect("row")
}

#[tokio::test]
async fn a_heartbeat_row_is_read_back_with_its_way_in_and_removed() {
    let app = spawn().await;
    let email = heartbeat::email("t1");
    for (n, via) in ["trigger", "queue", "sweep"].into_iter().enumerate() {
        let sub = format!("0b7e6c1e-58b4-4f9e-9d47-2b0d3c1f4a1{n}");
        let body = with_via(&body_for(&sub, &email), via);
        assert_eq!(app.register(&body).await.status(), StatusCode::CREATED);
        assert_eq!(stored_via(&app, &sub).await.as_deref(), Some(via));
        let answer = forget(&app, &sub).await;
        assert_eq!(answer.status(), StatusCode::OK, "{via}");
        let forgotten: heartbeat::Forgotten = answer.json().await.expect("json");
        assert_eq!(forgotten.sub, sub);
        assert_eq!(forgotten.registered_via.map(|v| v.as_str()), Some(via));
        let again = forget(&app, &sub).await;
        assert_eq!(again.status(), StatusCode::NOT_FOUND, "gone after one read");
    }
    assert_eq!(app.user_count().await, 0, "nothing left behind");
}

#[tokio::test]
async fn the_first_way_in_stays_when_a_later_one_replays_it() {
    let app = spawn().await;
    let body = body_for(HEARTBEAT_SUB, &heartbeat::email("t2"));
    assert_eq!(
        app.register(&with_via(&body, "queue")).await.status(),
        StatusCode::CREATED
    );
    // The sweep finds it again later, with newer attributes: they apply, the way in stays.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let newer = body.replace("\"ada\"", "\"ada2\"");
    assert_eq!(
        app.register(&with_via(&newer, "sweep")).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        stored_via(&app, HEARTBEAT_SUB).await.as_deref(),
        Some("queue")
    );
}

#[tokio::test]
async fn no_sender_may_claim_the_apps_way_in_and_an_older_sender_stores_none() {
    let app = spawn().await;
    let body = body_for(HEARTBEAT_SUB, &heartbeat::email("t3"));
    let jit = app.register(&with_via(&body, "jit")).await;
    assert_eq!(jit.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let unknown = app.register(&with_via(&body, "direct")).await;
    assert_eq!(unknown.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.register(&body).await.status(), StatusCode::CREATED);
    assert_eq!(stored_via(&app, HEARTBEAT_SUB).await, None);
    let answer: heartbeat::Forgotten = forget(&app, HEARTBEAT_SUB)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(answer.registered_via, None);
}

#[tokio::test]
async fn a_real_users_row_is_never_deleted_through_it() {
    let app = spawn().await;
    let near_misses = [
        "ada@example.com",
        "x@sub.heartbeat.tollgate.invalid",
        "x@heartbeat.tollgate.invalid.example.com",
        "x@tollgate.invalid",
    ];
    for (n, email) in near_misses.iter().enumerate() {
        let sub = format!("7d8ca528-4931-4254-9273-ea5ee853f27{n}");
        assert_eq!(
            app.register(&body_for(&sub, email)).await.status(),
            StatusCode::CREATED
        );
        let answer = forget(&app, &sub).await;
        assert_eq!(answer.status(), StatusCode::NOT_FOUND, "{email}");
    }
    assert_eq!(
        app.user_count().await,
        near_misses.len() as i64,
        "every real row survived"
    );
}

#[tokio::test]
async fn it_is_behind_the_guard() {
    let app = spawn().await;
    let body = body_for(HEARTBEAT_SUB, &heartbeat::email("t4"));
    assert_eq!(app.register(&body).await.status(), StatusCode::CREATED);
    let forget_body = format!(r#"{{"sub":"{HEARTBEAT_SUB}"}}"#);
    let unsigned = app
        .http
        .delete(format!("{}/user", app.base))
        .header("content-type", "application/json")
        .body(forget_body.clone())
        .send()
        .await
        .expect("sent");
    assert_eq!(unsigned.status(), StatusCode::FORBIDDEN);
    let wrong = route(&app)
        .forget(
            &[SecretString::from(CURRENT.replace("dGVzdC1j", "dGVzdC1k"))],
            HEARTBEAT_SUB,
        )
        .send()
        .await
        .expect("sent");
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    // A registration's signed body replayed as a DELETE is not a forget body: refused.
    let mut replay = app
        .http
        .delete(format!("{}/user", app.base))
        .header("content-type", "application/json")
        .body(body.clone());
    for (k, v) in app.credentials(CURRENT, body.as_bytes(), now()) {
        replay = replay.header(k, v);
    }
    let replay = replay.send().await.expect("sent");
    assert!(
        replay.status() == StatusCode::BAD_REQUEST
            || replay.status() == StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        replay.status()
    );
    assert_eq!(app.user_count().await, 1, "the row is still there");
}
