//! schemathesis (PyPI) against the running api's own `/openapi.json`: generated and mutated
//! requests for every documented operation; no 5xx, and every answer — status, content type,
//! body — is one the document promises. `/users/me` is configured against a JWKS with no keys,
//! so every token schemathesis invents is a documented 401.

use crate::common::*;

/// A JWKS endpoint that knows no keys.
async fn empty_jwks() -> String {
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(|| async { axum::Json(serde_json::json!({"keys": []})) }),
    );
    format!("http://{}/jwks.json", serve(app).await)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_running_api_answers_as_its_openapi_document_says() {
    let installed = std::process::Command::new("schemathesis")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        installed,
        "schemathesis is missing: `cargo xtask setup` brings it (or `pip install schemathesis`)"
    );
    let jwks = empty_jwks().await;
    let app = spawn_with(
        Options::default()
            .var(
                "TOLLGATE__API__JWT_ISSUER",
                "https://cognito-idp.ap-northeast-1.amazonaws.com/ap-northeast-1_conformance",
            )
            .var("TOLLGATE__API__JWT_CLIENT_ID", "conformance-client")
            .var("TOLLGATE__API__JWKS_URL", &jwks),
    )
    .await;
    let schema = format!("{}/openapi.json", app.base);
    let run = move || {
        std::process::Command::new("schemathesis")
            .args(["run", &schema])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            "--max-examples",
            "50",
            "--generation-deterministic",
            "--no-color",
        ])
        .output()
    };
    // The server keeps serving on the runtime's other threads meanwhile.
    let out = tokio::task::spawn_blocking(run)
        .await
        .expect("task")
        .expect("schemathesis runs");
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{report}");
    assert!(
        out.status.success(),
        "schemathesis found non-conforming answers:\n{report}"
    );
    assert_eq!(
        app.user_count().await,
        0,
        "nothing it sent registered a user"
    );
}
