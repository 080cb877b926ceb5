//! The reference `cargo xtask bench` measures the api against: the same work without what
//! Tollgate adds. `POST /user` runs the api's registration statement
//! ([`api::users::register_user`]); `GET /users/me` verifies the RS256 ID token with plain
//! `jsonwebtoken` against the JWKS (read once at start) and runs the api's select
//! ([`api::users::find_by_sub`]). Both go through the api's own pool ([`Database`]: the same
//! TLS, connection count and options, from the same settings). `POST /refuse` is the fair
//! reference for a request refused by its signature: it reads the body, computes one
//! HMAC-SHA256 over it with the secret, and answers 403. No guard, no metrics, no request id,
//! no timeouts or limits, no logs, no error bodies.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use api::database::Database;
use api::domain::{NewUser, RegistrationRequest};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Json, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use shared_auth::Component;

struct Bare {
    key: Vec<u8>,
    db: Database,
    keys: HashMap<String, DecodingKey>,
    validation: Validation,
}

#[derive(Deserialize)]
struct Claims {
    sub: uuid::Uuid,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let vars = std::env::vars().collect();
    let settings = shared_auth::load_for(Component::Api, &vars).context("the api's settings")?;
    let api = &settings.api;
    let db = Database::start(&settings).await?;
    let jwks_url = api.jwks_url().context("api.jwks_url")?;
    let jwks: JwkSet = reqwest::get(&jwks_url).await?.json().await?;
    let keys = jwks
        .keys
        .iter()
        .filter_map(|jwk| Some((jwk.common.key_id.clone()?, DecodingKey::from_jwk(jwk).ok()?)))
        .collect();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[api.jwt_issuer.as_deref().context("api.jwt_issuer")?]);
    validation.set_audience(&[api.jwt_client_id.as_deref().context("api.jwt_client_id")?]);
    let key = std::env::var("TOLLGATE_SECRET_CURRENT").unwrap_or_default();
    let state = Arc::new(Bare {
        key: key.into_bytes(),
        db,
        keys,
        validation,
    });
    let app = Router::new()
        .route("/user", post(register))
        .route("/users/me", get(me))
        .route("/refuse", post(refuse))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(api.listen).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

async fn register(
    State(bare): State<Arc<Bare>>,
    Json(request): Json<RegistrationRequest>,
) -> Response {
    let Ok(user) = NewUser::parse(request) else {
        return StatusCode::UNPROCESSABLE_ENTITY.into_response();
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    match api::users::register_user(bare.db.pool(), &user, now).await {
        Ok(
            api::users::Registered::Created(user)
            | api::users::Registered::Updated(user)
            | api::users::Registered::Unchanged(user),
        ) => (StatusCode::CREATED, Json(user)).into_response(),
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

async fn refuse(State(bare): State<Arc<Bare>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&bare.key).expect("any key length");
    mac.update(&body);
    let presented = headers
        .get(shared_auth::signing::SIGNATURE_HEADER)
        .map_or(&b""[..], |v| v.as_bytes());
    match mac.verify_slice(presented) {
        Ok(()) => StatusCode::NO_CONTENT,
        Err(_) => StatusCode::FORBIDDEN,
    }
}

async fn me(State(bare): State<Arc<Bare>>, headers: HeaderMap) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = token else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let key = jsonwebtoken::decode_header(token)
        .ok()
        .and_then(|h| h.kid)
        .and_then(|kid| bare.keys.get(&kid));
    let Some(key) = key else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let Ok(claims) = jsonwebtoken::decode::<Claims>(token, key, &bare.validation) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    match api::users::find_by_sub(bare.db.pool(), claims.claims.sub).await {
        Ok(Some(user)) => Json(user).into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}
