//! The request extractors, whose rejections are problem+json like every other error.
//!
//! - [`ProblemJson`]: the JSON body every route uses, refused the way a client can act on it —
//!   415 without `application/json`, 413 over `api.body_limit_bytes`, 400 for broken JSON, 422
//!   naming the field that is wrong.
//! - [`Bearer`]: the claims of a verified Cognito ID token from `Authorization: Bearer …`; 401
//!   with one text for every reason (the reason goes to the log), 503 when the user pool's keys
//!   cannot be fetched, 404 when the api has no user pool configured.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::jwt::{IdClaims, TokenError};
use crate::state::AppState;

/// Every refused token gets this text, whatever the reason (logged, never answered).
pub const INVALID_TOKEN: &str = "invalid token";

/// The claims of the request's verified Cognito ID token.
#[derive(Debug, Clone)]
pub struct Bearer(pub IdClaims);

impl FromRequestParts<AppState> for Bearer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(verifier) = state.jwt.as_ref() else {
            return Err(ApiError::NotFound);
        };
        let claims = match bearer_token(&parts.headers) {
            None => Err(TokenError::Missing),
            Some(token) => verifier.verify(token, state.clock.now()).await,
        };
        claims.map(Bearer).map_err(|e| {
            // The reason goes to the log only: the answer never says whether a signature was
            // valid.
            tracing::info!(reason = %e, "token refused");
            match e {
                TokenError::KeysUnavailable => {
                    ApiError::Unavailable("the identity provider's keys are unavailable")
                }
                _ => ApiError::Unauthorized(INVALID_TOKEN),
            }
        })
    }
}

/// The token of `Authorization: Bearer <token>` (the scheme in either case Cognito's clients
/// send), trimmed; `None` when absent or empty.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// A JSON body of type `T`, or a problem+json rejection.
#[derive(Debug, Clone)]
pub struct ProblemJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ProblemJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        if !is_json(request.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let limit = state.settings.api.body_limit_bytes;
        let body = axum::body::to_bytes(request.into_body(), limit)
            .await
            .map_err(|_| ApiError::PayloadTooLarge(limit))?;
        parse_json(&body).map(ProblemJson)
    }
}

/// `application/json`, with or without parameters, in any case.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// JSON errors split the way a client can act on: syntax (400) versus a wrong field (422).
fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => ApiError::InvalidField {
                field: if path == "." {
                    unknown_field(&inner.to_string())
                } else {
                    path
                },
                detail: inner.to_string(),
            },
            _ => ApiError::MalformedJson(inner.to_string()),
        }
    })
}

/// Names the field of a top-level "unknown field"/"missing field" error.
fn unknown_field(message: &str) -> String {
    message
        .split('`')
        .nth(1)
        .map(str::to_owned)
        .unwrap_or_else(|| "(body)".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // read through Debug only
    struct Body {
        name: String,
    }

    #[test]
    fn only_application_json_is_json() {
        for (value, json) in [
            ("application/json", true),
            ("Application/JSON; charset=utf-8", true),
            ("application/jsonx", false),
            ("text/plain", false),
            ("application/x-www-form-urlencoded", false),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
            assert_eq!(is_json(&headers), json, "{value}");
        }
        assert!(!is_json(&HeaderMap::new()), "no content type");
    }

    #[test]
    fn syntax_errors_are_400_and_field_errors_name_the_field() {
        assert!(matches!(
            parse_json::<Body>(b"{\"name\":"),
            Err(ApiError::MalformedJson(_))
        ));
        for (body, field) in [
            (&b"{\"name\": 7}"[..], "name"),
            (b"{}", "name"),
            (b"{\"name\":\"a\",\"extra\":1}", "extra"),
        ] {
            match parse_json::<Body>(body) {
                Err(ApiError::InvalidField { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{}: {other:?}", String::from_utf8_lossy(body)),
            }
        }
    }
}
