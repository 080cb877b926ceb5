//! One place that maps every failure to a status code and an `application/problem+json` body
//! (RFC 9457). Bodies never carry SQL, stack traces or secret material.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

pub const PROBLEM_JSON: &str = "application/problem+json";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The registration guard refused the request. One fixed body for every reason, so the
    /// reason cannot be probed; it is logged instead.
    #[error("forbidden")]
    Forbidden,
    /// A bearer token is missing or invalid.
    #[error("unauthorized: {0}")]
    Unauthorized(&'static str),
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("body larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("invalid `{field}`: {detail}")]
    InvalidField { field: String, detail: String },
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A dependency (database, secret) is unavailable; the caller should retry.
    #[error("service unavailable: {0}")]
    Unavailable(&'static str),
    #[error("internal error")]
    Internal,
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    title: &'a str,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

/// Seconds a client should wait before retrying after a 503.
pub const RETRY_AFTER_S: u32 = 2;

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::MalformedJson(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::InvalidField { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let title = status.canonical_reason().unwrap_or("Error");
        let (detail, field) = match &self {
            ApiError::Forbidden
            | ApiError::NotFound
            | ApiError::MethodNotAllowed
            | ApiError::Internal => (None, None),
            ApiError::Unauthorized(why) => (Some((*why).to_owned()), None),
            ApiError::MalformedJson(why) => {
                (Some(format!("the body is not valid JSON: {why}")), None)
            }
            ApiError::UnsupportedMediaType => {
                (Some("send the body as application/json".to_owned()), None)
            }
            ApiError::PayloadTooLarge(limit) => {
                (Some(format!("the body exceeds {limit} bytes")), None)
            }
            ApiError::InvalidField { field, detail } => {
                (Some(detail.clone()), Some(field.as_str()))
            }
            ApiError::Unavailable(what) => (Some(format!("{what}; retry shortly")), None),
        };
        let body = Problem {
            kind: "about:blank",
            title,
            status: status.as_u16(),
            detail,
            field,
        };
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        match self {
            ApiError::Unavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_S));
            }
            ApiError::Unauthorized(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer error="invalid_token""#),
                );
            }
            _ => {}
        }
        response
    }
}

impl From<crate::domain::ValidationError> for ApiError {
    fn from(e: crate::domain::ValidationError) -> Self {
        ApiError::InvalidField {
            field: e.field.to_owned(),
            detail: e.detail,
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        if crate::users::is_unavailable(&e) {
            tracing::warn!(error = %e, "database unavailable");
            ApiError::Unavailable("the database is unavailable")
        } else {
            tracing::error!(error = %e, "database error");
            ApiError::Internal
        }
    }
}
