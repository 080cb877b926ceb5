//! `POST /user`: the registration the guard let through (the guard layer ran first and left
//! when the request was signed). Parse, store idempotently, answer 201 or 200.

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::domain::{NewUser, RegistrationRequest};
use crate::error::ApiError;
use crate::extract::ProblemJson;
use crate::state::AppState;
use crate::users::{self, Registered, User};
use tollgate_guard::Verified;

/// Register a user confirmed in Cognito (the post-confirm Lambda only).
#[utoipa::path(
    post,
    path = "/user",
    tag = "registration",
    request_body(content = RegistrationRequest, content_type = "application/json"),
    params(
        ("webhook-id" = Option<String>, Header, description = "Standard Webhooks message id, `[A-Za-z0-9_-]{1,128}` (hmac mode)"),
        ("webhook-timestamp" = Option<String>, Header, description = "Standard Webhooks signing time, unix seconds (hmac mode)"),
        ("webhook-signature" = Option<String>, Header, description = "Standard Webhooks `v1,<base64>` entries, space-separated (hmac mode)"),
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
    Extension(verified): Extension<Verified>,
    ProblemJson(request): ProblemJson<RegistrationRequest>,
) -> Result<Response, ApiError> {
    let user = NewUser::parse(request)?;
    let user = &user;
    let signed_at = i64::try_from(verified.signed_at).unwrap_or(i64::MAX);
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
