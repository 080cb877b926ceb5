//! `DELETE` on the guarded route: the heartbeat's read-and-delete. The sign-up function's
//! heartbeat ([`shared_auth::heartbeat`]) signs a `{"sub": …}` body the way it signs a
//! registration, through the same guard layer, and learns whether its synthetic user's row is
//! there and which way it came in; the row is removed in the same statement. The database
//! deletes a heartbeat user's row and no other (`forget_heartbeat_user`): a real user's `sub`
//! answers 404 like an unknown one, and its row stays.

use axum::Json;
use axum::extract::State;
use shared_auth::heartbeat::{Forget, Forgotten, Via};
use uuid::Uuid;

use crate::error::ApiError;
use crate::extract::ProblemJson;
use crate::state::AppState;
use crate::users;

/// The body, as documented ([`Forget`] is the type both ends share).
#[derive(Debug, utoipa::ToSchema)]
pub struct ForgetRequest {
    /// The `sub` of a heartbeat user (its address in `heartbeat.tollgate.invalid`).
    #[schema(format = Uuid)]
    pub sub: String,
}

/// Read and delete a heartbeat user's row (the post-confirm Lambda's heartbeat only).
#[utoipa::path(
    delete,
    path = "/user",
    tag = "registration",
    request_body(content = ForgetRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The row was there and is gone: `{\"sub\", \"registered_via\"}`"),
        (status = 400, description = "Malformed JSON", content_type = "application/problem+json"),
        (status = 403, description = "Not the registration Lambda (one body for every reason)", content_type = "application/problem+json"),
        (status = 413, description = "Body too large", content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", content_type = "application/problem+json"),
        (status = 404, description = "No heartbeat user with this `sub`", content_type = "application/problem+json"),
        (status = 422, description = "Invalid `sub`", content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable; retry after `Retry-After`", content_type = "application/problem+json"),
    )
)]
pub async fn forget(
    State(state): State<AppState>,
    ProblemJson(request): ProblemJson<Forget>,
) -> Result<Json<Forgotten>, ApiError> {
    let sub = Uuid::try_parse(&request.sub).map_err(|_| ApiError::InvalidField {
        field: "sub".into(),
        detail: "must be a UUID".into(),
    })?;
    let found = state
        .db
        .with_fresh_credentials(
            |pool| async move { users::forget_heartbeat_user(&pool, sub).await },
        )
        .await?;
    let Some(via) = found else {
        return Err(ApiError::NotFound);
    };
    let registered_via = via.as_deref().and_then(Via::parse);
    tracing::info!(%sub, registered_via = via.as_deref().unwrap_or("unknown"), "heartbeat user read and deleted");
    Ok(Json(Forgotten {
        sub: sub.to_string(),
        registered_via,
    }))
}
