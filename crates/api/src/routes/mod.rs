//! The route handlers, one room each: [`register`] (`POST /user`, behind the guard), [`me`]
//! (`GET /users/me`, behind a Cognito ID token), [`heartbeat`] (`DELETE` on the guarded route,
//! behind the same guard), [`health`] (`/healthz`, `/readyz`), and here the
//! fallbacks and the OpenAPI document. Thin: extract, call the database, map the result.

pub mod health;
pub mod heartbeat;
pub mod me;
pub mod register;

use axum::Json;

use crate::domain::RegistrationRequest;
use crate::error::ApiError;
use crate::users::User;
use health::{Health, Readiness};

pub async fn not_found() -> ApiError {
    ApiError::NotFound
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    info(title = "Tollgate API", description = "Registration from Cognito sign-up, and the app user's own record."),
    paths(register::register, heartbeat::forget, me::me, health::healthz, health::readyz, openapi),
    components(schemas(RegistrationRequest, heartbeat::ForgetRequest, User, Health, Readiness, crate::secrets::VersionIds)),
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
