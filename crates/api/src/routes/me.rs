//! `GET /users/me`: an app user's own record, read as the steps it takes. The token is
//! verified before the handler runs ([`Bearer`]); its claims form a user; the row is found, or
//! (when the sign-up registration was lost) created, for a user Cognito still has enabled.

use axum::Json;
use axum::extract::State;

use crate::domain::{NewUser, RegistrationRequest};
use crate::error::ApiError;
use crate::extract::{Bearer, INVALID_TOKEN};
use crate::identity::Standing;
use crate::jwt::IdClaims;
use crate::state::AppState;
use crate::users::{self, User};

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
pub async fn me(
    State(state): State<AppState>,
    Bearer(claims): Bearer,
) -> Result<Json<User>, ApiError> {
    let (user, username) = user_of(claims)?;
    if let Some(existing) = find(&state, &user).await? {
        return Ok(Json(existing));
    }
    still_enabled(&state, &username).await?;
    provision(&state, &user).await.map(Json)
}

/// The user a verified token describes, and its Cognito user name (the `sub` when the token
/// names none).
fn user_of(claims: IdClaims) -> Result<(NewUser, String), ApiError> {
    let username = claims
        .username
        .clone()
        .unwrap_or_else(|| claims.sub.clone());
    let user = NewUser::parse(RegistrationRequest {
        sub: claims.sub,
        email: claims.email,
        email_verified: claims.email_verified,
        username: claims.username.unwrap_or_default(),
        via: None,
    })
    .map_err(|e| {
        tracing::warn!(error = %e, "token claims cannot form a user");
        ApiError::Unauthorized(INVALID_TOKEN)
    })?;
    Ok((user, username))
}

/// The stored row of `user`, if the registration reached it.
async fn find(state: &AppState, user: &NewUser) -> Result<Option<User>, ApiError> {
    let sub = user.sub();
    let found = state
        .db
        .with_fresh_credentials(|pool| async move { users::find_by_sub(&pool, sub).await })
        .await?;
    Ok(found)
}

/// Missing rows are created from the token only for a user Cognito still has, enabled (when
/// the api is given a user pool to ask).
async fn still_enabled(state: &AppState, username: &str) -> Result<(), ApiError> {
    let Some(directory) = &state.directory else {
        return Ok(());
    };
    match directory.standing(username).await {
        Ok(Standing::Enabled) => Ok(()),
        Ok(standing) => {
            tracing::warn!(
                ?standing,
                "token of a user Cognito no longer has enabled: not provisioned"
            );
            Err(ApiError::Unauthorized(INVALID_TOKEN))
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot ask Cognito about a user to provision");
            Err(ApiError::Unavailable(
                "the identity provider is unavailable",
            ))
        }
    }
}

/// Creates the row the sign-up registration should have made (or finds the one a registration
/// made meanwhile), and says so in the log when this request created it.
async fn provision(state: &AppState, user: &NewUser) -> Result<User, ApiError> {
    let (user, created) = state
        .db
        .with_fresh_credentials(|pool| async move { users::provision_user(&pool, user).await })
        .await?;
    if created {
        tracing::warn!(user_id = %user.id, "user provisioned from its token: its sign-up registration was lost");
    }
    Ok(user)
}
