//! The api against the Standard Webhooks reference libraries (Python's `standardwebhooks`
//! from PyPI, and the Rust crate): what they sign with an accepted key registers; what they
//! sign with a wrong key, a stale time or for another body is refused with the api's usual
//! answer, and stores nothing.

use crate::common::*;
use serde_json::Value;
use standardwebhooks::Webhook;

/// The three Standard Webhooks headers for `body`, signed by the Python library or the Rust one.
fn signed_by(python: bool, key: &str, id: &str, ts: u64, body: &str) -> Vec<(String, String)> {
    let signature = if python {
        testkit::reference::sign(key, id, ts, body.as_bytes())
    } else {
        Webhook::new(key)
            .expect("key")
            .sign(id, ts as i64, body.as_bytes())
            .expect("utf-8")
    };
    vec![
        ("webhook-id".into(), id.into()),
        ("webhook-timestamp".into(), ts.to_string()),
        ("webhook-signature".into(), signature),
    ]
}

#[tokio::test]
async fn what_the_reference_libraries_sign_registers() {
    let app = spawn().await;
    for (n, python) in [true, false].into_iter().enumerate() {
        let sub = uuid::Uuid::new_v4().to_string();
        let body = body_for(&sub, "ada@example.com");
        let headers = signed_by(python, CURRENT, &format!("msg_interop{n}"), now(), &body);
        let response = app.post_user(body.as_bytes(), &headers).await;
        assert_eq!(response.status(), 201, "python={python}");
        let user: Value = response.json().await.expect("json");
        assert_eq!(user["sub"], sub.as_str());
    }
    assert_eq!(app.user_count().await, 2);
}

#[tokio::test]
async fn what_the_reference_libraries_sign_wrongly_is_refused_and_stores_nothing() {
    let app = spawn().await;
    let body = body_for(&uuid::Uuid::new_v4().to_string(), "ada@example.com");
    let other = body_for(&uuid::Uuid::new_v4().to_string(), "eve@example.com");
    let wrong_key = "whsec_d3Jvbmcta2V5LTAxMjM0NTY3ODlhYmNkZWZnaA==";
    for python in [true, false] {
        let cases = [
            (
                "a wrong key",
                signed_by(python, wrong_key, "msg_a", now(), &body),
                &body,
            ),
            (
                "a stale timestamp",
                signed_by(python, CURRENT, "msg_b", now() - 301 - 60, &body),
                &body,
            ),
            (
                "a timestamp ahead",
                signed_by(python, CURRENT, "msg_c", now() + 301 + 60, &body),
                &body,
            ),
            (
                "another body",
                signed_by(python, CURRENT, "msg_d", now(), &other),
                &body,
            ),
        ];
        for (what, headers, sent) in cases {
            let response = app.post_user(sent.as_bytes(), &headers).await;
            assert_eq!(response.status(), 403, "{what} (python={python})");
            assert_eq!(
                response
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok()),
                Some("application/problem+json"),
                "{what}: the api's usual refusal"
            );
        }
    }
    assert_eq!(app.user_count().await, 0);
}
