//! `GET /users/me` with real Cognito ID tokens, issued by moto's Cognito on loopback.

mod common;

use api::Clock;
use aws_sdk_cognitoidentityprovider::Client as Cognito;
use aws_sdk_cognitoidentityprovider::types::{AttributeType, AuthFlowType, ExplicitAuthFlowsType};
use common::*;
use reqwest::StatusCode;
use serde_json::Value;

const REGION: &str = "ap-northeast-1";

struct Pool {
    id: String,
    client_id: String,
    cognito: Cognito,
}

struct Tokens {
    id: String,
    access: String,
    sub: String,
}

async fn user_pool() -> Pool {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(aws_endpoint())
        .credentials_provider(aws_sdk_cognitoidentityprovider::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .load()
        .await;
    let cognito = Cognito::new(&config);
    let pool = cognito
        .create_user_pool()
        .pool_name(format!("tollgate-test-{}", uuid::Uuid::new_v4().simple()))
        .send()
        .await
        .expect("moto creates a user pool");
    let id = pool
        .user_pool()
        .and_then(|p| p.id())
        .expect("pool id")
        .to_owned();
    let client = cognito
        .create_user_pool_client()
        .user_pool_id(&id)
        .client_name("app")
        .explicit_auth_flows(ExplicitAuthFlowsType::AllowAdminUserPasswordAuth)
        .send()
        .await
        .expect("app client");
    let client_id = client
        .user_pool_client()
        .and_then(|c| c.client_id())
        .expect("client id")
        .to_owned();
    Pool {
        id,
        client_id,
        cognito,
    }
}

impl Pool {
    fn issuer(&self) -> String {
        format!("https://cognito-idp.{REGION}.amazonaws.com/{}", self.id)
    }

    fn jwks_url(&self) -> String {
        format!("{}/{}/.well-known/jwks.json", aws_endpoint(), self.id)
    }

    /// Signs up and confirms a user, then signs in: real ID and access tokens.
    async fn user(&self, username: &str, email: &str) -> Tokens {
        let password = "Correct-Horse-9-battery";
        let signed_up = self
            .cognito
            .sign_up()
            .client_id(&self.client_id)
            .username(username)
            .password(password)
            .user_attributes(
                AttributeType::builder()
                    .name("email")
                    .value(email)
                    .build()
                    .expect("attribute"),
            )
            .send()
            .await
            .expect("sign up");
        self.cognito
            .admin_confirm_sign_up()
            .user_pool_id(&self.id)
            .username(username)
            .send()
            .await
            .expect("confirm");
        let auth = self
            .cognito
            .admin_initiate_auth()
            .user_pool_id(&self.id)
            .client_id(&self.client_id)
            .auth_flow(AuthFlowType::AdminUserPasswordAuth)
            .auth_parameters("USERNAME", username)
            .auth_parameters("PASSWORD", password)
            .send()
            .await
            .expect("sign in");
        let result = auth.authentication_result().expect("tokens");
        Tokens {
            id: result.id_token().expect("id token").to_owned(),
            access: result.access_token().expect("access token").to_owned(),
            sub: signed_up.user_sub().to_owned(),
        }
    }

    fn options(&self) -> Options {
        Options::default()
            .var("TOLLGATE__API__JWT_ISSUER", &self.issuer())
            .var("TOLLGATE__API__JWT_CLIENT_ID", &self.client_id)
            .var("TOLLGATE__API__JWKS_URL", &self.jwks_url())
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

    let response = me(&app, Some(&format!("Bearer {}", tokens.id))).await;
    assert_eq!(response.status(), StatusCode::OK);
    let user: Value = response.json().await.expect("json");
    assert_eq!(user["sub"], tokens.sub);
    assert_eq!(user["username"], "ada");
    // The row holds what the verified token says. Real Cognito ID tokens carry `email`;
    // moto 5's do not, so the expected value is read from the token itself.
    let claims = token_claims(&tokens.id);
    assert_eq!(
        user["email"],
        claims.get("email").cloned().unwrap_or(Value::Null)
    );
    assert_eq!(
        user["email_verified"],
        claims.get("email").is_some() && claims["email_verified"] == true
    );

    let again: Value = me(&app, Some(&format!("Bearer {}", tokens.id)))
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
    let mine: Value = me(&app, Some(&format!("Bearer {}", tokens.id)))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(mine, registered);
}

#[tokio::test]
async fn bad_tokens_are_401_with_a_challenge() {
    let pool = user_pool().await;
    let tokens = pool.user("carol", "carol@example.com").await;
    let app = spawn_with(pool.options()).await;
    assert_unauthorized(me(&app, None).await, "no header").await;
    assert_unauthorized(me(&app, Some("Bearer ")).await, "empty").await;
    assert_unauthorized(
        me(&app, Some(&format!("Basic {}", tokens.id))).await,
        "wrong scheme",
    )
    .await;
    assert_unauthorized(me(&app, Some("Bearer not.a.jwt")).await, "garbage").await;
    assert_unauthorized(
        me(&app, Some(&format!("Bearer {}", tokens.access))).await,
        "access token",
    )
    .await;

    // A tampered payload keeps the header (and key id) but breaks the signature.
    let mut parts: Vec<String> = tokens.id.split('.').map(str::to_owned).collect();
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
        tokens.id.split('.').nth(1).expect("payload")
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
    let mut parts: Vec<String> = tokens.id.split('.').map(str::to_owned).collect();
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
        me(&app, Some(&format!("Bearer {}", tokens.id)))
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
            .var("TOLLGATE__API__JWT_ISSUER", &pool.issuer())
            .var("TOLLGATE__API__JWT_CLIENT_ID", "another-app-client")
            .var("TOLLGATE__API__JWKS_URL", &pool.jwks_url()),
    )
    .await;
    assert_unauthorized(
        me(&wrong_aud, Some(&format!("Bearer {}", tokens.id))).await,
        "wrong audience",
    )
    .await;
    let wrong_iss = spawn_with(
        Options::default()
            .var(
                "TOLLGATE__API__JWT_ISSUER",
                "https://cognito-idp.ap-northeast-1.amazonaws.com/ap-northeast-1_other",
            )
            .var("TOLLGATE__API__JWT_CLIENT_ID", &pool.client_id)
            .var("TOLLGATE__API__JWKS_URL", &pool.jwks_url()),
    )
    .await;
    assert_unauthorized(
        me(&wrong_iss, Some(&format!("Bearer {}", tokens.id))).await,
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
    let response = me(&app, Some(&format!("Bearer {}", tokens.id))).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let problem: Value = response.json().await.expect("json");
    assert!(
        problem["detail"]
            .as_str()
            .expect("detail")
            .contains("expired"),
        "{problem}"
    );
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
