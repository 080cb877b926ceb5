//! Route handlers. Thin: parse, call the database, map the result.

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::{NewUser, RegistrationRequest};
use crate::error::ApiError;
use crate::extract::ProblemJson;
use crate::guard::SignedAt;
use crate::identity::Standing;
use crate::jwt::TokenError;
use crate::state::AppState;
use crate::users::{self, Registered, User};

/// Register a user confirmed in Cognito (the post-confirm Lambda only).
#[utoipa::path(
    post,
    path = "/user",
    tag = "registration",
    request_body(content = RegistrationRequest, content_type = "application/json"),
    params(
        ("x-tollgate-timestamp" = Option<String>, Header, description = "Unix seconds (hmac mode)"),
        ("x-tollgate-signature" = Option<String>, Header, description = "`v1=<base64>` entries (hmac mode)"),
        ("x-custom-auth" = Option<String>, Header, description = "The shared secret (static mode)"),
    ),
    responses(
        (status = 201, description = "Created", body = User, headers(("Location" = String))),
        (status = 200, description = "Already registered (a replay); changed attributes were applied", body = User),
        (status = 400, description = "Malformed JSON", content_type = "application/problem+json"),
        (status = 403, description = "Not the registration Lambda (one body for every reason)", content_type = "application/problem+json"),
        (status = 413, description = "Body too large", content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", content_type = "application/problem+json"),
        (status = 422, description = "Invalid field (named in `field`)", content_type = "application/problem+json"),
        (status = 503, description = "Database or secret unavailable; retry after `Retry-After`", content_type = "application/problem+json"),
    )
)]
pub async fn register(
    State(state): State<AppState>,
    Extension(SignedAt(signed_at)): Extension<SignedAt>,
    ProblemJson(request): ProblemJson<RegistrationRequest>,
) -> Result<Response, ApiError> {
    let user = NewUser::parse(request)?;
    let user = &user;
    let signed_at = i64::try_from(signed_at).unwrap_or(i64::MAX);
    let outcome = state
        .db
        .with_fresh_credentials(
            |pool| async move { users::register_user(&pool, user, signed_at).await },
        )
        .await?;
    let (status, user) = match outcome {
        Registered::Created(u) => (StatusCode::CREATED, u),
        Registered::Updated(u) => {
            tracing::info!(user_id = %u.id, "registration replay updated attributes");
            (StatusCode::OK, u)
        }
        Registered::Unchanged(u) => (StatusCode::OK, u),
    };
    tracing::info!(user_id = %user.id, status = status.as_u16(), "user registered");
    let mut response = (status, Json(&user)).into_response();
    if status == StatusCode::CREATED
        && let Ok(location) = HeaderValue::from_str(&format!("/users/{}", user.id))
    {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// The caller's own user, created from the verified token if the sign-up registration was lost.
#[utoipa::path(
    get,
    path = "/users/me",
    tag = "users",
    security(("cognito_id_token" = [])),
    responses(
        (status = 200, description = "The caller's user (created from the token if it was missing)", body = User),
        (status = 401, description = "Missing or invalid Cognito ID token", content_type = "application/problem+json"),
        (status = 503, description = "Database or identity keys unavailable", content_type = "application/problem+json"),
    )
)]
pub async fn me(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<User>, ApiError> {
    let Some(verifier) = state.jwt.as_ref() else {
        return Err(ApiError::NotFound);
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let claims = match token {
        None => Err(TokenError::Missing),
        Some(token) => verifier.verify(token, state.clock.now()).await,
    };
    let claims = claims.map_err(|e| {
        // The reason goes to the log only: the answer never says whether a signature was valid.
        tracing::info!(reason = %e, "token refused");
        match e {
            TokenError::KeysUnavailable => {
                ApiError::Unavailable("the identity provider's keys are unavailable")
            }
            _ => ApiError::Unauthorized(INVALID_TOKEN),
        }
    })?;
    let username = claims
        .username
        .clone()
        .unwrap_or_else(|| claims.sub.clone());
    let user = NewUser::parse(RegistrationRequest {
        sub: claims.sub,
        email: claims.email,
        email_verified: claims.email_verified,
        username: claims.username.unwrap_or_default(),
    })
    .map_err(|e| {
        tracing::warn!(error = %e, "token claims cannot form a user");
        ApiError::Unauthorized(INVALID_TOKEN)
    })?;
    let sub = user.sub();
    let existing = state
        .db
        .with_fresh_credentials(|pool| async move { users::find_by_sub(&pool, sub).await })
        .await?;
    if let Some(existing) = existing {
        return Ok(Json(existing));
    }
    // Missing: created from the token only for a user Cognito still has, enabled.
    if let Some(directory) = &state.directory {
        match directory.standing(&username).await {
            Ok(Standing::Enabled) => {}
            Ok(standing) => {
                tracing::warn!(
                    ?standing,
                    "token of a user Cognito no longer has enabled: not provisioned"
                );
                return Err(ApiError::Unauthorized(INVALID_TOKEN));
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot ask Cognito about a user to provision");
                return Err(ApiError::Unavailable(
                    "the identity provider is unavailable",
                ));
            }
        }
    }
    let user = &user;
    let (user, created) = state
        .db
        .with_fresh_credentials(|pool| async move { users::provision_user(&pool, user).await })
        .await?;
    if created {
        tracing::warn!(user_id = %user.id, "user provisioned from its token: its sign-up registration was lost");
    }
    Ok(Json(user))
}

/// Every refused token gets this text, whatever the reason (logged, never answered).
const INVALID_TOKEN: &str = "invalid token";

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    status: &'static str,
}

/// Liveness: the process answers. No dependency is checked (ALB health checks use this).
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    database: bool,
    secret: bool,
    /// The guard secret's versions this task accepts, by id (never values).
    secret_versions: crate::secrets::VersionIds,
}

/// Readiness: the database answers and the secret is loaded.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, body = Readiness), (status = 503, body = Readiness)
))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let loaded = state.secrets.get();
    let readiness = Readiness {
        database: state
            .db
            .with_fresh_credentials(|pool| async move { users::ping(&pool).await })
            .await
            .is_ok(),
        secret: loaded.is_some(),
        secret_versions: loaded.map(|l| l.versions.clone()).unwrap_or_default(),
    };
    let status = if readiness.database && readiness.secret {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(readiness))
}

pub async fn not_found() -> ApiError {
    ApiError::NotFound
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    info(title = "Tollgate API", description = "Registration from Cognito sign-up, and the app user's own record."),
    paths(register, me, healthz, readyz, openapi),
    components(schemas(RegistrationRequest, User, Health, Readiness, crate::secrets::VersionIds)),
    modifiers(&BearerScheme)
)]
pub struct ApiDoc;

struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "cognito_id_token",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .build(),
                ),
            );
    }
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "meta", responses((status = 200, description = "OpenAPI 3.1 document")))]
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(<ApiDoc as utoipa::OpenApi>::openapi())
}
