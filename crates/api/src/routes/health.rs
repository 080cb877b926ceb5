//! `GET /healthz` (the process answers) and `GET /readyz` (the database answers and the guard
//! secret is loaded).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;
use crate::users;

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
