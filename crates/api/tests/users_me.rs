//! `GET /users/me` with real Cognito ID tokens, issued by moto's Cognito on loopback.

use crate::common::*;
use api::Clock;
use reqwest::StatusCode;
use serde_json::Value;
use testkit::aws_endpoint;
use testkit::cognito::{PoolUser, UserPool};

/// A user pool in moto, and the options that point the api's `/users/me` at it.
struct Pool(UserPool);

async fn user_pool() -> Pool {
    let sdk = testkit::sdk_config(&testkit::local_aws()).await;
    Pool(
        UserPool::create(&sdk, &aws_endpoint(), "test")
            .await
            .expect("moto creates a user pool"),
    )
}

impl Pool {
    /// Signs up and confirms a user, then signs in: real ID and access tokens.
    async fn user(&self, username: &str, email: &str) -> PoolUser {
        self.0.sign_up(username, email).await.expect("sign up")
    }

    fn options(&self) -> Options {
        let mut options = Options::default();
        options.vars.extend(self.0.api_env());
        options
    }
}

fn token_claims(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).expect("JWT payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("claims JSON")
}

async fn me(app: &TestApp, authorization: Option<&str>) -> reqwest::Response {
    let mut req = app.http.get(format!("{}/users/me", app.base));
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    req.send().await.expect("sent")
}

async fn assert_unauthorized(response: reqwest::Response, case: &str) {
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{case}");
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(challenge.starts_with("Bearer"), "{case}: {challenge}");
}

#[tokio::test]
async fn a_valid_id_token_provisions_the_missing_user_once() {
    let pool = user_pool().await;
    let tokens = pool.user("ada", "ada@example.com").await;
    let app = spawn_with(pool.options()).await;
    assert_eq!(
        app.user_count().await,
        0,
        "the Lambda's registration was lost"
    );

    let response = me(&app, Some(&format!("Bearer {}", tokens.id_token))).await;
    assert_eq!(response.status(), StatusCode::OK);
    let user: Value = response.json().await.expect("json");
    assert_eq!(user["sub"], tokens.sub);
    assert_eq!(user["username"], "ada");
    // The row holds what the verified token says. Real Cognito ID tokens carry `email`;
    // moto 5's do not, so the expected value is read from the token itself.
    let claims = token_claims(&tokens.id_token);
    assert_eq!(
        user["email"],
        claims.get("email").cloned().unwrap_or(Value::Null)
    );
    assert_eq!(
        user["email_verified"],
        claims.get("email").is_some() && claims["email_verified"] == true
    );

    let again: Value = me(&app, Some(&format!("Bearer {}", tokens.id_token)))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(again, user);
    assert_eq!(app.user_count().await, 1);
}

#[tokio::test]
async fn a_registered_user_gets_its_row_unchanged() {
    let pool = user_pool().await;
    let tokens = pool.user("bob", "bob@example.com").await;
    let app = spawn_with(pool.options()).await;
    let body = format!(
        r#"{{"sub":"{}","email":"bob@example.com","email_verified":true,"username":"bob"}}"#,
        tokens.sub
    );
    let registered: Value = app.register(&body).await.json().await.expect("json");
    let mine: Value = me(&app, Some(&format!("Bearer {}", tokens.id_token)))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(mine, registered);
}

/// A user deleted or disabled in Cognito is not re-created from an ID token that still lives:
/// just-in-time registration asks the pool first.
#[tokio::test]
async fn a_user_cognito_no_longer_has_enabled_is_not_provisioned_from_a_live_token() {
    let pool = user_pool().await;
    let dora = pool.user("dora", "dora@example.com").await;
    let erin = pool.user("erin", "erin@example.com").await;
    let fay = pool.user("fay", "fay@example.com").await;
    pool.0.disable("dora").await.expect("disable");
    pool.0.delete("erin").await.expect("delete");
    let app = spawn_with(pool.options()).await;
    for (who, tokens) in [("disabled", &dora), ("deleted", &erin)] {
        let response = me(&app, Some(&format!("Bearer {}", tokens.id_token))).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{who}");
        let body: Value = response.json().await.expect("problem");
        assert_eq!(body["detail"], "invalid token", "{who}: {body}");
    }
    assert_eq!(app.user_count().await, 0, "neither was created");
    let response = me(&app, Some(&format!("Bearer {}", fay.id_token))).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "an enabled user still is"
    );
    assert_eq!(app.user_count().await, 1);
}

/// Every refusal says the same: whether the signature was valid, the token expired or the key
/// is unknown is logged, never answered.
#[tokio::test]
async fn every_refused_token_gets_the_same_text() {
    let pool = user_pool().await;
    let tokens = pool.user("gil", "gil@example.com").await;
    let app = spawn_with(pool.options()).await;
    let later = spawn_with(Options {
        clock: Clock::shifted(2 * 86_400),
        ..pool.options()
    })
    .await;
    let mut tampered: Vec<String> = tokens.id_token.split('.').map(str::to_owned).collect();
    tampered[1] = tampered[1].chars().rev().collect();
    let cases = [
        (&app, None, "missing"),
        (&app, Some("Bearer not.a.jwt".to_owned()), "garbage"),
        (
            &app,
            Some(format!("Bearer {}", tampered.join("."))),
            "bad signature",
        ),
        (
            &app,
            Some(format!("Bearer {}", tokens.access_token)),
            "access token",
        ),
        (
            &later,
            Some(format!("Bearer {}", tokens.id_token)),
            "expired",
        ),
    ];
    for (app, authorization, case) in cases {
        let response = me(app, authorization.as_deref()).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{case}");
        let body: Value = response.json().await.expect("problem");
        assert_eq!(body["detail"], "invalid token", "{case}: {body}");
    }
}

#[tokio::test]
async fn bad_tokens_are_401_with_a_challenge() {
    let pool = user_pool().await;
    let tokens = pool.user("carol", "carol@example.com").await;
    let app = spawn_with(pool.options()).await;
    assert_unauthorized(me(&app, None).await, "no header").await;
    assert_unauthorized(me(&app, Some("Bearer ")).await, "empty").await;
    assert_unauthorized(
        me(&app, Some(&format!("Basic {}", tokens.id_token))).await,
        "wrong scheme",
    )
    .await;
    assert_unauthorized(me(&app, Some("Bearer not.a.jwt")).await, "garbage").await;
    assert_unauthorized(
        me(&app, Some(&format!("Bearer {}", tokens.access_token))).await,
        "access token",
    )
    .await;

    // A tampered payload keeps the header (and key id) but breaks the signature.
    let mut parts: Vec<String> = tokens.id_token.split('.').map(str::to_owned).collect();
    parts[1] = parts[1].chars().rev().collect();
    assert_unauthorized(
        me(&app, Some(&format!("Bearer {}", parts.join(".")))).await,
        "tampered",
    )
    .await;

    // alg=none with the same claims.
    let none_header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
    let unsigned = format!(
        "{none_header}.{}.",
        tokens.id_token.split('.').nth(1).expect("payload")
    );
    assert_unauthorized(
        me(&app, Some(&format!("Bearer {unsigned}"))).await,
        "alg none",
    )
    .await;
    assert_eq!(app.user_count().await, 0);
}

#[tokio::test]
async fn an_unknown_key_id_is_refused() {
    use base64::Engine as _;
    let pool = user_pool().await;
    let tokens = pool.user("dave", "dave@example.com").await;
    let app = spawn_with(pool.options()).await;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts: Vec<String> = tokens.id_token.split('.').map(str::to_owned).collect();
    let mut header: Value =
        serde_json::from_slice(&b64.decode(&parts[0]).expect("b64")).expect("json");
    header["kid"] = Value::String("rotated-away".into());
    parts[0] = b64.encode(serde_json::to_vec(&header).expect("json"));
    assert_unauthorized(
        me(&app, Some(&format!("Bearer {}", parts.join(".")))).await,
        "unknown kid",
    )
    .await;
    // The real key still works afterwards (the refetch did not poison the cache).
    assert_eq!(
        me(&app, Some(&format!("Bearer {}", tokens.id_token)))
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn wrong_audience_and_wrong_issuer_are_refused() {
    let pool = user_pool().await;
    let tokens = pool.user("erin", "erin@example.com").await;
    let wrong_aud = spawn_with(
        Options::default()
            .var("TOLLGATE__API__JWT_ISSUER", &pool.0.issuer)
            .var("TOLLGATE__API__JWT_CLIENT_ID", "another-app-client")
            .var("TOLLGATE__API__JWKS_URL", &pool.0.jwks_url),
    )
    .await;
    assert_unauthorized(
        me(&wrong_aud, Some(&format!("Bearer {}", tokens.id_token))).await,
        "wrong audience",
    )
    .await;
    let wrong_iss = spawn_with(
        Options::default()
            .var(
                "TOLLGATE__API__JWT_ISSUER",
                "https://cognito-idp.ap-northeast-1.amazonaws.com/ap-northeast-1_other",
            )
            .var("TOLLGATE__API__JWT_CLIENT_ID", &pool.0.client_id)
            .var("TOLLGATE__API__JWKS_URL", &pool.0.jwks_url),
    )
    .await;
    assert_unauthorized(
        me(&wrong_iss, Some(&format!("Bearer {}", tokens.id_token))).await,
        "wrong issuer",
    )
    .await;
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let pool = user_pool().await;
    let tokens = pool.user("frank", "frank@example.com").await;
    // moto's tokens live an hour; a service clock two hours ahead sees them expired.
    let app = spawn_with(Options {
        clock: Clock::shifted(2 * 3600),
        ..pool.options()
    })
    .await;
    let response = me(&app, Some(&format!("Bearer {}", tokens.id_token))).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let problem: Value = response.json().await.expect("json");
    // The reason stays in the log; the answer says no more than any other refused token.
    assert_eq!(problem["detail"], "invalid token", "{problem}");
    assert_eq!(app.user_count().await, 0);
}

#[tokio::test]
async fn without_jwt_settings_the_route_is_404() {
    let app = spawn().await;
    assert_eq!(
        me(&app, Some("Bearer x")).await.status(),
        StatusCode::NOT_FOUND
    );
}
